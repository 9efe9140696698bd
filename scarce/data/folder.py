"""Parse and validate a dataset folder: ``images/`` + ``masks/`` (+ optional ``split.csv``).

Why: every dataset (registered or the user's own) reaches the trainer through this one format,
so all input problems are caught here, before any training or output, each with ONE
:class:`DataError` naming the file and the fix.

Layout::

    folder/images/<stem>.(png|jpg|jpeg|bmp|tif|tiff)
    folder/masks/<stem>.png | <stem>_mask.png | <stem>_segmentation.png   (also .jpg/.bmp/.tif)
    (extensions match in any case: .PNG, .Tif, ...)
    folder/split.csv        (optional; header ``stem,split``)
    folder/images/<stem>.nii.gz | <stem>.nii | <stem>.dcm | <stem>/ (a DICOM series)   volumes,
        with masks/<stem>.nii.gz (…_mask, …_segmentation; .nii, .dcm, a series folder): used as 2D
        slices ``<stem>#z<k>`` (:mod:`scarce.data.volumes`, docs/formats.md)

Normalisation when decoding (documented behaviour):
* EXIF orientation is applied to images AND masks (``PIL.ImageOps.exif_transpose``).
* RGBA / LA → the alpha channel is dropped (RGB / L); palette images → RGB.
* 16-bit or 32-bit images → scaled to 8 bits by the image's own min..max range.
* Gray images are replicated to 3 channels for RGB datasets; RGB → luma (PIL ``L``) for gray ones.
  An unregistered folder is gray (1 channel) only when all its images are; a mix of gray and
  colour images is read as RGB, with one warning (:func:`infer_channels`).
* Binary masks may be 0/1 or 0/255 (→ label ids 0/1); multi-class masks hold label ids 0..K-1.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from scarce.data.types import DataError

if TYPE_CHECKING:
    from scarce.data.volumes import VolumeOptions

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = ("", "_mask", "_segmentation")
SCRIBBLE_DIR = "scribbles"
"""A dataset's folder of weak labels (format: :mod:`scarce.data.scribbles`)."""
VOLUME_EXTS = (".nii", ".nii.gz", ".dcm", ".mha", ".mhd", ".nrrd", ".npy", ".npz")
LOSSY_HINT = ("looks like a lossy (JPEG) mask; re-export it as PNG or binarise it with threshold "
              "127 (`scarce data import generic SRC DEST` does this)")


@dataclass
class FolderIndex:
    """The matched pairs of a folder, sorted by stem."""

    root: Path
    stems: list[str]
    images: dict[str, Path]
    masks: dict[str, Path]
    splits: dict[str, str] = field(default_factory=dict)
    """stem → split name from ``split.csv`` (empty when there is none)."""
    unlabelled: dict[str, Path] = field(default_factory=dict)
    """Images without a mask (only with ``scan_folder(..., allow_unlabelled=True)``, or in a
    folder with ``scribbles/``): usable as unlabelled images by semi-supervised methods, and by
    the weak methods when they have a scribble; never as labelled or test pairs."""
    scribbles: dict[str, Path] = field(default_factory=dict)
    """stem → ``scribbles/<stem>.png`` of every image (with or without a mask) that has one; the
    file's pixels are read and checked where they are used (:mod:`scarce.data.scribbles`)."""
    groups: dict[str, str] = field(default_factory=dict)
    """Slice stem → its volume's stem, for every slice of a NIfTI/DICOM volume (empty for a
    folder of 2D images): splits keep the slices of one volume together."""
    unsupported: list[Path] = field(default_factory=list)
    """Files (and folders) in ``images/``/``masks/`` that are neither images nor volumes scarce
    reads: skipped, and named in one warning."""

    def __len__(self) -> int:
        return len(self.stems)

    def with_split(self, name: str) -> list[str]:
        return [s for s in self.stems if self.splits.get(s) == name]


def _ext(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def scan_folder(folder: str | Path, allow_unlabelled: bool = False,
                volume_options: "VolumeOptions | None" = None) -> FolderIndex:
    """Match ``images/`` and ``masks/`` by stem and read ``split.csv``; no pixel is decoded.

    Raises :class:`DataError` for a missing/empty folder, images without masks (naming the
    expected mask file names), masks without images, duplicate stems, a volume whose mask lies on
    another voxel grid and a bad ``split.csv``. With ``allow_unlabelled`` (semi-supervised runs) an image without a mask is
    not an error: it goes to ``FolderIndex.unlabelled`` (a user's labelled pairs plus a pile of
    unlabelled images in one ``images/`` folder).

    NIfTI (``.nii``, ``.nii.gz``) and DICOM (a series sub-folder, a ``.dcm`` file) volumes in
    ``images/`` (masks: a volume of the same stem in ``masks/``, on the image's voxel grid) become
    2D slices ``<stem>#z<k>`` along ``volume_options.slice_axis`` (default: each volume's
    through-plane axis), with ``window``/``normalise`` recorded in the slice paths
    (:mod:`scarce.data.volumes`); ``FolderIndex.groups`` maps each slice to its volume, and a
    ``split.csv`` row names a volume. Other files are listed in ``FolderIndex.unsupported`` and
    named in one warning, never skipped silently.

    A folder with a ``scribbles/`` sub-folder is one being annotated (``scarce annotate``): masks
    are optional there (images without one go to ``unlabelled``), and ``FolderIndex.scribbles``
    lists the scribble files of its images. Wherever images without masks are accepted, a
    missing ``masks/`` folder means that no image has one.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} does not exist; check the path or "
                        f"--data-root")
    img_dir, mask_dir, scribble_dir = root / "images", root / "masks", root / SCRIBBLE_DIR
    annotated = scribble_dir.is_dir()
    allow_unlabelled = allow_unlabelled or annotated
    for sub in (img_dir, mask_dir):
        if not sub.is_dir() and not (allow_unlabelled and sub is mask_dir):
            raise DataError(f"{str(root)!r} has no {sub.name}/ subfolder; a dataset folder needs "
                            f"images/ and masks/ (matched by file stem), or images/ and scribbles/, "
                            f"or convert it with `scarce data import`")
    images: dict[str, Path] = {}
    volumes, unsupported = _volume_files(img_dir, "image")  # NIfTI / DICOM: sliced below
    for p in _files(img_dir):
        ext = _ext(p)
        if ext not in IMAGE_EXTS:
            continue
        stem = p.name[: -len(ext)]
        if stem in images:
            raise DataError(f"two images share the stem {stem!r}: {images[stem].name} and "
                            f"{p.name} in {img_dir}; rename or remove one")
        if stem in volumes:
            raise DataError(f"two images share the stem {stem!r}: {volumes[stem].name} and "
                            f"{p.name} in {img_dir}; rename or remove one")
        images[stem] = p
    if not images and not volumes:
        raise DataError(f"{img_dir} holds no images ({', '.join(IMAGE_EXTS)}) or volumes (NIfTI, DICOM); "
                        f"put the images there or check the path")
    # keyed by the name with a lower-case extension, so masks/x.PNG matches like x.png
    mask_files: dict[str, list[Path]] = {}
    mask_volumes, other = _volume_files(mask_dir, "mask") if mask_dir.is_dir() else ({}, [])
    unsupported += other
    for p in (_files(mask_dir) if mask_dir.is_dir() else []):
        ext = _ext(p)
        if ext in MASK_EXTS:
            mask_files.setdefault(p.name[: -len(ext)] + ext, []).append(p)
    masks: dict[str, Path] = {}
    claimed: set[str] = set()
    for stem, img in images.items():
        found = [f for n in (stem + suf + ext for suf in MASK_SUFFIXES for ext in MASK_EXTS)
                 for f in mask_files.get(n, ())]
        if not found and allow_unlabelled:
            continue
        if not found:
            expected = ", ".join(f"{stem}{suf}.png" for suf in MASK_SUFFIXES)
            raise DataError(f"image {img.name} has no mask in {mask_dir}; expected one of "
                            f"{expected} (or .jpg/.bmp/.tif, any case); add the mask or remove "
                            f"the image")
        if len(found) > 1:
            raise DataError(f"image {img.name} matches several masks "
                            f"({', '.join(f.name for f in found)}) in {mask_dir}; keep only one")
        masks[stem] = found[0]
        claimed.add(found[0].name)
    groups: dict[str, str] = {}
    if volumes:  # each volume → its slices, as pairs of slice paths (scarce.data.volumes)
        claimed |= _add_volume_slices(volumes, mask_volumes, mask_dir, allow_unlabelled, volume_options,
                                      images, masks, groups)
    orphans = sorted(f.name for fs in mask_files.values() for f in fs if f.name not in claimed)
    orphans += sorted(p.name for p in mask_volumes.values() if p.name not in claimed)
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise DataError(f"mask {orphans[0]}{more} in {mask_dir} has no image in {img_dir} with the "
                        f"same stem; add the image or remove the mask")
    stems = sorted(masks)
    unlabelled = {s: images[s] for s in sorted(images) if s not in masks}
    splits = read_split_csv(root / "split.csv", set(images) - set(groups) | set(groups.values()))
    splits.update({s: splits[v] for s, v in groups.items() if v in splits})  # a volume's row covers its slices
    if unsupported:
        _warn_unsupported(root, unsupported)
    scribbles = {p.stem: p for p in (_files(scribble_dir) if annotated else [])
                 if p.suffix.lower() == ".png" and p.stem in images}
    return FolderIndex(root=root, stems=stems, images={s: images[s] for s in stems}, masks=masks,
                       splits=splits, unlabelled=unlabelled, scribbles=dict(sorted(scribbles.items())),
                       groups=groups, unsupported=unsupported)


def _volume_files(folder: Path, what: str) -> tuple[dict[str, Path], list[Path]]:
    """(volume stem → NIfTI/DICOM file or DICOM series folder, other entries that are neither a 2D
    image nor a volume) directly in ``folder``; ``what`` is ``image`` or ``mask``."""
    from scarce.data.volumes import is_series_folder, is_volume_file, volume_stem

    found: dict[str, Path] = {}
    other: list[Path] = []
    known = IMAGE_EXTS if what == "image" else MASK_EXTS
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if not is_series_folder(p):
                other.append(p)
                continue
        elif _ext(p) in known:
            continue
        elif not is_volume_file(p):
            other.append(p)
            continue
        stem = volume_stem(p)
        if stem in found:
            raise DataError(f"two {what}s share the stem {stem!r}: {found[stem].name} and {p.name} in {folder}; "
                            f"rename or remove one")
        found[stem] = p
    return found, other


def _add_volume_slices(volumes: dict[str, Path], mask_volumes: dict[str, Path], mask_dir: Path,
                       allow_unlabelled: bool, options: "VolumeOptions | None", images: dict[str, Path],
                       masks: dict[str, Path], groups: dict[str, str]) -> set[str]:
    """Add the slices of every image volume (and of its mask volume) to ``images``/``masks``/
    ``groups``; returns the names of the mask volumes used. No pixel is decoded (headers only)."""
    from scarce.data.volumes import volume_entry

    claimed: set[str] = set()
    for stem, vol in volumes.items():
        found = [mask_volumes[n] for n in (stem + suf for suf in MASK_SUFFIXES) if n in mask_volumes]
        if not found and not allow_unlabelled:
            expected = ", ".join(f"{stem}{suf}.nii.gz" for suf in MASK_SUFFIXES)
            raise DataError(f"image volume {vol.name} has no mask in {mask_dir}; expected one of {expected} "
                            f"(or .nii, a .dcm file or a DICOM series folder of that name); add the mask or "
                            f"remove the volume")
        if len(found) > 1:
            raise DataError(f"image volume {vol.name} matches several masks ({', '.join(f.name for f in found)}) "
                            f"in {mask_dir}; keep only one")
        mask = found[0] if found else None
        entry = volume_entry(stem, vol, mask, options)
        for i, s in enumerate(entry.stems):
            if s in images:
                raise DataError(f"image {images[s].name} has the name of a slice of volume {vol.name} ({s!r}); "
                                f"rename one")
            images[s] = entry.images[i]
            groups[s] = stem
            if mask is not None:
                masks[s] = entry.masks[i]
        if mask is not None:
            claimed.add(mask.name)
    return claimed


_WARNED: set[tuple] = set()
"""Folder states already warned about by :func:`_warn_unsupported` (a run scans a folder several times)."""


def _warn_unsupported(root: Path, entries: list[Path]) -> None:
    """One warning naming (up to 3) and counting what ``images/``/``masks/`` hold that scarce
    skips: once per process and folder state."""
    key = (str(root.resolve()), tuple(str(p) for p in entries))
    if key in _WARNED:
        return
    _WARNED.add(key)
    names = ", ".join(f"{p.parent.name}/{p.name}" for p in entries[:3]) + (", ..." if len(entries) > 3 else "")
    warnings.warn(f"{root}: {len(entries)} file(s) are neither images nor volumes scarce reads ({names}), skipped: "
                  f"scarce reads {', '.join(IMAGE_EXTS)}, NIfTI (.nii, .nii.gz) and DICOM (.dcm files, series "
                  f"folders); move the others out of images/ and masks/ to silence this")


def read_split_csv(path: Path, known: set[str]) -> dict[str, str]:
    """``stem,split`` rows → dict; unknown stems or a bad header raise :class:`DataError`."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = [r for r in reader if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}; it must be a CSV file with header stem,split")
    if "stem" not in header or "split" not in header:
        raise DataError(f"{path} has header {','.join(header) or '(empty)'}; expected the header "
                        f"'stem,split' (one row per image stem, e.g. ISIC_0000000,train)")
    i_stem, i_split = header.index("stem"), header.index("split")
    out: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):
        if len(row) <= max(i_stem, i_split):
            raise DataError(f"{path} line {n} has {len(row)} fields; expected stem,split")
        stem, split = row[i_stem].strip(), row[i_split].strip()
        if stem not in known:
            raise DataError(f"{path} line {n} names stem {stem!r}, which has no image in "
                            f"{path.parent / 'images'}; fix or delete that row")
        if not split:
            raise DataError(f"{path} line {n}: stem {stem!r} has an empty split; write e.g. train")
        out[stem] = split
    return out


# ------------------------------------------------------------------------------- decoding

def _open(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return ImageOps.exif_transpose(img) or img
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist (was it moved while loading?)") from None
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        raise DataError(f"cannot read {what} {path} ({type(e).__name__}: {e}); the file is corrupt "
                        f"or not an image: re-export it or remove the pair") from None


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Decode an image to an H×W×C uint8 array (C = ``channels``, 1 or 3).

    Applies the normalisations listed in the module docstring (EXIF, alpha, 16-bit).
    """
    arr = np.asarray(read_image_pil(path, channels), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def list_images(folder: str | Path) -> list[Path]:
    """Image files (png/jpg/jpeg/bmp/tif) directly in ``folder``, sorted; DataError when none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = _files(folder)
    paths = [p for p in files if _ext(p) in IMAGE_EXTS]
    other = [p for p in files if _ext(p) not in IMAGE_EXTS and not p.name.startswith(".")]
    if not paths:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_EXTS)})"
                        + (f"; {_unsupported(other)}" if other else ""))
    if other:  # never skipped silently: a NIfTI volume among PNGs is named
        warnings.warn(f"{folder}: {_unsupported(other)}; the {len(paths)} image file(s) go on", stacklevel=2)
    return paths


def _is_slice(path: str | Path) -> bool:
    """True for a volume slice path (``<volume>#z<k>@<axis>``, :mod:`scarce.data.volumes`)."""
    if "#z" not in str(path):
        return False
    from scarce.data.volumes import is_slice

    return is_slice(path)


def list_inputs(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(2D image files, volumes) directly in ``folder``, sorted: what ``scarce predict`` reads.
    Volumes are NIfTI files, DICOM files and DICOM series sub-folders. Everything else is named
    and counted in one warning; DataError when there is neither an image nor a volume."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    volumes, other = _volume_files(folder, "image")
    paths = [p for p in _files(folder) if _ext(p) in IMAGE_EXTS]
    if not paths and not volumes:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_EXTS)}) or volumes (NIfTI, DICOM)"
                        + (f"; {len(other)} other file(s) ({', '.join(p.name for p in other[:3])})" if other else ""))
    if other:  # never skipped silently
        names = ", ".join(p.name for p in other[:3]) + (", ..." if len(other) > 3 else "")
        warnings.warn(f"{folder}: {len(other)} file(s) are neither images nor volumes scarce reads ({names}), "
                      f"skipped: scarce reads {', '.join(IMAGE_EXTS)}, NIfTI (.nii, .nii.gz) and DICOM (.dcm files, "
                      f"series folders); the other {len(paths) + len(volumes)} go on", stacklevel=2)
    return paths, sorted(volumes.values(), key=lambda p: p.name)


def _unsupported(other: list[Path]) -> str:
    """``"2 files are not images scarce reads (scan.nii.gz, notes.txt): ..."``: what is skipped and why."""
    vol = any(_ext(p) in VOLUME_EXTS for p in other)
    names = ", ".join(p.name for p in other[:3]) + (", ..." if len(other) > 3 else "")
    fix = ("volumes are read in dataset folders (images/ + masks/) and by `scarce predict`; here export 2D "
           "slices as PNG first" if vol else f"scarce reads {', '.join(IMAGE_EXTS)}")
    return f"{len(other)} file(s) are not images scarce reads ({names}), skipped: {fix}"


def read_image_pil(path: str | Path, channels: int = 3) -> Image.Image:
    """Like :func:`read_image` but returns a PIL image of mode ``RGB`` or ``L``. A volume slice
    path (:mod:`scarce.data.volumes`) gives its windowed / normalised uint8 slice."""
    if "#z" in str(path):
        from scarce.data.volumes import read_slice_image, slice_ref

        if slice_ref(path) is not None:
            return pil_8bit(read_slice_image(path), channels)
    return pil_8bit(_open(Path(path), "image"), channels)


def pil_8bit(img: Image.Image, channels: int = 3) -> Image.Image:
    """A decoded PIL image of any mode → mode ``L`` (``channels`` = 1) or ``RGB``, with the
    normalisations of the module docstring (16-bit scaled to 8, alpha dropped, palettes expanded):
    what :func:`read_image_pil` returns for a file holding that image."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        img = Image.fromarray(_to_8bit(arr[..., 0] if arr.ndim == 3 else arr), "L")
    elif mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1", "RGBX", "La", "RGBa"):
        img = img.convert("RGB" if mode not in ("LA", "La", "1") else "L")
    elif mode not in ("L", "RGB"):
        arr = np.asarray(img)
        if arr.dtype != np.uint8:  # e.g. 16-bit RGB TIFF
            arr = _to_8bit(arr)
        img = Image.fromarray(arr)
    want = "L" if channels == 1 else "RGB"
    return img if img.mode == want else img.convert(want)


def image_is_gray(path: Path) -> bool:
    """True when an image is single-channel (or RGB with identical channels; a volume slice)."""
    if _is_slice(path):
        return True
    img = _open(path, "image")
    if img.mode in ("L", "LA", "1", "I", "F") or img.mode.startswith("I;16"):
        return True
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img.convert("RGB").reduce(4) if min(img.size) >= 8 else img.convert("RGB"))
        return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())
    return False


def read_mask_raw(path: str | Path) -> np.ndarray:
    """Decode a mask file (or a mask volume's slice) to an H×W integer array of its stored values
    (no interpretation)."""
    if _is_slice(path):
        from scarce.data.volumes import read_slice_mask

        return read_slice_mask(path)
    path = Path(path)
    img = _open(path, "mask")
    if img.mode == "P":
        return np.asarray(img).astype(np.int64)  # palette index = label id
    if img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.int64)
    if img.mode == "F":
        arr = np.asarray(img)
        if not np.all(arr == np.round(arr)):
            raise DataError(f"mask {path} holds fractional values; masks need integer label ids "
                            f"(or 0/255); threshold it and save as 8-bit PNG")
        return arr.astype(np.int64)
    arr = np.asarray(img.convert("RGB") if img.mode not in ("RGB",) else img)
    if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        return arr[..., 0].astype(np.int64)
    raise DataError(f"mask {path} is a colour image with differing channels; masks must be "
                    f"single-channel label ids (0/255 or 0/1 for binary, 0..K-1 for K classes). "
                    f"Map each colour to a label id and save as 8-bit PNG")


def mask_to_labels(raw: np.ndarray, num_classes: int, path: str | Path) -> np.ndarray:
    """Validate stored mask values and convert them to uint8 label ids 0..K-1.

    Binary (K=2): values must be a subset of {0, 1} or of {0, 255}. Multi-class: values < K.
    """
    path = Path(path)
    values = np.unique(raw)
    if num_classes == 2:
        vs = set(int(v) for v in values)
        if vs <= {0, 1}:
            return raw.astype(np.uint8)
        if vs <= {0, 255}:
            return (raw > 0).astype(np.uint8)
    elif values.size and values.min() >= 0 and values.max() < num_classes:
        return raw.astype(np.uint8)
    bad = [int(v) for v in values if (v not in (0, 1, 255) if num_classes == 2
                                       else not 0 <= v < num_classes)]
    bad = bad or [int(v) for v in values]  # e.g. 0/1/255 mixed: show them all
    shown = ", ".join(str(v) for v in bad[:6]) + (", ..." if len(bad) > 6 else "")
    lossy = len(values) > num_classes + 1 or path.suffix.lower() in (".jpg", ".jpeg")
    top = int(values.max())
    if lossy:
        fix = f"it {LOSSY_HINT}"
    elif num_classes == 2 and top < 64:
        fix = (f"if it is a multi-class mask, set data.num_classes to {top + 1} (a registered "
               f"dataset name is binary: pass the folder path as data.dataset), else binarise it")
    elif num_classes == 2:
        fix = "binarise it to 0/255 and save it as 8-bit PNG"
    else:
        fix = f"use label ids 0..{num_classes - 1} or set data.num_classes to {top + 1}"
    raise DataError(f"mask {path} has values {shown}, neither binary (0/1 or 0/255) nor valid "
                    f"label ids (0..{num_classes - 1}); {fix}")


def read_pair(image_path: Path, mask_path: Path, num_classes: int, channels: int
              ) -> tuple[Image.Image, np.ndarray]:
    """Decode + validate one pair: (PIL image in RGB/L, H×W uint8 label ids)."""
    img = read_image_pil(image_path, channels)
    labels = mask_to_labels(read_mask_raw(mask_path), num_classes, mask_path)
    if labels.shape != (img.height, img.width):
        raise DataError(f"mask {mask_path.name} is {labels.shape[1]}x{labels.shape[0]} but image "
                        f"{image_path.name} is {img.width}x{img.height} (after EXIF rotation); "
                        f"resize the mask to the image size with nearest-neighbour interpolation")
    return img, labels


# ------------------------------------------------------------------------------- inference

def infer_num_classes(index: FolderIndex, max_files: int | None = None) -> int:
    """K for an unregistered folder: 2 when masks are 0/1 or 0/255, else max label id + 1
    (when masks hold small integer ids, at most 32 classes); lossy masks count as binary and
    fail validation later with a clear message. A folder without any mask takes K from its
    scribbles (largest class id + 1, 255 = unlabelled), so a scribbles-only folder needs no
    ``data.num_classes``.

    Warns (no extra decoding: the values are read here anyway) when the ids have gaps, e.g.
    0/1/5 → 6 classes of which 2..4 never occur (phantom classes distort the mean scores).
    """
    values: set[int] = set()
    first: dict[int, Path] = {}  # label id → first mask holding it (named in the warning)
    if not index.stems and index.scribbles:  # no mask at all (scribbles only): their class ids
        for path in list(index.scribbles.values())[:max_files]:
            values |= set(int(v) for v in np.unique(read_mask_raw(path))) - {255}
        return max(2, max(values, default=1) + 1) if max(values, default=1) < 32 else 2
    seen: set[str] = set()  # volumes already read (a mask volume's values: once, not per slice)
    for stem in index.stems[:max_files]:
        path = index.masks[stem]
        if stem in index.groups:
            from scarce.data.volumes import mask_values, slice_ref

            ref = slice_ref(path)
            if ref is None or str(ref.volume) in seen:
                continue
            seen.add(str(ref.volume))
            new, path = mask_values(path) - values, ref.volume
        else:
            new = set(int(v) for v in np.unique(read_mask_raw(path))) - values
        first.update((v, path) for v in new)
        values |= new
        if len(values) > 40:
            return 2
    if values <= {0, 1} or values <= {0, 255}:
        return 2
    top = max(values)
    if top < 32 and 255 not in values:
        k = max(top + 1, 2)
        _warn_label_gaps(index, values, first, k)
        return k
    return 2


def _warn_label_gaps(index: FolderIndex, values: set[int], first: dict[int, Path], k: int
                     ) -> None:
    missing = sorted(set(range(k)) - values)
    if not missing:
        return
    ids = sorted(values)
    top = ids[-1]
    remap = ", ".join(f"{v} → {i}" for i, v in enumerate(ids) if v != i)
    warnings.warn(
        f"masks in {index.root / 'masks'} hold label ids {', '.join(map(str, ids))} (e.g. "
        f"{first[top].name} holds {top}), so {k} classes are inferred, but "
        f"{'ids' if len(missing) > 1 else 'id'} {', '.join(map(str, missing))} never "
        f"{'occur' if len(missing) > 1 else 'occurs'}: "
        f"phantom classes distort the mean scores. Remap the ids to 0..{len(ids) - 1} "
        f"({remap}) and save the masks as 8-bit PNG, or set data.num_classes={k} if those "
        f"classes are real (that also silences this warning)", stacklevel=3)


GRAY_MODES = ("L", "LA", "La", "1", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")
"""PIL modes :func:`read_image_pil` reads as one channel (``L``)."""

_CHANNELS: dict[tuple, int] = {}
"""Memo of :func:`infer_channels` per folder state (paths, sizes, mtimes): one answer, one warning."""


def _header_mode(path: Path) -> str | None:
    """The stored PIL mode of an image, from its header only (None when it cannot be opened:
    decoding names the file later; ``L`` for a volume slice)."""
    if _is_slice(path):
        return "L"
    try:
        with Image.open(path) as img:
            return img.mode
    except Exception:
        return None


def infer_channels(index: FolderIndex) -> int:
    """Channels of an unregistered folder (which declares none): 1 when every image is
    grayscale, else 3. Stored modes are read from the file headers; RGB files whose channels are
    identical count as gray. A folder that mixes gray and colour images is read as RGB (gray ones
    replicated to 3 channels), with one warning naming how many are gray and a file of each kind;
    the first file alone never decides."""
    paths = sorted({**index.images, **index.unlabelled}.values(), key=lambda p: p.name)
    if not paths:
        return 3
    try:
        key = tuple((str(p), st.st_size, st.st_mtime_ns) for p in paths for st in [p.stat()])
    except OSError:
        key = None
    if key is not None and key in _CHANNELS:
        return _CHANNELS[key]
    modes = [(p, _header_mode(p)) for p in paths]
    gray = [p for p, m in modes if m in GRAY_MODES]
    colour = [p for p, m in modes if m is not None and m not in GRAY_MODES]
    if not colour:  # every readable file is gray (or none is readable: decoding names it)
        channels = 1 if gray else (1 if image_is_gray(paths[0]) else 3)
    else:  # decoded until the first really colourful file (usually the first one)
        real = next((p for p in colour if not image_is_gray(p)), None)
        channels = 3 if real is not None else 1
        if real is not None and gray:
            warnings.warn(f"{index.root / 'images'} mixes gray and colour images ({len(gray)} of {len(paths)} are "
                          f"gray, e.g. {gray[0].name}; colour e.g. {real.name}): all are read as RGB, the gray ones "
                          f"replicated to 3 channels; save them all in one mode to silence this", stacklevel=3)
    if key is not None:
        _CHANNELS[key] = channels
    return channels
