"""Metrics against hand-computed tables (4×4 masks; values worked out in the comments)."""
import math

import numpy as np
import pytest

from scarce.evaluation.metrics import (
    SegMetric, accuracy, aggregate, confusion, dice, image_metrics, jaccard, mean_dice,
    mean_jaccard, sensitivity, specificity, thresholded_jaccard,
)

# pred A: 2×2 block top-left (|A| = 4); gt B: 2×2 block shifted right by one (|B| = 4)
A = np.array([[1, 1, 0, 0],
              [1, 1, 0, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0]])
B = np.array([[0, 1, 1, 0],
              [0, 1, 1, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0]])
# |A∩B| = 2, |A∪B| = 6 → tp 2, fp 2, fn 2, tn 10
EMPTY = np.zeros((4, 4), dtype=np.int64)
GT4 = A.copy()                                   # 2×2 block, 4 pixels
PRED6 = np.zeros((4, 4), int); PRED6[:2, :3] = 1  # 2×3 block ⊇ GT4, 6 pixels, ∩ = 4
PRED9 = np.zeros((4, 4), int); PRED9[:3, :3] = 1  # 3×3 block ⊇ GT4, 9 pixels, ∩ = 4

# (pred, gt, dice, jaccard, jaccard_t)
TABLE = [
    (A, B, 4 / 8, 2 / 6, 0.0),             # dice 2·2/(4+4), J 2/6 < 0.65 → 0
    (PRED6, GT4, 8 / 10, 4 / 6, 4 / 6),    # dice 2·4/(6+4), J 4/6 = 0.667 ≥ 0.65 kept
    (PRED9, GT4, 8 / 13, 4 / 9, 0.0),      # dice 2·4/(9+4), J 4/9 < 0.65 → 0
    (GT4, GT4, 1.0, 1.0, 1.0),             # perfect
    (EMPTY, EMPTY, 1.0, 1.0, 1.0),         # empty GT and empty prediction = 1 (ISIC)
    (A, EMPTY, 0.0, 0.0, 0.0),             # empty GT, non-empty prediction = 0
    (EMPTY, A, 0.0, 0.0, 0.0),             # missed lesion = 0
]


@pytest.mark.parametrize("pred,gt,d,j,jt", TABLE)
def test_binary_table(pred, gt, d, j, jt):
    assert dice(pred, gt) == pytest.approx(d)
    assert jaccard(pred, gt) == pytest.approx(j)
    assert thresholded_jaccard(jaccard(pred, gt)) == pytest.approx(jt)
    row = image_metrics(pred, gt, 2)
    assert row["dice"] == pytest.approx(d)
    assert row["jaccard"] == pytest.approx(j)
    assert row["jaccard_t"] == pytest.approx(jt)


def test_confusion_and_rates():
    cm = confusion(A, B, 2)
    # rows = GT, cols = prediction: [[tn, fp], [fn, tp]]
    assert cm.tolist() == [[10, 2], [2, 2]]
    assert accuracy(A, B) == pytest.approx(12 / 16)
    assert sensitivity(A, B) == pytest.approx(2 / 4)
    assert specificity(A, B) == pytest.approx(10 / 12)
    row = image_metrics(A, B, 2)
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["sensitivity"] == pytest.approx(0.5)
    assert row["specificity"] == pytest.approx(10 / 12)
    # sensitivity without any GT foreground is 0/0 → 1.0; specificity with all-foreground GT too
    assert sensitivity(EMPTY, EMPTY) == 1.0
    assert specificity(np.ones((2, 2), int), np.ones((2, 2), int)) == 1.0


def test_bool_inputs_and_label_argument():
    assert dice(A.astype(bool), B.astype(bool)) == pytest.approx(0.5)
    # label=0 scores the background: |A0| = 12, |B0| = 12, ∩ = 10 → 20/24
    assert dice(A, B, label=0) == pytest.approx(20 / 24)
    assert math.isnan(dice(EMPTY, EMPTY, empty=float("nan")))


def test_thresholded_jaccard_array():
    out = thresholded_jaccard(np.array([0.2, 0.65, 0.9]))
    assert out.tolist() == [0.0, 0.65, 0.9]
    assert thresholded_jaccard(0.7, threshold=0.8) == 0.0


# Multi-class, K = 3
GT3 = np.array([[1, 1, 2, 2],
                [1, 1, 2, 2],
                [0, 0, 0, 0],
                [0, 0, 0, 0]])
PR3 = np.array([[1, 1, 1, 2],
                [1, 0, 2, 2],
                [0, 0, 0, 0],
                [0, 0, 0, 0]])
# class 1: |P| = 4, |G| = 4, ∩ = 3 → dice 6/8, J 3/5
# class 2: |P| = 3, |G| = 4, ∩ = 3 → dice 6/7, J 3/4
# confusion C[g, p]: gt0 → 8×0; gt1 → 3×1, 1×0; gt2 → 1×1, 3×2


def test_multiclass_table():
    assert confusion(PR3, GT3, 3).tolist() == [[8, 0, 0], [1, 3, 0], [0, 1, 3]]
    m, per = mean_dice(PR3, GT3, 3, per_class=True)
    assert per.tolist() == pytest.approx([6 / 8, 6 / 7])
    assert m == pytest.approx((6 / 8 + 6 / 7) / 2)
    mj, perj = mean_jaccard(PR3, GT3, 3, per_class=True)
    assert perj.tolist() == pytest.approx([0.6, 0.75])
    assert mj == pytest.approx(0.675)
    row = image_metrics(PR3, GT3, 3, per_class=True, class_names=["bg", "disc", "cup"])
    assert row["dice"] == pytest.approx(45 / 56)
    assert row["jaccard"] == pytest.approx(0.675)
    assert row["jaccard_t"] == pytest.approx(0.675)  # mean J 0.675 ≥ 0.65
    assert row["accuracy"] == pytest.approx(14 / 16)
    assert row["sensitivity"] == pytest.approx(0.75)  # 3/4 for both classes
    assert row["specificity"] == pytest.approx((11 / 12 + 12 / 12) / 2)
    assert row["dice_disc"] == pytest.approx(0.75)
    assert row["jaccard_cup"] == pytest.approx(0.75)
    # default names c1, c2
    assert "dice_c2" in image_metrics(PR3, GT3, 3, per_class=True)


def test_multiclass_absent_class():
    # class 2 absent from both → counts 1.0 (ISIC convention), or is skipped with empty=nan
    m = mean_dice(A, B, 3)
    assert m == pytest.approx((0.5 + 1.0) / 2)
    assert mean_dice(A, B, 3, empty=float("nan")) == pytest.approx(0.5)


def test_segmetric_aggregate():
    metric = SegMetric(num_classes=2)
    r = metric.update(A, B, stem="a")
    assert r["stem"] == "a" and r["dice"] == pytest.approx(0.5)
    metric.update(PRED6, GT4, stem="b")
    agg = metric.aggregate()
    assert agg["n"] == 2
    assert agg["dice_mean"] == pytest.approx((0.5 + 0.8) / 2)
    assert agg["dice_std"] == pytest.approx(0.15)            # population std of {0.5, 0.8}
    assert agg["jaccard_mean"] == pytest.approx(0.5)         # (1/3 + 2/3) / 2
    assert agg["jaccard_std"] == pytest.approx(1 / 6)
    assert agg["jaccard_t_mean"] == pytest.approx((0 + 2 / 3) / 2)
    assert "stem_mean" not in agg
    metric.reset()
    assert len(metric) == 0


def test_aggregate_ignores_nan_and_errors():
    agg = aggregate([{"dice": 1.0}, {"dice": float("nan")}, {"dice": 0.0}])
    assert agg["dice_mean"] == pytest.approx(0.5) and agg["n"] == 3
    with pytest.raises(ValueError):
        confusion(A, B[:2], 2)
    with pytest.raises(ValueError):
        confusion(A * 3, B, 2)
