"""Importers on tiny fabricated download layouts; nnU-Net export/import round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce.data import DataError
from scarce.data.folder import scan_folder
from scarce.data.importers import (export_nnunet, import_dataset, import_decathlon_json,
                                   import_nnunet)
from scarce.data.load import load_folder

H, W = 12, 16


def _img(path: Path, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, format=fmt)


def _mask(path: Path, box: tuple[int, int, int, int] = (2, 6, 3, 9), value: int = 255,
          fmt: str | None = None, soft: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = value
    Image.fromarray(m if soft is None else soft).save(path, format=fmt)


def _masks(dest: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((dest / "masks").iterdir())}


def test_isic(tmp_path):
    src = tmp_path / "src"
    for part, ids in (("ISIC2018_Task1-2_Training_Input", [1, 2]),
                      ("ISIC2018_Task1-2_Validation_Input", [3])):
        for i in ids:
            _img(src / part / f"ISIC_{i:07d}.jpg")
            gt = part.replace("Task1-2", "Task1").replace("Input", "GroundTruth")
            _mask(src / gt / f"ISIC_{i:07d}_segmentation.png")
    dest = import_dataset("isic2018", src, tmp_path / "out")
    idx = scan_folder(dest)
    assert idx.stems == ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    assert idx.splits["ISIC_0000003"] == "val" and idx.splits["ISIC_0000001"] == "train"
    assert set(np.unique(_masks(dest)["ISIC_0000001"])) == {0, 255}


def test_busi_union(tmp_path):
    src = tmp_path / "Dataset_BUSI_with_GT"
    _img(src / "benign" / "benign (4).png")
    _mask(src / "benign" / "benign (4)_mask.png", (0, 3, 0, 3))
    _mask(src / "benign" / "benign (4)_mask_1.png", (8, 10, 8, 10))
    _img(src / "normal" / "normal (12).png")
    _mask(src / "normal" / "normal (12)_mask.png", value=0)
    dest = import_dataset("busi", src, tmp_path / "out")
    m = _masks(dest)
    assert sorted(m) == ["benign_004", "normal_012"]
    assert (m["benign_004"] > 0).sum() == 9 + 4 and m["normal_012"].max() == 0


def test_montgomery_left_right(tmp_path):
    src = tmp_path / "MontgomerySet"
    _img(src / "CXR_png" / "MCUCXR_0001_0.png")
    _mask(src / "ManualMask" / "leftMask" / "MCUCXR_0001_0.png", (0, 12, 0, 4))
    _mask(src / "ManualMask" / "rightMask" / "MCUCXR_0001_0.png", (0, 12, 12, 16))
    m = _masks(import_dataset("montgomery", src, tmp_path / "out"))
    assert (m["MCUCXR_0001_0"] > 0).sum() == 12 * 8


def test_kvasir_jpeg_masks_and_split(tmp_path):
    src = tmp_path / "Kvasir-SEG"
    for s in ("a1", "b2"):
        _img(src / "images" / f"{s}.jpg")
        _mask(src / "masks" / f"{s}.jpg", (2, 10, 2, 12))  # lossy: values near 0/255
    (src / "val.txt").write_text("b2\n")
    (src / "train.txt").write_text("a1\n")
    dest = import_dataset("kvasir_seg", src, tmp_path / "out")
    assert scan_folder(dest).splits == {"a1": "train", "b2": "val"}
    for m in _masks(dest).values():
        assert set(np.unique(m)) <= {0, 255}
    load_folder(dest, 8)  # the imported folder validates


def test_ph2_cvc_drishti(tmp_path):
    src = tmp_path / "PH2 Dataset images"
    _img(src / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp", "BMP")
    _mask(src / "IMD002" / "IMD002_lesion" / "IMD002_lesion.bmp", value=255, fmt="BMP")
    assert list(_masks(import_dataset("ph2", src, tmp_path / "ph2"))) == ["IMD002"]

    src = tmp_path / "CVC-ClinicDB"
    for n in (1, 12):
        _img(src / "Original" / f"{n}.tif", "TIFF")
        _mask(src / "Ground Truth" / f"{n}.tif", fmt="TIFF")
    assert list(_masks(import_dataset("cvc", src, tmp_path / "cvc"))) == ["001", "012"]

    src = tmp_path / "Drishti"
    disc = np.zeros((H, W), np.uint8)
    disc[2:10, 2:12] = 191
    disc[2, 2] = 64  # 1 of 4 experts: background
    cup = np.zeros((H, W), np.uint8)
    cup[4:8, 4:8] = 128
    for part, i in (("Training", 2), ("Test", 1)):
        _img(src / part / "Images" / "ALL" / f"drishtiGS_{i:03d}.png")
        sm = src / part / "GT" / f"drishtiGS_{i:03d}" / "SoftMap"
        _mask(sm / f"drishtiGS_{i:03d}_ODsegSoftmap.png", soft=disc)
        _mask(sm / f"drishtiGS_{i:03d}_cupsegSoftmap.png", soft=cup)
    dest = import_dataset("fundus_drishti", src, tmp_path / "dri")
    m = _masks(dest)["drishtiGS_001"]
    assert set(np.unique(m)) == {0, 1, 2} and (m == 2).sum() == 16 and (m > 0).sum() == 79
    assert scan_folder(dest).splits == {"drishtiGS_001": "test", "drishtiGS_002": "train"}
    assert load_folder(dest, 8, num_classes=3).num_classes == 3


def test_generic_and_atomic_failure(tmp_path):
    src = tmp_path / "g"
    _img(src / "images" / "x.png")
    _mask(src / "masks" / "x_mask.jpg", fmt="JPEG")
    _img(src / "images" / "y.png")
    _mask(src / "masks" / "y.png")
    dest = import_dataset("generic", src, tmp_path / "out")
    assert sorted(_masks(dest)) == ["x", "y"]
    with pytest.raises(ValueError, match="earlier output of `scarce data import`; pass --overwrite"):
        import_dataset("generic", src, dest)
    # a bad pair fails the whole import and leaves nothing behind
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(src / "masks" / "y.png")
    with pytest.raises(DataError, match="y"):
        import_dataset("generic", src, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_nnunet_round_trip_and_nifti(tmp_path, synthetic_folder):
    ds = export_nnunet(synthetic_folder, tmp_path / "raw", 7, "Syn")
    assert ds.name == "Dataset007_Syn"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["numTraining"] == 10 and meta["file_ending"] == ".png"
    assert meta["labels"] == {"background": 0, "foreground": 1}
    assert (ds / "imagesTr" / "syn_0000_0000.png").is_file()
    assert set(np.unique(np.asarray(Image.open(ds / "labelsTr" / "syn_0000.png")))) <= {0, 1}
    back = import_nnunet(ds, tmp_path / "back")
    a, b = load_folder(synthetic_folder, 48), load_folder(back, 48)
    assert (a.masks == b.masks).all() and (a.images == b.images).all()
    assert scan_folder(back).splits == scan_folder(synthetic_folder).splits
    meta["file_ending"] = ".nii.gz"
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="nii.gz"):
        import_nnunet(ds, tmp_path / "nifti")


def test_decathlon_json(tmp_path):
    base = tmp_path / "task"
    _img(base / "img" / "a.png")
    _mask(base / "lab" / "a.png", value=1)
    _img(base / "img" / "b.png")
    _mask(base / "lab" / "b.png", value=2)
    dl = {"training": [{"image": "img/a.png", "label": "lab/a.png"}],
          "validation": [{"image": "img/b.png", "label": "lab/b.png"}],
          "test": [{"image": "img/b.png"}]}
    (base / "datalist.json").write_text(json.dumps(dl))
    dest = import_decathlon_json(base / "datalist.json", tmp_path / "out")
    assert scan_folder(dest).splits == {"a": "train", "b": "val"}
    assert int(_masks(dest)["b"].max()) == 2  # label ids kept (3 classes)
    dl["training"][0]["image"] = "img/missing.png"
    (base / "datalist.json").write_text(json.dumps(dl))
    with pytest.raises(DataError, match="missing.png"):
        import_decathlon_json(base / "datalist.json", tmp_path / "out3")
