"""Boundary metrics from MONAI, per image at the original mask resolution: HD95, average
surface distance (ASD) and normalised surface Dice (NSD).

Why: Dice and Jaccard count pixels, so a mask that is right in bulk but ragged or displaced at
its border scores well; the field reports boundary distances beside them (the Medical
Segmentation Decathlon, nnU-Net's papers, the Metrics Reloaded recommendations). The boundaries and
distances come from MONAI (:func:`monai.metrics.utils.get_edge_surface_distance`, the function
behind :func:`monai.metrics.compute_hausdorff_distance`,
:func:`~monai.metrics.compute_average_surface_distance` and
:func:`~monai.metrics.compute_surface_dice`), reduced exactly as those three reduce them. Called
once per class instead of once per metric, it costs a third of the time; a test checks that the
numbers equal the three MONAI functions'. Only the cases MONAI leaves as inf/NaN are decided here.

Conventions (distances in pixels of the original mask, Euclidean, unit spacing):

* ``hd95``: symmetric 95th-percentile Hausdorff distance between the boundary pixels of the
  predicted and the ground-truth masks (max of the two directed 95th percentiles, MONAI);
* ``asd``: mean of all boundary-to-boundary distances in both directions (MONAI's symmetric ASD);
* ``nsd``: share of both boundaries lying within ``tolerance`` pixels of the other boundary
  (``eval.surface_tolerance``, default 2 px; 1.0 = every boundary pixel within tolerance).
* both masks empty (nothing there, nothing predicted): ``hd95`` = ``asd`` = 0, ``nsd`` = 1 —
  a correct "nothing there", as Dice = 1 in :mod:`scarce.evaluation.metrics`;
* exactly one mask empty (an object missed, or one predicted where there is none): ``hd95`` and
  ``asd`` are undefined (MONAI: inf or NaN) and stored as NaN, so they drop out of the means; such
  cases are counted (``surface_undefined`` in ``metrics.json``) so a model that misses objects
  cannot hide behind a small mean distance. ``nsd`` is 0 there (no boundary pixel is right;
  MONAI's own value), like Dice.
* multi-class (K > 2): per image, the mean over the foreground classes 1..K-1 with NaN classes
  left out (NaN when every class is undefined); ``per_class`` adds ``hd95_<name>``,
  ``asd_<name>``, ``nsd_<name>``.

Cost: MONAI finds the boundary pixels inside the masks' bounding box and measures distances with
a KD-tree over them: milliseconds per image (docs/evaluation.md gives timings).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

SURFACE_METRICS: tuple[str, ...] = ("hd95", "asd", "nsd")
"""Per-image keys written by :func:`surface_metrics` (in this order)."""

DEFAULT_TOLERANCE = 2.0
"""Default NSD tolerance in pixels (``eval.surface_tolerance``)."""

UNDEFINED = "surface_undefined"
"""Per-image count (and set total in ``metrics.json``) of foreground classes where exactly one of
prediction and ground truth is empty, so ``hd95``/``asd`` are undefined (NaN)."""


def check_tolerance(tolerance: Any) -> float:
    """``tolerance`` as a float ≥ 0, else ValueError naming ``eval.surface_tolerance``."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ValueError(f"eval.surface_tolerance must be a number of pixels >= 0 (e.g. 2), got {tolerance!r}")
    return float(tolerance)


def class_surface(pred: np.ndarray, gt: np.ndarray, tolerance: float = DEFAULT_TOLERANCE
                  ) -> tuple[float, float, float]:
    """(hd95, asd, nsd) of one pair of H×W boolean masks (the conventions above; MONAI computes
    every case where both masks hold foreground)."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return 0.0, 0.0, 1.0
    if not has_p or not has_g:
        return float("nan"), float("nan"), 0.0
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():  # MONAI's notes on empty masks (none here) and a deprecated argument
        warnings.simplefilter("ignore")
        _, (d_pg, d_gp), _ = get_edge_surface_distance(torch.from_numpy(p).float(), torch.from_numpy(g).float(),
                                                       distance_metric="euclidean", symmetric=True)
    # as compute_hausdorff_distance(percentile=95): the larger of the two directed 95th percentiles
    hd95 = max(float(torch.quantile(d_pg, 0.95)), float(torch.quantile(d_gp, 0.95)))
    asd = float(torch.cat([d_pg, d_gp]).mean())  # compute_average_surface_distance(symmetric=True)
    nsd = float(((d_pg <= tolerance).sum() + (d_gp <= tolerance).sum()) / (len(d_pg) + len(d_gp)))  # surface Dice
    return hd95, asd, nsd


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float("nan") if arr.size == 0 or np.all(np.isnan(arr)) else float(np.nanmean(arr))


def surface_metrics(pred: Any, gt: Any, num_classes: int = 2, tolerance: float = DEFAULT_TOLERANCE,
                    per_class: bool = False, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """``{hd95, asd, nsd, surface_undefined}`` of one H×W label prediction against its H×W ground
    truth (integer label ids 0..K-1; foreground-class mean for K > 2; the module's conventions).
    ``per_class`` adds ``hd95_<name>``, ``asd_<name>``, ``nsd_<name>`` per foreground class
    (names default to ``c1..c{K-1}``)."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    tol = check_tolerance(tolerance)
    scores = [class_surface(p == c, g == c, tol) for c in range(1, num_classes)]
    row: dict[str, float] = {
        "hd95": _nanmean([s[0] for s in scores]),
        "asd": _nanmean([s[1] for s in scores]),
        "nsd": _nanmean([s[2] for s in scores]),
        UNDEFINED: sum(1 for s in scores if math.isnan(s[0])),
    }
    if per_class:
        names = (list(class_names) if class_names is not None and len(class_names) == num_classes
                 else ["background"] + [f"c{c}" for c in range(1, num_classes)])
        for c, (hd, asd, nsd) in enumerate(scores, start=1):
            row[f"hd95_{names[c]}"], row[f"asd_{names[c]}"], row[f"nsd_{names[c]}"] = hd, asd, nsd
    return row


def surface_results(rows: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Set-level entries besides the means: ``surface_undefined`` (total over the set's images) and
    the ``surface_tolerance`` the NSD used."""
    return {UNDEFINED: int(sum(int(r.get(UNDEFINED, 0) or 0) for r in rows)), "surface_tolerance": float(tolerance)}


__all__ = ["DEFAULT_TOLERANCE", "SURFACE_METRICS", "UNDEFINED", "check_tolerance", "class_surface",
           "surface_metrics", "surface_results"]
