"""Synthetic generator: deterministic, appearance depends on the mask, OOD shifts the domain."""
from __future__ import annotations

import numpy as np
from PIL import Image

from scarce.data.load import load_folder
from scarce.data.synthetic import ensure_synthetic, make_synthetic


def _arrays(folder):
    return [np.asarray(Image.open(p)) for p in sorted((folder / "images").iterdir())]


def test_deterministic_and_mask_dependent(tmp_path, synthetic_folder):
    again = make_synthetic(tmp_path / "again", 12, size=48, seed=0)
    assert all((a == b).all() for a, b in zip(_arrays(synthetic_folder), _arrays(again)))
    other = make_synthetic(tmp_path / "other", 12, size=48, seed=1)
    assert not all((a == b).all() for a, b in zip(_arrays(synthetic_folder), _arrays(other)))
    lines = (synthetic_folder / "split.csv").read_text().split()
    assert lines[0] == "stem,split" and sum(ln.endswith(",test") for ln in lines) == 2
    sd = load_folder(synthetic_folder, 48)
    gray = sd.images.mean(1)
    fg, bg = gray[sd.masks == 1].mean(), gray[sd.masks == 0].mean()
    assert bg - fg > 0.2


def test_ood_differs_and_multiclass(tmp_path):
    idd = load_folder(make_synthetic(tmp_path / "id", 6, size=32), 32)
    ood = load_folder(make_synthetic(tmp_path / "ood", 6, size=32, ood=True), 32)
    assert (idd.images.mean((0, 2, 3)) - ood.images.mean((0, 2, 3))).abs().max() > 0.05
    mc = load_folder(make_synthetic(tmp_path / "mc", 6, size=32, num_classes=3, channels=1), 32,
                     num_classes=3)
    assert mc.images.shape[1] == 1 and int(mc.masks.max()) <= 2


def test_ensure_synthetic_idempotent(tmp_path):
    root = ensure_synthetic(tmp_path, n=10, size=32)
    stamp = (root / "synthetic" / "images" / "syn_0000.png").stat().st_mtime_ns
    ensure_synthetic(tmp_path, n=10, size=32)
    assert (root / "synthetic" / "images" / "syn_0000.png").stat().st_mtime_ns == stamp
    assert len(list((root / "synthetic_ood" / "images").iterdir())) == 5
