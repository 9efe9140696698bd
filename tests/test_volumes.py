"""NIfTI / DICOM volumes as 2D slices: slicing axis, windowing and normalisation numbers, splits by
volume, content identity, unsupported files, and ``scarce predict`` writing volumes back.

All volumes are generated here (nibabel writes NIfTI; pydicom, when installed, a tiny series).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from scarce.config import ConfigError, load_config  # noqa: E402
from scarce.data import volumes as V  # noqa: E402
from scarce.data.folder import _WARNED, list_inputs, scan_folder  # noqa: E402
from scarce.data.types import DataError  # noqa: E402

AFFINE = np.array([[0.8, 0.0, 0.0, -10.0],
                   [0.0, 0.8, 0.0, 5.0],
                   [0.0, 0.0, 3.0, 20.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _volume(seed: int, shape=(24, 20, 6)) -> tuple[np.ndarray, np.ndarray]:
    """(CT-like int16 image in HU, uint8 mask): a bright box in slices 1..3, noise elsewhere."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    lab[6:14, 5:12, 1:4] = 1
    img = (rng.normal(-50, 20, shape) + lab.astype(float) * 200).astype(np.int16)
    return img, lab


def _nifti_dataset(root: Path, n: int = 5, shape=(24, 20, 6), affine=AFFINE) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for v in range(n):
        img, lab = _volume(v, shape)
        nib.save(nib.Nifti1Image(img, affine), root / "images" / f"case{v}.nii.gz")
        nib.save(nib.Nifti1Image(lab, affine), root / "masks" / f"case{v}.nii.gz")
    return root


def _write_dicom_series(folder: Path, hu: np.ndarray, spacing=(0.7, 0.6), thickness=2.5,
                        origin=(-20.0, -30.0, 40.0), shuffle: bool = True) -> list[Path]:
    """A (rows, columns, slices) HU array → one CT DICOM file per slice (stored + 1024 with
    RescaleIntercept −1024), axial (IOP = 1,0,0 / 0,1,0), file names in shuffled order."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    order = list(range(hu.shape[2]))
    if shuffle:
        order = order[::-1]
    paths = []
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "P1", "Test^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Rows, ds.Columns = hu.shape[0], hu.shape[1]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = thickness
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * thickness]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (hu[:, :, k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        p = folder / f"IM{n:04d}.dcm"
        try:
            ds.save_as(p, enforce_file_format=True)
        except TypeError:  # pydicom 2.x
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(p, write_like_original=False)
        paths.append(p)
    assert pydicom
    return paths


# =========================================================================== intensities

def test_ct_windows_match_hand_computed_numbers():
    """y = rint(255 · (clip(x, L − W/2, L + W/2) − (L − W/2)) / W)."""
    soft = V.map_intensities(np.array([-1000, -150, 0, 100, 250, 3000]), V.WINDOWS["soft_tissue"])
    assert soft.tolist() == [0, 0, 96, 159, 255, 255]  # W400 L50: 0 → 150/400·255 = 95.6; 100 → 159.4
    lung = V.map_intensities(np.array([-2000, -1050, -750, 150]), V.WINDOWS["lung"])
    assert lung.tolist() == [0, 51, 102, 255]  # W1500 L−600: [−1350, 150]; −1050 → 0.2·255 = 51
    bone = V.map_intensities(np.array([-140, 580]), V.WINDOWS["bone"])
    assert bone.tolist() == [51, 153]  # W1800 L400: [−500, 1300]; −140 → 0.2, 580 → 0.6
    assert V.parse_window("400,40") == (400.0, 40.0)
    custom = V.map_intensities(np.array([0, 140]), V.parse_window("400,40"))
    assert custom.tolist() == [102, 191]  # [−160, 240]: 0 → 0.4·255; 140 → 0.75·255 = 191.25
    assert V.WINDOWS["lung"] == (1500.0, -600.0) and V.WINDOWS["bone"] == (1800.0, 400.0)


def test_per_volume_normalisation():
    x = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    y = V.map_intensities(x, None, "volume")
    lo, hi = 4.995, 994.005  # the volume's 0.5 and 99.5 percentiles (numpy's linear interpolation)
    assert y.flat[0] == 0 and y.flat[999] == 255
    assert y.flat[500] == round((500 - lo) / (hi - lo) * 255) == 128
    assert y.flat[250] == round((250 - lo) / (hi - lo) * 255) == 63
    # one range for the whole volume: a dark slice stays darker than a bright one
    assert y[0].max() < y[9].min()
    z = V.map_intensities(np.array([0.0, 0.0, 2.0, 2.0]), None, "zscore")  # mean 1, std 1
    assert z.tolist() == [85, 85, 170, 170]  # z = ∓1 → (z + 3) / 6 · 255 = 85, 170
    assert V.map_intensities(np.array([10.0, 20.0, 30.0]), None, "minmax").tolist() == [0, 128, 255]
    assert V.map_intensities(np.full((4, 4), 7.0), None, "volume").max() == 0  # flat → 0, no division by zero


def test_volume_options_are_checked_with_one_line_errors():
    from scarce.validate import validate_config

    for bad, words in [("data.window=lungs", "Did you mean 'lung'"), ("data.window=0,40", "W > 0"),
                       ("data.slice_axis=3", "data.slice_axis"), ("data.empty_slices=subsample:1", "subsample:K"),
                       ("data.normalise=z", "data.normalise")]:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as e:
            validate_config(load_config(sets=[bad]))
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="both map"):
        validate_config(load_config(sets=["data.window=bone", "data.normalise=zscore"]))
    cfg = load_config(sets=["data.slice_axis=1", "data.window=400,40", "data.empty_slices=subsample:3"])
    assert V.volume_options(cfg.data) == V.VolumeOptions("1", (400.0, 40.0), "volume")


# =========================================================================== slicing

def _save(path: Path, arr: np.ndarray, affine: np.ndarray, slice_dim: int | None = None) -> Path:
    img = nib.Nifti1Image(arr, affine)
    if slice_dim is not None:
        img.header.set_dim_info(slice=slice_dim)
    nib.save(img, path)
    return path


def test_slice_axis_auto_follows_the_acquisition(tmp_path):
    arr = np.zeros((8, 9, 10), np.int16)
    thick_z = _save(tmp_path / "a.nii.gz", arr, AFFINE)  # 0.8 × 0.8 × 3 mm
    thick_x = _save(tmp_path / "b.nii.gz", arr, np.diag([3.0, 1.0, 1.0, 1.0]))
    stated = _save(tmp_path / "c.nii.gz", arr, np.eye(4), slice_dim=1)  # isotropic, header says axis 1
    iso = _save(tmp_path / "d.nii.gz", arr, np.eye(4))
    flat = _save(tmp_path / "e.nii.gz", np.zeros((8, 1, 10), np.int16), np.eye(4))  # a 2D image
    assert [V.resolve_axis(V.read_header(p), "auto") for p in (thick_z, thick_x, stated, iso, flat)] == [2, 0, 1, 2, 1]
    # anatomical planes from the orientation: here array axis 0 runs inferior→superior
    perm = np.array([[0.0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    p = _save(tmp_path / "f.nii.gz", arr, perm)
    assert [V.resolve_axis(V.read_header(p), a) for a in ("axial", "coronal", "sagittal")] == [0, 2, 1]
    assert V.resolve_axis(V.read_header(thick_z), "axial") == 2 and V.resolve_axis(V.read_header(p), "0") == 0


def test_slices_of_a_folder_and_their_pixels(tmp_path):
    root = _nifti_dataset(tmp_path / "ds", n=2)
    index = scan_folder(root)
    assert index.stems[:3] == ["case0#z000", "case0#z001", "case0#z002"] and len(index) == 12
    assert index.groups["case1#z005"] == "case1" and not index.unlabelled
    # along axis 0: 24 slices of 20 × 6
    by_x = scan_folder(root, volume_options=V.VolumeOptions(slice_axis="0"))
    assert len(by_x) == 48 and by_x.stems[0] == "case0#z000"
    from scarce.data.folder import read_image_pil, read_mask_raw

    img, lab = _volume(0)
    expected = V.map_intensities(img.astype(np.float32), None, "volume")
    assert np.array_equal(np.asarray(read_image_pil(by_x.images["case0#z007"], 1)), expected[7])
    assert np.array_equal(read_mask_raw(by_x.masks["case0#z007"]), lab[7].astype(np.int64))
    windowed = scan_folder(root, volume_options=V.VolumeOptions(window=V.WINDOWS["soft_tissue"]))
    assert np.array_equal(np.asarray(read_image_pil(windowed.images["case0#z002"], 1)),
                          V.map_intensities(img[:, :, 2], V.WINDOWS["soft_tissue"]))


def test_each_volume_is_decoded_once(tmp_path):
    from scarce.data.cache import DecodeCache
    from scarce.data.load import load_folder

    root = _nifti_dataset(tmp_path / "ds", n=2)
    V.MEMO.clear()
    before = V.MEMO.loads
    data = load_folder(root, size=16, cache=DecodeCache())
    assert len(data) == 12 and data.images.shape == (12, 1, 16, 16)
    assert V.MEMO.loads - before == 4  # 2 image volumes + 2 mask volumes, not 24 reads


def test_mask_in_another_orientation_is_reoriented_and_a_wrong_grid_is_refused(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, lab = _volume(3)
    nib.save(nib.Nifti1Image(img, AFFINE), root / "images" / "a.nii.gz")
    flipped = AFFINE.copy()  # the same voxels stored with axis 0 reversed (RAS → LAS)
    flipped[:, 0] *= -1
    flipped[:3, 3] = AFFINE[:3, 3] + AFFINE[:3, 0] * (lab.shape[0] - 1)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(lab[::-1]), flipped), root / "masks" / "a.nii.gz")
    index = scan_folder(root)
    from scarce.data.folder import read_mask_raw

    for k in range(lab.shape[2]):
        assert np.array_equal(read_mask_raw(index.masks[f"a#z{k:03d}"]), lab[:, :, k])
    nib.save(nib.Nifti1Image(lab[:, :, :5], AFFINE), root / "masks" / "a.nii.gz")
    with pytest.raises(DataError, match=r"does not lie on the voxel grid of image a\.nii\.gz") as e:
        scan_folder(root)
    assert "\n" not in str(e.value)


def test_missing_mask_and_4d_volumes_are_one_line_errors(tmp_path):
    root = _nifti_dataset(tmp_path / "ds", n=2)
    (root / "masks" / "case1.nii.gz").unlink()
    with pytest.raises(DataError, match=r"image volume case1\.nii\.gz has no mask .*case1_mask\.nii\.gz"):
        scan_folder(root)
    assert len(scan_folder(root, allow_unlabelled=True).unlabelled) == 6  # its slices: unlabelled images
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.int16), np.eye(4)), root / "images" / "case1.nii.gz")
    with pytest.raises(DataError, match="4D volume"):
        scan_folder(root, allow_unlabelled=True)


# =========================================================================== splits

def _parts(split) -> dict[str, set[str]]:
    """volume → the parts (train / val / test) its slices are in."""
    out: dict[str, set[str]] = {}
    for part in ("train", "val", "test"):
        for s in getattr(split, part):
            out.setdefault(s.partition("#")[0], set()).add(part)
    return out


def test_splits_never_cut_a_volume(tmp_path):
    from scarce.data.load import split_for_config

    root = _nifti_dataset(tmp_path / "ds", n=9, shape=(12, 10, 5))
    index = scan_folder(root)
    for budget in ("all", 4, 7):
        for seed in range(4):
            cfg = load_config(sets=[f"data.dataset={root}", f"data.budget={budget}"])
            split = split_for_config(cfg.data, seed=seed)
            parts = _parts(split)
            assert len(parts) == 9 if budget == "all" else len(parts) >= budget
            cut = {v: p for v, p in parts.items() if len(p) > 1}
            assert not cut, f"slices of one volume in several parts: {cut}"
            assert all(len([s for s in index.stems if index.groups[s] == v]) ==
                       sum(s.partition('#')[0] == v for part in ("train", "val", "test") for s in getattr(split, part))
                       for v in parts)  # every slice of a volume, once
            if budget != "all":
                assert split.budget == budget and split.meta["units"] == "volumes"
                assert len({s.partition("#")[0] for s in split.train + split.val}) == budget
    # a split.csv names volumes; its test volumes are the test part, whole
    (root / "split.csv").write_text("stem,split\n" + "".join(f"case{v},{'test' if v < 2 else 'train'}\n"
                                                            for v in range(9)))
    split = split_for_config(load_config(sets=[f"data.dataset={root}", "data.budget=all"]).data, seed=0)
    assert {s.partition("#")[0] for s in split.test} == {"case0", "case1"} and len(split.test) == 10
    assert not any(len(p) > 1 for p in _parts(split).values())


def test_empty_slices_thin_the_training_part_only(tmp_path):
    from scarce.data.load import split_for_config

    root = _nifti_dataset(tmp_path / "ds", n=6)  # foreground in slices 1..3 of 6
    base = [f"data.dataset={root}", "data.budget=all"]
    keep = split_for_config(load_config(sets=base).data, seed=0)
    drop = split_for_config(load_config(sets=base + ["data.empty_slices=drop"]).data, seed=0)
    sub = split_for_config(load_config(sets=base + ["data.empty_slices=subsample:2"]).data, seed=0)
    assert drop.val == keep.val and drop.test == keep.test and sub.test == keep.test  # evaluation: every slice
    n_vol = len({s.partition("#")[0] for s in keep.train})
    assert len(keep.train) == 6 * n_vol
    assert sorted({s.partition("#")[2] for s in drop.train}) == ["z001", "z002", "z003"]
    assert len(drop.train) == 3 * n_vol and len(sub.train) == 5 * n_vol  # empty z000, z004, z005 → z000, z005
    assert {s.partition("#")[2] for s in sub.train} == {"z000", "z001", "z002", "z003", "z005"}
    assert drop.meta["empty_slices"] == f"drop: {3 * n_vol} of {6 * n_vol} training slices left out"


def test_slice_identity_is_the_volumes_content(tmp_path):
    from scarce.data.identity import file_digest

    a = _nifti_dataset(tmp_path / "a", n=2)
    b = tmp_path / "b"
    (b / "images").mkdir(parents=True)
    (b / "masks").mkdir()
    for sub in ("images", "masks"):
        (b / sub / "copy.nii.gz").write_bytes((a / sub / "case0.nii.gz").read_bytes())
    ia, ib = scan_folder(a), scan_folder(b)
    windowed = scan_folder(a, volume_options=V.VolumeOptions(window=(400.0, 40.0)))
    digests = [file_digest(ia.images[s]) for s in ia.stems]
    assert len(set(digests)) == len(digests)  # every slice its own image
    assert file_digest(ib.images["copy#z003"]) == file_digest(ia.images["case0#z003"])  # same bytes, same slice
    assert file_digest(windowed.images["case0#z003"]) == file_digest(ia.images["case0#z003"])  # not the window
    assert file_digest(ib.images["copy#z003"]) != file_digest(ia.images["case0#z002"])


# =========================================================================== DICOM

def test_dicom_series_geometry_and_hounsfield_units(tmp_path):
    pytest.importorskip("pydicom")
    hu = np.stack([np.full((6, 5), -1000 + 100 * k, np.int16) for k in range(4)], axis=-1)
    hu[2, 3, :] = 3000
    folder = tmp_path / "ds" / "images" / "ct1"
    _write_dicom_series(folder, hu)
    assert V.is_series_folder(folder)
    h = V.read_header(folder)
    assert h.kind == "dicom" and h.shape == (6, 5, 4) and V.through_plane_axis(h) == 2
    # axis 0 = rows (column cosine 0,1,0 · 0.7 mm), axis 1 = columns (row cosine 1,0,0 · 0.6 mm),
    # axis 2 = slices (2.5 mm apart), origin (−20, −30, 40) LPS → RAS flips x and y
    expected = np.array([[0.0, -0.6, 0.0, 20.0], [-0.7, 0.0, 0.0, 30.0], [0.0, 0.0, 2.5, 40.0], [0, 0, 0, 1]])
    assert np.allclose(h.affine, expected)
    assert [f.name for f in h.files] == ["IM0003.dcm", "IM0002.dcm", "IM0001.dcm", "IM0000.dcm"]  # by position
    assert np.array_equal(V.load_volume(folder), hu.astype(np.float32))  # RescaleIntercept applied
    y = V.volume_uint8(folder, V.WINDOWS["soft_tissue"])
    assert y[0, 0].tolist() == [0, 0, 0, 0] and y[2, 3].tolist() == [255] * 4
    one = tmp_path / "single.dcm"
    one.write_bytes(h.files[1].read_bytes())  # one file on its own: a 1-slice volume
    assert V.read_header(one).shape == (6, 5, 1) and V.load_volume(one)[0, 0, 0] == -900


def test_dicom_series_dataset_with_a_nifti_mask(tmp_path):
    pytest.importorskip("pydicom")
    root = tmp_path / "ds"
    hu = np.full((6, 5, 3), -100, np.int16)
    _write_dicom_series(root / "images" / "ct1", hu)
    (root / "masks").mkdir()
    lab = np.zeros((6, 5, 3), np.uint8)
    lab[1:3, 1:4, 1] = 1
    affine = V.read_header(root / "images" / "ct1").affine
    nib.save(nib.Nifti1Image(lab, affine), root / "masks" / "ct1.nii.gz")
    index = scan_folder(root)
    assert index.stems == ["ct1#z000", "ct1#z001", "ct1#z002"]
    from scarce.data.folder import read_mask_raw

    assert read_mask_raw(index.masks["ct1#z001"]).sum() == 6


# =========================================================================== unsupported files

def test_unsupported_files_are_listed_and_counted(tmp_path):
    root = _nifti_dataset(tmp_path / "ds", n=2)
    (root / "images" / "notes.txt").write_text("x")
    (root / "masks" / "scan.mha").write_bytes(b"x")
    (root / "images" / "empty_dir").mkdir()
    _WARNED.clear()
    with pytest.warns(UserWarning, match=r"3 file\(s\) are neither images nor volumes .*images/empty_dir") as rec:
        index = scan_folder(root)
    assert sorted(p.name for p in index.unsupported) == ["empty_dir", "notes.txt", "scan.mha"]
    assert len(rec) == 1
    from scarce.data.load import show_dataset

    shown = show_dataset(str(root))
    assert shown["volumes"] == 2 and len(shown["unsupported"]) == 3
    flat = tmp_path / "pred_in"
    flat.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(flat / "a.png")
    (flat / "b.nii.gz").write_bytes((root / "images" / "case0.nii.gz").read_bytes())
    (flat / "readme.md").write_text("x")
    with pytest.warns(UserWarning, match=r"1 file\(s\) are neither .*readme\.md.*the other 2 go on"):
        images, vols = list_inputs(flat)
    assert [p.name for p in images] == ["a.png"] and [p.name for p in vols] == ["b.nii.gz"]


# =========================================================================== train → evaluate → predict

def _tiny_sets(out: Path, data: Path) -> list[str]:
    return [f"out={out}", f"data.dataset={data}", "data.size=32", "data.budget=all", "model.width=4",
            "model.depth=2", "train.iterations=2", "train.val_every=1", "train.batch_size=4",
            "train.progress=false", "train.tensorboard=false", "train.threads=1", "eval.overlays=0",
            "eval.save_predictions=false", "data.window=soft_tissue"]


@pytest.mark.slow
def test_train_evaluate_predict_round_trip_on_nifti(tmp_path, capsys):
    from scarce.api import evaluate_run, predict_folder, train_run

    data = _nifti_dataset(tmp_path / "ds", n=5)
    (data / "images" / "notes.txt").write_text("not an image")
    run = tmp_path / "run"
    _WARNED.clear()
    with pytest.warns(UserWarning, match=r"1 file\(s\) are neither images nor volumes .*notes\.txt"):
        res = train_run(load_config(sets=_tiny_sets(run, data)))
    test = res["tests"]["ds"]
    assert test["n"] == 6  # the one held-out volume, all 6 of its slices
    from scarce.data.splits import Split

    assert not any(len(p) > 1 for p in _parts(Split.load(run / "split.json")).values())
    _WARNED.clear()
    with pytest.warns(UserWarning, match=r"neither images nor volumes .*notes\.txt"):
        again = evaluate_run(str(run))
    assert again["ds"]["n"] == 6

    # predict: a NIfTI with an oblique affine, a 2D (X, Y) NIfTI, a PNG and an unsupported file
    inp = tmp_path / "in"
    inp.mkdir()
    oblique = np.array([[0.7, 0.1, 0.0, -3.0], [-0.1, 0.7, 0.0, 2.0], [0.0, 0.0, 2.0, 9.0], [0, 0, 0, 1]])
    img, _ = _volume(11, (20, 18, 4))
    src = nib.Nifti1Image(img, oblique)
    src.set_qform(oblique, code=1)
    src.header.set_xyzt_units("mm", "sec")
    nib.save(src, inp / "scan.nii.gz")
    nib.save(nib.Nifti1Image(img[:, :, 1], np.eye(4)), inp / "flat.nii")
    from PIL import Image

    Image.fromarray(np.full((20, 18), 90, np.uint8)).save(inp / "photo.png")
    (inp / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match=r"1 file\(s\) are neither .*notes\.txt"):
        written = predict_folder(run, inp, tmp_path / "pred", probabilities=True)
    pred = tmp_path / "pred"
    assert sorted(Path(w).name for w in written) == ["flat.nii", "photo.png", "scan.nii.gz"]
    out = nib.load(pred / "scan.nii.gz")
    assert np.array_equal(out.affine, src.affine) and out.shape == (20, 18, 4)
    assert np.array_equal(out.header.get_qform(), src.header.get_qform())
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == int(src.header["sform_code"])
    assert out.header.get_xyzt_units() == ("mm", "sec") and np.allclose(out.header.get_zooms(), src.header.get_zooms())
    assert out.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(out.dataobj))) <= {0, 1}
    flat = nib.load(pred / "flat.nii")
    assert flat.shape == (20, 18) and np.array_equal(flat.affine, np.eye(4))
    assert (pred / "probabilities" / "scan.nii.gz").is_file()

    # predict feeds the model what evaluation loading gives for the same volume's slices
    from scarce.api import load_segmenter
    from scarce.data.cache import DecodeCache
    from scarce.data.load import _load_index
    from scarce.data.registry import get_info
    from scarce.evaluation.evaluate import predict_probs, upsampled_labels

    ds2 = tmp_path / "ds2"
    (ds2 / "images").mkdir(parents=True)
    (ds2 / "masks").mkdir()
    (ds2 / "images" / "scan.nii.gz").write_bytes((inp / "scan.nii.gz").read_bytes())
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 4), np.uint8), oblique), ds2 / "masks" / "scan.nii.gz")
    cfg = load_config(run / "config.yaml")
    idx = scan_folder(ds2, volume_options=V.volume_options(cfg.data))
    assert idx.stems == [f"scan#z{k:03d}" for k in range(4)] and ";w=400:50" in str(idx.images["scan#z000"])
    loaded = _load_index(idx, get_info(str(ds2), 2), 32, None, False, DecodeCache(), 1, "ds2", 2,
                         cfg.data.intensity, cfg.data.aspect)
    probs = predict_probs(load_segmenter(run, cfg), loaded.images, tta=cfg.eval.tta)
    expect = np.stack([upsampled_labels(probs[i], (20, 18), cfg.eval.threshold) for i in range(4)], axis=-1)
    assert np.array_equal(np.asarray(out.dataobj), expect)


@pytest.mark.slow
def test_predict_dicom_series_writes_nifti_on_the_series_grid(tmp_path):
    pytest.importorskip("pydicom")
    from scarce.api import predict_folder, train_run

    data = _nifti_dataset(tmp_path / "ds", n=4, shape=(12, 10, 4))
    run = tmp_path / "run"
    train_run(load_config(sets=_tiny_sets(run, data)))
    inp = tmp_path / "in"
    hu = np.full((6, 5, 3), -100, np.int16)
    _write_dicom_series(inp / "ct1", hu)
    written = predict_folder(run, inp, tmp_path / "pred")
    assert [Path(w).name for w in written] == ["ct1.nii.gz"]
    out = nib.load(tmp_path / "pred" / "ct1.nii.gz")
    assert out.shape == (6, 5, 3) and np.allclose(out.affine, V.read_header(inp / "ct1").affine)
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 1
    try:
        import highdicom as hd
    except ImportError:  # DICOM-SEG is optional: one line naming the install, before anything is written
        with pytest.raises(ConfigError, match="pip install highdicom"):
            predict_folder(run, inp, tmp_path / "pred_seg", dicom_seg=True)
        assert not (tmp_path / "pred_seg").exists()
        return
    written = predict_folder(run, inp, tmp_path / "pred_seg", dicom_seg=True)
    assert sorted(Path(w).name for w in written) == ["ct1.nii.gz", "ct1_seg.dcm"]
    seg = hd.seg.segread(tmp_path / "pred_seg" / "ct1_seg.dcm")
    import pydicom

    sources = [pydicom.dcmread(f) for f in V.read_header(inp / "ct1").files]
    assert seg.number_of_segments == 1 and seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    frames = seg.get_pixels_by_source_instance([d.SOPInstanceUID for d in sources], combine_segments=True)
    assert np.array_equal(np.moveaxis(frames, 0, -1), np.asarray(nib.load(tmp_path / "pred_seg" / "ct1.nii.gz").dataobj))


def test_dicom_seg_round_trips_multi_class_labels(tmp_path):
    pytest.importorskip("pydicom")
    hd = pytest.importorskip("highdicom")
    import pydicom

    _write_dicom_series(tmp_path / "ct", np.full((6, 5, 3), 40, np.int16))
    labels = np.zeros((6, 5, 3), np.uint8)
    labels[1:3, 1:4, 1] = 1
    labels[4, 4, 2] = 2
    data = V.dicom_seg_bytes(tmp_path / "ct", labels, ["background", "liver", "tumour"])
    (tmp_path / "seg.dcm").write_bytes(data)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "tumour"]
    uids = [pydicom.dcmread(f).SOPInstanceUID for f in V.read_header(tmp_path / "ct").files]
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    assert np.array_equal(np.moveaxis(frames, 0, -1), labels)


def test_label_volume_keeps_the_nifti_header(tmp_path):
    aff = AFFINE.copy()
    src = nib.Nifti1Image(np.zeros((5, 4, 3), np.float32), aff)
    src.header.set_dim_info(slice=2)
    src.header.set_slope_inter(2.0, -5.0)
    nib.save(src, tmp_path / "s.nii")
    labels = np.zeros((5, 4, 3), np.uint8)
    labels[1, 2, 0] = 1
    V.write_label_volume(tmp_path / "s.nii", labels, tmp_path / "m.nii")
    out = nib.load(tmp_path / "m.nii")
    stored = nib.load(tmp_path / "s.nii")
    assert np.array_equal(out.affine, stored.affine) and out.header.get_dim_info() == (None, None, 2)
    assert np.array_equal(np.asarray(out.dataobj), labels)  # no scaling carried over from the image
    assert (tmp_path / "m.nii").read_bytes()[:4] != b"\x1f\x8b\x08\x00"  # .nii in → uncompressed out
    assert V.label_volume_name(tmp_path / "s.nii") == "s.nii"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert V.label_volume_name(tmp_path / "s.nii", "_class2") == "s_class2.nii"


def test_missing_optional_packages_are_one_line_errors(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "highdicom", None)  # as without it installed
    with pytest.raises(ConfigError, match=r"^DICOM-SEG output needs highdicom: pip install highdicom$"):
        V.check_highdicom()
    monkeypatch.setitem(sys.modules, "pydicom", None)
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(DataError, match=r"^reading DICOM needs pydicom: pip install pydicom$"):
        V.read_header(tmp_path / "x.dcm")


def test_data_list_counts_volumes_and_unsupported_files(tmp_path, capsys):
    from scarce.cli import main
    from scarce.data.registry import DATASETS

    root = tmp_path / "root"
    folder = _nifti_dataset(root / DATASETS.get("busi").folder_name, n=2)
    (folder / "masks" / "readme.txt").write_text("x")
    _WARNED.clear()
    with pytest.warns(UserWarning, match=r"1 file\(s\) are neither images nor volumes .*masks/readme\.txt"):
        assert main(["data", "list", "--data-root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    head, busi = lines[0].split(), next(line.split() for line in lines if line.startswith("busi"))
    assert head[5:7] == ["volumes", "unsupported"] and busi[4:7] == ["12", "2", "1"]
