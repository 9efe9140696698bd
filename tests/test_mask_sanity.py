"""Masks that are probably wrong are reported before training, mask file
extensions match in any case, and a data root that does not exist is an error (item 9)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce.data import DataError
from scarce.data.folder import scan_folder
from scarce.data.load import load_folder, prepare_run_data, split_for_config
from scarce.data.registry import get_info
from tests.tiny import tiny_segdata

SANITY = ("background (all 0)", "label ids", "phantom")


def _folder(root: Path, n: int = 10, num_classes: int = 2, mask_name: str = "{}.png",
            remap: dict[int, int] | None = None, empty: bool = False) -> Path:
    """n pairs at 32 px from :func:`tiny_segdata`; binary masks saved 0/255, multi-class as ids
    (``remap`` rewrites ids, e.g. {2: 5}); ``empty`` saves all-background masks."""
    sd = tiny_segdata(n, size=32, num_classes=num_classes, seed=4)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, stem in enumerate(sd.stems):
        img = (sd.images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{stem}.png")
        m = sd.masks[i].numpy().astype(np.uint8)
        for a, b in (remap or {}).items():
            m[sd.masks[i].numpy() == a] = b
        if empty:
            m[:] = 0
        elif num_classes == 2:
            m = m * 255
        Image.fromarray(m).save(root / "masks" / mask_name.format(stem))
    return root


def _cfg(dataset: str | Path, **data):
    from scarce.config import load_config

    sets = [f"data.dataset={dataset}", "data.size=32", "data.budget=5"]
    sets += [f"data.{k}={v}" for k, v in data.items()]
    return load_config(sets=sets).data


def _sanity(record) -> list[str]:
    return [str(w.message) for w in record if any(s in str(w.message) for s in SANITY)]


# ------------------------------------------------------------------ extensions in any case

@pytest.mark.parametrize("form", ["{}.PNG", "{}_mask.PNG", "{}_segmentation.Png", "{}.TIF",
                                  "{}.BMP"])
def test_upper_case_mask_extensions_are_found(tmp_path, form):
    root = _folder(tmp_path / "d", n=3, mask_name=form)
    assert scan_folder(root).stems == ["tiny_000", "tiny_001", "tiny_002"]
    sd = load_folder(root, 32)
    assert set(sd.masks.unique().tolist()) == {0, 1}


def test_missing_and_duplicate_masks_with_upper_case_extensions(tmp_path):
    root = _folder(tmp_path / "d", n=2, mask_name="{}.PNG")
    (root / "masks" / "tiny_001.png").write_bytes((root / "masks" / "tiny_001.PNG").read_bytes())
    if len(list((root / "masks").iterdir())) == 3:  # case-sensitive file system
        with pytest.raises(DataError, match=r"tiny_001\.png matches several masks "
                                            r"\(tiny_001\.PNG, tiny_001\.png\)"):
            scan_folder(root)
    for p in (root / "masks").glob("tiny_001*"):
        p.unlink()
    with pytest.raises(DataError) as e:
        scan_folder(root)
    msg = str(e.value)
    assert "image tiny_001.png has no mask" in msg
    assert "tiny_001.png, tiny_001_mask.png, tiny_001_segmentation.png" in msg and "any case" in msg


# ------------------------------------------------------------------ empty masks

def test_all_empty_masks_are_an_error_before_training(tmp_path):
    root = _folder(tmp_path / "d", empty=True)
    with pytest.raises(DataError) as e:
        prepare_run_data(_cfg(root), seed=0)
    msg = str(e.value)
    assert "every mask of 'd'" in msg and "is background (all 0)" in msg
    assert "Dice 0" in msg and "foreground must be non-zero" in msg and "masks/" in msg


def test_empty_training_subset_warns_but_valid_data_does_not(tmp_path):
    root = _folder(tmp_path / "d")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        prepare_run_data(_cfg(root), seed=0)
    assert _sanity(rec) == []
    # blank only the masks of this seed's training images: bad luck of the split, not broken data
    for stem in split_for_config(_cfg(root), seed=0).train:
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / f"{stem}.png")
    with pytest.warns(UserWarning, match=r"all 4 training masks of 'd' are background \(all 0\)"
                                         r" at data.size=32, so training will learn nothing") as w:
        data = prepare_run_data(_cfg(root), seed=0)
    assert "another data.split_seed" in str(w[-1].message)
    assert not data.train.masks.any()


# ------------------------------------------------------------------ label ids with gaps

def test_label_id_gaps_warn_naming_a_file_and_the_ids(tmp_path):
    good = _folder(tmp_path / "fundus_like", num_classes=3)  # 0/1/2, as fundus: no warning
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert get_info(str(good)).num_classes == 3
        prepare_run_data(_cfg(good), seed=0)
    assert _sanity(rec) == []

    gaps = _folder(tmp_path / "gaps", num_classes=3, remap={2: 5})
    with pytest.warns(UserWarning, match="hold label ids 0, 1, 5") as w:
        info = get_info(str(gaps))
    msg = str(w[-1].message)
    assert info.num_classes == 6
    assert "(e.g. tiny_000.png holds 5)" in msg and "ids 2, 3, 4 never occur" in msg
    assert "(5 → 2)" in msg and "data.num_classes=6" in msg
    with warnings.catch_warnings(record=True) as rec:  # an explicit num_classes is a decision
        warnings.simplefilter("always")
        assert get_info(str(gaps), num_classes=6).num_classes == 6
    assert _sanity(rec) == []


def test_label_id_gap_warning_reaches_the_cli(tmp_path, capsys):
    from scarce.cli import main

    gaps = _folder(tmp_path / "gaps", n=3, num_classes=3, remap={2: 5})
    with pytest.warns(UserWarning, match="hold label ids 0, 1, 5"):  # main prints it as
        assert main(["data", "show", str(gaps)]) == 0               # "scarce: warning: ..."
    assert '"num_classes": 6' in capsys.readouterr().out


def test_binary_masks_give_no_warning(tmp_path):
    root = _folder(tmp_path / "bin")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert get_info(str(root)).num_classes == 2
        prepare_run_data(_cfg(root), seed=0)
    assert _sanity(rec) == []
    # 0/1/255 mixed in one binary mask: the error shows the values (it used to show none)
    m = np.zeros((32, 32), np.uint8)
    m[:4], m[4:8] = 1, 255
    Image.fromarray(m).save(root / "masks" / "tiny_000.png")
    with pytest.raises(DataError, match=r"tiny_000.png has values 0, 1, 255, neither binary"):
        load_folder(root, 32)


def test_registered_binary_dataset_with_multiclass_looking_masks(tmp_path):
    data_root = tmp_path / "root"
    _folder(data_root / "busi", num_classes=3)  # registered busi is binary
    with pytest.raises(DataError, match="pass the folder path as data.dataset") as e:
        prepare_run_data(_cfg("busi", root=data_root), seed=0)
    assert "set data.num_classes to 3" in str(e.value)
    with pytest.raises(DataError, match="pass the folder's path as data.dataset"):
        prepare_run_data(_cfg("busi", root=data_root, num_classes=3), seed=0)
    # following the advice works
    data = prepare_run_data(_cfg(data_root / "busi", num_classes=3), seed=0)
    assert data.info.num_classes == 3


# ------------------------------------------------------------------ data root

@pytest.mark.parametrize("how", ["option", "env", "file"])
@pytest.mark.parametrize("cmd", [["data", "list"], ["data", "show", "isic2017"]])
def test_data_list_and_show_refuse_a_missing_root(tmp_path, capsys, monkeypatch, how, cmd):
    from scarce.cli import main

    bad = tmp_path / "nonexistent"
    if how == "file":
        bad.write_text("x")
    argv = list(cmd)
    if how == "env":
        monkeypatch.setenv("SCARCE_DATA_ROOT", str(bad))
    else:
        monkeypatch.delenv("SCARCE_DATA_ROOT", raising=False)
        argv += ["--data-root", str(bad)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    origin = "$SCARCE_DATA_ROOT" if how == "env" else "--data-root"
    what = "is not a folder" if how == "file" else "does not exist"
    assert err.startswith(f"scarce: error: data root {bad} {what} (from {origin}")
    assert "SCARCE_DATA_ROOT" in err


def test_data_list_with_a_valid_root_is_unchanged(tmp_path, capsys, monkeypatch):
    from scarce.cli import main

    monkeypatch.delenv("SCARCE_DATA_ROOT", raising=False)
    _folder(tmp_path / "busi", n=3)
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("busi "))
    assert " 3 " in row and "True" in row
    assert main(["data", "list"]) == 0  # no root at all: datasets listed as absent
    assert os.environ.get("SCARCE_DATA_ROOT") is None
