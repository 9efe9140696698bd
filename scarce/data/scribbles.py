"""Scribbles and clicks: the weak labels of the weak-supervision methods (``pce_gd``, ``grid_gd``,
``dense_gd``, ``grid_tr``).

File format (documented contract)
---------------------------------
A dataset folder ``NAME/`` with ``images/`` and ``masks/`` may hold a ``scribbles/`` folder beside
them: **one 8-bit single-channel PNG per image stem** (``scribbles/<stem>.png``, same height and
width as ``images/<stem>.*``). Pixel value = class id (0 = background, 1..K-1) on scribbled
pixels, **255 = unlabelled**. Every file must label at least one pixel. Other files in the folder
(``meta.json`` written by :func:`write_scribbles`, READMEs) are ignored.

Synthesis (why): public medical datasets ship full masks only; :func:`synthesize_scribbles` turns
every registered dataset into a weak-supervision benchmark along the paper's axis
"clicks (length 0) → full scribbles (length 1)". For **every** class incl. background, in the
largest connected component of the class region:

* length 1: one stroke along the region's medial axis: the longest geodesic path through the
  skeleton (``skimage.morphology.skeletonize``) of the region eroded by the stroke radius + 1
  (so the drawn stroke stays inside the region and off its boundary);
* 0 < length < 1: the contiguous sub-path holding ``length`` of that path's pixels, grown around
  an anchor drawn from the middle half of the path (so sub-paths of one image are nested and the
  scribbled area grows monotonically with the length);
* length 0: a click: a small disc at the most interior point (maximum of the distance transform).

Strokes are drawn with a radius proportional to the image size (``max(1, round(min(H,W)/160))``)
and clicks with ``max(2, round(min(H,W)/64))`` so that they survive downsampling to the training
size. The image border counts as a region boundary. Randomness: one ``numpy.random.Generator``
per image; :func:`stem_rng` derives it from (seed, stem) so an image's scribble does not depend on
which other images are present or on their order.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from scarce.data.types import DataError

UNLABELLED = 255
"""Scribble value of pixels without a label."""

SCRIBBLE_DIR = "scribbles"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# --------------------------------------------------------------------------- randomness

def stem_rng(seed: int, stem: str) -> np.random.Generator:
    """Generator for one image: depends only on ``seed`` and the image ``stem`` (crc32)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(stem.encode("utf-8"))])


# --------------------------------------------------------------------------- synthesis

def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def _largest_component(region: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(region, structure=np.ones((3, 3), bool))
    if n <= 1:
        return region.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _edt_inside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance to the nearest non-region pixel, treating outside the image as non-region."""
    from scipy import ndimage

    padded = np.pad(region, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def _longest_skeleton_path(skel: np.ndarray) -> np.ndarray:
    """Ordered P×2 (y, x) pixels of the longest geodesic path in an 8-connected skeleton
    (double BFS sweep: exact for trees, a good approximation for skeletons with loops)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    ys, xs = np.nonzero(skel)
    n = len(ys)
    if n == 0:
        return np.zeros((0, 2), np.int64)
    if n == 1:
        return np.stack([ys, xs], 1).astype(np.int64)
    index = -np.ones(skel.shape, np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols = [], []
    h, w = skel.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        j = np.full(n, -1, np.int64)
        j[ok] = index[ny[ok], nx[ok]]
        keep = j >= 0
        rows.append(np.arange(n)[keep])
        cols.append(j[keep])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)).tocsr()
    d0 = dijkstra(graph, directed=False, indices=0, unweighted=True)
    d0[~np.isfinite(d0)] = -1
    a = int(d0.argmax())
    da, pred = dijkstra(graph, directed=False, indices=a, unweighted=True, return_predecessors=True)
    da[~np.isfinite(da)] = -1
    b = int(da.argmax())
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    path.reverse()
    idx = np.asarray(path, np.int64)
    return np.stack([ys[idx], xs[idx]], 1).astype(np.int64)


def scribble_radii(shape: Sequence[int]) -> tuple[int, int]:
    """(stroke radius, click radius) in pixels for an image of ``shape`` (H, W)."""
    m = min(int(shape[0]), int(shape[1]))
    return max(1, round(m / 160)), max(2, round(m / 64))


def _class_scribble(region: np.ndarray, length: float, u: float, r_line: int, r_click: int) -> np.ndarray:
    """Boolean H×W scribble (stroke or click) inside ``region`` (see module docstring)."""
    from scipy import ndimage

    comp = _largest_component(region)
    dt = _edt_inside(comp)
    out = np.zeros_like(region, dtype=bool)
    if length <= 0:
        y, x = np.unravel_index(int(dt.argmax()), dt.shape)
        r = int(min(r_click, max(0.0, np.floor(dt[y, x]) - 1)))
        disc = _disk(r)
        y0, x0 = y - r, x - r
        ys, xs = np.nonzero(disc)
        ys, xs = ys + y0, xs + x0
        ok = (ys >= 0) & (ys < region.shape[0]) & (xs >= 0) & (xs < region.shape[1])
        out[ys[ok], xs[ok]] = True
        return out & comp
    from skimage.morphology import skeletonize

    r = r_line
    eroded = dt > (r + 1)
    if not eroded.any():  # thin region: draw a 1-px stroke on the medial axis of the region itself
        r = 0
        eroded = dt >= max(1.0, float(dt.max()) * 0.5)
    eroded = _largest_component(eroded)
    skel = skeletonize(eroded)
    if not skel.any():
        skel = eroded
    path = _longest_skeleton_path(skel)
    p = len(path)
    m = int(min(p, max(1, round(float(length) * p))))
    anchor = p // 4 + int(u * (p - 2 * (p // 4)))  # uniform in the middle half of the path
    start = int(np.clip(anchor - m // 2, 0, p - m))
    sub = path[start:start + m]
    out[sub[:, 0], sub[:, 1]] = True
    if r > 0:
        out = ndimage.binary_dilation(out, structure=_disk(r))
    return out & comp


def synthesize_scribbles(
    mask: np.ndarray | torch.Tensor,
    length: float,
    rng: np.random.Generator,
    num_classes: int,
    radii: tuple[int, int] | None = None,
) -> np.ndarray:
    """Scribbles for one mask.

    Args:
        mask: H×W integer label ids 0..K-1 (the full ground truth).
        length: in [0, 1]; 1 = full medial-axis stroke, 0 = one click per class.
        rng: per-image generator (exactly one draw per class id 0..K-1 whatever ``length`` is, so
            sub-paths at different lengths of the same image are nested).
        num_classes: K, background included.
        radii: (stroke radius, click radius); default :func:`scribble_radii` of the mask's shape.

    Returns:
        H×W uint8: class id on scribbled pixels, 255 elsewhere. Classes absent from the mask get
        no scribble.
    """
    if not 0.0 <= float(length) <= 1.0:
        raise ValueError(f"scribble length must lie in [0, 1], got {length}")
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be H×W, got shape {m.shape}")
    if num_classes > UNLABELLED:
        raise ValueError(f"at most {UNLABELLED} classes fit in an 8-bit scribble, got {num_classes}")
    r_line, r_click = radii if radii is not None else scribble_radii(m.shape)
    out = np.full(m.shape, UNLABELLED, np.uint8)
    for c in range(num_classes):
        u = float(rng.random())  # drawn for every class so streams stay aligned across lengths
        region = m == c
        if not region.any():
            continue
        out[_class_scribble(region, float(length), u, r_line, r_click)] = c
    return out


# --------------------------------------------------------------------------- files: reading + validation

def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise DataError(
                    f"scribble file {path} has mode {im.mode!r}; it must be an 8-bit single-channel PNG "
                    f"(class id on scribbled pixels, {UNLABELLED} = unlabelled)"
                )
            if im.mode == "P":  # palette PNG: the stored indices are the class ids
                return np.array(im, dtype=np.uint8)
            return np.array(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # unreadable / not an image
        raise DataError(f"cannot read scribble file {path}: {e}. Write an 8-bit PNG.") from e


def validate_scribble(arr: np.ndarray, path: str | os.PathLike[str], num_classes: int,
                      shape: Sequence[int] | None = None) -> None:
    """Raise one :class:`DataError` naming ``path`` if ``arr`` breaks the file format: wrong size
    (``shape`` = expected H×W), ids ≥ K other than 255, or no scribbled pixel at all."""
    if shape is not None and tuple(arr.shape[:2]) != tuple(int(s) for s in shape[:2]):
        raise DataError(
            f"scribble file {path} is {arr.shape[1]}×{arr.shape[0]} (W×H) but its image is "
            f"{shape[1]}×{shape[0]}; scribbles must have the image's size: resize it to "
            f"{shape[1]}×{shape[0]} with nearest-neighbour interpolation or redraw it (`scarce annotate`)"
        )
    bad = (arr >= num_classes) & (arr != UNLABELLED)
    if bad.any():
        vals = sorted(int(v) for v in np.unique(arr[bad]))[:5]
        raise DataError(
            f"scribble file {path} holds value(s) {vals} but the dataset has {num_classes} classes: "
            f"use class ids 0..{num_classes - 1} on scribbled pixels and {UNLABELLED} for unlabelled"
        )
    if not (arr != UNLABELLED).any():
        raise DataError(
            f"scribble file {path} has no scribbled pixel (every value is {UNLABELLED}); "
            f"label at least one pixel or delete the file (the image is then not annotated)"
        )


def scribbles_dir(folder: str | os.PathLike[str]) -> Path:
    """``folder`` itself if it is a scribbles folder, else ``folder/scribbles``."""
    f = Path(folder)
    if f.name != SCRIBBLE_DIR and ((f / SCRIBBLE_DIR).is_dir() or (f / "images").is_dir()):
        return f / SCRIBBLE_DIR
    return f


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image file as training decodes it: after its EXIF orientation (a rotated
    phone photo is W×H on disk and H×W on screen), from the header only."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        try:
            turned = int(im.getexif().get(0x0112, 1)) in (5, 6, 7, 8)  # transposed orientations
        except Exception:  # unreadable EXIF: decoding ignores it too
            turned = False
    return (w, h) if turned else (h, w)


def _image_size(images_dir: Path, stem: str) -> tuple[int, int] | None:
    for ext in _IMAGE_EXTS:
        for cand in (images_dir / f"{stem}{ext}", images_dir / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return image_size(cand)
    return None


def read_scribble(path: str | os.PathLike[str], num_classes: int, shape: Sequence[int] | None = None) -> np.ndarray:
    """Read and validate one scribble PNG → H×W uint8 (255 = unlabelled)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"missing scribble file {p}: every training image needs scribbles/<stem>.png "
            f"(create them with `scarce data scribbles NAME --length L`)"
        )
    arr = _read_png(p)
    validate_scribble(arr, p, num_classes, shape)
    return arr


def resize_scribble(arr: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an H×W scribble to size×size, keeping every class: a class
    whose pixels all fall between the sampled pixels gets its middle pixel (raster order) back."""
    h, w = arr.shape
    if (h, w) == (size, size):
        return arr.copy()
    ys = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    out = arr[ys[:, None], xs[None, :]].copy()
    before = set(np.unique(arr).tolist()) - {UNLABELLED}
    after = set(np.unique(out).tolist()) - {UNLABELLED}
    for c in sorted(before - after):
        yy, xx = np.nonzero(arr == c)
        mid = len(yy) // 2
        oy = min(int(yy[mid] * size / h), size - 1)
        ox = min(int(xx[mid] * size / w), size - 1)
        out[oy, ox] = c
    return out


def load_scribbles(folder: str | os.PathLike[str], stems: Sequence[str], size: int,
                   num_classes: int) -> torch.Tensor:
    """Scribbles of ``stems`` at training size: N×S×S int64 (255 = unlabelled).

    ``folder`` is the dataset folder (with ``scribbles/`` beside ``images/``) or the scribbles
    folder itself. When ``images/`` is beside it, each file's size is checked against its image.
    """
    sdir = scribbles_dir(folder)
    if not sdir.is_dir():
        raise DataError(
            f"no scribbles folder at {sdir}; create it with `scarce data scribbles NAME --length L` "
            f"or use method.scribbles=synthetic:L"
        )
    images_dir = sdir.parent / "images"
    out = torch.full((len(stems), size, size), UNLABELLED, dtype=torch.int64)
    for i, stem in enumerate(stems):
        shape = _image_size(images_dir, stem) if images_dir.is_dir() else None
        arr = read_scribble(sdir / f"{stem}.png", num_classes, shape)
        out[i] = torch.from_numpy(resize_scribble(arr, size).astype(np.int64))
    return out


# --------------------------------------------------------------------------- files: writing

def write_scribbles(folder: str | os.PathLike[str], length: float, seed: int = 0,
                    num_classes: int | None = None, stems: Iterable[str] | None = None,
                    overwrite: bool = False) -> Path:
    """Synthesise ``folder/scribbles/<stem>.png`` for every image of a dataset folder from its
    full mask at ``length`` (folder parsing and mask decoding: :mod:`scarce.data.folder`, so
    mask naming and binary 0/255 handling match training).

    Deterministic per (seed, stem). Every file is written into a temporary folder first, so a
    failure leaves the previous folder (or none) and never a partial one. Also writes
    ``scribbles/meta.json`` (length, seed, format). An existing ``scribbles/`` holding files (e.g.
    hand-drawn scribbles) is refused (ConfigError) unless ``overwrite``; then only the files
    written here (``<stem>.png``, ``meta.json``) are replaced and every other file is kept.
    ``num_classes`` None = the registered dataset's K if ``folder`` is given by name by the
    caller, else inferred from the masks. ``stems`` restricts the images. Returns the folder.
    """
    from scarce.data.folder import infer_num_classes, mask_to_labels, read_mask_raw, scan_folder
    from scarce.utils.io import atomic_save_png, atomic_write_json
    from scarce.utils.paths import check_output_folder, staged_output

    if not 0.0 <= float(length) <= 1.0:
        raise ValueError(f"scribble length must lie in [0, 1], got {length}")
    root = Path(folder)
    index = scan_folder(root)
    chosen = index.stems if stems is None else [s for s in index.stems if s in set(stems)]
    if not chosen:
        raise DataError(f"no images selected in {root / 'images'}")
    k = int(num_classes or infer_num_classes(index))
    target = root / SCRIBBLE_DIR
    check_output_folder(target, overwrite=overwrite, what="scribble folder", command="scarce data scribbles",
                        dataset_child=SCRIBBLE_DIR)
    with staged_output(target, "scarce data scribbles") as tmp:
        for stem in chosen:
            mpath = index.masks[stem]
            m = mask_to_labels(read_mask_raw(mpath), k, mpath)
            sc = synthesize_scribbles(m, length, stem_rng(seed, stem), k)
            if not (sc != UNLABELLED).any():
                raise DataError(f"mask {mpath} gave an empty scribble (is the mask empty?)")
            atomic_save_png(tmp / f"{stem}.png", sc)
        atomic_write_json(tmp / "meta.json", {
            "length": float(length), "seed": int(seed), "num_classes": k,
            "format": f"8-bit PNG per image stem; value = class id, {UNLABELLED} = unlabelled",
        })
    return target


def synthetic_scribbles(masks: torch.Tensor, stems: Sequence[str], length: float, seed: int,
                        num_classes: int) -> torch.Tensor:
    """On-the-fly scribbles for in-memory masks (N×S×S int64) → N×S×S int64 (255 = unlabelled),
    deterministic per (seed, stem). Used by ``method.scribbles=synthetic:L``."""
    out = torch.full(masks.shape, UNLABELLED, dtype=torch.int64)
    for i, stem in enumerate(stems):
        s = synthesize_scribbles(masks[i], length, stem_rng(seed, stem), num_classes)
        out[i] = torch.from_numpy(s.astype(np.int64))
    return out


def parse_scribble_spec(spec: str) -> tuple[str, float | str]:
    """``"synthetic:0.5"`` → ("synthetic", 0.5); ``"auto"`` → ("auto", ""); a path → ("path", path)."""
    s = str(spec).strip()
    if s.startswith("synthetic"):
        _, _, rest = s.partition(":")
        try:
            length = float(rest) if rest else 1.0
        except ValueError as e:
            raise ValueError(f"method.scribbles={spec!r}: expected synthetic:L with L in [0, 1]") from e
        if not 0.0 <= length <= 1.0:
            raise ValueError(f"method.scribbles={spec!r}: length must lie in [0, 1]")
        return "synthetic", length
    if s in ("", "auto"):
        return "auto", ""
    return "path", s


__all__ = [
    "UNLABELLED", "SCRIBBLE_DIR", "stem_rng", "scribble_radii", "synthesize_scribbles", "validate_scribble",
    "read_scribble", "resize_scribble", "load_scribbles", "write_scribbles", "synthetic_scribbles",
    "parse_scribble_spec", "scribbles_dir",
]
