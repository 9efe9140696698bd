"""Smoke tests on the real datasets (skipped when the data root is absent)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from scarce.config import DataConfig
from scarce.data import get_info
from scarce.data.folder import scan_folder
from scarce.data.load import list_datasets, load_folder, prepare_run_data
from scarce.data.splits import pool_and_test

pytestmark = pytest.mark.realdata

# name → (n_images, n_pool, n_test) with the dataset's registered splits
COUNTS = {
    "isic2017": (1850, 1700, 150),
    "kvasir_seg": (1000, 880, 120),
    "montgomery": (138, 110, 28),
    "ph2": (200, 160, 40),
    "cvc_clinicdb": (612, 490, 122),
    "busi": (780, 624, 156),
    "fundus_drishti": (101, 50, 51),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_real_dataset(real_data_root, name):
    folder = real_data_root / name
    if not folder.is_dir():
        pytest.skip(f"{name} not in {real_data_root}")
    info = get_info(name)
    idx = scan_folder(folder)
    pool, test = pool_and_test(idx.stems, idx.splits, info.train_split, info.test_split)
    assert (len(idx), len(pool), len(test)) == COUNTS[name]
    stems = idx.stems[:: max(1, len(idx) // 6)][:6]
    sd = load_folder(name, 64, root=real_data_root, stems=stems, keep_orig=True)
    assert sd.images.shape == (len(stems), info.channels, 64, 64)
    labels = set(np.unique(np.concatenate([m.ravel() for m in sd.orig_masks])).tolist())
    if name == "fundus_drishti":
        assert labels == {0, 1, 2}
    else:
        assert labels <= {0, 1} and 1 in labels or name == "busi"


def test_real_prepare_and_list(real_data_root):
    if not (real_data_root / "isic2017").is_dir():
        pytest.skip("isic2017 absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rd = prepare_run_data(DataConfig(dataset="isic2017", root=str(real_data_root), size=32,
                                         budget=40, test_sets=["isic2017"]), seed=0)
    assert (len(rd.train), len(rd.val), len(rd.tests["isic2017"])) == (32, 8, 150)
    rows = {r["name"]: r for r in list_datasets(real_data_root)}
    assert rows["isic2017"]["splits"] == {"train": 1700, "val": 150}
