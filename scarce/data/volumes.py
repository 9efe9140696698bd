"""NIfTI and DICOM volumes as 2D slices: discovery, headers, one decode per volume, windowing.

Why 2D slices: every network, augmentation and metric of scarce works on 2D images, and a
labelled volume is dozens of labelled 2D images. A dataset folder may hold volumes in
``images/`` and ``masks/`` (NIfTI ``.nii``/``.nii.gz`` through nibabel; DICOM through pydicom: a
series sub-folder, a single ``.dcm`` file or a multi-frame file); :func:`scarce.data.folder.scan_folder`
turns each volume into slices named ``<volume stem>#z<k>`` (``k`` zero-padded to 3 digits: a
stable key that sorts in slice order), and everything above the folder format sees 2D pairs.

How a slice travels: its *path* is the volume's path with a suffix,
``images/case1.nii.gz#z007@2`` (slice 7 along array axis 2; ``;w=W:L`` / ``;n=zscore`` record the
intensity mapping, ``;o=RAS`` a mask's reorientation onto its image's grid), parsed back by
:func:`slice_ref`. The decoders (:func:`scarce.data.folder.read_image_pil`, ``read_mask_raw``),
the content hash (:func:`scarce.data.identity.file_digest`: the volume's bytes + axis + index) and
the decode cache (:mod:`scarce.data.cache`) understand such paths, so splits, caching, content
identity and evaluation need no second code path.

Decoded once: a volume is read and mapped to uint8 once per process (an LRU of the mapped
volumes, :data:`MEMO_BYTES`); each slice is a view into it, and the decode cache keeps the
resized slices as it keeps PNGs.

Intensities (the rest of scarce sees uint8 images, ×1/255 in the loader):

* ``data.window`` (CT, Hounsfield units): clip to [L − W/2, L + W/2], scale to [0, 1]
  (:data:`WINDOWS`: the presets' W/L).
* ``data.normalise`` (when no window is set; MR and anything else): ``volume`` — clip to the
  volume's own [0.5, 99.5] percentiles and rescale (one range for all slices of the volume, so
  relative brightness between slices survives); ``zscore`` — (x − mean) / std over the volume,
  clipped to ±3 SD, mapped to [0, 1]; ``minmax`` — the volume's min..max.

Optional packages: nibabel (``pip install nibabel``), pydicom (``pip install pydicom``) and, for
DICOM-SEG output, highdicom (``pip install highdicom``) are imported inside the functions that
need them.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from scarce.data.types import DataError
from scarce.errors import ConfigError

NIFTI_EXTS = (".nii", ".nii.gz")
DICOM_EXTS = (".dcm", ".dicom")
VOLUME_READ_EXTS = NIFTI_EXTS + DICOM_EXTS
"""File endings read as volumes (besides DICOM series folders and extension-less DICOM files)."""

WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "soft_tissue": (400.0, 50.0),
    "liver": (150.0, 30.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
}
"""CT window presets as (width W, level L) in Hounsfield units: Radiopaedia, "Windowing (CT)"
(https://radiopaedia.org/articles/windowing-ct): chest lungs W1500 L−600, mediastinum W350 L50,
abdominal soft tissues W400 L50, liver W150 L30, bone W1800 L400, brain W80 L40."""

NORMALISE_MODES = ("volume", "zscore", "minmax")
SLICE_AXES = ("auto", "axial", "coronal", "sagittal", "0", "1", "2")
EMPTY_SLICES = ("keep", "drop", "subsample:K")
PERCENTILES = (0.5, 99.5)
"""``data.normalise=volume``: the percentiles of the volume that become 0 and 1 (as nnU-Net's CT clip)."""
ZSCORE_CLIP = 3.0
"""``data.normalise=zscore``: standard deviations mapped to 0 and 1 (mean → 0.5)."""
MEMO_BYTES = 1 << 30
"""Bytes of mapped (uint8) volumes kept in memory; least recently used ones are dropped."""

NIBABEL_HINT = "reading NIfTI volumes needs nibabel: pip install nibabel"
PYDICOM_HINT = "reading DICOM needs pydicom: pip install pydicom"


# ------------------------------------------------------------------------------------ options

def parse_window(value: Any) -> tuple[float, float] | None:
    """``data.window`` → (W, L) in HU, or None for ``none``: a preset name (:data:`WINDOWS`),
    ``"W,L"`` (e.g. ``400,40``) or a list of two numbers. ConfigError (one line) otherwise."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        text = str(value).strip().lower()
        if text in ("", "none"):
            return None
        if text in WINDOWS:
            return WINDOWS[text]
        parts = [p for p in re.split(r"[,:;/ ]+", text) if p]
    try:
        if len(parts) != 2:
            raise ValueError
        w, lvl = float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        import difflib

        close = difflib.get_close_matches(str(value).strip().lower(), list(WINDOWS), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config key 'data.window' must be none, a CT preset ({', '.join(WINDOWS)}) or "
                          f"'W,L' in Hounsfield units (e.g. 400,40), got {value!r}.{hint}") from None
    if not (np.isfinite(w) and np.isfinite(lvl)) or w <= 0:
        raise ConfigError(f"config key 'data.window' needs a width W > 0 (W,L in Hounsfield units, e.g. "
                          f"400,40), got {value!r}")
    return w, lvl


def check_slice_axis(value: Any) -> str:
    """``data.slice_axis`` as a string of :data:`SLICE_AXES`; ConfigError (did-you-mean) otherwise."""
    from scarce.registry import look_up

    return look_up(str(value).strip().lower(), SLICE_AXES, "data.slice_axis")


def check_normalise(value: Any) -> str:
    """``data.normalise`` if it is one of :data:`NORMALISE_MODES`; ConfigError otherwise."""
    from scarce.registry import look_up

    return look_up(str(value).strip().lower(), NORMALISE_MODES, "data.normalise")


def check_empty_slices(value: Any) -> tuple[str, int]:
    """``data.empty_slices`` → (mode, K): ``keep`` (K=1), ``drop`` (K=0) or ``subsample:K`` (keep
    every K-th slice without foreground of each training volume, K ≥ 2)."""
    text = str(value).strip().lower()
    if text == "keep":
        return "keep", 1
    if text == "drop":
        return "drop", 0
    mode, _, k = text.partition(":")
    if mode == "subsample" and k.strip().isdigit() and int(k) >= 2:
        return "subsample", int(k)
    raise ConfigError(f"config key 'data.empty_slices' must be keep, drop or subsample:K (keep every K-th "
                      f"slice without foreground of a training volume, K >= 2, e.g. subsample:4), got {value!r}")


@dataclass(frozen=True)
class VolumeOptions:
    """The ``data.*`` settings that decide which slices a volume gives and their intensities."""

    slice_axis: str = "auto"
    window: tuple[float, float] | None = None
    normalise: str = "volume"


def volume_options(data_cfg: Any) -> VolumeOptions:
    """The checked :class:`VolumeOptions` of a :class:`~scarce.config.DataConfig` (ConfigError
    for a bad value; ``data.window`` together with ``data.normalise`` other than the default
    ``volume`` is refused: both map intensities, one must be chosen)."""
    axis = check_slice_axis(getattr(data_cfg, "slice_axis", "auto"))
    window = parse_window(getattr(data_cfg, "window", None))
    normalise = check_normalise(getattr(data_cfg, "normalise", "volume"))
    check_empty_slices(getattr(data_cfg, "empty_slices", "keep"))
    if window is not None and normalise != "volume":
        raise ConfigError(f"config keys 'data.window' and 'data.normalise={normalise}' both map a volume's "
                          f"intensities; set one (data.window for CT in Hounsfield units, data.normalise for MR)")
    return VolumeOptions(axis, window, normalise)


# ------------------------------------------------------------------------------------ slice paths

_SLICE_RE = re.compile(r"^(?P<volume>.+)#z(?P<index>\d+)@(?P<axis>[012])(?P<opts>(?:;[a-z]=[^;/\\]*)*)$")


@dataclass(frozen=True)
class SliceRef:
    """One 2D slice of a volume: ``volume`` (a file or a DICOM series folder), the array ``axis``
    it is cut along and its ``index``; ``window``/``normalise`` map an image's intensities,
    ``orient`` (masks) the axis codes of the image grid the mask is reoriented to first."""

    volume: Path
    axis: int
    index: int
    window: tuple[float, float] | None = None
    normalise: str = "volume"
    orient: str | None = None

    def path(self) -> Path:
        """The slice as a path: ``<volume>#z<index>@<axis>[;w=W:L][;n=mode][;o=CODES]``."""
        opts = ""
        if self.window is not None:
            opts += f";w={self.window[0]:g}:{self.window[1]:g}"
        if self.normalise != "volume":
            opts += f";n={self.normalise}"
        if self.orient:
            opts += f";o={self.orient}"
        return Path(f"{self.volume}#z{self.index}@{self.axis}{opts}")

    def label(self) -> str:
        """``case1.nii.gz slice 7 (axis 2)``: how messages name the slice."""
        return f"{self.volume.name} slice {self.index} (axis {self.axis})"


def slice_ref(path: str | os.PathLike[str]) -> SliceRef | None:
    """The :class:`SliceRef` a slice path stands for, or None for an ordinary file."""
    text = os.fspath(path)
    if "#z" not in text:
        return None
    m = _SLICE_RE.match(text)
    if m is None:
        return None
    window, normalise, orient = None, "volume", None
    for part in filter(None, m["opts"].split(";")):
        key, _, value = part.partition("=")
        if key == "w":
            w, _, lvl = value.partition(":")
            window = (float(w), float(lvl))
        elif key == "n":
            normalise = value
        elif key == "o":
            orient = value
    return SliceRef(Path(m["volume"]), int(m["axis"]), int(m["index"]), window, normalise, orient)


def is_slice(path: str | os.PathLike[str]) -> bool:
    """True for a slice path (:class:`SliceRef`)."""
    return slice_ref(path) is not None


# ------------------------------------------------------------------------------------ discovery

def volume_ext(path: Path) -> str:
    """``.nii.gz`` / ``.nii`` / ``.dcm`` / ``.dicom`` for a volume file name, else ``""``."""
    name = path.name.lower()
    return next((e for e in (".nii.gz", ".nii", ".dcm", ".dicom") if name.endswith(e)), "")


def volume_stem(path: Path) -> str:
    """The name without its volume ending (a series folder: its name)."""
    ext = volume_ext(path)
    return path.name[: -len(ext)] if ext and path.is_file() else path.name


def has_dicom_magic(path: Path) -> bool:
    """True when ``path`` is a DICOM Part-10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_dicom_file(path: Path) -> bool:
    """True for a ``.dcm``/``.dicom`` file, or a file without a known ending that starts with the
    DICOM magic (scanners often write names such as ``IM0001`` or ``1.2.840.113619.2.55.1``)."""
    ext = volume_ext(path)
    if ext in DICOM_EXTS:
        return True
    if ext or path.suffix.lower() in _NOT_DICOM:
        return False
    return has_dicom_magic(path)


_NOT_DICOM = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".txt", ".csv", ".json", ".md", ".yaml",
              ".yml", ".xml", ".html", ".pdf", ".zip", ".gz", ".npy", ".npz", ".mha", ".mhd", ".nrrd", ".raw")


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM files directly in ``folder`` (:func:`is_dicom_file`), sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if is_dicom_file(p)]


def is_series_folder(path: Path) -> bool:
    """True for a folder holding DICOM files (one series: one volume)."""
    try:
        return path.is_dir() and bool(_dicom_files(path))
    except OSError:
        return False


def is_volume_file(path: Path) -> bool:
    """True for a NIfTI or DICOM file (by its ending, or :func:`is_dicom_file`)."""
    return volume_ext(path) in NIFTI_EXTS or is_dicom_file(path)


def _stamp(path: Path) -> tuple:
    """What changes when a volume's bytes change: (mtime, size) of the file, or of each file of a
    series folder."""
    if path.is_dir():
        return tuple((p.name, st.st_mtime_ns, st.st_size) for p in _dicom_files(path) for st in [p.stat()])
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def volume_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(newest mtime, total size) of a volume file or series folder: the decode cache's key part."""
    p = Path(path)
    if p.is_dir():
        stamp = _stamp(p)
        return (max((s[1] for s in stamp), default=0), sum(s[2] for s in stamp))
    st = p.stat()
    return (st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------------------------ headers

@dataclass(frozen=True)
class VolumeHeader:
    """What scarce knows of a volume without decoding its pixels."""

    path: Path
    kind: str
    """``nifti`` or ``dicom``."""
    shape: tuple[int, int, int]
    """The 3D voxel grid scarce slices (a 2D image: a trailing 1). DICOM: (rows, columns, slices)."""
    file_shape: tuple[int, ...]
    """The shape as stored (NIfTI writeback restores it)."""
    affine: np.ndarray = field(compare=False)
    """4×4 voxel index → RAS+ millimetres (NIfTI's own; DICOM's from its position/orientation)."""
    slice_dim: int | None = None
    """The acquisition's through-plane axis when the file says so (NIfTI ``dim_info``; DICOM: 2)."""
    files: tuple[Path, ...] = ()
    """DICOM: the files of the slices, in slice order."""

    @property
    def spacing(self) -> np.ndarray:
        """Voxel sizes (mm) along the three array axes."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


_HEADERS: dict[tuple, VolumeHeader] = {}
_HEADERS_LOCK = threading.Lock()


def read_header(path: str | os.PathLike[str]) -> VolumeHeader:
    """The :class:`VolumeHeader` of a NIfTI file, DICOM file or DICOM series folder (memoised per
    file state; no pixel is decoded). DataError (naming the file) when it cannot be read."""
    p = Path(path)
    try:
        key = (str(p.resolve()), _stamp(p))
    except OSError:
        raise DataError(f"volume {p} does not exist (was it moved while loading?)") from None
    with _HEADERS_LOCK:
        hit = _HEADERS.get(key)
    if hit is not None:
        return hit
    if p.is_dir():
        header = _dicom_series_header(p)
    elif volume_ext(p) in NIFTI_EXTS:
        header = _nifti_header(p)
    else:
        header = _dicom_file_header(p)
    with _HEADERS_LOCK:
        _HEADERS[key] = header
    return header


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise DataError(NIBABEL_HINT) from None
    return nibabel


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise DataError(PYDICOM_HINT) from None
    return pydicom


def _grid_shape(file_shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """A stored shape → the 3D grid: 2D gets a trailing 1, trailing 1s of 4D+ are dropped."""
    shape = tuple(int(s) for s in file_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise DataError(f"{path} holds a {len(shape)}D volume of shape {file_shape}; scarce reads 2D and 3D "
                        f"volumes: split the time points / channels into separate 3D files")
    return shape  # type: ignore[return-value]


def _nifti_header(path: Path) -> VolumeHeader:
    nib = _nibabel()
    try:
        img = nib.load(str(path))
        affine = np.asarray(img.affine, dtype=np.float64)
        file_shape = tuple(int(s) for s in img.shape)
        dim_info = img.header.get_dim_info() if hasattr(img.header, "get_dim_info") else (None, None, None)
    except Exception as e:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"cannot read NIfTI volume {path} ({type(e).__name__}: {e}); the file is corrupt or "
                        f"not NIfTI: re-export it or remove it") from None
    slice_dim = dim_info[2] if dim_info and dim_info[2] is not None and dim_info[2] < 3 else None
    return VolumeHeader(path, "nifti", _grid_shape(file_shape, path), file_shape, affine, slice_dim)


def _dcmread(path: Path, pixels: bool) -> Any:
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels, force=volume_ext(path) in DICOM_EXTS)
    except Exception as e:
        raise DataError(f"cannot read DICOM file {path} ({type(e).__name__}: {e}); the file is corrupt or not "
                        f"DICOM: re-export it or remove it") from None


def _floats(ds: Any, name: str) -> list[float] | None:
    """A numeric DICOM attribute (single or multi-valued) as a list of floats; None when absent."""
    value = getattr(ds, name, None)
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, Seq) and not isinstance(value, (str, bytes)) else [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _dicom_geometry(ds: Any) -> tuple[list[float] | None, list[float] | None, list[float]]:
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing) of a slice; multi-frame
    files: from their functional groups when the top level has none."""
    ipp, iop, spacing = _floats(ds, "ImagePositionPatient"), _floats(ds, "ImageOrientationPatient"), \
        _floats(ds, "PixelSpacing")
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if shared and (iop is None or spacing is None):
        grp = shared[0]
        if iop is None and getattr(grp, "PlaneOrientationSequence", None):
            iop = _floats(grp.PlaneOrientationSequence[0], "ImageOrientationPatient")
        if spacing is None and getattr(grp, "PixelMeasuresSequence", None):
            spacing = _floats(grp.PixelMeasuresSequence[0], "PixelSpacing")
    return ipp, iop, spacing if spacing and len(spacing) == 2 else [1.0, 1.0]


def _lps_to_ras(affine: np.ndarray) -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def dicom_affine(first_ipp: Sequence[float] | None, iop: Sequence[float] | None, spacing: Sequence[float],
                 last_ipp: Sequence[float] | None = None, n: int = 1, thickness: float | None = None) -> np.ndarray:
    """4×4 RAS+ affine of a (rows, columns, slices) array of DICOM slices.

    DICOM: pixel (column c, row r) of a slice lies at ``IPP + c·Δc·row_cosine + r·Δr·column_cosine``
    (``PixelSpacing`` = [Δr, Δc], ``ImageOrientationPatient`` = row cosine + column cosine, LPS);
    array axis 0 is the row index r, axis 1 the column index c, axis 2 the slice (from the first to
    the last slice's position, else the normal × slice thickness). LPS → RAS flips x and y."""
    row_cos, col_cos = (np.asarray(iop[:3], float), np.asarray(iop[3:], float)) if iop and len(iop) == 6 \
        else (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    normal = np.cross(row_cos, col_cos)
    aff = np.eye(4)
    aff[:3, 0] = col_cos * float(spacing[0])
    aff[:3, 1] = row_cos * float(spacing[1])
    if n > 1 and first_ipp is not None and last_ipp is not None:
        aff[:3, 2] = (np.asarray(last_ipp, float) - np.asarray(first_ipp, float)) / (n - 1)
    else:
        aff[:3, 2] = normal * float(thickness or 1.0)
    aff[:3, 3] = np.asarray(first_ipp, float) if first_ipp is not None else 0.0
    return _lps_to_ras(aff)


def _check_dicom_pixels(ds: Any, path: Path) -> None:
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise DataError(f"{path} is a colour DICOM image ({ds.SamplesPerPixel} samples per pixel); scarce reads "
                        f"grayscale DICOM volumes: export colour images as PNG")


def _dicom_file_header(path: Path) -> VolumeHeader:
    ds = _dcmread(path, pixels=False)
    _check_dicom_pixels(ds, path)
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if not rows or not cols:
        raise DataError(f"{path} is a DICOM file without an image (no Rows/Columns): a report, a "
                        f"segmentation or a structured document; remove it from images/")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    ipp, iop, spacing = _dicom_geometry(ds)
    last = None
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if frames > 1 and per_frame and len(per_frame) == frames:
        def pos(i: int) -> list[float] | None:
            grp = per_frame[i]
            seq = getattr(grp, "PlanePositionSequence", None)
            return _floats(seq[0], "ImagePositionPatient") if seq else None
        ipp, last = pos(0) or ipp, pos(frames - 1)
    thickness = (_floats(ds, "SpacingBetweenSlices") or _floats(ds, "SliceThickness") or [1.0])[0]
    affine = dicom_affine(ipp, iop, spacing, last, frames, thickness)
    return VolumeHeader(path, "dicom", (rows, cols, frames), (rows, cols, frames), affine, 2, (path,))


def _dicom_series_header(folder: Path) -> VolumeHeader:
    files = _dicom_files(folder)
    if not files:
        raise DataError(f"{folder} holds no DICOM files; a series folder holds the .dcm files of one series")
    items = []
    series = set()
    for f in files:
        ds = _dcmread(f, pixels=False)
        _check_dicom_pixels(ds, f)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{f} is a multi-frame DICOM file inside the series folder {folder}; put a "
                            f"multi-frame file directly in images/ (it is a volume on its own)")
        series.add(str(getattr(ds, "SeriesInstanceUID", "")))
        items.append((f, ds))
    if len(series) > 1:
        raise DataError(f"{folder} mixes {len(series)} DICOM series (SeriesInstanceUID); one folder must hold "
                        f"one series: move each series into its own folder")
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in items}
    if len(shapes) > 1:
        raise DataError(f"the DICOM files of {folder} have different sizes ({', '.join(f'{c}x{r}' for r, c in sorted(shapes))}); "
                        f"one folder must hold one series")
    ipp0, iop, spacing = _dicom_geometry(items[0][1])
    if iop is not None and all(_floats(ds, "ImagePositionPatient") for _, ds in items):
        normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
        items.sort(key=lambda it: (float(np.dot(_floats(it[1], "ImagePositionPatient"), normal)),
                                   int(getattr(it[1], "InstanceNumber", 0) or 0), it[0].name))
    else:  # no geometry: the scanner's instance order
        items.sort(key=lambda it: (int(getattr(it[1], "InstanceNumber", 0) or 0), it[0].name))
    first, last = items[0][1], items[-1][1]
    thickness = (_floats(first, "SpacingBetweenSlices") or _floats(first, "SliceThickness") or [1.0])[0]
    affine = dicom_affine(_floats(first, "ImagePositionPatient"), iop, spacing,
                          _floats(last, "ImagePositionPatient"), len(items), thickness)
    rows, cols = shapes.pop()
    shape = (rows, cols, len(items))
    return VolumeHeader(folder, "dicom", shape, shape, affine, 2, tuple(f for f, _ in items))


# ------------------------------------------------------------------------------------ axes

_WORLD = {"sagittal": 0, "coronal": 1, "axial": 2}
"""RAS world axis each anatomical plane is perpendicular to (x: L–R, y: P–A, z: I–S)."""


def through_plane_axis(header: VolumeHeader) -> int:
    """The acquisition's through-plane (slice) axis, ``data.slice_axis=auto``.

    In this order: a 2D image's singleton axis; the slice dimension the file states (NIfTI
    ``dim_info``; DICOM: the stack of slices or frames); the axis whose voxels are more than 5 %
    longer than the other two (thick slices); else the last axis (where converters such as
    dcm2niix put the slices)."""
    ones = [i for i, s in enumerate(header.shape) if s == 1]
    if len(ones) == 1:
        return ones[0]
    if header.slice_dim is not None:
        return int(header.slice_dim)
    sp = header.spacing
    big = int(np.argmax(sp))
    if all(sp[big] > 1.05 * sp[i] for i in range(3) if i != big):
        return big
    return 2


def plane_axis(header: VolumeHeader, plane: str) -> int:
    """The array axis perpendicular to an anatomical ``plane`` (axial / coronal / sagittal): the
    one whose direction is closest to the plane's normal in world (RAS) coordinates."""
    directions = header.affine[:3, :3] / np.maximum(header.spacing, 1e-12)
    return int(np.argmax(np.abs(directions[_WORLD[plane], :])))


def resolve_axis(header: VolumeHeader, slice_axis: str) -> int:
    """The array axis a volume is sliced along for ``data.slice_axis``."""
    slice_axis = check_slice_axis(slice_axis)
    if slice_axis == "auto":
        return through_plane_axis(header)
    if slice_axis in _WORLD:
        return plane_axis(header, slice_axis)
    return int(slice_axis)


def axis_codes(affine: np.ndarray) -> str:
    """Orientation codes of the array axes, e.g. ``RAS`` (nibabel's ``aff2axcodes``)."""
    nib = _nibabel()
    return "".join(nib.orientations.aff2axcodes(affine))


def mask_orientation(image: VolumeHeader, mask: VolumeHeader) -> str | None:
    """None when ``mask`` lies on ``image``'s voxel grid as stored; else the image's axis codes, to
    which a NIfTI mask is reoriented (axes permuted/flipped, no resampling) before slicing.
    DataError (naming both files) when the grids cannot match."""
    def refuse(extra: str) -> DataError:
        return DataError(f"mask {mask.path.name} ({'x'.join(map(str, mask.shape))}) does not lie on the voxel grid of "
                         f"image {image.path.name} ({'x'.join(map(str, image.shape))}){extra}; save the mask on the "
                         f"image's grid (same size and orientation)")
    same_codes = True
    if mask.kind == "nifti" or image.kind == "nifti":
        same_codes = axis_codes(mask.affine) == axis_codes(image.affine)
    if same_codes or mask.kind != "nifti":
        if mask.shape != image.shape:
            raise refuse("")
        return None
    nib = _nibabel()
    ornt = nib.orientations
    target = axis_codes(image.affine)
    tr = ornt.ornt_transform(ornt.io_orientation(mask.affine), ornt.axcodes2ornt(tuple(target)))
    shape = tuple(int(mask.shape[int(a)]) for a in np.argsort(tr[:, 0]))
    if shape != image.shape:
        raise refuse(f" after reorienting it from {axis_codes(mask.affine)} to {target}")
    return target


# ------------------------------------------------------------------------------------ decoding

class _Memo:
    """Thread-safe LRU of decoded volumes (bounded by bytes): each volume decoded once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.loads = 0

    def get(self, key: tuple, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:  # one loader at a time: a second thread waits for the volume, not decodes it again
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
            value = load()
            value.setflags(write=False)
            self.loads += 1
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


MEMO = _Memo(MEMO_BYTES)


def _nifti_array(path: Path, header: VolumeHeader, raw: bool) -> np.ndarray:
    nib = _nibabel()
    try:
        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj) if raw else img.get_fdata(dtype=np.float32)
    except Exception as e:
        raise DataError(f"cannot read NIfTI volume {path} ({type(e).__name__}: {e}); the file is corrupt: "
                        f"re-export it or remove it") from None
    return np.asarray(arr).reshape(header.shape)


def _dicom_pixels(path: Path) -> np.ndarray:
    """Pixels of one DICOM file with its modality LUT (RescaleSlope/Intercept: CT → HU), float32,
    (rows, columns) or (frames, rows, columns)."""
    ds = _dcmread(path, pixels=True)
    try:
        arr = ds.pixel_array
    except Exception as e:  # compressed transfer syntaxes need extra decoders
        raise DataError(f"cannot decode the pixels of DICOM file {path} ({type(e).__name__}: {e}); compressed "
                        f"DICOM needs a decoder: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg") from None
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def load_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """A volume's voxel values as float32 on its :class:`VolumeHeader` grid: NIfTI with its
    scaling (``scl_slope``/``scl_inter``), DICOM with its modality LUT (CT: Hounsfield units).
    Not memoised (:func:`volume_uint8` and :func:`mask_volume` are)."""
    header = read_header(path)
    if header.kind == "nifti":
        return _nifti_array(header.path, header, raw=False).astype(np.float32, copy=False)
    if len(header.files) == 1 and header.shape[2] > 1 and not Path(path).is_dir():  # multi-frame file
        return np.ascontiguousarray(np.moveaxis(_dicom_pixels(header.files[0]), 0, -1))
    slices = [_dicom_pixels(f) for f in header.files]
    bad = [f.name for f, s in zip(header.files, slices) if s.shape != header.shape[:2]]
    if bad:
        raise DataError(f"DICOM file {bad[0]} of {path} does not have the series' size "
                        f"{header.shape[1]}x{header.shape[0]}; one folder must hold one series")
    return np.stack(slices, axis=-1)


def map_intensities(x: np.ndarray, window: tuple[float, float] | None = None,
                    normalise: str = "volume") -> np.ndarray:
    """Voxel values (any shape) → uint8 (module docstring): ``window`` (W, L) clips to
    [L − W/2, L + W/2]; else ``normalise`` over all of ``x`` (volume | zscore | minmax). Values
    are rounded to the nearest of 256 levels (``np.rint``: halves to even)."""
    x = np.asarray(x, dtype=np.float32)
    if window is not None:
        w, lvl = window
        lo = lvl - w / 2.0
        y = (np.clip(x, lo, lo + w) - np.float32(lo)) / np.float32(w)
    elif normalise == "zscore":
        mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        if not std > 0:
            return np.zeros(x.shape, np.uint8)
        y = (np.clip((x - np.float32(mean)) / np.float32(std), -ZSCORE_CLIP, ZSCORE_CLIP) + ZSCORE_CLIP) \
            / np.float32(2 * ZSCORE_CLIP)
    else:
        if normalise == "minmax":
            lo, hi = float(x.min()), float(x.max())
        else:
            lo, hi = (float(v) for v in np.percentile(x, PERCENTILES))
        if not hi > lo:
            return np.zeros(x.shape, np.uint8)
        y = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return np.rint(y * np.float32(255.0)).astype(np.uint8)


def volume_uint8(path: str | os.PathLike[str], window: tuple[float, float] | None = None,
                 normalise: str = "volume") -> np.ndarray:
    """The volume mapped to uint8 by :func:`map_intensities`, on its header's 3D grid; decoded once
    per process and setting (:data:`MEMO`, read-only array)."""
    p = Path(path)
    key = ("image", str(p.resolve()), _stamp(p), window, normalise)
    return MEMO.get(key, lambda: map_intensities(load_volume(p), window, normalise))


def mask_volume(path: str | os.PathLike[str], orient: str | None = None) -> np.ndarray:
    """A label volume (integer ids as stored) on its header's grid, reoriented to the axis codes
    ``orient`` when given (:func:`mask_orientation`); decoded once per process (:data:`MEMO`).
    DataError for fractional or negative values."""
    p = Path(path)
    key = ("mask", str(p.resolve()), _stamp(p), orient)

    def load() -> np.ndarray:
        header = read_header(p)
        arr = _nifti_array(p, header, raw=True) if header.kind == "nifti" else load_volume(p)
        if not np.issubdtype(arr.dtype, np.integer):
            arr = np.asarray(arr, dtype=np.float64)
            if not np.all(arr == np.round(arr)):
                raise DataError(f"mask {p} holds fractional values; masks need integer label ids (0/1 or "
                                f"0/255 for binary, 0..K-1 for K classes): round or threshold it")
        if arr.size and float(arr.min()) < 0:
            raise DataError(f"mask {p} holds negative values ({int(arr.min())}); masks need label ids >= 0")
        top = float(arr.max()) if arr.size else 0.0
        out = arr.astype(np.uint8 if top <= 255 else np.int32)
        if orient:
            nib = _nibabel()
            ornt = nib.orientations
            tr = ornt.ornt_transform(ornt.io_orientation(header.affine), ornt.axcodes2ornt(tuple(orient)))
            out = np.ascontiguousarray(ornt.apply_orientation(out, tr))
        return out

    return MEMO.get(key, load)


def take_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` of a 3D array along ``axis`` (the other two axes keep their order:
    rows = the first remaining axis)."""
    if not 0 <= index < volume.shape[axis]:
        raise DataError(f"slice {index} along axis {axis} is outside a volume of shape {volume.shape} "
                        f"(was the file replaced while loading?)")
    return np.ascontiguousarray(np.take(volume, index, axis=axis))


def read_slice_image(path: str | os.PathLike[str]) -> Any:
    """A slice path → PIL image of mode ``L`` (the mapped uint8 slice)."""
    from PIL import Image

    ref = slice_ref(path)
    if ref is None:
        raise DataError(f"{path} is not a volume slice")
    vol = volume_uint8(ref.volume, ref.window, ref.normalise)
    return Image.fromarray(take_slice(vol, ref.axis, ref.index), "L")


def read_slice_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask slice path → H×W int64 label ids as stored."""
    ref = slice_ref(path)
    if ref is None:
        raise DataError(f"{path} is not a volume slice")
    return take_slice(mask_volume(ref.volume, ref.orient), ref.axis, ref.index).astype(np.int64)


def mask_values(path: str | os.PathLike[str]) -> set[int]:
    """The label ids a mask volume holds (of a mask slice path: of its whole volume)."""
    ref = slice_ref(path)
    vol = mask_volume(ref.volume, ref.orient) if ref is not None else mask_volume(path)
    return {int(v) for v in np.unique(vol)}


def slice_has_foreground(path: str | os.PathLike[str]) -> bool:
    """True when a mask slice holds any non-zero label (``data.empty_slices``)."""
    return bool(read_slice_mask(path).any())


# ------------------------------------------------------------------------------------ enumeration

@dataclass
class VolumeEntry:
    """The slices one image volume (and its mask, if any) gives a dataset folder."""

    stem: str
    image: Path
    mask: Path | None
    axis: int
    stems: list[str]
    images: list[Path]
    masks: list[Path]


def slice_stems(stem: str, n: int) -> list[str]:
    """``<stem>#z000`` … for n slices (wider than 3 digits only past 999); a 1-slice volume (a
    2D DICOM or NIfTI image) keeps its plain stem."""
    if n == 1:
        return [stem]
    width = max(3, len(str(n - 1)))
    return [f"{stem}#z{k:0{width}d}" for k in range(n)]


def volume_entry(stem: str, image: Path, mask: Path | None, options: VolumeOptions | None = None) -> VolumeEntry:
    """Headers of ``image`` (and ``mask``) → the slice stems and slice paths (no pixel decoded).
    DataError when the mask does not lie on the image's grid."""
    options = options or VolumeOptions()
    header = read_header(image)
    axis = resolve_axis(header, options.slice_axis)
    orient = mask_orientation(header, read_header(mask)) if mask is not None else None
    n = header.shape[axis]
    stems = slice_stems(stem, n)
    images = [SliceRef(image, axis, k, options.window, options.normalise).path() for k in range(n)]
    masks = [SliceRef(mask, axis, k, orient=orient).path() for k in range(n)] if mask is not None else []
    return VolumeEntry(stem, image, mask, axis, stems, images, masks)


# ------------------------------------------------------------------------------------ writeback

def label_volume_name(path: str | os.PathLike[str], suffix: str = "") -> str:
    """File name of the predicted mask of a volume: NIfTI in → the same name and ending; DICOM
    (file or series folder) → ``<stem>.nii.gz``. ``suffix`` goes before the ending
    (``case1_class2.nii.gz``)."""
    p = Path(path)
    ext = volume_ext(p) if p.is_file() else ""
    return f"{volume_stem(p)}{suffix}{ext if ext in NIFTI_EXTS else '.nii.gz'}"


def label_volume_bytes(source: str | os.PathLike[str], labels: np.ndarray) -> bytes:
    """A predicted H×W×D uint8 label (or probability) volume on ``source``'s grid → the bytes of a
    NIfTI file (gzip-compressed unless ``source`` is an uncompressed ``.nii``).

    NIfTI source: its affine and header (qform/sform and their codes, pixdim, units, dim_info) are
    kept; only the data type (uint8) and the intensity scaling (none) change, and the stored shape
    is the source's. DICOM source: the affine of :func:`read_header` (RAS+), qform and sform code 1
    (scanner), array (rows, columns, slices)."""
    nib = _nibabel()
    header = read_header(source)
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != header.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the volume grid {header.shape}")
    if header.kind == "nifti":
        src = nib.load(str(header.path))
        hdr = src.header.copy()
        img = type(src)(labels.reshape(header.file_shape), src.affine, hdr)
        img.set_data_dtype(np.uint8)
        img.header.set_slope_inter(1.0, 0.0)
        img.header["cal_min"], img.header["cal_max"] = 0, float(labels.max(initial=0))
    else:
        img = nib.Nifti1Image(labels, header.affine)
        img.set_qform(header.affine, code=1)
        img.set_sform(header.affine, code=1)
        img.header.set_xyzt_units("mm")
    data = img.to_bytes()
    compress = not (Path(source).is_file() and Path(source).name.lower().endswith(".nii"))
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def write_label_volume(source: str | os.PathLike[str], labels: np.ndarray, dest: str | os.PathLike[str]) -> Path:
    """Write :func:`label_volume_bytes` atomically to ``dest``; returns ``dest``."""
    from scarce.utils.io import atomic_write_bytes

    atomic_write_bytes(dest, label_volume_bytes(source, labels))
    return Path(dest)


HIGHDICOM_HINT = "DICOM-SEG output needs highdicom: pip install highdicom"
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
"""Attributes every DICOM image must hold (type 2: present, maybe empty) that DICOM-SEG copies."""


def check_highdicom() -> None:
    """ConfigError (one line, the install command) when highdicom is not installed."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise ConfigError(HIGHDICOM_HINT) from None


def dicom_seg_bytes(source: str | os.PathLike[str], labels: np.ndarray, class_names: Sequence[str],
                    version: str = "0") -> bytes:
    """A predicted (rows, columns, slices) label volume of a DICOM ``source`` (series folder or
    file) → the bytes of a DICOM Segmentation (highdicom): one BINARY segment per class
    1..K−1 (``class_names[k]``), frames referencing the source's slices, a new series, algorithm
    "scarce" (automatic). Missing type-2 attributes of the source (patient/study) are copied as
    empty. ConfigError when highdicom is not installed."""
    check_highdicom()
    import io

    import highdicom as hd
    from pydicom.sr.codedict import codes

    header = read_header(source)
    if header.kind != "dicom":
        raise ValueError(f"{source} is not DICOM: DICOM-SEG references DICOM images")
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != header.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match the volume grid {header.shape}")
    sources = [_dcmread(f, pixels=True) for f in header.files]
    for ds in sources:
        for key in _TYPE2:
            if key not in ds:
                setattr(ds, key, "")
    algorithm = hd.AlgorithmIdentificationSequence(name="scarce", version=version,
                                                   family=codes.DCM.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(segment_number=k, segment_label=str(class_names[k])[:64],
                                          segmented_property_category=codes.SCT.Tissue,
                                          segmented_property_type=codes.SCT.Tissue,
                                          algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                          algorithm_identification=algorithm)
                for k in range(1, len(class_names))]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.ascontiguousarray(np.moveaxis(labels, -1, 0)),  # frames × rows × cols
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="scarce", manufacturer_model_name="scarce",
        software_versions=version, device_serial_number="0", omit_empty_frames=False)
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def volume_digest(path: str | os.PathLike[str], file_digest: Callable[[Path], str]) -> str:
    """Content digest of a volume: ``file_digest`` of its file, or of a series folder's files
    (their names and digests, in name order)."""
    p = Path(path)
    if not p.is_dir():
        return file_digest(p)
    h = hashlib.sha1()
    for f in _dicom_files(p):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\n")
    return h.hexdigest()


__all__ = ["EMPTY_SLICES", "NORMALISE_MODES", "PERCENTILES", "SLICE_AXES", "VOLUME_READ_EXTS", "WINDOWS",
           "SliceRef", "VolumeEntry", "VolumeHeader", "VolumeOptions", "check_empty_slices", "check_highdicom",
           "check_normalise", "check_slice_axis", "dicom_affine", "dicom_seg_bytes", "is_series_folder", "is_slice",
           "is_volume_file", "label_volume_bytes", "label_volume_name", "load_volume", "map_intensities",
           "mask_orientation", "mask_volume", "parse_window", "read_header", "read_slice_image", "read_slice_mask",
           "resolve_axis", "slice_ref", "slice_stems", "through_plane_axis", "volume_entry", "volume_options",
           "volume_uint8", "write_label_volume"]
