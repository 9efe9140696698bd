"""The field's metrics: scarce's own Dice/Jaccard against MONAI's, and the boundary metrics
(HD95, average surface distance, normalised surface Dice) from MONAI on hand-made shapes, their
empty-mask conventions and their place in per_image.csv / metrics.json / the summary."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from scarce.evaluation.metrics import aggregate, image_metrics
from scarce.evaluation.surface import class_surface, surface_metrics

from tests.test_evaluate import Oracle, make_data


def _one_hot(labels: np.ndarray, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), k).permute(2, 0, 1)[None].float()


def _random_masks(rng: np.random.Generator, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Blobby random label maps (smoothed noise, quantised), sometimes missing a class."""
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=float(rng.uniform(1, 4)))
    edges = np.quantile(noise, np.sort(rng.uniform(0.2, 1.0, k - 1)))
    lab = np.digitize(noise, edges).astype(np.uint8)
    if rng.random() < 0.25:  # a class absent from this mask
        lab[lab == rng.integers(1, k)] = 0
    return np.minimum(lab, k - 1)


@pytest.mark.parametrize("k", [2, 4])
def test_dice_and_jaccard_match_monai(k):
    """scarce's hand-written per-image Dice/Jaccard (per class and foreground mean) equal MONAI's
    DiceMetric / MeanIoU with ignore_empty=False (empty GT + empty prediction = 1)."""
    from monai.metrics import DiceMetric, MeanIoU

    rng = np.random.default_rng(k)
    names = ["background"] + [f"c{c}" for c in range(1, k)]
    checked = 0
    for i in range(40):
        shape = (int(rng.integers(8, 60)), int(rng.integers(8, 60)))
        gt = _random_masks(rng, k, shape)
        pred = _random_masks(rng, k, shape) if i % 5 else gt.copy()
        if i == 3:
            gt[:] = 0  # empty ground truth, non-empty prediction
        if i == 4:
            gt[:], pred[:] = 0, 0  # both empty
        dm = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
        im = MeanIoU(include_background=False, reduction="none", ignore_empty=False)
        d_monai = dm(_one_hot(pred, k), _one_hot(gt, k))[0].numpy()
        j_monai = im(_one_hot(pred, k), _one_hot(gt, k))[0].numpy()
        row = image_metrics(pred, gt, k, per_class=k > 2, class_names=names)
        assert row["dice"] == pytest.approx(float(d_monai.mean()), abs=1e-6)
        assert row["jaccard"] == pytest.approx(float(j_monai.mean()), abs=1e-6)
        if k > 2:
            for c in range(1, k):
                assert row[f"dice_c{c}"] == pytest.approx(float(d_monai[c - 1]), abs=1e-6)
                assert row[f"jaccard_c{c}"] == pytest.approx(float(j_monai[c - 1]), abs=1e-6)
        checked += 1
    assert checked == 40


def _square(n: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def _brute_force(pred: np.ndarray, gt: np.ndarray, tol: float) -> tuple[float, float, float]:
    """Reference without MONAI: boundary = mask minus its erosion, all pairwise distances."""
    ep = np.argwhere(pred & ~ndimage.binary_erosion(pred))
    eg = np.argwhere(gt & ~ndimage.binary_erosion(gt))
    d = cdist(ep, eg)
    d_pg, d_gp = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.quantile(d_pg, 0.95), np.quantile(d_gp, 0.95))
    asd = np.concatenate([d_pg, d_gp]).mean()
    nsd = ((d_pg <= tol).sum() + (d_gp <= tol).sum()) / (len(d_pg) + len(d_gp))
    return float(hd95), float(asd), float(nsd)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_squares_offset_by_k_pixels(k):
    """Two 30 px squares k pixels apart: HD95 = k, ASD = k / 2 (the top and bottom sides mostly
    coincide, the left and right ones lie k apart), NSD = 1 within a tolerance of k."""
    a, b = _square(64, 10, 10 + k, 30), _square(64, 10, 10, 30)
    hd95, asd, nsd = class_surface(a, b, tolerance=k)
    assert hd95 == pytest.approx(k, abs=1e-5)
    assert asd == pytest.approx(k / 2, abs=1e-5)
    assert nsd == pytest.approx(1.0)
    assert class_surface(a, b, tolerance=k - 0.5)[2] < 1.0  # tighter than the offset: some boundary is off
    ref = _brute_force(a, b, 2.0)
    assert class_surface(a, b, tolerance=2.0) == pytest.approx(ref, abs=1e-4)


def test_shapes_against_brute_force_reference():
    """A square inside a bigger one, a disk against a shifted ellipse: MONAI's numbers as
    wired here equal a brute-force computation of the same definitions."""
    yy, xx = np.mgrid[:80, :90]
    shapes = [
        (_square(128, 13, 13, 94), _square(128, 10, 10, 100)),
        (((yy - 40) ** 2 + (xx - 45) ** 2) < 20 ** 2, ((yy - 43) / 24) ** 2 + ((xx - 41) / 17) ** 2 < 1),
    ]
    for pred, gt in shapes:
        for tol in (0.0, 1.0, 2.0, 4.0):
            assert class_surface(pred, gt, tol) == pytest.approx(_brute_force(pred, gt, tol), abs=1e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecated argument, inside MONAI
def test_equal_to_monais_three_metric_functions():
    """One MONAI boundary/distance call per class, reduced here, gives exactly what
    compute_hausdorff_distance(percentile=95), compute_average_surface_distance(symmetric) and
    compute_surface_dice give (each recomputing the boundaries)."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(0)
    for i in range(12):
        shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        gt, pred = (_random_masks(rng, 2, shape) == 1 for _ in range(2))
        if not gt.any() or not pred.any():
            continue
        tol = float(rng.choice([0.0, 1.0, 2.0, 3.5]))
        yp, yt = torch.from_numpy(pred)[None, None].float(), torch.from_numpy(gt)[None, None].float()
        want = (float(compute_hausdorff_distance(yp, yt, include_background=True, percentile=95)[0, 0]),
                float(compute_average_surface_distance(yp, yt, include_background=True, symmetric=True)[0, 0]),
                float(compute_surface_dice(yp, yt, [tol], include_background=True)[0, 0]))
        assert class_surface(pred, gt, tol) == pytest.approx(want, abs=1e-5), i


def test_identical_and_empty_masks():
    m = _square(32, 5, 5, 10)
    empty = np.zeros_like(m)
    assert class_surface(m, m) == (0.0, 0.0, 1.0)
    assert class_surface(empty, empty) == (0.0, 0.0, 1.0)  # nothing there, nothing predicted
    for pred, gt in ((m, empty), (empty, m)):  # one side empty: distances undefined, NSD 0
        hd95, asd, nsd = class_surface(pred, gt)
        assert math.isnan(hd95) and math.isnan(asd) and nsd == 0.0
    row = surface_metrics(m.astype(np.uint8), empty.astype(np.uint8))
    assert row["surface_undefined"] == 1 and math.isnan(row["hd95"])


def test_multiclass_mean_skips_undefined_classes():
    gt = np.zeros((40, 40), np.uint8)
    gt[5:15, 5:15] = 1
    gt[25:35, 25:35] = 2
    pred = gt.copy()
    pred[pred == 2] = 0  # class 2 missed
    row = surface_metrics(pred, gt, num_classes=3, per_class=True, class_names=["bg", "a", "b"])
    assert row["hd95"] == 0.0 and row["asd"] == 0.0  # class 1 perfect, class 2 undefined (left out)
    assert row["nsd"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert row["surface_undefined"] == 1
    assert row["hd95_a"] == 0.0 and math.isnan(row["hd95_b"]) and row["nsd_b"] == 0.0


def test_aggregate_leaves_undefined_out_and_counts_them():
    rows = [{"hd95": 2.0, "surface_undefined": 0}, {"hd95": float("nan"), "surface_undefined": 1},
            {"hd95": 4.0, "surface_undefined": 0}]
    agg = aggregate(rows)
    assert agg["hd95_mean"] == pytest.approx(3.0) and agg["n"] == 3
    assert "surface_undefined_mean" not in agg  # a count, not a score


def test_evaluation_writes_surface_metrics(tmp_path):
    """Through the run's evaluation (api._evaluate with the config's eval.* keys): per-image
    columns, set means, the count of undefined images, the summary line; off with
    eval.surface_metrics=false."""
    from scarce.api import _evaluate
    from scarce.config import load_config

    cfg = load_config(sets=["eval.overlays=0", "eval.save_predictions=false", "eval.surface_tolerance=1.5"])
    res = _evaluate(cfg, Oracle(2, zero=True), {"id": make_data()}, 2, tmp_path / "eval")
    m = res["id"]
    # an all-background prediction: 3 images miss their lesion (undefined), the empty one is right
    assert m["surface_undefined"] == 3 and m["surface_tolerance"] == 1.5
    assert m["hd95_mean"] == 0.0 and m["nsd_mean"] == pytest.approx(0.25)
    with open(tmp_path / "eval" / "id" / "per_image.csv") as fh:
        table = list(csv.DictReader(fh))
    assert {"hd95", "asd", "nsd", "surface_undefined"} <= set(table[0])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["id"]["hd95_mean"] == 0.0
    summary = (tmp_path / "eval" / "summary.txt").read_text()
    assert "boundary: hd95 0.00 ± 0.00 px" in summary and "nsd@1.5px 0.250" in summary and "(undefined: 3)" in summary

    res = _evaluate(cfg, Oracle(2), {"id": make_data()}, 2, tmp_path / "eval2")
    assert res["id"]["hd95_mean"] == pytest.approx(0.0) and res["id"]["nsd_mean"] == pytest.approx(1.0)
    assert res["id"]["surface_undefined"] == 0

    cfg.eval.surface_metrics = False
    res = _evaluate(cfg, Oracle(2), {"id": make_data()}, 2, tmp_path / "eval3")
    assert "hd95_mean" not in res["id"] and "surface_undefined" not in res["id"]
    assert "boundary" not in (tmp_path / "eval3" / "summary.txt").read_text()


def test_tolerance_is_checked():
    from scarce.config import ConfigError, load_config
    from scarce.validate import validate_config

    with pytest.raises(ConfigError, match="eval.surface_tolerance"):
        validate_config(load_config(sets=["eval.surface_tolerance=-1"]), training=False)
    with pytest.raises(ValueError, match="surface_tolerance"):
        surface_metrics(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), tolerance=float("nan"))
