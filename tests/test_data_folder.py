"""Folder parsing, decoding normalisation and every bad-input DataError."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce.data import DataError
from scarce.data.folder import scan_folder
from scarce.data.load import load_folder, validate_folder


def _mk(root: Path, n: int = 3, size: tuple[int, int] = (20, 16), mask_name: str = "{}.png",
        mask_scale: int = 255, mode: str = "RGB") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        arr = np.full((h, w, 3), 40, np.uint8)
        m = np.zeros((h, w), np.uint8)
        m[2:8, 3:10] = 1
        arr[m == 1] = (200, 100, 50)
        Image.fromarray(arr).convert(mode).save(root / "images" / f"im{i}.png")
        Image.fromarray(m * mask_scale).save(root / "masks" / mask_name.format(f"im{i}"))
    return root


@pytest.mark.parametrize("form", ["{}.png", "{}_mask.png", "{}_segmentation.png", "{}.bmp",
                                  "{}.tif"])
@pytest.mark.parametrize("scale", [1, 255])
def test_mask_name_forms_and_values(tmp_path, form, scale):
    root = _mk(tmp_path / "d", mask_name=form, mask_scale=scale)
    idx = scan_folder(root)
    assert idx.stems == ["im0", "im1", "im2"]
    sd = load_folder(root, 16, keep_orig=True)
    assert sd.images.shape == (3, 3, 16, 16) and sd.masks.shape == (3, 16, 16)
    assert set(sd.masks.unique().tolist()) == {0, 1}
    assert sd.orig_masks[0].shape == (16, 20) and sd.orig_masks[0].sum() == 42
    assert 0.0 <= float(sd.images.min()) and float(sd.images.max()) <= 1.0


def test_gray_rgba_16bit_exif(tmp_path):
    root = _mk(tmp_path / "d", n=1)
    # gray
    Image.open(root / "images" / "im0.png").convert("L").save(root / "images" / "im0.png")
    sd = load_folder(root, 16)
    assert sd.images.shape[1] == 1  # unregistered gray folder → 1 channel
    assert load_folder(root, 16, channels=3).images.shape[1] == 3
    # RGBA → RGB (alpha dropped)
    Image.open(root / "images" / "im0.png").convert("RGBA").save(root / "images" / "im0.png")
    sd = load_folder(root, 16, channels=3)
    assert sd.images.shape[1] == 3
    # 16-bit → scaled to 8 bits by min..max
    arr16 = np.zeros((16, 20), np.uint16)
    arr16[2:8, 3:10] = 4000
    Image.fromarray(arr16).save(root / "images" / "im0.png")
    assert Image.open(root / "images" / "im0.png").mode.startswith("I")
    sd = load_folder(root, 16, keep_orig=True)
    assert float(sd.images.max()) == pytest.approx(1.0)
    # EXIF orientation 6 (rotate 90° CW) applies to both image and mask
    img = Image.fromarray(np.zeros((20, 16, 3), np.uint8))  # stored transposed: 16 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(root / "images" / "im0.jpg", exif=exif.tobytes())
    (root / "images" / "im0.png").unlink()
    sd = load_folder(root, 16, keep_orig=True)
    assert sd.orig_masks[0].shape == (16, 20)  # image after rotation is 20 wide → sizes match


def test_multiclass_labels(tmp_path):
    root = _mk(tmp_path / "d", n=2, mask_scale=2)
    sd = load_folder(root, 16, num_classes=3)
    assert set(sd.masks.unique().tolist()) == {0, 2}
    sd = load_folder(root, 16)  # inferred from the masks: label ids 0/2 → 3 classes
    assert sd.num_classes == 3
    with pytest.raises(DataError, match=r"im0\.png.*label ids"):
        load_folder(root, 16, num_classes=2)


def _err(root: Path, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_folder(root, 16, **kw)
    return str(e.value)


def test_corrupt_image(tmp_path):
    root = _mk(tmp_path / "d")
    (root / "images" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert "im1.png" in _err(root) and "corrupt" in _err(root)


def test_image_without_mask(tmp_path):
    root = _mk(tmp_path / "d")
    (root / "masks" / "im2.png").unlink()
    msg = _err(root)
    assert "im2.png" in msg and "im2_mask.png" in msg and "im2_segmentation.png" in msg


def test_mask_without_image(tmp_path):
    root = _mk(tmp_path / "d")
    (root / "images" / "im2.png").unlink()
    assert "im2.png" in _err(root) and "no image" in _err(root)


def test_size_mismatch(tmp_path):
    root = _mk(tmp_path / "d")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "im1.png")
    msg = _err(root)
    assert "im1.png" in msg and "nearest" in msg


def test_lossy_jpeg_mask(tmp_path):
    root = _mk(tmp_path / "d")
    m = np.zeros((16, 20), np.uint8)
    m[2:8, 3:10] = 255
    m[8, 3:6] = [3, 128, 254]
    Image.fromarray(m).save(root / "masks" / "im0.png")
    msg = _err(root)
    assert "im0.png" in msg and "lossy (JPEG)" in msg and "127" in msg


def test_empty_and_missing_subfolders(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    assert "no images" in _err(tmp_path / "e")
    (tmp_path / "f" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "f" / "images" / "a.png")  # images, no masks/ (and no scribbles/)
    assert "masks/" in _err(tmp_path / "f")
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope", 16)


def test_split_csv_errors(tmp_path):
    root = _mk(tmp_path / "d")
    (root / "split.csv").write_text("stem,split\nim0,train\nghost,test\n")
    msg = _err(root)
    assert "split.csv" in msg and "ghost" in msg
    (root / "split.csv").write_text("name,part\nim0,train\n")
    assert "split.csv" in _err(root) and "stem,split" in _err(root)
    (root / "split.csv").write_text("stem,split\nim0,train\nim1,train\nim2,test\n")
    assert scan_folder(root).splits == {"im0": "train", "im1": "train", "im2": "test"}


def test_validate_folder_fails_fast(tmp_path):
    root = _mk(tmp_path / "d")
    assert validate_folder(root)["n_images"] == 3
    (root / "images" / "im2.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="im2.png"):
        validate_folder(root)
