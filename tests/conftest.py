"""Shared fixtures: a tiny synthetic dataset folder and the real-data root (skips when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The suite trains hundreds of tiny runs: without a named preset they use the fast from-scratch
# `cpu` preset, not the product default `quality` (pretrained encoder, 800 iterations). Set in the
# environment so grid worker processes (spawned, Ray) see it too. Tests of the real default
# delete it (tests/test_config.py, test_cli.py).
os.environ["SCARCE_PRESET"] = "cpu"


def find_real_data_root() -> Path | None:
    """$SCARCE_DATA_ROOT, else ``<repo>/../shared/data``; None when neither exists."""
    env = os.environ.get("SCARCE_DATA_ROOT")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir() and any(cand.iterdir()):
            return cand
    return None


@pytest.fixture
def synthetic_folder(tmp_path: Path) -> Path:
    """12 binary pairs at 48 px: PNG images/ + masks/ (0/255) + split.csv (stems syn_0000..,
    every 5th pair ``test``: 10 train / 2 test)."""
    from scarce.data.synthetic import make_synthetic

    return make_synthetic(tmp_path / "synthetic_folder", 12, size=48, seed=0)


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """Folder with the real datasets (isic2017/, kvasir_seg/, ...); skips the test when absent."""
    root = find_real_data_root()
    if root is None:
        pytest.skip("real data not found: set SCARCE_DATA_ROOT or provide ../shared/data")
    return root
