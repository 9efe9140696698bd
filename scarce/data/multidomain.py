"""Import the multi-domain benchmark downloads of DoFE / MiDSS (Fundus) and SAML (ProstateMRI):
one scarce dataset folder per domain (``fundus_domain1`` …, ``prostate_bidmc`` …).

Why one folder per domain: a multi-domain protocol (labelled images from one domain, unlabelled
images from several, Dice per domain) names each domain as a dataset, and each folder keeps its
own test split in ``split.csv``, so a domain's test images never reach an unlabelled pool.

**Fundus** (DoFE, Wang et al. TMI 2020; MiDSS, Ma et al. CVPR 2024)::

    Fundus/Domain<N>/{train,test}/ROIs/image/<name>.png
    Fundus/Domain<N>/{train,test}/ROIs/mask/<name>.png      (same file name as the image)

Domain1 Drishti-GS, Domain2 RIM-ONE-r3, Domain3 REFUGE train, Domain4 REFUGE val. Masks are gray:
background 255, optic disc 128, optic cup 0. They are read with DoFE's bands (> 200 background,
51..200 disc, ≤ 50 cup; robust to resampled borders) and written as label ids 0 background,
1 rim (disc outside the cup), 2 cup — the convention of ``fundus_drishti``. Images are copied
byte for byte; ``split.csv`` keeps the official train/test folders.

**ProstateMRI** (SAML, Liu et al. MICCAI 2020)::

    <SITE>/Case<NN>.nii.gz + Case<NN>_segmentation.nii.gz   (``_Segmentation`` also accepted)

SITE in BIDMC, BMC, HK, I2CVB, RUNMC, UCL. Each volume becomes 2D slices along its third voxel
axis (the axial plane of these volumes; a slice is ``volume[:, :, k].T``, i.e. rows × columns as
SimpleITK, which SAML uses, returns it): every slice with prostate voxels, plus a seeded
``empty_fraction`` of the slices without. Intensities are clipped to the volume's [0.5, 99.5]
percentiles and rescaled to 8 bits; masks are binary (label > 0.5 → prostate; SAML merges its
label 2 into 1 the same way) stored 0/255. Stems are ``<case>_s<slice:03d>``. ``split.csv`` splits
by case (all slices of a case in one split; ``test_fraction`` of the cases, seeded). NIfTI is read
with nibabel (``pip install nibabel``), imported only when a prostate import runs.

Nothing is written until every domain has been converted (in a hidden staging folder beside the
destination); then each domain folder is moved into place.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from scarce.data.folder import IMAGE_EXTS, _ext, read_image_pil, read_mask_raw
from scarce.data.types import DataError
from scarce.errors import ConfigError

FUNDUS_DOMAINS = {1: "Drishti-GS", 2: "RIM-ONE-r3", 3: "REFUGE train", 4: "REFUGE val"}
PROSTATE_SITES = ("BIDMC", "BMC", "HK", "I2CVB", "RUNMC", "UCL")
IMPORT_ENTRIES = frozenset({"images", "masks", "split.csv", ".scarce"})
IMPORT = "scarce data import"
"""Command name in the output marker of an imported dataset folder."""

"""What an import writes into a dataset folder: ``--overwrite`` replaces only such folders."""

_FUNDUS_LAYOUT = "Domain<N>/{train,test}/ROIs/{image,mask}/*.png"
_PROSTATE_LAYOUT = "<SITE>/Case<NN>.nii.gz + Case<NN>_segmentation.nii.gz"


# ------------------------------------------------------------------------------ names

def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def is_multidomain(name: str) -> bool:
    """True for ``fundus_dofe`` / ``prostate_saml`` (any case, ``-`` or ``_``) and for one domain
    of them: ``fundus_domain<N>``, ``prostate_<site>``."""
    k = _key(name)
    return (k in ("fundus_dofe", "prostate_saml") or re.fullmatch(r"fundus_domain\d+", k) is not None
            or k in {f"prostate_{s.lower()}" for s in PROSTATE_SITES})


def fundus_dataset_name(domain: int) -> str:
    return f"fundus_domain{domain}"


def prostate_dataset_name(site: str) -> str:
    return f"prostate_{site.lower()}"


# ------------------------------------------------------------------------------ helpers

def _child(folder: Path, name: str) -> Path | None:
    """Sub-folder ``name`` of ``folder`` (exact, else case-insensitive), or None."""
    exact = folder / name
    if exact.is_dir():
        return exact
    low = name.lower()
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.is_dir() and p.name.lower() == low:
            return p
    return None


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _descend(src: Path, found: Callable[[Path], bool]) -> Path | None:
    """``src`` when ``found(src)``, else its only sub-folder for which it holds (a download
    unpacked into e.g. ``Fundus/`` or ``Processed_data_nii/``), else None."""
    if found(src):
        return src
    hits = [d for d in _subdirs(src) if found(d)]
    return hits[0] if len(hits) == 1 else None


def fundus_labels(raw: np.ndarray) -> np.ndarray:
    """DoFE/MiDSS gray mask (background 255, disc 128, cup 0) → uint8 label ids 0 background,
    1 rim (disc outside the cup), 2 cup. Bands as DoFE's loader: > 200 background, 51..200 disc,
    ≤ 50 cup. ``raw``: H×W integers; returns H×W uint8."""
    return np.where(raw > 200, 0, np.where(raw > 50, 1, 2)).astype(np.uint8)


def _publish(staged: dict[str, Path], targets: dict[str, Path]) -> None:
    """Move every finished folder into place (an earlier import at the target is replaced)."""
    for name, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            os.replace(target, old)
        os.replace(staged[name], target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _targets(src: Path, dest: Path, names: Sequence[str], single: bool,
             overwrite: bool) -> dict[str, Path]:
    """Check the destination (new or empty unless ``overwrite``; never the source, inside it or
    holding it) and return name → dataset folder. With ``single`` the folder is ``dest`` itself,
    else ``dest/<name>`` (``dest`` may then hold other datasets, e.g. the data root, once
    ``overwrite`` is given). A dataset folder with anything but an earlier import is refused."""
    from scarce.utils.paths import check_output_folder, check_overlap, dataset_around, is_within

    what = "destination folder"
    if single:
        check_output_folder(dest, [src], overwrite=overwrite, what=what, command=IMPORT)
        targets = {names[0]: dest}
    else:  # writes only new dataset folders dest/<name>: dest may hold other datasets (a data root)
        if is_within(dest, src):
            check_overlap(dest, [src], what=what)  # raises: is / inside the source
        if dest.is_dir() and dataset_around(dest) is not None:
            raise ConfigError(f"{what} {str(dest)!r} is or lies inside the dataset {str(dataset_around(dest))!r}; "
                              f"a multi-domain import writes one dataset folder per domain: choose a folder outside "
                              f"any dataset, e.g. the data root (nothing was written)")
        targets = {n: dest / n for n in names}
        for t in targets.values():
            check_output_folder(t, [src], overwrite=overwrite, what="dataset folder", command=IMPORT)
    for t in targets.values():
        if t.exists() and not t.is_dir():
            raise ConfigError(f"{str(t)!r} is a file where the import writes a dataset folder; "
                              f"move it or choose another destination")
        if t.is_dir():
            foreign = sorted(e.name for e in t.iterdir() if e.name not in IMPORT_ENTRIES)
            if foreign:
                raise ConfigError(f"{str(t)!r} holds files an import does not write ("
                                  f"{', '.join(foreign[:3])}); --overwrite only replaces an earlier "
                                  f"import (images/, masks/, split.csv): move them or choose another "
                                  f"destination (nothing was written)")
    return targets


def _run(src: str | Path, dest: str | Path, single: bool, overwrite: bool,
         plan: Callable[[Path], dict[str, Any]], write: Callable[[Any, Path], None]) -> list[Path]:
    """Plan every domain (layout errors before anything is written), check the destination,
    convert into a staging folder, then publish. Returns the dataset folders."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist")
    from scarce.utils.paths import write_marker

    jobs = plan(src)
    dest = Path(dest).expanduser()
    targets = _targets(src, dest, list(jobs), single, overwrite)
    base = dest if (not single and dest.is_dir()) else dest.parent
    base.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".scarce-import-", suffix=".tmp", dir=base))
    try:
        staged = {}
        for name, job in jobs.items():
            out = stage / name
            (out / "images").mkdir(parents=True)
            (out / "masks").mkdir()
            write(job, out)
            write_marker(out, IMPORT)
            staged[name] = out
        _publish(staged, targets)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return list(targets.values())


def _write_split(out: Path, splits: dict[str, str]) -> None:
    rows = "".join(f"{s},{splits[s]}\n" for s in sorted(splits))
    (out / "split.csv").write_text("stem,split\n" + rows)


# ------------------------------------------------------------------------------ Fundus

def _fundus_domain_dirs(root: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for d in _subdirs(root):
        m = re.fullmatch(r"domain(\d+)", d.name.lower())
        if m:
            out[int(m.group(1))] = d
    return out


def _fundus_pairs(domain_dir: Path) -> tuple[list[tuple[str, Path, Path, str]], list[str]]:
    """(stem, image, mask, split) of one domain folder, and the images without a mask."""
    parts = [(p, _child(domain_dir, p)) for p in ("train", "test")]
    if not any(d for _, d in parts):
        raise DataError(f"{domain_dir} has no train/ or test/ folder; the Fundus layout is "
                        f"{_FUNDUS_LAYOUT}")
    pairs, skipped = [], []
    for split, part in parts:
        if part is None:
            continue
        rois = _child(part, "ROIs")
        img_dir = _child(rois, "image") if rois else None
        mask_dir = _child(rois, "mask") if rois else None
        for d, sub in ((img_dir, "image"), (mask_dir, "mask")):
            if d is None:
                raise DataError(f"{part / 'ROIs' / sub} is missing; the Fundus layout is "
                                f"{_FUNDUS_LAYOUT}")
        assert img_dir is not None and mask_dir is not None
        masks = {p.stem: p for p in mask_dir.iterdir() if p.is_file() and _ext(p) in IMAGE_EXTS}
        images = sorted(p for p in img_dir.iterdir() if p.is_file() and _ext(p) in IMAGE_EXTS
                        and not p.name.startswith("."))
        if not images:
            raise DataError(f"{img_dir} holds no images ({', '.join(IMAGE_EXTS)})")
        for p in images:
            if p.stem in masks:
                pairs.append((p.stem, p, masks[p.stem], split))
            else:
                skipped.append(str(p))
    return pairs, skipped


def _plan_fundus(src: Path, domains: Sequence[int] | None, single: bool) -> dict[str, Any]:
    root = _descend(src, lambda d: bool(_fundus_domain_dirs(d)))
    if root is None and single:  # one domain: SRC may be the Domain<N> folder itself
        if _child(src, "train") or _child(src, "test"):
            assert domains is not None
            return {fundus_dataset_name(domains[0]): _fundus_pairs(src)}
    if root is None:
        raise DataError(f"{src} has no Domain1 … Domain4 folder; the importer expects the DoFE/MiDSS "
                        f"'Fundus' download{' (or one Domain<N> folder)' if single else ''}: "
                        f"{_FUNDUS_LAYOUT}")
    found = _fundus_domain_dirs(root)
    want = sorted(found) if domains is None else list(domains)
    for n in want:
        if n not in found:
            raise DataError(f"{root / f'Domain{n}'} is missing (found "
                            f"{', '.join(found[k].name for k in sorted(found))})")
    return {fundus_dataset_name(n): _fundus_pairs(found[n]) for n in want}


def _write_fundus(job: tuple[list[tuple[str, Path, Path, str]], list[str]], out: Path) -> None:
    pairs, skipped = job
    seen: dict[str, Path] = {}
    splits: dict[str, str] = {}
    for stem, img_path, mask_path, split in pairs:
        if stem in seen:
            raise DataError(f"two source images map to the stem {stem!r}: {seen[stem]} and "
                            f"{img_path}; remove one")
        seen[stem] = img_path
        img = read_image_pil(img_path, 3)  # decodes (validates) the image
        labels = fundus_labels(read_mask_raw(mask_path))
        if labels.shape != (img.height, img.width):
            raise DataError(f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} but image "
                            f"{img_path} is {img.width}x{img.height}; fix the source")
        shutil.copyfile(img_path, out / "images" / f"{stem}{_ext(img_path)}")
        Image.fromarray(labels).save(out / "masks" / f"{stem}.png")
        splits[stem] = split
    if not pairs:
        raise DataError(f"no image/mask pairs in {out.name}'s source (images without a mask: "
                        f"{skipped[0] if skipped else 'none'})")
    _write_split(out, splits)
    if skipped:
        warnings.warn(f"{len(skipped)} source images had no mask and were skipped (e.g. "
                      f"{skipped[0]})", stacklevel=4)


def import_fundus_dofe(src: str | Path, dest: str | Path, overwrite: bool = False,
                       domains: Sequence[int] | None = None) -> list[Path]:
    """Convert the DoFE/MiDSS "Fundus" download at ``src`` into ``dest/fundus_domain<N>`` (every
    ``Domain<N>`` found, or only ``domains``). Returns the dataset folders.

    ``dest`` must be new or empty unless ``overwrite`` (then it may hold other datasets, and an
    earlier import of the same domain is replaced). Raises DataError naming the missing folder
    when ``src`` is not in the expected layout.
    """
    return _run(src, dest, False, overwrite, lambda s: _plan_fundus(s, domains, False),
                _write_fundus)


# ------------------------------------------------------------------------------ ProstateMRI

_NII = re.compile(r"^(?P<stem>.+?)\.nii(?:\.gz)?$", re.IGNORECASE)
_SEG = re.compile(r"_segmentation$", re.IGNORECASE)


def _site_dirs(root: Path) -> dict[str, Path]:
    names = {s.lower(): s for s in PROSTATE_SITES}
    return {names[d.name.lower()]: d for d in _subdirs(root) if d.name.lower() in names}


def _prostate_cases(site_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case, image volume, mask volume) of one site folder."""
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for p in sorted(site_dir.iterdir()):
        m = _NII.match(p.name)
        if not (p.is_file() and m) or p.name.startswith("."):
            continue
        stem = m.group("stem")
        if _SEG.search(stem):
            masks[_SEG.sub("", stem)] = p
        else:
            images[stem] = p
    if not images:
        raise DataError(f"{site_dir} holds no Case<NN>.nii.gz volumes; the ProstateMRI layout is "
                        f"{_PROSTATE_LAYOUT}")
    for case, p in images.items():
        if case not in masks:
            raise DataError(f"{p} has no segmentation: {site_dir / (case + '_segmentation.nii.gz')} "
                            f"(or _Segmentation) is missing; restore it or remove the case")
    return [(c, images[c], masks[c]) for c in sorted(images)]


def _plan_prostate(src: Path, sites: Sequence[str] | None, single: bool) -> dict[str, Any]:
    root = _descend(src, lambda d: bool(_site_dirs(d)))
    if root is None and single and any(_NII.match(p.name) for p in src.iterdir() if p.is_file()):
        assert sites is not None  # one site: SRC may be the site folder itself
        return {prostate_dataset_name(sites[0]): (sites[0], _prostate_cases(src))}
    if root is None:
        raise DataError(f"{src} has none of the site folders {', '.join(PROSTATE_SITES)}; the "
                        f"importer expects the SAML 'ProstateMRI' download"
                        f"{' (or one site folder)' if single else ''}: {_PROSTATE_LAYOUT}")
    found = _site_dirs(root)
    want = list(found) if sites is None else [s.upper() for s in sites]
    for s in want:
        if s not in found:
            raise DataError(f"{root / s} is missing (found {', '.join(sorted(found))})")
    return {prostate_dataset_name(s): (s, _prostate_cases(found[s])) for s in sorted(want)}


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise DataError("reading NIfTI volumes needs nibabel, which is not installed: "
                        "pip install nibabel (or pip install -e '.[nifti]')") from None
    return nibabel


def read_volume(path: str | Path) -> np.ndarray:
    """A NIfTI volume as an X×Y×Z array (voxel order as stored; trailing singleton axes
    dropped). Raises DataError for an unreadable file or a volume that is not 3D."""
    nib = _nibabel()
    try:
        arr = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as e:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"cannot read {path} ({type(e).__name__}: {e}); the file is corrupt or "
                        f"not NIfTI: download it again") from None
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(f"{path} has shape {arr.shape}; expected a 3D volume")
    return np.asarray(arr)


def to_uint8(volume: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip to the volume's [lower, upper] percentiles and rescale to 0..255 (uint8, same shape);
    a constant volume → zeros. Why per volume: MRI intensities have no absolute scale."""
    v = volume.astype(np.float64)
    lo, hi = np.percentile(v, [lower, upper])
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    return np.round((np.clip(v, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _case_rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32("/".join(parts).encode())])


def split_cases(cases: Sequence[str], test_fraction: float, seed: int, site: str = "") -> dict[str, str]:
    """case → 'train' | 'test': round(test_fraction × n) cases (at least 1 and at most n − 1 when
    test_fraction > 0 and n ≥ 2) drawn with a generator seeded by (seed, site). Deterministic."""
    cases = sorted(cases)
    n = len(cases)
    n_test = 0 if test_fraction <= 0 or n < 2 else min(max(round(test_fraction * n), 1), n - 1)
    test = set(_case_rng(seed, site, "split").permutation(n)[:n_test].tolist())
    return {c: ("test" if i in test else "train") for i, c in enumerate(cases)}


def _write_prostate(empty_fraction: float, test_fraction: float, seed: int
                    ) -> Callable[[tuple[str, list[tuple[str, Path, Path]]], Path], None]:
    def write(job: tuple[str, list[tuple[str, Path, Path]]], out: Path) -> None:
        site, cases = job
        case_split = split_cases([c for c, _, _ in cases], test_fraction, seed, site)
        splits: dict[str, str] = {}
        for case, img_path, mask_path in cases:
            vol, seg = read_volume(img_path), read_volume(mask_path)
            if vol.shape != seg.shape:
                raise DataError(f"{mask_path} has shape {seg.shape} but {img_path} has {vol.shape}; "
                                f"fix the source")
            img8, fg = to_uint8(vol), seg.astype(np.float64) > 0.5
            has = fg.any(axis=(0, 1))
            empty = np.flatnonzero(~has)
            n_keep = int(round(empty_fraction * len(empty)))
            keep = set(np.flatnonzero(has).tolist())
            if n_keep:
                keep |= set(_case_rng(seed, site, case).choice(empty, n_keep, replace=False).tolist())
            for k in sorted(keep):
                stem = f"{case}_s{k:03d}"
                Image.fromarray(np.ascontiguousarray(img8[:, :, k].T), "L").save(out / "images" / f"{stem}.png")
                Image.fromarray(np.ascontiguousarray(fg[:, :, k].T).astype(np.uint8) * 255, "L").save(
                    out / "masks" / f"{stem}.png")
                splits[stem] = case_split[case]
        if not splits:
            raise DataError(f"no slice of site {site} has prostate voxels ({cases[0][2].parent}); "
                            f"check the _segmentation volumes, or keep empty slices with "
                            f"empty_fraction > 0")
        _write_split(out, splits)
    return write


def _check_prostate_options(empty_fraction: float, test_fraction: float) -> None:
    if not 0.0 <= float(empty_fraction) <= 1.0:
        raise ConfigError(f"empty_fraction (--empty-fraction) must be in [0, 1], got {empty_fraction}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction (--test-fraction) must be in [0, 1), got {test_fraction}")


def import_prostate_saml(src: str | Path, dest: str | Path, overwrite: bool = False,
                         sites: Sequence[str] | None = None, empty_fraction: float = 0.0,
                         test_fraction: float = 0.2, seed: int = 0) -> list[Path]:
    """Convert the SAML "ProstateMRI" download at ``src`` into ``dest/prostate_<site>`` (every site
    folder found, or only ``sites``): 2D slices with prostate plus ``empty_fraction`` of the empty
    ones, ``split.csv`` by case (``test_fraction`` of each site's cases are ``test``). Seeded by
    ``seed``; the same inputs give the same folders. Returns the dataset folders.

    ``dest`` must be new or empty unless ``overwrite``. Raises DataError naming the missing
    folder/file when ``src`` is not in the expected layout, ConfigError for a bad fraction.
    """
    _check_prostate_options(empty_fraction, test_fraction)
    return _run(src, dest, False, overwrite, lambda s: _plan_prostate(s, sites, False),
                _write_prostate(empty_fraction, test_fraction, seed))


# ------------------------------------------------------------------------------ dispatch

def reject_options(options: dict[str, Any], name: str) -> None:
    """ConfigError when prostate-only options reach another importer (they would be ignored)."""
    if options:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(options))
        raise ConfigError(f"{flags}: only for prostate_saml / prostate_<site> imports, not {name!r}")


def import_multidomain(name: str, src: str | Path, dest: str | Path, overwrite: bool = False,
                       **options: Any) -> list[Path]:
    """``fundus_dofe`` / ``prostate_saml`` → every domain into ``dest/<dataset name>``;
    ``fundus_domain<N>`` / ``prostate_<site>`` → that one domain into ``dest`` itself (``src``: the
    whole download or that domain's folder). ``options``: prostate only — ``empty_fraction``,
    ``test_fraction``, ``seed``. Returns the dataset folders written."""
    k = _key(name)
    if not is_multidomain(k):
        raise ConfigError(f"{name!r} is not a multi-domain layout; use fundus_dofe, prostate_saml, "
                          f"fundus_domain<N> or prostate_<site>")
    unknown = sorted(set(options) - {"empty_fraction", "test_fraction", "seed"})
    if unknown:
        raise ConfigError(f"unknown import option(s) {', '.join(unknown)}")
    if k.startswith("fundus"):
        reject_options(options, name)
        if k == "fundus_dofe":
            return import_fundus_dofe(src, dest, overwrite)
        n = int(k[len("fundus_domain"):])
        return _run(src, dest, True, overwrite, lambda s: _plan_fundus(s, [n], True), _write_fundus)
    if k == "prostate_saml":
        return import_prostate_saml(src, dest, overwrite, **options)
    site = next(s for s in PROSTATE_SITES if prostate_dataset_name(s) == k)
    empty_fraction = float(options.get("empty_fraction", 0.0))
    test_fraction = float(options.get("test_fraction", 0.2))
    _check_prostate_options(empty_fraction, test_fraction)
    return _run(src, dest, True, overwrite, lambda s: _plan_prostate(s, [site], True),
                _write_prostate(empty_fraction, test_fraction, int(options.get("seed", 0))))


__all__ = ["FUNDUS_DOMAINS", "PROSTATE_SITES", "fundus_labels", "import_fundus_dofe",
           "import_multidomain", "import_prostate_saml", "is_multidomain", "read_volume",
           "reject_options", "split_cases", "to_uint8"]
