"""Multi-domain importers: the DoFE/MiDSS "Fundus" download and the SAML
"ProstateMRI" download, on small generated trees in the exact layouts, one scarce dataset folder
per domain."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce.cli import main
from scarce.config import ConfigError
from scarce.data import DataError
from scarce.data.folder import scan_folder
from scarce.data.importers import import_dataset
from scarce.data.load import resolve_dataset
from scarce.data.multidomain import import_multidomain, split_cases, to_uint8

nib = pytest.importorskip("nibabel")

# ------------------------------------------------------------------------------ Fundus

# a 6×8 DoFE mask: background 255, disc 128, cup 0, with resampled border values in each band
FUNDUS_RAW = np.array([
    [255, 255, 255, 255, 255, 255, 255, 210],
    [255, 201, 128, 128, 128, 128, 255, 255],
    [255, 128, 128, 0, 0, 128, 200, 255],
    [255, 128, 51, 50, 0, 128, 128, 255],
    [255, 255, 128, 128, 128, 128, 255, 255],
    [255, 255, 255, 255, 255, 255, 255, 255]], np.uint8)
# by hand: > 200 → 0 background, 51..200 → 1 rim, ≤ 50 → 2 cup
FUNDUS_LABELS = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 1, 0, 0],
    [0, 1, 1, 2, 2, 1, 1, 0],
    [0, 1, 1, 2, 2, 1, 1, 0],
    [0, 0, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0]], np.uint8)


def _fundus(root: Path, domains: dict[int, dict[str, list[str]]]) -> Path:
    """Fundus/Domain<N>/{train,test}/ROIs/{image,mask}/<name>.png."""
    for d, parts in domains.items():
        for part, names in parts.items():
            rois = root / f"Domain{d}" / part / "ROIs"
            (rois / "image").mkdir(parents=True, exist_ok=True)
            (rois / "mask").mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                rng = np.random.default_rng(d * 100 + i)
                Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(rois / "image" / f"{name}.png")
                mask = FUNDUS_RAW if i % 2 == 0 else np.repeat(FUNDUS_RAW[..., None], 3, axis=2)  # L or gray RGB
                Image.fromarray(mask).save(rois / "mask" / f"{name}.png")
    return root


FUNDUS_TREE = {1: {"train": ["gdrishtiGS_002", "ndrishtiGS_004"], "test": ["gdrishtiGS_001"]},
               2: {"train": ["G-1-L", "N-2-R"], "test": ["G-2-R"]}}


def test_fundus_dofe_one_folder_per_domain_labels_and_official_split(tmp_path):
    src = _fundus(tmp_path / "Fundus", FUNDUS_TREE)
    (src / "Domain2" / "test_file_list.txt").write_text("G-2-R.png\n")  # MiDSS ships such lists
    root = tmp_path / "data"
    assert import_dataset("fundus-dofe", src, root) == root
    assert sorted(p.name for p in root.iterdir()) == ["fundus_domain1", "fundus_domain2"]
    for d, parts in FUNDUS_TREE.items():
        folder = root / f"fundus_domain{d}"
        index = scan_folder(folder)
        assert index.splits == {n: part for part, names in parts.items() for n in names}
        for name in index.stems:  # images copied byte for byte; masks → label ids 0/1/2
            part = index.splits[name]
            assert (folder / "images" / f"{name}.png").read_bytes() == \
                (src / f"Domain{d}" / part / "ROIs" / "image" / f"{name}.png").read_bytes()
            np.testing.assert_array_equal(np.asarray(Image.open(folder / "masks" / f"{name}.png")), FUNDUS_LABELS)
    # the registered names resolve to the imported folders, with the official test split
    info, folder = resolve_dataset("fundus_domain2", root)
    assert folder == root / "fundus_domain2" and info.classes == ("background", "rim", "cup")
    assert scan_folder(folder).with_split(info.test_split) == ["G-2-R"]
    assert "fundus_domain1" in info.ood


def test_fundus_single_domain_from_the_download_or_the_domain_folder(tmp_path):
    src = _fundus(tmp_path / "dl" / "Fundus", FUNDUS_TREE)
    a = import_dataset("fundus_domain2", tmp_path / "dl", tmp_path / "a")  # download unpacked one level down
    b = import_dataset("fundus_domain2", src / "Domain2", tmp_path / "b")
    assert scan_folder(a).stems == scan_folder(b).stems == ["G-1-L", "G-2-R", "N-2-R"]
    with pytest.raises(DataError, match=r"Domain3 is missing \(found Domain1, Domain2\)"):
        import_dataset("fundus_domain3", src, tmp_path / "c")


def test_fundus_wrong_layout_is_one_error_naming_the_folder_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has no Domain1 … Domain4 folder"):
        import_dataset("fundus_dofe", empty, tmp_path / "out")
    src = _fundus(tmp_path / "Fundus", {1: {"train": ["a"]}})
    (src / "Domain2" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Domain2 has no train/ or test/ folder"):
        import_dataset("fundus_dofe", src, tmp_path / "out")
    (src / "Domain2" / "test" / "ROIs" / "image").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Domain2/test/ROIs/mask is missing"):
        import_dataset("fundus_dofe", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # domain 1 was fine, but nothing was written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------ ProstateMRI

X, Y = 6, 5


def _volume(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def _case(site_dir: Path, case: str, z: int, fg_slices: list[int], seg: str = "segmentation",
          seed: int = 0) -> np.ndarray:
    """Case volume (X×Y×z, float32 noise) + mask: prostate box x 1..2, y 0..3 on ``fg_slices``."""
    vol = np.random.default_rng(seed).normal(500, 100, (X, Y, z)).astype(np.float32)
    mask = np.zeros((X, Y, z), np.uint8)
    for k in fg_slices:
        mask[1:3, 0:4, k] = 1
    _volume(site_dir / f"{case}.nii.gz", vol)
    _volume(site_dir / f"{case}_{seg}.nii.gz", mask)
    return vol


def _prostate(root: Path, n_cases: int = 5) -> Path:
    for j, (site, seg) in enumerate((("BIDMC", "segmentation"), ("HK", "Segmentation"))):
        for c in range(n_cases):  # both spellings of the mask name occur in the download
            _case(root / site, f"Case{c:02d}", 6, [2, 3], seg, seed=10 * j + c)
    return root


def test_prostate_saml_slices_masks_orientation_and_split_by_case(tmp_path):
    src = _prostate(tmp_path / "ProstateMRI")
    root = tmp_path / "data"
    assert import_multidomain("prostate-saml", src, root) == [root / "prostate_bidmc", root / "prostate_hk"]
    for site in ("bidmc", "hk"):
        index = scan_folder(root / f"prostate_{site}")
        # one slice per plane with prostate (2, 3), none of the empty ones by default
        assert index.stems == [f"Case{c:02d}_s{k:03d}" for c in range(5) for k in (2, 3)]
        by_case: dict[str, set[str]] = {}
        for stem, split in index.splits.items():
            by_case.setdefault(stem.split("_s")[0], set()).add(split)
        assert all(len(s) == 1 for s in by_case.values())  # never one case in two splits
        assert sorted(s.pop() for s in by_case.values()) == ["test"] + ["train"] * 4  # 20 % of 5
    vol = np.asarray(nib.load(str(src / "HK" / "Case01.nii.gz")).dataobj)
    img = np.asarray(Image.open(root / "prostate_hk" / "images" / "Case01_s003.png"))
    mask = np.asarray(Image.open(root / "prostate_hk" / "masks" / "Case01_s003.png"))
    assert img.shape == mask.shape == (Y, X)  # rows = the second voxel axis, as SimpleITK reads it
    np.testing.assert_array_equal(img, to_uint8(vol)[:, :, 3].T)
    expected = np.zeros((Y, X), np.uint8)
    expected[0:4, 1:3] = 255  # binary 0/255 → label ids 0/1
    np.testing.assert_array_equal(mask, expected)
    info, folder = resolve_dataset("prostate_hk", root)
    assert info.channels == 1 and info.num_classes == 2 and len(scan_folder(folder).with_split("test")) == 2


def test_split_by_case_is_seeded_and_deterministic():
    cases = [f"Case{i:02d}" for i in range(10)]
    a = split_cases(cases, 0.3, seed=0, site="UCL")
    assert a == split_cases(list(reversed(cases)), 0.3, seed=0, site="UCL")
    assert sorted(a.values()).count("test") == 3
    assert any(split_cases(cases, 0.3, seed=s, site="UCL") != a for s in range(1, 6))
    assert set(split_cases(cases, 0.0, seed=0).values()) == {"train"}
    assert list(split_cases(["Case00", "Case01"], 0.01, seed=0).values()).count("test") == 1  # ≥ 1 when asked


def test_prostate_empty_slices_kept_by_fraction_and_seed(tmp_path):
    src = tmp_path / "P"
    _case(src / "UCL", "Case00", 10, [4, 5, 6])
    _case(src / "UCL", "Case01", 10, [4, 5, 6], seed=1)

    def slices(fraction: float, seed: int = 0, name: str = "x") -> dict[str, list[int]]:
        out = import_multidomain("prostate_saml", src, tmp_path / name, empty_fraction=fraction,
                                 seed=seed, test_fraction=0.5)[0]
        stems = scan_folder(out).stems
        return {c: [int(s[-3:]) for s in stems if s.startswith(c)] for c in ("Case00", "Case01")}

    assert slices(0.0, name="f0") == {"Case00": [4, 5, 6], "Case01": [4, 5, 6]}
    half = slices(0.5, name="f5")
    for case, ks in half.items():  # the 3 with prostate + round(0.5 × 7) = 4 of the 7 empty ones
        assert len(ks) == 7 and {4, 5, 6} <= set(ks)
    assert slices(0.5, name="f5b") == half  # same seed, same slices
    assert slices(1.0, name="f1") == {"Case00": list(range(10)), "Case01": list(range(10))}
    empty = np.asarray(Image.open(tmp_path / "f1" / "prostate_ucl" / "masks" / "Case00_s000.png"))
    assert empty.max() == 0
    with pytest.raises(ConfigError, match=r"empty_fraction \(--empty-fraction\) must be in \[0, 1\]"):
        import_multidomain("prostate_saml", src, tmp_path / "bad", empty_fraction=1.5)


def test_to_uint8_clips_to_the_volume_percentiles():
    vol = np.arange(1000, dtype=np.float64).reshape(10, 10, 10)
    vol[0, 0, 0] = 1e6  # an outlier does not squash the rest
    out = to_uint8(vol)
    # by hand: sorted values 1..999, 1e6; 0.5th percentile at rank 4.995 → 5.995, 99.5th at
    # rank 994.005 → 995.005; 500 → (500 − 5.995) · 255 / 989.01 = 127.37 → 127
    assert out.dtype == np.uint8 and out[0, 0, 0] == 255 and out[0, 0, 1] == 0
    assert out.flat[500] == 127 and out.flat[995] == 255 and out.flat[6] == 0
    assert to_uint8(np.full((2, 2, 2), 7.0)).max() == 0


def test_prostate_wrong_layout_is_one_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="none of the site folders BIDMC, BMC, HK, I2CVB, RUNMC, UCL"):
        import_multidomain("prostate_saml", empty, tmp_path / "out")
    src = tmp_path / "P"
    _case(src / "RUNMC", "Case00", 4, [1])
    _volume(src / "RUNMC" / "Case01.nii.gz", np.zeros((X, Y, 4), np.float32))
    with pytest.raises(DataError, match=r"RUNMC/Case01_segmentation\.nii\.gz \(or _Segmentation\) is missing"):
        import_multidomain("prostate_saml", src, tmp_path / "out")
    _volume(src / "RUNMC" / "Case01_segmentation.nii.gz", np.zeros((X, Y, 5), np.uint8))
    with pytest.raises(DataError, match=r"Case01_segmentation\.nii\.gz has shape \(6, 5, 5\) but .*Case01\.nii\.gz has \(6, 5, 4\)"):
        import_multidomain("prostate_saml", src, tmp_path / "out")
    (src / "BMC").mkdir()
    with pytest.raises(DataError, match=r"BMC holds no Case<NN>\.nii\.gz volumes"):
        import_multidomain("prostate_saml", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prostate_without_nibabel_says_how_to_install(tmp_path, monkeypatch):
    src = tmp_path / "P"
    _case(src / "HK", "Case00", 4, [1])
    monkeypatch.setitem(__import__("sys").modules, "nibabel", None)
    with pytest.raises(DataError, match="needs nibabel, which is not installed: pip install nibabel"):
        import_multidomain("prostate_saml", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ destination + CLI

def test_destination_needs_overwrite_and_keeps_other_datasets(tmp_path):
    src = _fundus(tmp_path / "Fundus", {1: {"train": ["a", "b"]}})
    root = tmp_path / "data"
    (root / "isic2017").mkdir(parents=True)  # the data root holds other datasets
    (root / "isic2017" / "notes.txt").write_text("mine")
    import_dataset("fundus_dofe", src, root)  # only new dataset folders are written into the root
    assert scan_folder(root / "fundus_domain1").stems == ["a", "b"]
    with pytest.raises(ConfigError, match="earlier output of `scarce data import`; pass --overwrite"):
        import_dataset("fundus_dofe", src, root)
    other = tmp_path / "other"
    (other / "fundus_domain1").mkdir(parents=True)
    (other / "fundus_domain1" / "x.txt").write_text("mine")  # a user's folder where the domain would go
    with pytest.raises(ConfigError, match="not made by `scarce data import`"):
        import_dataset("fundus_dofe", src, other, overwrite=True)
    assert [p.name for p in (other / "fundus_domain1").iterdir()] == ["x.txt"]
    (src / "Domain1" / "train" / "ROIs" / "image" / "b.png").unlink()
    import_dataset("fundus_dofe", src, root, overwrite=True)  # an earlier import is replaced as a whole
    assert scan_folder(root / "fundus_domain1").stems == ["a"]
    assert (root / "isic2017" / "notes.txt").read_text() == "mine"
    (root / "fundus_domain1" / "README.md").write_text("mine")  # no longer just an import
    with pytest.raises(ConfigError, match="holds files an import does not write \\(README.md\\)"):
        import_dataset("fundus_dofe", src, root, overwrite=True)
    assert (root / "fundus_domain1" / "README.md").exists()
    with pytest.raises(ConfigError, match="is inside the input folder"):
        import_dataset("fundus_dofe", src, src / "out", overwrite=True)


def test_overwrite_of_the_other_importers_replaces_only_an_earlier_import(tmp_path, synthetic_folder):
    dest = import_dataset("generic", synthetic_folder, tmp_path / "g")
    import_dataset("generic", synthetic_folder, dest, overwrite=True)
    (dest / "thesis.pdf").write_text("mine")
    with pytest.raises(DataError, match="holds files an import does not write \\(thesis.pdf\\)"):
        import_dataset("generic", synthetic_folder, dest, overwrite=True)
    assert (dest / "thesis.pdf").exists()


def test_cli_import_multidomain(tmp_path, capsys):
    src = _prostate(tmp_path / "ProstateMRI", n_cases=2)
    out = tmp_path / "out"
    args = ["data", "import", "prostate-saml", str(src), str(out), "--empty-fraction", "1", "--seed", "3"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"imported into {out / 'prostate_bidmc'}, {out / 'prostate_hk'}"
    assert len(scan_folder(out / "prostate_hk")) == 12  # 2 cases × 6 slices, empty ones kept
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("scarce: error: dataset folder") and "--overwrite" in err and err.count("\n") == 1
    assert main(args + ["--overwrite"]) == 0
    capsys.readouterr()
    assert main(["data", "import", "fundus-dofe", str(src), str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "has no Domain1 … Domain4 folder" in err and err.count("\n") == 1
    for name in ("fundus_dofe", "generic", "nnunet"):
        assert main(["data", "import", name, str(src), str(tmp_path / "x"), "--seed", "1"]) == 2
        assert "--seed: only for prostate_saml" in capsys.readouterr().err
