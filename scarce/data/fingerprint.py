"""Dataset fingerprint (``scarce data fingerprint DS``): what a working resolution must preserve.

nnU-Net's idea for 2D images: before choosing a working resolution, patch size and batch, look at
the data. For each labelled pair of a folder this reads

* the image size and stored mode from the file **header** (EXIF rotation applied: orientations
  5–8 swap height and width), no pixel decoded;
* the **mask**, decoded: foreground (every non-background label) as a share of the image area,
  the same share per class, and its 8-connected components. Components smaller than
  :data:`SPECK_FRACTION` of the image (0.01 %: a dozen pixels at 384 × 330) are annotation
  specks (JPEG-born masks hold many), counted apart and never called objects;
* the **image** pixels of up to ``intensity_images`` (default 300) pairs spread evenly over the
  sorted stems (0 = none): one 256-bin histogram per channel, pooled over those images, giving
  exact mean, std and percentiles of their pixels.

and summarises them (:func:`fingerprint`): sizes and aspect ratios (width / height), channels, the
object share (median, 10th percentile; images in the < 2 %, 2–5 %, 5–15 %, > 15 % bins of issue
35, or empty), objects per mask, the smallest object in pixels at its original size and what it
becomes at working resolutions S (``squash``: area × S²/(H·W); ``pad``: area × (S/max(H, W))²),
and intensity statistics. :func:`format_fingerprints` prints one table, a column per dataset.

Results are memoised per folder state (paths, sizes, modification times, the pairs chosen): a
folder is read once per process (about 2–5 s for the 1000 Kvasir-SEG pairs at 384 px).
The planner (:mod:`scarce.engine.planner`) reads the object percentiles and aspect ratios.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from scarce.data.folder import mask_to_labels, read_image_pil, read_mask_raw, scan_folder

FINGERPRINT_VERSION = 1
SPECK_FRACTION = 1e-4
"""Components below this share of the image area are specks, not objects."""
SIZE_BINS: tuple[tuple[float, str], ...] = ((0.02, "< 2 %"), (0.05, "2–5 %"), (0.15, "5–15 %"), (math.inf, "> 15 %"))
"""Upper bound (exclusive) and name of each object-size bin (share of the image area)."""
RESOLUTIONS = (128, 192, 256, 320)
"""Working resolutions at which the smallest object's size is reported."""
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that transpose the image
_MEMO: dict[str, dict[str, Any]] = {}


def header_size(path: Path) -> tuple[int, int, str]:
    """(height, width, stored mode) of an image from its header, EXIF orientation applied."""
    with Image.open(path) as img:
        w, h = img.size
        mode = img.mode
        try:  # a PNG's eXIf chunk may follow the pixels: only one read with the header counts
            exif = img.getexif() if img.format != "PNG" else Image.Exif()
            if img.format == "PNG" and img.info.get("exif"):
                exif.load(img.info["exif"])
            orientation = exif.get(0x0112)
        except Exception:  # a broken EXIF block: the stored orientation
            orientation = None
    return (w, h, mode) if orientation in _ROTATED else (h, w, mode)


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _hist_stats(hist: np.ndarray) -> dict[str, float]:
    """Mean, std and percentiles of uint8 values given their 256-bin histogram (exact; a
    percentile is the smallest value whose cumulative share reaches q)."""
    n = float(hist.sum())
    v = np.arange(256, dtype=np.float64)
    mean = float((hist * v).sum() / n)
    std = float(math.sqrt(max(0.0, (hist * (v - mean) ** 2).sum() / n)))
    cum = np.cumsum(hist) / n
    out = {"mean": mean, "std": std}
    for q in (0.5, 50.0, 99.5):
        out[f"p{q:g}"] = float(np.searchsorted(cum, q / 100.0 - 1e-12))
    return out


def _labels(raw: np.ndarray, k: int, path: Path) -> np.ndarray:
    """:func:`~scarce.data.folder.mask_to_labels` with a fast path for 8/16-bit masks (a
    bincount instead of a sort to find the stored values); any other mask takes the checked path."""
    if raw.size and 0 <= raw.min() and raw.max() < 65536:
        present = np.flatnonzero(np.bincount(raw.ravel()))
        vs = set(present.tolist())
        if k == 2 and (vs <= {0, 1} or vs <= {0, 255}):
            return (raw > 0).astype(np.uint8)
        if k > 2 and max(vs) < k:
            return raw.astype(np.uint8)
    return mask_to_labels(raw, k, path)


def _components(fg: np.ndarray) -> np.ndarray:
    """Pixel counts of the 8-connected components of a boolean mask."""
    from scipy import ndimage

    lab, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    return np.bincount(lab.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, dtype=np.int64)


def at_resolution(pixels: float, height: int, width: int, size: int, aspect: str) -> float:
    """Area in pixels that an object of ``pixels`` in an H×W image covers at working resolution
    ``size`` (``squash``: both sides scaled to size; ``pad``: the longer side)."""
    if aspect == "pad":
        return pixels * (size / max(height, width)) ** 2
    return pixels * (size / height) * (size / width)


def _state_key(index: Any, stems: Sequence[str], num_classes: int, channels: int, intensity: int) -> str:
    h = hashlib.sha256(f"{FINGERPRINT_VERSION}|{num_classes}|{channels}|{intensity}|{index.root.resolve()}".encode())
    for s in stems:
        for p in (index.images[s], index.masks[s]):
            st = p.stat()
            h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def fingerprint(name_or_path: str | Path, root: str | Path | None = None, *, num_classes: int | None = None,
                stems: Sequence[str] | None = None, intensity_images: int = 300,
                resolutions: Sequence[int] = RESOLUTIONS) -> dict[str, Any]:
    """The fingerprint of a registered dataset (under ``root`` / $SCARCE_DATA_ROOT) or of an
    ``images/`` + ``masks/`` folder: every labelled pair, or only ``stems`` (e.g. a run's
    labelled split). A missing dataset is a :class:`~scarce.data.types.DataError`; plain JSON
    types only (``None`` where a statistic has no data, e.g. no object in any mask)."""
    from scarce.data.load import resolve_dataset

    info, folder = resolve_dataset(name_or_path, root, num_classes)
    index = scan_folder(folder)
    chosen = list(index.stems if stems is None else stems)
    unknown = [s for s in chosen if s not in index.masks]
    if unknown:
        raise KeyError(f"{len(unknown)} stem(s) are not labelled pairs of {folder} (e.g. {unknown[0]!r})")
    k = info.num_classes
    channels = info.channels
    key = _state_key(index, chosen, k, channels, intensity_images) + repr(tuple(resolutions))
    if key in _MEMO:
        return _MEMO[key]
    heights, widths, modes = [], [], {}
    fractions: list[float] = []  # foreground share per image (0 = empty)
    per_class: dict[int, list[float]] = {c: [] for c in range(1, k)}
    n_objects: list[int] = []
    specks = 0
    smallest: dict[str, Any] | None = None
    hist = np.zeros((channels, 256), dtype=np.int64)
    m = min(max(0, int(intensity_images)), len(chosen))
    sampled = {chosen[i] for i in np.linspace(0, len(chosen) - 1, m).round().astype(int)} if m else set()
    for stem in chosen:
        h, w, mode = header_size(index.images[stem])
        heights.append(h)
        widths.append(w)
        modes[mode] = modes.get(mode, 0) + 1
        labels = _labels(read_mask_raw(index.masks[stem]), k, index.masks[stem])
        area = labels.size
        fg = labels > 0
        fractions.append(float(fg.sum()) / area)
        for c in per_class:
            share = float((labels == c).sum()) / area
            if share > 0:
                per_class[c].append(share)
        sizes = _components(fg)
        objects = sizes[sizes >= SPECK_FRACTION * area]
        specks += int(len(sizes) - len(objects)) > 0
        n_objects.append(int(len(objects)))
        if len(objects) and (smallest is None or objects.min() / area < smallest["fraction"]):
            lh, lw = labels.shape
            smallest = {"pixels": int(objects.min()), "fraction": float(objects.min()) / area, "image": stem,
                        "height": int(lh), "width": int(lw)}
        if stem in sampled:
            arr = np.asarray(read_image_pil(index.images[stem], channels), dtype=np.uint8)
            arr = arr[..., None] if arr.ndim == 2 else arr
            for c in range(channels):
                hist[c] += np.bincount(arr[..., c].ravel(), minlength=256)
    n = len(chosen)
    present = [f for f in fractions if f > 0]
    aspects = [w / h for h, w in zip(heights, widths)]
    bins = {"empty": (n - len(present)) / n if n else None}
    lo = 0.0
    for hi, name in SIZE_BINS:
        bins[name] = sum(lo <= f < hi for f in present) / n if n else None
        lo = hi
    names = list(info.classes)
    out: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "dataset": info.name,
        "folder": str(folder),
        "images": n,
        "channels": channels,
        "stored_modes": dict(sorted(modes.items())),
        "num_classes": k,
        "height": {"min": min(heights, default=None), "median": _pct(heights, 50), "max": max(heights, default=None)},
        "width": {"min": min(widths, default=None), "median": _pct(widths, 50), "max": max(widths, default=None)},
        "aspect": {"min": min(aspects, default=None), "p10": _pct(aspects, 10), "median": _pct(aspects, 50),
                   "p90": _pct(aspects, 90), "max": max(aspects, default=None)},
        "object_fraction": {"min": min(present, default=None), "p10": _pct(present, 10),
                            "median": _pct(present, 50)},
        "classes": {names[c]: {"present": len(v) / n if n else None, "p10": _pct(v, 10), "median": _pct(v, 50)}
                    for c, v in per_class.items()},
        "size_bins": bins,
        "objects_per_mask": {"median": _pct(n_objects, 50), "mean": float(np.mean(n_objects)) if n else None,
                             "max": max(n_objects, default=None),
                             "several": sum(m > 1 for m in n_objects) / n if n else None,
                             "with_specks": specks / n if n else None},
        "smallest_object": None,
        "intensity": None,
    }
    if smallest is not None:
        sh, sw, px = smallest["height"], smallest["width"], smallest["pixels"]
        smallest["at"] = {str(s): {a: at_resolution(px, sh, sw, s, a) for a in ("squash", "pad")}
                          for s in resolutions}
        out["smallest_object"] = smallest
    if sampled:
        stats = [_hist_stats(hist[c]) for c in range(channels)]
        out["intensity"] = {"images": len(sampled), **{k2: [s[k2] for s in stats] for k2 in stats[0]}}
    _MEMO[key] = out
    return out


# ----------------------------------------------------------------------------- printing

def _num(v: Any, fmt: str = "{:.0f}") -> str:
    return "—" if v is None else fmt.format(v)


def _pc(v: Any, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f} %"


def fingerprint_rows(fp: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) lines of one fingerprint, in print order."""
    h, w, a = fp["height"], fp["width"], fp["aspect"]
    of, bins, obj = fp["object_fraction"], fp["size_bins"], fp["objects_per_mask"]
    rows = [
        ("images", str(fp["images"])),
        ("H min / median / max", f"{_num(h['min'])} / {_num(h['median'])} / {_num(h['max'])}"),
        ("W min / median / max", f"{_num(w['min'])} / {_num(w['median'])} / {_num(w['max'])}"),
        ("aspect W/H min / median / max", " / ".join(_num(a[q], "{:.2f}") for q in ("min", "median", "max"))),
        ("channels (stored)", f"{fp['channels']} ({', '.join(f'{m} {c}' for m, c in fp['stored_modes'].items())})"),
        ("object share median / p10", f"{_pc(of['median'])} / {_pc(of['p10'])}"),
    ]
    if len(fp["classes"]) > 1:
        for name, c in fp["classes"].items():
            rows.append((f"  {name} median / p10", f"{_pc(c['median'])} / {_pc(c['p10'])}"))
    rows.append(("images: empty / < 2 / 2–5 / 5–15 / > 15 %",
                 " / ".join(_pc(bins[b], 0) for b in ("empty", *(name for _, name in SIZE_BINS)))))
    rows.append(("objects per mask median / max", f"{_num(obj['median'])} / {_num(obj['max'])}"))
    rows.append(("masks with > 1 object / specks", f"{_pc(obj['several'], 0)} / {_pc(obj['with_specks'], 0)}"))
    s = fp["smallest_object"]
    if s is None:
        rows.append(("smallest object", "—"))
    else:
        rows.append(("smallest object (px, at H×W)", f"{s['pixels']} ({_pc(s['fraction'], 2)}) at {s['height']}×{s['width']}"))
        for size, v in s["at"].items():
            rows.append((f"  at S={size}: squash / pad (px)", f"{v['squash']:.1f} / {v['pad']:.1f}"))
    it = fp["intensity"]
    if it is not None:
        def chan(key: str, fmt: str) -> str:
            return ", ".join(fmt.format(x) for x in it[key])

        rows.append(("intensity: images read", str(it["images"])))
        rows.append(("intensity mean (per channel)", chan("mean", "{:.1f}")))
        rows.append(("intensity std", chan("std", "{:.1f}")))
        rows.append(("intensity p0.5 / p50 / p99.5", " / ".join(chan(q, "{:.0f}") for q in ("p0.5", "p50", "p99.5"))))
    return rows


def format_fingerprints(fps: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """One table: a row per measure, a column per dataset (plain aligned text, or Markdown)."""
    cols = [fingerprint_rows(fp) for fp in fps]
    labels = [label for label, _ in cols[0]] if cols else []
    # datasets may differ in their rows (per-class lines, intensity): a new row goes right
    # after the row it follows in its own dataset
    for c in cols[1:]:
        prev = None
        for label, _ in c:
            if label not in labels:
                labels.insert(labels.index(prev) + 1 if prev in labels else len(labels), label)
            prev = label
    values = [dict(c) for c in cols]
    head = ["", *(fp["dataset"] for fp in fps)]
    body = [[label, *(v.get(label, "") for v in values)] for label in labels]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + [":---:"] * len(fps)) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in [head, *body])
