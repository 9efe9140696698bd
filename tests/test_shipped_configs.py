"""Every grid YAML shipped in ``configs/`` expands into valid runs.

A typo in a grid (an unknown key, a method field that does not exist, a bad value) otherwise
surfaces only when someone starts a grid that takes hours; ``expand_grid`` validates every run's
resolved config, so this test catches it in seconds. Each grid must also name its preset: the
default preset can change (it did, from ``cpu`` to ``quality``) and a grid that relies on it
would silently train something else than the tables it documents.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scarce.experiments import expand_grid, load_grid

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))


def test_the_shipped_grids_are_found():
    assert len(GRIDS) >= 15 and "configs/quality/accept.yaml" in GRIDS and "configs/ssl/budgets.yaml" in GRIDS


@pytest.mark.parametrize("grid", GRIDS)
def test_shipped_grid_expands_into_valid_runs_with_an_explicit_preset(grid: str):
    path = ROOT / grid
    raw = yaml.safe_load(path.read_text())
    named = (raw.get("base") or {}).get("preset")
    assert named, f"{grid}: name the preset in base.preset (the default preset may change)"
    specs = expand_grid(load_grid(path))  # validates every run's resolved config
    assert specs, f"{grid} expands into no runs"
    assert {s.config["preset"] for s in specs} == {named}
    dirs = [str(s.run_dir) for s in specs]
    assert len(set(dirs)) == len(dirs), f"{grid}: two runs share a folder"
    assert all(d.startswith(raw["out"]) for d in dirs)
    if raw.get("report"):
        assert raw["report"].startswith("docs/results/"), f"{grid}: reports belong under docs/results/"
