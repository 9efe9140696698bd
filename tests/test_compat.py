"""Run folders written before the engine/methods restructure stay valid.

The fixtures in tests/fixtures/run_v1 were written by the code as of commit 7b0326b (before
``scarce/methods`` was split into ``scarce/engine`` + method families):

* ``supervised/`` — a finished tiny run (synthetic data, 32 px, U-Net width 4 depth 2, 6
  iterations, Combine): config, split, ``best.pt`` and its evaluation;
* ``configs/<row>.yaml`` — the saved ``config.yaml`` of one run of every method, as that code
  resolved them (quality preset, kvasir_seg, 40 labels).

A grid resumes only runs whose saved config equals the grid's (``_check_unchanged``), and a
report is rebuilt from saved files: if a restructure renamed a method config field, changed a
default or broke a checkpoint key, these tests fail.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

FIX = Path(__file__).parent / "fixtures" / "run_v1"


@pytest.fixture()
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "supervised"
    shutil.copytree(FIX / "supervised", run)
    return run


def test_old_run_evaluates_identically(old_run: Path, tmp_path: Path) -> None:
    from scarce.api import evaluate_run

    saved = json.loads((FIX / "supervised" / "eval" / "metrics.json").read_text())
    evaluate_run(old_run, out=str(tmp_path / "again"))
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert set(again) == set(saved) == {"synthetic", "synthetic_ood"}
    for test_set, values in saved.items():
        for key, v in values.items():
            assert again[test_set][key] == pytest.approx(v, rel=1e-6, abs=1e-9), (test_set, key)


def test_old_run_reports_identically(old_run: Path) -> None:
    from scarce.reports.tables import collect_runs

    df = collect_runs(old_run.parent)
    saved = json.loads((FIX / "supervised" / "metrics.json").read_text())
    assert sorted(df["test_set"]) == ["synthetic", "synthetic_ood"]
    row = df[df["test_set"] == "synthetic"].iloc[0]
    assert row["dice_mean"] == saved["tests"]["synthetic"]["dice_mean"]
    assert row["best_val"] == saved["best_val"] and row["method"] == "supervised"


@pytest.mark.parametrize("row", sorted(p.stem for p in (FIX / "configs").glob("*.yaml")))
def test_old_configs_are_the_same_runs_today(row: str) -> None:
    """Re-resolving the same grid row today gives no config difference (the grid would resume
    these runs instead of refusing them), and the method section still parses."""
    from scarce.runfolder import config_differences
    from scarce.config import load_config
    from scarce.methods import method_spec

    saved = yaml.safe_load((FIX / "configs" / f"{row}.yaml").read_text())
    spec = method_spec(saved["method"])
    assert spec.name == saved["method"]["name"]
    today = load_config({"method": saved["method"], "label": row,
                         "data": {"dataset": "kvasir_seg", "budget": 40}}, preset="quality")
    old_values = {"e2eaug": {"real_augment": "none"},
                  "separate": {"real_augment": "none", "intensity": "none"},
                  "gan_aug": {"real_augment": "none", "intensity": "none"}}.get(row)
    if old_values:
        # the deliberate changes since: the quality preset's E2EAug, Separate and gan_aug recipes augment
        # their real half; the comparison names the keys, spelling out the old values resumes
        assert config_differences(saved, today) == [f"method.{k}" for k in sorted(old_values)]
        today = load_config({"method": {**saved["method"], **old_values}, "label": row,
                             "data": {"dataset": "kvasir_seg", "budget": 40}}, preset="quality")
    assert config_differences(saved, today) == []


def test_every_method_of_that_time_has_an_old_config() -> None:
    from scarce.methods import load_builtin_methods

    names = {yaml.safe_load(p.read_text())["method"]["name"] for p in (FIX / "configs").glob("*.yaml")}
    assert names == {"supervised", "e2eaug", "separate", "gan_aug", "pce_gd", "grid_gd", "dense_gd", "grid_tr"}
    assert names <= set(load_builtin_methods().names())  # none was dropped or renamed
