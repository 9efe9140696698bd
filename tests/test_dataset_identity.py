"""Datasets and images are identified by content, not by how a path is spelled.

A data root with two registered datasets made from tiny synthetic data: ``isic2018`` (the run's
own; official train/test split) and ``ph2`` (an OOD set; fixed held-out test part). The run's
own dataset given as a folder (plain, symlinked, trailing slash, its ``images/``) is scored on
its test part only; a registered dataset given as its folder follows the name's rules; a copy
of test or labelled images in another folder never reaches the unlabelled pool, and an OOD set
whose images were in the pool is scored on the rest, saying how many and why.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from scarce.cli import main


@pytest.fixture
def root(tmp_path: Path) -> Path:
    from scarce.data.synthetic import make_synthetic

    r = tmp_path / "data"
    make_synthetic(r / "isic2018", 20, size=24, seed=0)  # 16 train / 4 test
    make_synthetic(r / "ph2", 10, size=24, seed=1)
    return r


def _cfg(root: Path, *sets: str):
    from scarce.config import load_config

    return load_config(sets=["data.dataset=isic2018", f"data.root={root}", "data.size=16", "data.budget=5",
                             *sets]).data


def _prepare(cfg, ssl: bool = False):
    from scarce.data.load import prepare_run_data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = prepare_run_data(cfg, seed=0, with_unlabelled=ssl)
    return data, [str(w.message) for w in caught]


def test_the_runs_own_dataset_spelled_as_a_path_means_its_test_part(root, tmp_path):
    (tmp_path / "link").symlink_to(root / "isic2018", target_is_directory=True)
    by_name, _ = _prepare(_cfg(root, "data.test_sets=[isic2018]"))
    n_test = len(by_name.split.test)
    assert len(by_name.tests["isic2018"]) == n_test == 4
    for spelling in (root / "isic2018", f"{root / 'isic2018'}/", tmp_path / "link", root / "isic2018" / "images",
                     root / "ph2" / ".." / "isic2018"):
        data, _ = _prepare(_cfg(root, f"data.test_sets=[{spelling}]"))
        assert list(data.tests) == ["isic2018"] and len(data.tests["isic2018"]) == n_test, spelling


def test_the_runs_own_training_part_is_refused_as_a_test_set(root):
    from scarce.data.types import DataError

    with pytest.raises(DataError, match="is the run's own dataset 'isic2018', whose 'train' part"):
        _prepare(_cfg(root, f"data.test_sets=[{root / 'isic2018'}:train]"))


def test_a_registered_dataset_spelled_as_its_folder_follows_the_names_rules(root):
    by_name, _ = _prepare(_cfg(root, "data.unlabelled=[ph2]"), ssl=True)
    by_path, _ = _prepare(_cfg(root, f"data.unlabelled=[{root / 'ph2'}]"), ssl=True)
    assert "ph2:test" in by_name.tests and "ph2" not in by_name.tests
    assert list(by_path.tests) == list(by_name.tests)
    assert len(by_path.tests["ph2:test"]) == len(by_name.tests["ph2:test"]) == 2  # held-out 20 % of 10
    assert len(by_path.unlabelled) == len(by_name.unlabelled)
    assert not set(by_path.unlabelled.image_paths) & set(by_path.tests["ph2:test"].image_paths)


def test_the_runs_own_images_folder_in_the_pool_leaves_out_labelled_and_test_images(root):
    data, _ = _prepare(_cfg(root, f"data.unlabelled=[{root / 'isic2018' / 'images'}]"), ssl=True)
    split = data.split
    assert len(data.unlabelled) == 20 - len(split.test) - len(split.train) - len(split.val)
    assert not set(data.unlabelled.stems) & set(split.test + split.train + split.val)


def test_copies_of_run_images_never_join_the_pool(root, tmp_path):
    from scarce.data.load import resolve_dataset

    data, _ = _prepare(_cfg(root))
    copies = tmp_path / "copies"
    copies.mkdir()
    _, folder = resolve_dataset("isic2018", root)
    for stem in data.split.test[:2] + data.split.train[:1]:
        shutil.copy(folder / "images" / f"{stem}.png", copies / f"renamed_{stem}.png")
    pool_stem = next(s for s in sorted(p.stem for p in (folder / "images").iterdir())
                     if s not in data.split.test + data.split.train + data.split.val)
    shutil.copy(folder / "images" / f"{pool_stem}.png", copies / "fine.png")
    ssl, messages = _prepare(_cfg(root, f"data.unlabelled=[{copies}]"), ssl=True)
    assert ssl.unlabelled.stems == ["fine"]
    assert any("3 of 4 images left out" in m for m in messages)


def test_an_ood_set_whose_images_were_in_the_pool_is_scored_on_the_rest(root, tmp_path):
    ph2 = root / "ph2" / "images"
    some = tmp_path / "some_ph2"
    some.mkdir()
    for p in sorted(ph2.iterdir())[:3]:
        shutil.copy(p, some / p.name)
    data, _ = _prepare(_cfg(root, f"data.unlabelled=[{some}]", "data.test_sets=[isic2018,ph2]"), ssl=True)
    assert len(data.tests["ph2"]) == 7 and data.tests["ph2"].excluded == 3
    assert data.tests["ph2"].note == "3 images left out: in the unlabelled pool (same content)"


def test_evaluate_scores_the_own_dataset_path_on_its_test_part_and_says_what_was_left_out(root, tmp_path, capsys):
    from scarce.config import load_config, save_config
    from scarce.models import create_model
    from scarce.utils.io import atomic_torch_save

    some = tmp_path / "some_ph2"
    some.mkdir()
    for p in sorted((root / "ph2" / "images").iterdir())[:3]:
        shutil.copy(p, some / p.name)
    run = tmp_path / "run"
    cfg = load_config(sets=["data.dataset=isic2018", f"data.root={root}", "data.size=16", "data.budget=5",
                            "model.width=4", "model.depth=2", "method.name=mean_teacher",
                            f"data.unlabelled=[{some}]", "eval.overlays=0", "eval.save_predictions=false"])
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    atomic_torch_save({"model": create_model("unet", in_channels=3, num_classes=2, width=4, depth=2).state_dict()},
                      run / "checkpoints" / "best.pt")
    assert main(["evaluate", str(run), "--test-sets", f"{root / 'isic2018'},ph2", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "(n=4)" in out  # the run's own test part, not its 20 images
    assert "(n=7; 3 images left out: in the unlabelled pool (same content))" in out
    summary = (tmp_path / "e" / "summary.txt").read_text()
    assert "3 images left out" in summary
