"""Evaluate a segmentation model on test sets, scoring at each image's original mask resolution.

Why original resolution: published numbers (ISIC, the paper) are computed on the full-size
masks; scoring at the training size S would reward blurry boundaries. The model predicts at
size S, its class **probabilities** are upsampled bilinearly to the original H×W (smoother than
upsampling hard labels) and only then thresholded (binary) or arg-maxed (multi-class).

Files written per test set (``out_dir``):

* ``per_image.csv`` — ``stem, dice, jaccard, jaccard_t, accuracy, sensitivity, specificity``
  (+ ``dice_<class>``, ``jaccard_<class>`` for multi-class), ``fg_fraction`` (the ground
  truth's foreground share of the frame) and, for binary tasks, ``lesions, lesions_found``
  (:func:`size_facts`), one row per image.
* ``predictions/<stem>.png`` — 8-bit masks at original resolution. Binary: 0 / 255.
  Multi-class: a palette PNG whose pixel values are the label ids 0..K-1 (readable back as a
  mask by the data layer and by tools reading ids), shown in distinct colours by a viewer.
  Stems starting with ``ISIC_`` are saved as ``<stem>_segmentation.png`` so the folder can be
  scored directly by the official ``isic-challenge-scoring`` package.
* ``overlays/<stem>.png`` — ``overlays`` evenly spaced images: [image | image with ground-truth
  contour in green and predicted contour in red], at most 512 px high/wide.

:func:`evaluate_sets` adds ``metrics.json`` (``{set: {dice_mean, dice_std, ..., n}}``) and
``summary.txt``. Every file is written atomically (``scarce.utils.io``).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scarce.data.types import SegData
from scarce.evaluation.metrics import (METRICS, aggregate, detection_rate, foreground_fraction, image_metrics,
                                       lesion_detection, size_bins, size_table)
from scarce.evaluation.surface import surface_metrics, surface_results
from scarce.evaluation.trimap import DEFAULT_WIDTHS, miou_from_confusion, trimap_confusions, trimap_miou
from scarce.losses import class_probs
from scarce.utils.io import atomic_save_png, atomic_write_bytes, atomic_write_json, atomic_write_text
from scarce.utils.paths import set_folder
from scarce.utils.runfolder import METRICS_FILE, PER_IMAGE_FILE, PREDICTIONS_DIR, SUMMARY_FILE

OVERLAY_MAX_SIDE = 512


def _device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        p = next(iter(model.parameters()), None)
        return p.device if p is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        from scarce.utils.seed import resolve_device

        return resolve_device(device)
    return torch.device(device)


TTA_MODES = ("none", "flip")
"""Test-time augmentation (``eval.tta``): ``none``, or ``flip`` = the mean of the class
probabilities of the image, its horizontal flip and its vertical flip (each flipped back)."""

_TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "flip": ((), (-1,), (-2,)),  # identity, left-right (W axis), up-down (H axis)
}


def check_tta(tta: Any) -> str:
    """``tta`` if it is one of :data:`TTA_MODES`, else a ConfigError naming ``eval.tta`` (did-you-mean)."""
    from scarce.registry import look_up

    return look_up(str(tta), TTA_MODES, "test-time augmentation (eval.tta)")


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 16,
                  device: str | torch.device | None = None, tta: str = "none") -> torch.Tensor:
    """Class probabilities of ``images`` (N×C×S×S) → N×K×S×S float32 on the CPU.

    Runs in eval mode without gradients, in batches of ``batch_size``; the model's previous
    train/eval mode is restored afterwards. ``device=None`` uses the model's own device.

    A network with ``inference_window`` = N > 0 (``eval.window``, set where networks are built)
    is run by MONAI's ``sliding_window_inference`` on N × N windows (50 % overlap, Gaussian
    blending of the logits) when an image is larger.

    ``tta="flip"`` averages the *probabilities* (sigmoid → [1 − p, p], or softmax; not the
    logits) of the image and of its horizontal and vertical flips, each flipped back to the
    image's geometry: three forward passes per batch. The single place TTA is implemented —
    evaluation, validation during training and ``scarce predict`` all call this function.
    """
    flips = _TTA_FLIPS[check_tta(tta)]
    dev = _device(model, device)
    was_training = model.training
    window = int(getattr(model, "inference_window", 0) or 0)  # eval.window, set on the network

    def logits(x: torch.Tensor) -> torch.Tensor:
        if window and (x.shape[-1] > window or x.shape[-2] > window):
            from monai.inferers import sliding_window_inference

            return sliding_window_inference(x, (window, window), max(1, batch_size), model, overlap=0.5,
                                            mode="gaussian")
        return model(x)

    model.eval()
    try:
        out = []
        for start in range(0, int(images.shape[0]), max(1, batch_size)):
            x = images[start:start + batch_size].to(dev, dtype=torch.float32)
            p = class_probs(logits(x).float())
            for dims in flips[1:]:  # B×K×S×S each, flipped back before summing
                p = p + class_probs(logits(x.flip(dims)).float()).flip(dims)
            out.append((p / len(flips) if len(flips) > 1 else p).cpu())
        if not out:
            return torch.zeros((0, 0, *images.shape[2:]), dtype=torch.float32)
        return torch.cat(out)
    finally:
        model.train(was_training)


def _labels_from_probs(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """K×H×W probabilities → H×W int64 labels (K = 2: foreground > threshold; else argmax)."""
    if probs.shape[0] == 2:
        return (probs[1] > threshold).long()
    return probs.argmax(dim=0)


def upsampled_labels(probs: torch.Tensor, size: tuple[int, int], threshold: float) -> np.ndarray:
    """K×S×S probabilities → bilinear to ``size`` (H, W) → H×W uint8 labels."""
    if tuple(probs.shape[1:]) != tuple(size):
        src = probs[1:2] if probs.shape[0] == 2 else probs  # binary: only p(fg) is needed
        up = F.interpolate(src[None], size=size, mode="bilinear", align_corners=False)[0]
        if probs.shape[0] == 2:
            return (up[0] > threshold).numpy().astype(np.uint8)
        return up.argmax(dim=0).numpy().astype(np.uint8)
    return _labels_from_probs(probs, threshold).numpy().astype(np.uint8)


def prediction_filename(stem: str) -> str:
    """PNG name of a predicted mask: ``<stem>_segmentation.png`` for ISIC stems, else ``<stem>.png``."""
    return f"{stem}_segmentation.png" if stem.startswith("ISIC_") else f"{stem}.png"


def _mask_png(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if num_classes == 2:
        return (labels > 0).astype(np.uint8) * 255
    return labels.astype(np.uint8)


LABEL_COLOURS = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                 (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))
"""Palette of multi-class prediction PNGs: index 0 (background) black, then distinct colours."""


def save_mask_png(path: str | Path, labels: np.ndarray, num_classes: int) -> None:
    """Save an H×W label array atomically as an 8-bit PNG a viewer shows and the data layer reads back.

    Binary: gray 0 / 255. Multi-class: a *palette* PNG whose pixel values are the label ids
    0..K-1 themselves (``np.asarray(Image.open(p))`` and tools reading ids get ids) while each
    id is shown in a distinct colour (raw ids 1, 2 would look black).
    """
    from PIL import Image

    arr = _mask_png(labels, num_classes)
    img = Image.fromarray(arr)  # mode L
    if num_classes > 2:
        colours = [LABEL_COLOURS[k % len(LABEL_COLOURS)] if k < num_classes else (0, 0, 0) for k in range(256)]
        img.putpalette([c for rgb in colours for c in rgb])  # L → P, pixel values (ids) kept
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def upsampled_probs(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """K×S×S probabilities → K×H×W at ``size`` (bilinear, as :func:`upsampled_labels` thresholds)."""
    if tuple(probs.shape[1:]) == tuple(size):
        return probs
    return F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0]


# --------------------------------------------------------------------------- overlays

def _boundary(mask: np.ndarray) -> np.ndarray:
    """H×W bool: foreground pixels with a 4-neighbour of another label, dilated to 2 px."""
    m = mask.astype(np.int64)
    edge = np.zeros(m.shape, dtype=bool)
    edge[1:, :] |= m[1:, :] != m[:-1, :]
    edge[:-1, :] |= m[:-1, :] != m[1:, :]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, :-1] != m[:, 1:]
    edge &= m > 0
    thick = edge.copy()
    thick[1:, :] |= edge[:-1, :]
    thick[:, 1:] |= edge[:, :-1]
    return thick


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if mask.shape == size:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST))


def overlay_image(image: torch.Tensor, gt: np.ndarray, pred: np.ndarray,
                  max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """Picture [image | image + GT contour (green) + predicted contour (red)] as H×2W×3 uint8.

    ``image`` is the C×S×S tensor in [0, 1] (C = 1 or 3); ``gt``/``pred`` are H×W label arrays
    at original resolution. The picture has the original aspect ratio, longest side ≤ ``max_side``.
    """
    h, w = gt.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    img = image.detach().float().cpu()
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    elif img.shape[0] != 3:
        img = img[:1].expand(3, -1, -1)
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    rgb = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    over = rgb.copy()
    over[_boundary(_resize_nearest(gt, size))] = (0, 255, 0)
    over[_boundary(_resize_nearest(pred, size))] = (255, 0, 0)
    return np.concatenate([rgb, over], axis=1)


def _overlay_indices(n: int, count: int) -> set[int]:
    if count <= 0 or n == 0:
        return set()
    if count >= n:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, count)}


# --------------------------------------------------------------------------- evaluation

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6f}"
    return str(v)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fieldnames: list[str] = []
    for r in rows:
        fieldnames.extend(k for k in r if k not in fieldnames)
    if not fieldnames:
        fieldnames = ["stem", *METRICS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def evaluate_set(model: torch.nn.Module, data: SegData, num_classes: int,
                 out_dir: str | Path | None = None, threshold: float = 0.5,
                 save_predictions: bool = True, overlays: int = 6, iou_threshold: float = 0.65,
                 device: str | torch.device | None = None, batch_size: int = 16,
                 class_names: Sequence[str] | None = None, tta: str = "none",
                 surface_tolerance: float | None = None) -> list[dict[str, Any]]:
    """Score ``model`` on every image of ``data`` at its original mask resolution.

    Predicts at the training size S (``data.images`` N×C×S×S), upsamples the N×K×S×S
    probabilities bilinearly to each ``data.orig_masks[i]`` (H_i×W_i; falls back to
    ``data.masks`` at S×S when ``orig_masks`` is None), thresholds / arg-maxes there and scores.

    Returns one row per image: ``{stem, dice, jaccard, jaccard_t, accuracy, sensitivity,
    specificity}`` (+ ``dice_<class>``/``jaccard_<class>`` when K > 2; class names from
    ``class_names`` or ``c1..``), then :func:`size_facts` (``fg_fraction``; binary: ``lesions``,
    ``lesions_found``). With ``out_dir`` also writes ``per_image.csv``,
    ``predictions/`` (if ``save_predictions``) and ``overlays/`` (see module docstring).
    ``tta`` (``none`` | ``flip``) is passed to :func:`predict_probs`. ``surface_tolerance`` (pixels;
    None = off) adds MONAI's boundary metrics ``hd95, asd, nsd, surface_undefined``
    (:mod:`scarce.evaluation.surface`) to every row.
    """
    return _evaluate_set(model, data, num_classes, out_dir, threshold, save_predictions, overlays,
                         iou_threshold, device, batch_size, class_names, tta=tta,
                         surface_tolerance=surface_tolerance)[0]


def _evaluate_set(model: torch.nn.Module, data: SegData, num_classes: int, out_dir: str | Path | None,
                  threshold: float, save_predictions: bool, overlays: int, iou_threshold: float,
                  device: str | torch.device | None, batch_size: int, class_names: Sequence[str] | None,
                  trimap_widths: Sequence[int] = (), tta: str = "none", surface_tolerance: float | None = None
                  ) -> tuple[list[dict[str, Any]], dict[int, float] | None]:
    """:func:`evaluate_set` plus, when ``trimap_widths`` is non-empty, the trimap mIoU of the same
    predictions (one pass: the upsampled labels are reused, so the numbers equal
    :func:`model_trimap` without predicting the set twice)."""
    out = Path(out_dir) if out_dir is not None else None
    n = len(data)
    gts = data.orig_masks if data.orig_masks is not None else [m.numpy().astype(np.uint8) for m in data.masks]
    if len(gts) != n:
        raise ValueError(f"test set {data.name!r}: {len(gts)} original masks for {n} images")
    stems = data.stems if len(data.stems) == n else [f"{i:05d}" for i in range(n)]
    show = _overlay_indices(n, overlays) if out is not None else set()
    per_class = num_classes > 2
    rows: list[dict[str, Any]] = []
    widths = sorted({int(w) for w in trimap_widths})
    confusions = {w: np.zeros((num_classes, num_classes), np.int64) for w in widths}
    for start in range(0, n, max(1, batch_size)):
        probs = predict_probs(model, data.images[start:start + batch_size], batch_size, device, tta=tta)
        for j in range(probs.shape[0]):
            i = start + j
            gt = np.asarray(gts[i])
            ch, cw = data.content(i)  # data.aspect=pad: the padding is cut off before scaling back
            pred = upsampled_labels(probs[j][:, :ch, :cw], tuple(gt.shape), threshold)
            row: dict[str, Any] = {"stem": stems[i]}
            row.update(image_metrics(pred, gt, num_classes, iou_threshold, per_class, class_names))
            row.update(size_facts(pred, gt, num_classes))
            if surface_tolerance is not None:  # at the original resolution, like Dice
                row.update(surface_metrics(pred, gt, num_classes, surface_tolerance, per_class, class_names))
            rows.append(row)
            if widths:
                for w, cm in trimap_confusions([pred], [gt], num_classes, widths).items():
                    confusions[w] += cm
            if out is None:
                continue
            if save_predictions:
                save_mask_png(out / PREDICTIONS_DIR / prediction_filename(stems[i]), pred, num_classes)
            if i in show:
                atomic_save_png(out / "overlays" / f"{stems[i]}.png",
                                overlay_image(data.images[i][:, :ch, :cw], gt, pred))
    if out is not None:
        _write_csv(out / PER_IMAGE_FILE, rows)
    trimap = {w: miou_from_confusion(cm) for w, cm in confusions.items()} if widths else None
    return rows, trimap


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def size_facts(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Per-image object-size columns of ``per_image.csv``: ``fg_fraction`` (the ground truth's
    non-background share, :func:`~scarce.evaluation.metrics.foreground_fraction`) and, for binary
    tasks, ``lesions`` / ``lesions_found`` (:func:`~scarce.evaluation.metrics.lesion_detection`)."""
    facts: dict[str, Any] = {"fg_fraction": foreground_fraction(gt)}
    if num_classes == 2:
        facts["lesions"], facts["lesions_found"] = lesion_detection(pred, gt)
    return facts


def size_results(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Set-level entries of the object-size evaluation, from :func:`size_facts` rows:
    ``by_size`` (:func:`~scarce.evaluation.metrics.size_table`: ``{bin: {n, <metric>_mean}}``)
    and, when the rows count lesions (binary tasks), ``detection_rate`` (found / lesions over the
    set; NaN without lesions), ``lesions`` and ``lesions_found`` (totals)."""
    out: dict[str, Any] = {"by_size": size_table(rows)}
    if any("lesions" in r for r in rows):
        out["detection_rate"], out["lesions"], out["lesions_found"] = detection_rate(rows)
    return out


def format_size_line(m: Mapping[str, Any], primary_metric: str = "dice") -> str | None:
    """The summary's object-size line of one set (None when its metrics have no ``by_size`` nor
    ``detection_rate``: runs evaluated before they existed), e.g.
    ``  by object size: <2% 0.144 (n=5) · 2-5% 0.630 (24) · 5-15% 0.756 (52) · >15% 0.731 (39);
    detection rate 0.852 (120/141 lesions)``. The ``empty`` bin is shown only when it holds images."""
    by_size = m.get("by_size") if isinstance(m.get("by_size"), Mapping) else None
    parts = []
    for b in size_bins() if by_size is not None else []:
        cell = by_size.get(b) if isinstance(by_size.get(b), Mapping) else {}
        n = int(cell.get("n") or 0)
        if b == size_bins()[0] and n == 0:
            continue
        mean = cell.get(f"{primary_metric}_mean")
        value = "—" if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f"{mean:.3f}"
        parts.append(f"{b} {value} ({'n=' if not parts else ''}{n})")
    text = f"by object size: {' · '.join(parts)}" if parts else ""
    if "detection_rate" in m:
        rate = m.get("detection_rate")
        shown = "—" if rate is None or (isinstance(rate, float) and math.isnan(rate)) else f"{rate:.3f}"
        det = f"detection rate {shown} ({m.get('lesions_found', 0)}/{m.get('lesions', 0)} lesions)"
        text = f"{text}; {det}" if text else det
    return f"  {text}" if text else None


def format_summary(metrics: Mapping[str, Mapping[str, Any]], primary_metric: str = "dice") -> list[str]:
    """Per test set one line, e.g. ``isic2018   jaccard 0.812 ± 0.120  dice 0.880 ± 0.090  (n=100)``,
    then (when the set's metrics hold them) its object-size line (:func:`format_size_line`)."""
    keys = [primary_metric] + [k for k in ("dice", "jaccard", "jaccard_t") if k != primary_metric]
    width = max((len(s) for s in metrics), default=0)
    lines = []
    for name, m in metrics.items():
        parts = []
        for k in keys:
            mean, std = m.get(f"{k}_mean"), m.get(f"{k}_std")
            if mean is None:
                continue
            parts.append(f"{k} {mean:.3f} ± {std:.3f}" if std is not None else f"{k} {mean:.3f}")
        note = f"; {m['note']}" if m.get("note") else ""
        lines.append(f"{name:<{width}}  " + "  ".join(parts) + f"  (n={m.get('n', 0)}{note})")
        size_line = format_size_line(m, primary_metric)
        if size_line is not None:
            lines.append(size_line)
        surface_line = format_surface_line(m)
        if surface_line is not None:
            lines.append(surface_line)
    return lines


def format_surface_line(m: Mapping[str, Any]) -> str | None:
    """The summary's boundary line of one set (None when its metrics hold no ``hd95_mean``), e.g.
    ``  boundary: hd95 3.20 ± 1.10 px  asd 1.05 ± 0.40 px  nsd@2px 0.853 ± 0.100  (undefined: 2)``."""
    if "hd95_mean" not in m:
        return None

    def cell(key: str, fmt: str) -> str:
        mean, std = m.get(f"{key}_mean"), m.get(f"{key}_std")
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return "—"
        return f"{mean:{fmt}} ± {std:{fmt}}" if std is not None and not math.isnan(float(std)) else f"{mean:{fmt}}"

    tol = m.get("surface_tolerance")
    nsd = f"nsd@{tol:g}px" if isinstance(tol, (int, float)) else "nsd"
    undefined = m.get("surface_undefined")
    tail = f"  (undefined: {undefined})" if undefined else ""
    return f"  boundary: hd95 {cell('hd95', '.2f')} px  asd {cell('asd', '.2f')} px  {nsd} {cell('nsd', '.3f')}{tail}"


def evaluate_sets(model: torch.nn.Module, tests: Mapping[str, SegData], num_classes: int,
                  out_dir: str | Path | None, primary_metric: str = "dice", threshold: float = 0.5,
                  save_predictions: bool = True, overlays: int = 6, iou_threshold: float = 0.65,
                  device: str | torch.device | None = None, batch_size: int = 16,
                  class_names: Sequence[str] | None = None,
                  trimap_widths: Sequence[int] = (), tta: str = "none",
                  surface_tolerance: float | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate the ID and OOD test sets in one call (see :func:`evaluate_set`).

    Returns ``{set: {dice_mean, dice_std, jaccard_mean, jaccard_std, jaccard_t_mean, ...,
    n}}`` in the order of ``tests`` (std over images, ddof 0; NaN → null in JSON). With
    ``out_dir`` writes ``out_dir/<set>/…`` per set (:func:`scarce.utils.paths.set_folder`), ``out_dir/metrics.json`` and
    ``out_dir/summary.txt`` (:func:`format_summary` lines, primary metric first).

    Each set's entry also holds ``by_size`` (mean of every metric per object-size bin, with n)
    and, for binary tasks, ``detection_rate``, ``lesions``, ``lesions_found``
    (:func:`size_results`; docs/evaluation.md).

    ``trimap_widths`` (e.g. ``[2, 4, 8, 16]``; empty = off) adds ``trimap: {width: mIoU}`` to
    each set's entry (:mod:`scarce.evaluation.trimap`, accumulated over the set at original
    resolution): boundary accuracy is what weak supervision trades away, and Dice hides it.

    ``tta`` (``none`` | ``flip``, ``eval.tta``): test-time augmentation of every prediction
    (:func:`predict_probs`); checked before the first set is scored.

    ``surface_tolerance`` (pixels, ``eval.surface_tolerance``; None = off): MONAI's boundary
    metrics per image (:mod:`scarce.evaluation.surface`), so each set's entry also holds
    ``hd95_mean``, ``asd_mean``, ``nsd_mean`` (+ std), ``surface_undefined`` (classes where exactly
    one of prediction and ground truth is empty: left out of the distance means) and
    ``surface_tolerance``.
    """
    check_tta(tta)
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, dict[str, Any]] = {}
    for name, data in tests.items():
        rows, trimap = _evaluate_set(model, data, num_classes, None if out is None else out / set_folder(name), threshold,
                                     save_predictions, overlays, iou_threshold, device, batch_size, class_names,
                                     trimap_widths, tta=tta, surface_tolerance=surface_tolerance)
        results[name] = _json_safe({**aggregate(rows), **size_results(rows)})
        if surface_tolerance is not None:
            results[name].update(surface_results(rows, surface_tolerance))
        if getattr(data, "excluded", 0):  # images the run trained on, left out of this test set
            results[name]["excluded"] = int(data.excluded)
            results[name]["note"] = str(data.note)
        if trimap is not None:
            results[name]["trimap"] = _json_safe(trimap)
    if out is not None:
        atomic_write_json(out / METRICS_FILE, results)
        atomic_write_text(out / SUMMARY_FILE, "\n".join(format_summary(results, primary_metric)) + "\n")
    return results


@torch.no_grad()
def validate(model: torch.nn.Module, data: SegData, metric: str = "dice", threshold: float = 0.5,
             batch_size: int = 16, device: str | torch.device | None = None,
             iou_threshold: float = 0.65, tta: str = "none") -> float:
    """Fast validation score: mean per-image ``metric`` at training resolution S.

    ``metric`` is ``dice`` | ``jaccard`` | ``jaccard_t`` (foreground-class mean per image,
    empty GT and prediction = 1.0, as :mod:`scarce.evaluation.metrics`). Compares against
    ``data.masks`` (N×S×S) — no upsampling — so the trainer can call it every k iterations.
    ``tta`` as :func:`predict_probs` (the trainer passes ``eval.tta`` so checkpoint selection
    scores the model as its evaluation will; ``flip`` triples the cost of a validation).

    A ``data.partial`` set (scribbles held out when no image has a mask) is scored on its
    labelled pixels only: the ``metric`` per foreground class pooled over all those pixels of all
    images (few pixels per image would make per-image scores mostly empty), then averaged.
    """
    if metric not in ("dice", "jaccard", "jaccard_t"):
        raise ValueError(f"validation metric must be 'dice', 'jaccard' or 'jaccard_t', got {metric!r}")
    n = len(data)
    if n == 0:
        return float("nan")
    k = data.num_classes
    if getattr(data, "partial", False):
        return _validate_partial(model, data, metric, threshold, batch_size, device, tta)
    scores = []
    for start in range(0, n, max(1, batch_size)):
        probs = predict_probs(model, data.images[start:start + batch_size], batch_size, device, tta=tta)
        pred = (probs[:, 1] > threshold).long() if probs.shape[1] == 2 else probs.argmax(dim=1)
        gt = data.masks[start:start + batch_size].long()
        p1 = F.one_hot(pred, k).flatten(1, 2)[..., 1:].sum(1).double()  # B×(K-1) |A|
        g1 = F.one_hot(gt, k).flatten(1, 2)[..., 1:].sum(1).double()  # B×(K-1) |B|
        inter = F.one_hot(torch.where(pred == gt, pred, torch.zeros_like(pred)), k).flatten(1, 2)[..., 1:].sum(1).double()
        total = p1 + g1
        if metric == "dice":
            s = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
        else:
            union = total - inter
            s = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        s = s.mean(dim=1)
        if metric == "jaccard_t":
            s = torch.where(s >= iou_threshold, s, torch.zeros_like(s))
        scores.append(s)
    return float(torch.cat(scores).mean())


def _validate_partial(model: torch.nn.Module, data: SegData, metric: str, threshold: float, batch_size: int,
                      device: str | torch.device | None, tta: str) -> float:
    """:func:`validate` of a ``partial`` set: pooled per-class ``metric`` on the labelled pixels
    (``masks`` != 255); a class absent from both the prediction and the labels there scores 1."""
    k = data.num_classes
    inter = torch.zeros(k - 1, dtype=torch.float64)
    total = torch.zeros(k - 1, dtype=torch.float64)
    for start in range(0, len(data), max(1, batch_size)):
        probs = predict_probs(model, data.images[start:start + batch_size], batch_size, device, tta=tta)
        pred = (probs[:, 1] > threshold).long() if probs.shape[1] == 2 else probs.argmax(dim=1)
        gt = data.masks[start:start + batch_size].long().to(pred.device)
        scored = gt < k
        p, g = pred[scored], gt[scored]
        for c in range(1, k):
            inter[c - 1] += float(((p == c) & (g == c)).sum())
            total[c - 1] += float((p == c).sum() + (g == c).sum())
    if metric == "dice":
        s = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    else:
        union = total - inter
        s = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return float(s.mean())


def model_trimap(model: torch.nn.Module, data: SegData, widths: Sequence[int] = DEFAULT_WIDTHS, threshold: float = 0.5,
                 batch_size: int = 8) -> dict[int, float]:
    """Trimap mIoU of ``model`` on a :class:`~scarce.data.types.SegData`: scored at each image's
    original resolution when ``data.orig_masks`` is set (probabilities upsampled bilinearly, as
    :mod:`scarce.evaluation.evaluate`), else at the training size against ``data.masks``."""
    preds, gts = [], []
    for start in range(0, len(data), batch_size):
        probs = predict_probs(model, data.images[start:start + batch_size], batch_size)
        for j in range(probs.shape[0]):
            i = start + j
            p = probs[j:j + 1]
            if data.orig_masks is not None:
                gt = np.asarray(data.orig_masks[i]).astype(np.int64)
                ch, cw = data.content(i)
                p = F.interpolate(p[..., :ch, :cw], size=gt.shape, mode="bilinear", align_corners=False)
            else:
                gt = data.masks[i].cpu().numpy()
            lab = (p[0, 1] > threshold).long() if p.shape[1] == 2 else p[0].argmax(0)
            preds.append(lab.numpy())
            gts.append(gt)
    return trimap_miou(preds, gts, data.num_classes, widths)

