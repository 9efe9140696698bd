"""Trimap accuracy: how well predicted segments align with ground-truth boundaries.

A trimap of width w is the band of pixels within Euclidean distance ≤ w of a ground-truth
boundary (Kohli et al.; Krähenbühl & Koltun; the paper's Figure 6). Accuracy inside the band is
the mean IoU over classes, accumulated over a whole set (one confusion matrix per width, as in
the VOC protocol), so narrow bands are not dominated by images with little boundary.

Boundary pixels: pixels with a 4-neighbour of a different ground-truth label (both sides of every
boundary). Pure numpy/scipy on label arrays (H×W int label ids); images may differ in size.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

DEFAULT_WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32)


def boundary_map(gt: np.ndarray) -> np.ndarray:
    """H×W bool: pixels with a 4-neighbour of a different label."""
    g = np.asarray(gt)
    b = np.zeros(g.shape, bool)
    dv = g[1:, :] != g[:-1, :]
    dh = g[:, 1:] != g[:, :-1]
    b[1:, :] |= dv
    b[:-1, :] |= dv
    b[:, 1:] |= dh
    b[:, :-1] |= dh
    return b


def trimap_bands(gt: np.ndarray, widths: Sequence[int]) -> dict[int, np.ndarray]:
    """{w: H×W bool band of pixels within distance ≤ w of a GT boundary pixel}."""
    from scipy import ndimage

    b = boundary_map(gt)
    if not b.any():
        return {int(w): np.zeros(b.shape, bool) for w in widths}
    dist = ndimage.distance_transform_edt(~b)
    return {int(w): dist <= w for w in widths}


def _confusion(pred: np.ndarray, gt: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(gt.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k).reshape(k, k)


def miou_from_confusion(cm: np.ndarray) -> float:
    """Mean IoU over classes with a non-empty union (NaN if none)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    ok = union > 0
    return float((tp[ok] / union[ok]).mean()) if ok.any() else float("nan")


def trimap_confusions(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], num_classes: int,
                      widths: Sequence[int] = DEFAULT_WIDTHS) -> dict[int, np.ndarray]:
    """Accumulated K×K confusion matrices (``C[g, p]``) inside each band over a set of images."""
    k = int(num_classes)
    acc = {int(w): np.zeros((k, k), np.int64) for w in widths}
    for pred, gt in zip(preds, gts):
        p, g = np.asarray(pred), np.asarray(gt)
        if p.shape != g.shape:
            raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
        for w, band in trimap_bands(g, widths).items():
            acc[w] += _confusion(p[band], g[band], k)
    return acc


def trimap_miou(preds: Iterable[np.ndarray] | np.ndarray, gts: Iterable[np.ndarray] | np.ndarray, num_classes: int,
                widths: Sequence[int] = DEFAULT_WIDTHS) -> dict[int, float]:
    """{width: mIoU inside the trimap band} over a set; single H×W arrays are accepted too."""
    if isinstance(preds, np.ndarray) and preds.ndim == 2:
        preds, gts = [preds], [np.asarray(gts)]
    return {w: miou_from_confusion(cm) for w, cm in trimap_confusions(preds, gts, num_classes, widths).items()}


__all__ = ["DEFAULT_WIDTHS", "boundary_map", "trimap_bands", "trimap_confusions", "trimap_miou", "miou_from_confusion"]
