"""Convert official download layouts (and nnU-Net / MONAI datalists) to the folder format.

Why: every dataset ships in its own layout (ISIC ``_segmentation.png`` masks, BUSI class folders
with several ``_mask_N`` files, Montgomery left/right lung masks, Kvasir JPEG masks, PH2 nested
BMP folders, Drishti soft maps, ...). One importer per layout writes ``images/``, ``masks/``
(8-bit PNG: binary 0/255, multi-class label ids) and ``split.csv`` when the source has splits.

Output is built in a temporary folder beside ``dest`` and renamed at the end, so a failed
import leaves nothing partial. Images are copied byte-for-byte when already in a supported
format (after checking that they decode), otherwise re-encoded as PNG.
"""
from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from scarce.data._fs import atomic_dir
from scarce.data.folder import (IMAGE_EXTS, VOLUME_EXTS, _ext, mask_to_labels, read_image_pil,
                                read_mask_raw, scan_folder)
from scarce.data.multidomain import (IMPORT, IMPORT_ENTRIES, import_multidomain, is_multidomain,
                                      reject_options)
from scarce.data.types import DataError
from scarce.registry import Registry
from scarce.utils.io import atomic_write_json

MaskFn = Callable[[Sequence[Path]], np.ndarray]


@dataclass
class Item:
    stem: str
    image: Path
    masks: list[Path]
    split: str | None = None


@dataclass
class Plan:
    """What an importer found: pairs + how to turn mask files into label ids."""

    items: list[Item]
    mask_fn: MaskFn
    num_classes: int = 2
    skipped: list[str] = field(default_factory=list)


IMPORTERS: Registry[Callable[..., Plan]] = Registry("importer")
ALIASES = {"isic2017": "isic", "isic2018": "isic", "kvasir_seg": "kvasir", "cvc_clinicdb": "cvc",
           "cvc_colondb": "cvc", "fundus_drishti": "drishti", "busi_b": "generic"}


# ------------------------------------------------------------------------------ mask helpers

def binary_union(paths: Sequence[Path]) -> np.ndarray:
    """Union of binary masks; 0/1 masks use > 0, others (0/255, JPEG noise) > 127."""
    out = None
    for p in paths:
        raw = read_mask_raw(p)
        fg = raw > 0 if raw.max() <= 1 else raw > 127
        if out is not None and out.shape != fg.shape:
            raise DataError(f"mask {p} is {fg.shape[1]}x{fg.shape[0]}, but the other mask of the "
                            f"same image is {out.shape[1]}x{out.shape[0]}; fix the source files")
        out = fg if out is None else (out | fg)
    assert out is not None
    return out.astype(np.uint8)


def drishti_labels(paths: Sequence[Path]) -> np.ndarray:
    """[disc soft map, cup soft map] → 0 background, 1 rim, 2 cup (≥ 0.5 of the experts)."""
    disc, cup = (read_mask_raw(p) for p in paths)
    scale = 255.0 if max(disc.max(), cup.max()) > 1 else 1.0
    d, c = disc / scale >= 0.5 - 1e-6, cup / scale >= 0.5 - 1e-6
    return np.where(c, 2, np.where(d, 1, 0)).astype(np.uint8)


def _label_fn(num_classes: int) -> MaskFn:
    def fn(paths: Sequence[Path]) -> np.ndarray:
        return mask_to_labels(read_mask_raw(paths[0]), num_classes, paths[0])
    return fn


def _infer_k(paths: Sequence[Path]) -> int:
    values: set[int] = set()
    for p in paths:
        values |= set(int(v) for v in np.unique(read_mask_raw(p)))
    if values <= {0, 1} or values <= {0, 255} or len(values) > 40 or max(values) >= 32:
        return 2
    return max(values) + 1


def _auto_plan(items: list[Item]) -> Plan:
    """Binary (union at 127) when masks look binary, else label ids 0..max."""
    k = _infer_k([m for it in items for m in it.masks])
    return Plan(items, binary_union if k == 2 else _label_fn(k), k)


# ------------------------------------------------------------------------------ writing

def _images_under(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and _ext(p) in IMAGE_EXTS
                  and not p.name.startswith("."))


def _check_volumes(src: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file() and _ext(p) in (".nii", ".nii.gz", ".mha", ".nrrd", ".dcm"):
            raise DataError(f"{p}: {_ext(p)} volumes are not supported; only 2D PNG/TIF datasets "
                            f"can be imported. Export 2D slices as PNG first")


def write_plan(plan: Plan, dest: str | Path, overwrite: bool = False, src: str | Path | None = None) -> Path:
    """Validate every pair and write the folder atomically; returns ``dest``. ``dest`` follows
    :mod:`scarce.utils.paths` (new, empty or an earlier import; never ``src`` or around it)."""
    from scarce.utils.paths import check_output_folder

    check_output_folder(dest, [src], overwrite=overwrite, what="destination folder", command=IMPORT)
    if not plan.items:
        raise DataError("no image/mask pairs were found in the source folder; check the path and "
                        "the importer name (see scarce.data.importers for the expected layouts)")
    seen: dict[str, Path] = {}
    for it in plan.items:
        if it.stem in seen:
            raise DataError(f"two source images map to the stem {it.stem!r}: {seen[it.stem]} and "
                            f"{it.image}; remove one")
        seen[it.stem] = it.image
    binary = plan.num_classes == 2
    target = Path(dest).expanduser()
    if overwrite and target.is_dir():  # replaced as a whole: only when it holds an earlier import
        foreign = sorted(e.name for e in target.iterdir() if e.name not in IMPORT_ENTRIES)
        if foreign:
            raise DataError(f"{target} holds files an import does not write ({', '.join(foreign[:3])}); "
                            f"overwrite only replaces an earlier import (images/, masks/, split.csv): "
                            f"move them or choose another folder")
    with atomic_dir(dest, overwrite=overwrite, command=IMPORT) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for it in plan.items:
            img = read_image_pil(it.image, 3)  # decodes (validates) the image
            labels = plan.mask_fn(it.masks)
            if labels.shape != (img.height, img.width):
                raise DataError(f"mask {it.masks[0]} is {labels.shape[1]}x{labels.shape[0]} but "
                                f"image {it.image} is {img.width}x{img.height}; fix the source")
            ext = _ext(it.image)
            if ext in IMAGE_EXTS:
                shutil.copyfile(it.image, tmp / "images" / f"{it.stem}{ext}")
            else:  # pragma: no cover - all collected images have supported extensions
                img.save(tmp / "images" / f"{it.stem}.png")
            out = labels * 255 if binary else labels
            Image.fromarray(out.astype(np.uint8)).save(tmp / "masks" / f"{it.stem}.png")
        if any(it.split for it in plan.items):
            rows = [f"{it.stem},{it.split or 'train'}" for it in sorted(plan.items,
                                                                         key=lambda i: i.stem)]
            (tmp / "split.csv").write_text("stem,split\n" + "\n".join(rows) + "\n")
    if plan.skipped:
        warnings.warn(f"{len(plan.skipped)} source images had no mask and were skipped "
                      f"(e.g. {plan.skipped[0]})", stacklevel=3)
    return Path(dest)


# ------------------------------------------------------------------------------ importers

def _split_from_path(path: Path) -> str | None:
    for part in reversed([p.lower() for p in path.parts]):
        if "train" in part:
            return "train"
        if "valid" in part or part in ("val",):
            return "val"
        if "test" in part:
            return "test"
    return None


@IMPORTERS.register("isic")
def _isic(src: Path) -> Plan:
    """ISIC 2016-2018: ``*/ISIC_x.jpg`` + ``*/ISIC_x_segmentation.png`` (any sub-folders);
    split from folder names (Training → train, Validation → val, Test → test)."""
    files = _images_under(src)
    masks = {p.stem[: -len("_segmentation")]: p for p in files if p.stem.endswith("_segmentation")}
    items, skipped = [], []
    for p in files:
        if p.stem.endswith(("_segmentation", "_superpixels")):
            continue
        if p.stem in masks:
            items.append(Item(p.stem, p, [masks[p.stem]], _split_from_path(p.relative_to(src))))
        else:
            skipped.append(p.name)
    if items and len({it.split for it in items}) == 1:
        for it in items:  # one folder only: no split information
            it.split = None
    return Plan(items, binary_union, 2, skipped)


_BUSI = re.compile(r"^(benign|malignant|normal) \((\d+)\)(_mask(?:_\d+)?)?$", re.IGNORECASE)


@IMPORTERS.register("busi")
def _busi(src: Path) -> Plan:
    """BUSI: ``<class> (N).png`` + ``<class> (N)_mask[_k].png`` anywhere under ``src``; masks of
    one image merged by union; stems ``<class>_NNN``."""
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    for p in _images_under(src):
        m = _BUSI.match(p.stem)
        if not m:
            continue
        stem = f"{m.group(1).lower()}_{int(m.group(2)):03d}"
        if m.group(3):
            masks.setdefault(stem, []).append(p)
        else:
            images[stem] = p
    items = [Item(s, images[s], sorted(masks[s])) for s in sorted(images) if s in masks]
    return Plan(items, binary_union, 2, [images[s].name for s in images if s not in masks])


@IMPORTERS.register("montgomery")
def _montgomery(src: Path) -> Plan:
    """Montgomery CXR: images (e.g. ``CXR_png/``) + ``ManualMask/leftMask`` and ``rightMask``
    (merged by union), or an already merged ``masks/`` folder (``<stem>[_mask].png``)."""
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    for p in _images_under(src):
        parent = p.parent.name.lower()
        if parent in ("leftmask", "rightmask", "masks", "mask", "manualmask"):
            stem = p.stem[:-5] if p.stem.endswith("_mask") else p.stem
            masks.setdefault(stem, []).append(p)
        else:
            images[p.stem] = p
    items = [Item(s, images[s], sorted(masks[s])) for s in sorted(images) if s in masks]
    return Plan(items, binary_union, 2, [images[s].name for s in images if s not in masks])


def _find_dir(src: Path, names: Sequence[str]) -> Path:
    low = {n.lower() for n in names}
    for d in [src, *sorted(p for p in src.rglob("*") if p.is_dir())]:
        if d.name.lower() in low and d != src:
            return d
    raise DataError(f"{src} has no folder named {' or '.join(names)}; is this the right layout?")


def _pair_dirs(img_dir: Path, mask_dir: Path, stem_fn: Callable[[str], str] = str) -> Plan:
    masks = {}
    for p in _images_under(mask_dir):
        s = p.stem
        for suf in ("_mask", "_segmentation"):
            if s.endswith(suf):
                s = s[: -len(suf)]
        masks[s] = p
    items, skipped = [], []
    for p in _images_under(img_dir):
        if p.stem in masks:
            items.append(Item(stem_fn(p.stem), p, [masks[p.stem]]))
        else:
            skipped.append(p.name)
    return Plan(items, binary_union, 2, skipped)


@IMPORTERS.register("kvasir")
def _kvasir(src: Path) -> Plan:
    """Kvasir-SEG: ``images/<id>.jpg`` + ``masks/<id>.jpg`` (JPEG masks binarised at 127);
    optional ``train.txt``/``val.txt`` (one id per line) → split.csv."""
    plan = _pair_dirs(_find_dir(src, ["images"]), _find_dir(src, ["masks"]))
    split: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for f in src.rglob(f"{name}.txt"):
            split.update({ln.strip(): name for ln in f.read_text().splitlines() if ln.strip()})
    if split:
        for it in plan.items:
            it.split = split.get(it.stem, "train")
    return plan


@IMPORTERS.register("ph2")
def _ph2(src: Path) -> Plan:
    """PH2: ``IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` + ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``."""
    items, skipped = [], []
    for p in _images_under(src):
        if not p.parent.name.endswith("_Dermoscopic_Image"):
            continue
        lesion_dir = p.parent.parent / f"{p.stem}_lesion"
        found = sorted(lesion_dir.glob(f"{p.stem}_lesion.*")) if lesion_dir.is_dir() else []
        found = [f for f in found if _ext(f) in IMAGE_EXTS]
        if found:
            items.append(Item(p.stem, p, [found[0]]))
        else:
            skipped.append(p.name)
    return Plan(items, binary_union, 2, skipped)


@IMPORTERS.register("cvc")
def _cvc(src: Path) -> Plan:
    """CVC-ClinicDB / ColonDB: ``Original/N.png|tif`` + ``Ground Truth/N.png|tif``; numeric stems
    zero-padded to 3 digits."""
    img_dir = _find_dir(src, ["Original", "images"])
    mask_dir = _find_dir(src, ["Ground Truth", "GroundTruth", "Ground_Truth", "masks"])
    return _pair_dirs(img_dir, mask_dir, lambda s: f"{int(s):03d}" if s.isdigit() else s)


@IMPORTERS.register("drishti")
def _drishti(src: Path) -> Plan:
    """Drishti-GS1: ``{Training,Test}/Images/[ALL/]drishtiGS_NNN.png`` + ``GT/drishtiGS_NNN/SoftMap/
    *_ODsegSoftmap.png``/``*_cupsegSoftmap.png`` → labels 0/1 (rim)/2 (cup) at ≥ 0.5."""
    soft: dict[tuple[str, str], Path] = {}
    images: list[Path] = []
    for p in _images_under(src):
        m = re.match(r"^(drishtiGS_\d+)_(ODseg|cupseg)Softmap$", p.stem, re.IGNORECASE)
        if m:
            soft[(m.group(1), m.group(2).lower())] = p
        elif re.match(r"^drishtiGS_\d+$", p.stem) and "gt" not in [q.lower() for q in p.parts]:
            images.append(p)
    items, skipped = [], []
    for p in images:
        d, c = soft.get((p.stem, "odseg")), soft.get((p.stem, "cupseg"))
        if d and c:
            items.append(Item(p.stem, p, [d, c], _split_from_path(p.relative_to(src))))
        else:
            skipped.append(p.name)
    return Plan(items, drishti_labels, 3, skipped)


@IMPORTERS.register("generic")
def _generic(src: Path, num_classes: int | None = None) -> Plan:
    """Any ``images/`` + ``masks/`` folder (mask names as :func:`scan_folder` accepts): binary
    masks (incl. JPEG) binarised at 127; ``num_classes`` > 2 keeps label ids. Keeps split.csv."""
    index = scan_folder(src)
    items = [Item(s, index.images[s], [index.masks[s]], index.splits.get(s)) for s in index.stems]
    k = num_classes or _infer_k([it.masks[0] for it in items])
    return Plan(items, binary_union if k == 2 else _label_fn(k), k)


def import_dataset(name: str, src: str | Path, dest: str | Path, overwrite: bool = False,
                   num_classes: int | None = None, **options: Any) -> Path:
    """Convert the download at ``src`` (layout ``name``: isic, busi, montgomery, kvasir, ph2, cvc,
    drishti, generic — or a registered dataset name mapping to one) into ``dest``.

    Multi-domain layouts (:mod:`scarce.data.multidomain`): ``fundus_dofe`` / ``prostate_saml``
    write one dataset folder per domain inside ``dest``; ``fundus_domain<N>`` / ``prostate_<site>``
    write that domain into ``dest``; ``options`` (prostate: ``empty_fraction``,
    ``test_fraction``, ``seed``) go to them.

    Returns ``dest``. Raises DataError for a missing source, no pairs found, bad masks, or an
    existing non-empty ``dest`` (unless ``overwrite``, which replaces only an earlier import).
    """
    if is_multidomain(str(name)):
        import_multidomain(str(name), src, dest, overwrite, **options)
        return Path(dest).expanduser()
    reject_options(options, name)
    key = ALIASES.get(str(name).lower(), str(name).lower())
    fn = IMPORTERS.get(key)
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist")
    _check_volumes(src)
    plan = fn(src, num_classes) if key == "generic" else fn(src)
    return write_plan(plan, dest, overwrite, src)


# ------------------------------------------------------------------------------ nnU-Net / MONAI

def _nnunet_labels(ds: dict, where: Path) -> int:
    labels = ds.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{where} has no 'labels' mapping; expected e.g. "
                        f'{{"background": 0, "lesion": 1}}')
    return len(labels)


def import_nnunet(src_dataset_dir: str | Path, dest: str | Path, overwrite: bool = False) -> Path:
    """Import a 2D nnU-Net raw dataset (``imagesTr/<case>_0000.png``, ``labelsTr/<case>.png``,
    optional ``imagesTs``/``labelsTs`` → split ``test``, ``dataset.json``). Only 2D PNG/TIF/BMP/JPG
    is supported; ``.nii.gz`` raises DataError."""
    src = Path(src_dataset_dir).expanduser()
    js = src / "dataset.json"
    if not js.is_file():
        raise DataError(f"{src} has no dataset.json; is it an nnU-Net raw dataset folder "
                        f"(Dataset<ID>_<Name>)?")
    try:
        ds = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{js} is not valid JSON: {e}") from None
    ending = str(ds.get("file_ending", ".png"))
    if ending.lower() in VOLUME_EXTS or ending.lower().endswith(".nii.gz"):
        raise DataError(f"{js}: file_ending {ending!r} — only 2D PNG/TIF nnU-Net datasets are "
                        f"imported; scarce reads 3D volumes (.nii.gz) from a dataset folder instead: "
                        f"imagesTr/<case>_0000.nii.gz as images/<case>.nii.gz, labelsTr/ as masks/ "
                        f"(docs/formats.md)")
    _check_volumes(src)
    k = _nnunet_labels(ds, js)
    items: list[Item] = []
    for img_sub, lab_sub, split in (("imagesTr", "labelsTr", "train"), ("imagesTs", "labelsTs", "test")):
        img_dir, lab_dir = src / img_sub, src / lab_sub
        if not img_dir.is_dir():
            if img_sub == "imagesTr":
                raise DataError(f"{src} has no imagesTr/ folder")
            continue
        for p in sorted(img_dir.glob(f"*_0000{ending}")):
            case = p.name[: -len(f"_0000{ending}")]
            if (img_dir / f"{case}_0001{ending}").exists():
                raise DataError(f"{img_dir / f'{case}_0001{ending}'}: multi-file channels are not "
                                f"supported; store RGB as one PNG (_0000) or use one channel")
            lab = lab_dir / f"{case}{ending}"
            if lab.is_file():
                items.append(Item(case, p, [lab], split))
            elif split == "train":
                raise DataError(f"training case {p.name} has no label {lab}; add it or remove "
                                f"the image")
    # nnU-Net labels are label ids (binary 0/1): anything else is an error, not a threshold
    return write_plan(Plan(items, _label_fn(k), k), dest, overwrite, src)


def import_decathlon_json(datalist_json: str | Path, dest: str | Path,
                          base_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Import a MONAI datalist (``{"training": [{"image": .., "label": ..}], "validation": [...],
    "test": [...]}``; paths relative to ``base_dir``, default the JSON's folder). Sections map
    to splits train/val/test; entries without a label are skipped. 2D images only."""
    js = Path(datalist_json).expanduser()
    try:
        data = json.loads(js.read_text())
    except FileNotFoundError:
        raise DataError(f"datalist {js} does not exist") from None
    except json.JSONDecodeError as e:
        raise DataError(f"datalist {js} is not valid JSON: {e}") from None
    base = Path(base_dir).expanduser() if base_dir else js.parent
    items: list[Item] = []
    for section, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise DataError(f"{js}: {section!r} must be a list of {{'image': .., 'label': ..}}")
        for n, e in enumerate(entries):
            if isinstance(e, str) or "label" not in e:
                continue
            img, lab = e.get("image"), e.get("label")
            if not isinstance(img, str) or not isinstance(lab, str):
                raise DataError(f"{js}: {section}[{n}] needs string 'image' and 'label' paths "
                                f"(multi-channel lists are not supported)")
            ip, lp = base / img, base / lab
            for p in (ip, lp):
                if _ext(p) in VOLUME_EXTS:
                    raise DataError(f"{p}: {_ext(p)} volumes are not supported; only 2D PNG/TIF")
                if not p.is_file():
                    raise DataError(f"{js}: {section}[{n}] refers to {p}, which does not exist; "
                                    f"check base_dir")
            items.append(Item(ip.name[: -len(_ext(ip))], ip, [lp], split))
    if not items:
        raise DataError(f"{js} lists no labelled entries under 'training'/'validation'/'test'")
    return write_plan(_auto_plan(items), dest, overwrite, base)


NNUNET_EXPORT_ENTRIES = frozenset({"dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs", ".scarce"})
EXPORT_NNUNET = "scarce data export-nnunet"


def export_nnunet(src_folder: str | Path, dest: str | Path, dataset_id: int, name: str | None = None,
                  overwrite: bool = False) -> Path:
    """Write a folder (or registered dataset path) as nnU-Net raw v2:
    ``dest/DatasetNNN_<name>/imagesTr/<case>_0000.png``, ``labelsTr/<case>.png`` (label ids),
    ``imagesTs``/``labelsTs`` for the official test split, and ``dataset.json`` (channel_names,
    labels, numTraining, file_ending). ``name`` defaults to the source folder's name. Returns
    the dataset folder. An existing non-empty dataset folder is refused unless ``overwrite`` and it
    holds an earlier export (then it is replaced once the new one is complete); the dataset
    folder may not be, lie inside or contain the source folder."""
    from scarce.data.registry import get_info
    from scarce.utils.paths import check_output_folder

    src = Path(src_folder).expanduser()
    info = get_info(str(src))
    index = scan_folder(src)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_\-]", "_", src.resolve().name) or "dataset"
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise DataError(f"nnU-Net dataset name {name!r} may only hold letters, digits, _ and -")
    out = Path(dest).expanduser() / f"Dataset{int(dataset_id):03d}_{name}"
    check_output_folder(out, [src], overwrite=overwrite, what="nnU-Net dataset folder", command=EXPORT_NNUNET)
    if overwrite and out.is_dir():  # replaced as a whole: only when it is an earlier export
        foreign = sorted(e.name for e in out.iterdir() if e.name not in NNUNET_EXPORT_ENTRIES)
        if foreign:
            raise DataError(f"{out} holds files an nnU-Net export does not write ({', '.join(foreign[:3])}); "
                            f"--overwrite only replaces an earlier export: choose another --id/--name or folder")
    test = set(index.with_split(info.test_split)) if info.test_split else set()
    n_train = 0
    with atomic_dir(out, overwrite=overwrite, command=EXPORT_NNUNET) as tmp:
        for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if test else ()):
            (tmp / sub).mkdir()
        for stem in index.stems:
            img = read_image_pil(index.images[stem], info.channels)
            labels = mask_to_labels(read_mask_raw(index.masks[stem]), info.num_classes,
                                    index.masks[stem])
            if labels.shape != (img.height, img.width):
                raise DataError(f"mask {index.masks[stem].name} and image "
                                f"{index.images[stem].name} differ in size")
            case = re.sub(r"[^A-Za-z0-9_\-]", "_", stem)
            ts = "Ts" if stem in test else "Tr"
            n_train += ts == "Tr"
            img.save(tmp / f"images{ts}" / f"{case}_0000.png")
            Image.fromarray(labels).save(tmp / f"labels{ts}" / f"{case}.png")
        channel_names = {"0": "R", "1": "G", "2": "B"} if info.channels == 3 else {"0": "gray"}
        atomic_write_json(tmp / "dataset.json", {
            "name": name,
            "description": info.description or f"exported by scarce from {src}",
            "channel_names": channel_names,
            "labels": {c: i for i, c in enumerate(info.classes)},
            "numTraining": n_train,
            "file_ending": ".png",
        })
    return out
