"""Cache hits, registry/get_info, prepare_run_data and list_datasets on synthetic data."""
from __future__ import annotations

import warnings

import pytest

from scarce.config import DataConfig
from scarce.data import DATASETS, DataError, get_info
from scarce.data.cache import DecodeCache
from scarce.data.load import list_datasets, load_folder, prepare_run_data


def test_cache_memory_and_disk(tmp_path, synthetic_folder):
    c = DecodeCache()
    a = load_folder(synthetic_folder, 32, cache=c)
    assert c.stats["decoded"] == 12
    b = load_folder(synthetic_folder, 32, cache=c)
    assert c.stats["decoded"] == 12 and c.stats["memory_hits"] == 12
    assert (a.images == b.images).all()
    load_folder(synthetic_folder, 32, cache=c, keep_orig=True)  # needs orig: decodes again
    assert c.stats["decoded"] == 24
    d1 = DecodeCache(tmp_path / "cache")
    load_folder(synthetic_folder, 32, cache=d1, keep_orig=True)
    d2 = DecodeCache(tmp_path / "cache")  # fresh process-like cache: served from disk
    e = load_folder(synthetic_folder, 32, cache=d2, keep_orig=True)
    assert d2.stats["decoded"] == 0 and d2.stats["disk_hits"] == 12
    assert (e.images == a.images).all() and e.orig_masks[0].shape == (48, 48)


def test_registry_and_get_info(synthetic_folder):
    assert get_info("isic2017").test_split == "val" and get_info("isic2017").metric == "jaccard"
    assert set(get_info("isic2017").ood) == {"ph2", "dermis"}
    assert get_info("montgomery").channels == 1 and get_info("busi").ood == ("busi_b",)
    assert set(get_info("kvasir_seg").ood) == {"cvc_clinicdb", "cvc_colondb", "etis", "cvc_300"}
    assert get_info("fundus_drishti").num_classes == 3
    assert get_info("synthetic").ood == ("synthetic_ood",)
    with pytest.raises(KeyError, match="isic2017"):
        get_info("isic2071")
    info = get_info(str(synthetic_folder))
    assert info.name == "synthetic_folder" and info.num_classes == 2 and info.test_split == "test"
    assert len(DATASETS) >= 20


def test_prepare_run_data_synthetic(tmp_path):
    cfg = DataConfig(dataset="synthetic", size=32, budget=20, synthetic_n=40,
                     cache_dir=str(tmp_path / "cache"))
    rd = prepare_run_data(cfg, seed=0)
    assert (len(rd.train), len(rd.val)) == (16, 4)
    assert set(rd.tests) == {"synthetic", "synthetic_ood"}
    assert len(rd.tests["synthetic"]) == 8 and len(rd.tests["synthetic_ood"]) == 20
    assert rd.val.orig_masks is not None and rd.tests["synthetic_ood"].orig_masks is not None
    assert not set(rd.split.test) & (set(rd.split.train) | set(rd.split.val))
    rd2 = prepare_run_data(cfg, seed=0)
    assert rd2.split.train == rd.split.train
    with pytest.raises(DataError, match="32 images are available"):
        prepare_run_data(DataConfig(dataset="synthetic", budget=33, synthetic_n=40,
                                    cache_dir=str(tmp_path / "cache"), size=32), seed=0)


def test_prepare_run_data_folder_and_missing_ood(tmp_path, synthetic_folder, monkeypatch):
    monkeypatch.delenv("SCARCE_DATA_ROOT", raising=False)
    rd = prepare_run_data(DataConfig(dataset=str(synthetic_folder), size=32, budget=5), seed=1)
    assert (len(rd.train), len(rd.val)) == (4, 1) and len(rd.tests["synthetic_folder"]) == 2
    with pytest.raises(DataError, match="SCARCE_DATA_ROOT"):
        prepare_run_data(DataConfig(dataset="isic2017"), seed=0)
    # registered dataset under a root whose OOD sets are missing → warning, not crash
    root = tmp_path / "root"
    (root).mkdir()
    synthetic_folder.rename(root / "ph2")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rd = prepare_run_data(DataConfig(dataset="ph2", root=str(root), size=32, budget=5), seed=0)
    assert "dermis" in " ".join(str(x.message) for x in w)
    assert set(rd.tests) == {"ph2"}
    rows = {r["name"]: r for r in list_datasets(root)}
    assert rows["ph2"]["present"] and rows["ph2"]["n_images"] == 12 and not rows["isic2017"]["present"]


def test_cli_helpers(tmp_path, synthetic_folder):
    from scarce.data import list_images, load_test_sets, read_image, show_dataset, split_for_config

    arr = read_image(synthetic_folder / "images" / "syn_0000.png", channels=1)
    assert arr.shape == (48, 48, 1) and arr.dtype.name == "uint8"
    assert len(list_images(synthetic_folder / "images")) == 12
    cfg = DataConfig(dataset=str(synthetic_folder), size=32, budget=5)
    sp = split_for_config(cfg, seed=1)
    assert sp == prepare_run_data(cfg, seed=1).split
    tests = load_test_sets(cfg, seed=1)
    assert list(tests) == ["synthetic_folder"] and tests["synthetic_folder"].orig_masks
    assert show_dataset("isic2017", tmp_path)["present"] is False
    assert show_dataset(str(synthetic_folder))["n_images"] == 12
