"""Segmentation metrics as pure functions on numpy label arrays (H×W int label ids).

Why pure numpy: metrics are computed at each image's *original* mask resolution, where images
differ in size and cannot be batched; a per-image confusion matrix is cheap and every score
(Dice, Jaccard, accuracy, sensitivity, specificity) follows from it.

Conventions (same as the official ISIC 2018 scorer):

* empty ground truth **and** empty prediction for a class → Dice = Jaccard = 1.0 (a correct
  "nothing there"); empty ground truth with a non-empty prediction → 0.0.
* ``thresholded_jaccard``: ISIC 2018 Task 1 score — a per-image Jaccard below 0.65 counts 0.
* multi-class (K > 2): per-image scores are the mean over the **foreground** classes 1..K-1
  (background is never averaged in); ``per_class=True`` also returns each class's score.
  The thresholded Jaccard of a multi-class image thresholds that image's mean Jaccard.
* sensitivity/specificity are one-vs-rest per foreground class (macro mean for K > 2);
  0/0 (e.g. sensitivity on an image without foreground) → 1.0, as for Dice.
* accuracy is plain pixel accuracy over all classes.

:class:`SegMetric` accumulates per-image rows and aggregates them (mean ± std), like MONAI's
``DiceMetric`` but with the row kept per image so it can be written to ``per_image.csv``.

Object size and lesion detection (why: a mean Dice hides how small objects fare, and small
lesions are the ones a clinician most needs found): :func:`foreground_fraction` (share of the
frame that is not background) and :func:`size_bin` (:data:`SIZE_BINS`) split a test set by object
size, :func:`size_table` gives the mean of each metric per bin; :func:`lesion_detection` counts
the ground truth's connected components and how many a prediction found (IoU ≥ 0.1 with a
predicted component, or its centroid inside the predicted mask), :func:`detection_rate` pools
them over a set. These per-image counts (:data:`IMAGE_FACTS`) are facts, not scores:
:func:`aggregate` leaves them out of its means.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

METRICS: tuple[str, ...] = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity")
"""Per-image metric keys written by :func:`image_metrics` (in this order)."""


def _labels(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"label arrays must hold integer label ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def confusion(pred: Any, gt: Any, k: int) -> np.ndarray:
    """K×K confusion matrix (int64); ``C[g, p]`` = number of pixels with GT ``g`` predicted ``p``.

    ``pred`` and ``gt`` are same-shaped integer label arrays with values in 0..k-1.
    """
    p, g = _labels(pred), _labels(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    if p.size and (p.min() < 0 or g.min() < 0 or p.max() >= k or g.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1} (pred max {p.max()}, gt max {g.max()})")
    return np.bincount((g * k + p).ravel(), minlength=k * k).reshape(k, k).astype(np.int64)


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num) / float(den) if den > 0 else float(empty)


def _class_counts(cm: np.ndarray, label: int) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) for ``label`` one-vs-rest from a confusion matrix."""
    tp = int(cm[label, label])
    fn = int(cm[label, :].sum()) - tp
    fp = int(cm[:, label].sum()) - tp
    tn = int(cm.sum()) - tp - fn - fp
    return tp, fp, fn, tn


def _binary(pred: Any, gt: Any, label: int) -> tuple[int, int, int, int]:
    p = _labels(pred) == label
    g = _labels(gt) == label
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    return tp, fp, fn, int(p.size) - tp - fp - fn


def dice(pred: Any, gt: Any, label: int = 1, empty: float = 1.0) -> float:
    """Dice of one class, 2|A∩B| / (|A| + |B|) with A = (pred == label), B = (gt == label).

    ``empty`` is returned when both are empty (1.0 as ISIC; pass ``nan`` to skip such images).
    """
    tp, fp, fn, _ = _binary(pred, gt, label)
    return _ratio(2 * tp, 2 * tp + fp + fn, empty)


def jaccard(pred: Any, gt: Any, label: int = 1, empty: float = 1.0) -> float:
    """Jaccard (IoU) of one class, |A∩B| / |A∪B|; ``empty`` when both masks are empty."""
    tp, fp, fn, _ = _binary(pred, gt, label)
    return _ratio(tp, tp + fp + fn, empty)


def thresholded_jaccard(j: Any, threshold: float = 0.65) -> Any:
    """ISIC 2018 Task 1 score: Jaccard values below ``threshold`` become 0 (float or array)."""
    if np.ndim(j) == 0:
        v = float(j)
        return v if v >= threshold else 0.0
    arr = np.asarray(j, dtype=np.float64)
    return np.where(arr >= threshold, arr, 0.0)


def class_scores(cm: np.ndarray, empty: float = 1.0) -> dict[str, np.ndarray]:
    """Per-class one-vs-rest scores from a K×K confusion matrix.

    Returns ``{"dice", "jaccard", "sensitivity", "specificity"}`` → arrays of shape (K,)
    (index 0 is background; averages use 1..K-1 only).
    """
    k = cm.shape[0]
    out: dict[str, list[float]] = {"dice": [], "jaccard": [], "sensitivity": [], "specificity": []}
    for c in range(k):
        tp, fp, fn, tn = _class_counts(cm, c)
        out["dice"].append(_ratio(2 * tp, 2 * tp + fp + fn, empty))
        out["jaccard"].append(_ratio(tp, tp + fp + fn, empty))
        out["sensitivity"].append(_ratio(tp, tp + fn, empty))
        out["specificity"].append(_ratio(tn, tn + fp, empty))
    return {key: np.asarray(v, dtype=np.float64) for key, v in out.items()}


def mean_dice(pred: Any, gt: Any, num_classes: int, per_class: bool = False,
              empty: float = 1.0) -> float | tuple[float, np.ndarray]:
    """Mean Dice over foreground classes 1..K-1 (``per_class`` → also the (K-1,) array)."""
    scores = class_scores(confusion(pred, gt, num_classes), empty)["dice"][1:]
    m = float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")
    return (m, scores) if per_class else m


def mean_jaccard(pred: Any, gt: Any, num_classes: int, per_class: bool = False,
                 empty: float = 1.0) -> float | tuple[float, np.ndarray]:
    """Mean Jaccard over foreground classes 1..K-1 (``per_class`` → also the (K-1,) array)."""
    scores = class_scores(confusion(pred, gt, num_classes), empty)["jaccard"][1:]
    m = float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")
    return (m, scores) if per_class else m


def accuracy(pred: Any, gt: Any) -> float:
    """Pixel accuracy over all classes (1.0 for empty arrays)."""
    p, g = _labels(pred), _labels(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    return _ratio(np.count_nonzero(p == g), p.size, 1.0)


def sensitivity(pred: Any, gt: Any, label: int = 1, empty: float = 1.0) -> float:
    """Recall of ``label``: TP / (TP + FN); ``empty`` when GT has no such pixel."""
    tp, _, fn, _ = _binary(pred, gt, label)
    return _ratio(tp, tp + fn, empty)


def specificity(pred: Any, gt: Any, label: int = 1, empty: float = 1.0) -> float:
    """TN / (TN + FP) for ``label`` one-vs-rest; ``empty`` when every GT pixel is ``label``."""
    _, fp, _, tn = _binary(pred, gt, label)
    return _ratio(tn, tn + fp, empty)


def _nanmean(a: np.ndarray) -> float:
    return float("nan") if a.size == 0 or np.all(np.isnan(a)) else float(np.nanmean(a))


def image_metrics(pred: Any, gt: Any, num_classes: int = 2, iou_threshold: float = 0.65,
                  per_class: bool = False, class_names: Sequence[str] | None = None,
                  empty: float = 1.0) -> dict[str, float]:
    """All per-image metrics of one H×W prediction against its H×W ground truth.

    Returns ``{dice, jaccard, jaccard_t, accuracy, sensitivity, specificity}`` (foreground
    mean for K > 2). With ``per_class`` (meaningful for K > 2) adds ``dice_<name>`` and
    ``jaccard_<name>`` per foreground class; names default to ``c1..c{K-1}``.
    """
    cm = confusion(pred, gt, num_classes)
    s = class_scores(cm, empty)
    j = _nanmean(s["jaccard"][1:])
    row = {
        "dice": _nanmean(s["dice"][1:]),
        "jaccard": j,
        "jaccard_t": float("nan") if math.isnan(j) else float(thresholded_jaccard(j, iou_threshold)),
        "accuracy": _ratio(np.trace(cm), cm.sum(), 1.0),
        "sensitivity": _nanmean(s["sensitivity"][1:]),
        "specificity": _nanmean(s["specificity"][1:]),
    }
    if per_class:
        names = _class_names(num_classes, class_names)
        for c in range(1, num_classes):
            row[f"dice_{names[c]}"] = float(s["dice"][c])
            row[f"jaccard_{names[c]}"] = float(s["jaccard"][c])
    return row


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None and len(class_names) == num_classes:
        return [str(n) for n in class_names]
    return ["background"] + [f"c{c}" for c in range(1, num_classes)]


def aggregate(rows: Iterable[Mapping[str, Any]], keys: Sequence[str] | None = None,
              ddof: int = 0) -> dict[str, float]:
    """Mean and std of every numeric key over per-image rows → ``{k_mean, k_std, ..., n}``.

    NaN entries (images skipped via ``empty=nan``) are ignored. ``ddof=0``: the test set is the
    whole population being described, not a sample. Without ``keys``, the per-image facts of
    :data:`IMAGE_FACTS` (object size, lesion counts) are not averaged.
    """
    rows = list(rows)
    if keys is None:
        keys = []
        for r in rows:
            for k, v in r.items():
                if (k not in keys and k not in IMAGE_FACTS and isinstance(v, (int, float, np.floating, np.integer))
                        and not isinstance(v, bool)):
                    keys.append(k)
    out: dict[str, float] = {}
    for k in keys:
        vals = np.asarray([float(r[k]) for r in rows if k in r], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        out[f"{k}_mean"] = float(vals.mean()) if vals.size else float("nan")
        out[f"{k}_std"] = float(vals.std(ddof=ddof)) if vals.size > ddof else float("nan")
    out["n"] = len(rows)
    return out


class SegMetric:
    """Stateful accumulator of per-image metric rows (like MONAI's ``DiceMetric``).

    >>> m = SegMetric(num_classes=2)
    >>> m.update(pred, gt, stem="img1")   # H×W label arrays; returns the row
    >>> m.aggregate()                     # {"dice_mean": ..., "dice_std": ..., "n": 1}
    """

    def __init__(self, num_classes: int = 2, iou_threshold: float = 0.65, per_class: bool = False,
                 class_names: Sequence[str] | None = None, empty: float = 1.0) -> None:
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.per_class = per_class
        self.class_names = class_names
        self.empty = empty
        self.rows: list[dict[str, Any]] = []

    def update(self, pred: Any, gt: Any, stem: str | None = None) -> dict[str, Any]:
        """Score one H×W prediction; the row (with ``stem`` first when given) is kept and returned."""
        row: dict[str, Any] = {} if stem is None else {"stem": stem}
        row.update(image_metrics(pred, gt, self.num_classes, self.iou_threshold, self.per_class,
                                 self.class_names, self.empty))
        self.rows.append(row)
        return row

    __call__ = update

    def reset(self) -> None:
        self.rows = []

    def __len__(self) -> int:
        return len(self.rows)

    def aggregate(self) -> dict[str, float]:
        """Mean ± std (ddof 0) of every metric over the accumulated images, plus ``n``."""
        return aggregate(self.rows)


# --------------------------------------------------------------------------- object size and lesions

IMAGE_FACTS: tuple[str, ...] = ("fg_fraction", "lesions", "lesions_found", "surface_undefined")
"""Per-image keys that describe the image (:func:`foreground_fraction`, :func:`lesion_detection`,
the boundary metrics' count of undefined classes, :mod:`scarce.evaluation.surface`) rather than
score it; :func:`aggregate` does not average them."""

EMPTY_BIN = "empty"
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("<2%", 0.0, 0.02), ("2-5%", 0.02, 0.05), ("5-15%", 0.05, 0.15), (">15%", 0.15, 1.0))
"""Object-size bins ``(label, lo, hi)`` by foreground fraction f: ``<2%`` is 0 < f < 0.02,
``2-5%`` 0.02 ≤ f < 0.05, ``5-15%`` 0.05 ≤ f ≤ 0.15, ``>15%`` f > 0.15; f = 0 (empty ground
truth) is its own bin :data:`EMPTY_BIN`, listed first by :func:`size_bins`."""

DETECTION_IOU = 0.1
"""A ground-truth component counts as found at IoU ≥ this with one predicted component."""


def size_bins() -> list[str]:
    """Bin labels in table order: :data:`EMPTY_BIN`, then :data:`SIZE_BINS` small to large."""
    return [EMPTY_BIN] + [label for label, _, _ in SIZE_BINS]


def foreground_fraction(gt: Any) -> float:
    """Share of the pixels of ``gt`` that are not background (label ≠ 0; any foreground class
    for multi-class masks): 0.0 for an empty mask, NaN for a 0-pixel array."""
    g = _labels(gt)
    return _ratio(np.count_nonzero(g), g.size, float("nan"))


def size_bin(fraction: float) -> str:
    """The :data:`SIZE_BINS` label of a foreground fraction (:data:`EMPTY_BIN` for 0)."""
    f = float(fraction)
    if math.isnan(f) or f < 0 or f > 1:
        raise ValueError(f"foreground fraction must lie in [0, 1], got {fraction!r}")
    if f == 0:
        return EMPTY_BIN
    if f < 0.02:
        return "<2%"
    if f < 0.05:
        return "2-5%"
    return "5-15%" if f <= 0.15 else ">15%"


def size_table(rows: Iterable[Mapping[str, Any]], metrics: Sequence[str] = METRICS,
               key: str = "fg_fraction") -> dict[str, dict[str, Any]]:
    """Metrics by object size: ``{bin: {"n": images, "<m>_mean": mean of m over them}}`` for every
    bin of :func:`size_bins` (n = 0 and NaN means when a bin holds no image), from per-image rows
    carrying ``key`` (:func:`foreground_fraction`); rows without it are left out. NaN scores are
    ignored as :func:`aggregate` does."""
    groups: dict[str, list[Mapping[str, Any]]] = {b: [] for b in size_bins()}
    for r in rows:
        f = r.get(key)
        if f is None or math.isnan(float(f)):
            continue
        groups[size_bin(float(f))].append(r)
    out: dict[str, dict[str, Any]] = {}
    for b, members in groups.items():
        agg = aggregate(members, keys=[m for m in metrics])
        out[b] = {"n": len(members), **{f"{m}_mean": agg[f"{m}_mean"] for m in metrics}}
    return out


def lesion_detection(pred: Any, gt: Any, iou_threshold: float = DETECTION_IOU) -> tuple[int, int]:
    """(lesions, found) of one binary H×W prediction: ``lesions`` = connected components of the
    ground-truth foreground (label ≠ 0; 8-connectivity, :func:`scipy.ndimage.label`), ``found`` =
    how many of them a prediction hit: IoU ≥ ``iou_threshold`` with one connected component of
    the predicted foreground, or the component's centroid (rounded to the nearest pixel) inside
    the predicted foreground. A predicted component may find several lesions."""
    from scipy import ndimage

    p, g = _labels(pred) != 0, _labels(gt) != 0
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}")
    structure = np.ones((3,) * g.ndim, dtype=bool)
    g_lab, n_g = ndimage.label(g, structure=structure)
    if n_g == 0:
        return 0, 0
    p_lab, n_p = ndimage.label(p, structure=structure)
    g_area = np.bincount(g_lab.ravel(), minlength=n_g + 1)[1:]
    p_area = np.bincount(p_lab.ravel(), minlength=n_p + 1)[1:]
    both = (g_lab > 0) & (p_lab > 0)
    pairs, inter = np.unique((g_lab[both] - 1).astype(np.int64) * n_p + (p_lab[both] - 1), return_counts=True)
    gi, pi = pairs // max(n_p, 1), pairs % max(n_p, 1)  # overlapping (lesion, predicted component) pairs only
    iou = inter / (g_area[gi] + p_area[pi] - inter)
    by_iou = np.zeros(n_g, dtype=bool)
    by_iou[gi[iou >= iou_threshold]] = True
    centroids = ndimage.center_of_mass(g, g_lab, index=np.arange(1, n_g + 1))
    idx = np.floor(np.asarray(centroids, dtype=np.float64) + 0.5).astype(np.int64)
    by_centre = p[tuple(idx.T)]
    return int(n_g), int(np.count_nonzero(by_iou | by_centre))


def detection_rate(rows: Iterable[Mapping[str, Any]]) -> tuple[float, int, int]:
    """(found / lesions pooled over the rows, lesions, found) from per-image ``lesions`` and
    ``lesions_found`` (:func:`lesion_detection`); rate NaN when the rows hold no lesion."""
    lesions = found = 0
    for r in rows:
        if r.get("lesions") is not None:
            lesions += int(r["lesions"])
            found += int(r.get("lesions_found") or 0)
    return _ratio(found, lesions, float("nan")), lesions, found
