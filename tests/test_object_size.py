"""Object-size-aware evaluation: foreground fraction, size bins, lesion detection (metrics),
their columns in per_image.csv / metrics.json / summary.txt (evaluation), and the report's
by-object-size table (fabricated run folders, no training). Expected values are hand-computed
in the comments."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from scarce.evaluation.evaluate import evaluate_set, evaluate_sets, format_summary
from scarce.evaluation.metrics import (aggregate, detection_rate, foreground_fraction, lesion_detection, size_bin,
                                       size_bins, size_table)
from scarce.reports.report import write_report
from tests.test_evaluate import Oracle, make_data

# ------------------------------------------------------------------------------ metrics


def test_foreground_fraction_counts_every_non_background_label():
    g = np.zeros((10, 10), np.uint8)
    assert foreground_fraction(g) == 0.0
    g[0, 0:3] = 1  # 3 / 100
    assert foreground_fraction(g) == pytest.approx(0.03)
    g[5, 5] = 2  # multi-class: any non-background label counts → 4 / 100
    assert foreground_fraction(g) == pytest.approx(0.04)
    assert foreground_fraction(np.ones((4, 5), bool)) == 1.0


@pytest.mark.parametrize("fraction, expected", [
    (0.0, "empty"), (1 / 10000, "<2%"), (199 / 10000, "<2%"), (2 / 100, "2-5%"), (499 / 10000, "2-5%"),
    (5 / 100, "5-15%"), (15 / 100, "5-15%"), (1501 / 10000, ">15%"), (1.0, ">15%")])
def test_size_bin_edges(fraction, expected):
    assert size_bin(fraction) == expected


def test_size_bin_refuses_what_is_not_a_fraction():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            size_bin(bad)
    assert size_bins() == ["empty", "<2%", "2-5%", "5-15%", ">15%"]


def test_size_table_by_hand():
    rows = [{"fg_fraction": 0.01, "dice": 0.2}, {"fg_fraction": 0.015, "dice": 0.4},  # <2%: mean 0.3, n 2
            {"fg_fraction": 0.03, "dice": 0.6},                                        # 2-5%: 0.6
            {"fg_fraction": 0.5, "dice": 0.9}, {"fg_fraction": 0.2, "dice": float("nan")},  # >15%: NaN ignored
            {"fg_fraction": 0.0, "dice": 1.0},                                         # empty
            {"dice": 0.0}]                                                             # no fraction: left out
    t = size_table(rows, metrics=("dice",))
    assert list(t) == ["empty", "<2%", "2-5%", "5-15%", ">15%"]
    assert t["empty"] == {"n": 1, "dice_mean": 1.0}
    assert t["<2%"]["n"] == 2 and t["<2%"]["dice_mean"] == pytest.approx(0.3)
    assert t["2-5%"] == {"n": 1, "dice_mean": 0.6}
    assert t["5-15%"]["n"] == 0 and math.isnan(t["5-15%"]["dice_mean"])
    assert t[">15%"] == {"n": 2, "dice_mean": 0.9}


def test_lesions_found_by_iou_by_centroid_and_missed():
    gt = np.zeros((20, 20), np.uint8)
    gt[0:4, 0:4] = 1        # A: 16 px, centroid (1.5, 1.5) → pixel (2, 2)
    gt[10:14, 10:14] = 1    # B: 16 px, centroid (11.5, 11.5) → pixel (12, 12)
    gt[18, 2] = 1           # C: 1 px
    pred = np.zeros_like(gt)
    pred[0:4, 0] = 1        # P1 ⊂ A: IoU 4/16 = 0.25 ≥ 0.1, but (2, 2) is not predicted → found by IoU
    pred[5:20, 5:20] = 1    # P2 ⊃ B: IoU 16/225 = 0.071 < 0.1, contains (12, 12) → found by centroid
    assert lesion_detection(pred, gt) == (3, 2)  # C is missed
    assert lesion_detection(np.zeros((20, 5), np.uint8), gt[:, :5]) == (2, 0)  # A and C, nothing predicted
    assert lesion_detection(pred, np.zeros_like(gt)) == (0, 0)  # no lesion, however much is predicted
    # the centroid rule alone: with the IoU threshold out of reach, A is lost and B still found
    assert lesion_detection(pred, gt, iou_threshold=1.01) == (3, 1)


def test_lesion_iou_threshold_is_inclusive_and_per_predicted_component():
    gt = np.zeros((5, 12), np.uint8)
    gt[0, 0:10] = 1  # one 10 px lesion, centroid (0, 4.5) → pixel (0, 5)
    pred = np.zeros_like(gt)
    pred[0, 0] = 1  # IoU 1/10 = 0.1 → found
    assert lesion_detection(pred, gt) == (1, 1)
    pred[1, 0] = 1  # the same component grows off the lesion: IoU 1/11 < 0.1, centroid not hit
    assert lesion_detection(pred, gt) == (1, 0)


def test_lesions_are_8_connected_and_labels_above_one_count_as_foreground():
    gt = np.zeros((6, 6), np.uint8)
    gt[0, 0] = gt[1, 1] = 255  # diagonal neighbours: one lesion (0/255 mask)
    gt[4, 4] = 255
    pred = np.zeros_like(gt)
    pred[1, 1] = 1  # IoU 1/2 with the first lesion
    assert lesion_detection(pred, gt) == (2, 1)


def test_detection_rate_pools_lesions_over_images():
    rows = [{"lesions": 3, "lesions_found": 2}, {"lesions": 1, "lesions_found": 0}, {"lesions": 0, "lesions_found": 0},
            {"dice": 1.0}]  # a row without counts (multi-class) adds nothing
    assert detection_rate(rows) == (0.5, 4, 2)  # pooled 2/4, not the mean of per-image rates (2/3, 0)
    rate, lesions, found = detection_rate([{"lesions": 0, "lesions_found": 0}])
    assert math.isnan(rate) and (lesions, found) == (0, 0)


def test_aggregate_does_not_average_image_facts():
    rows = [{"dice": 0.5, "fg_fraction": 0.1, "lesions": 2, "lesions_found": 1},
            {"dice": 1.0, "fg_fraction": 0.3, "lesions": 1, "lesions_found": 1}]
    agg = aggregate(rows)
    assert agg["dice_mean"] == 0.75 and agg["n"] == 2
    assert not any(k.startswith(("fg_fraction", "lesions")) for k in agg)


# ------------------------------------------------------------------------------ evaluation files

def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_per_image_csv_and_metrics_json_hold_sizes_and_lesions(tmp_path):
    # make_data at original resolution: image 0 a 8×8 block of 16×16 (0.25), image 1 a band of 6 rows of
    # 16×24 (0.375), image 2 two blocks (0.1875 + 0.0625 = 0.25; 2 lesions), image 3 empty
    res = evaluate_sets(Oracle(2), {"id": make_data()}, 2, tmp_path, overlays=0, save_predictions=False)
    rows = _csv(tmp_path / "id" / "per_image.csv")
    assert [float(r["fg_fraction"]) for r in rows] == [0.25, 0.375, 0.25, 0.0]
    assert [int(r["lesions"]) for r in rows] == [1, 1, 2, 0]
    assert [int(r["lesions_found"]) for r in rows] == [1, 1, 2, 0]
    m = json.loads((tmp_path / "metrics.json").read_text())["id"]
    assert m == res["id"]
    assert m["by_size"]["empty"]["n"] == 1 and m["by_size"][">15%"]["n"] == 3
    assert m["by_size"][">15%"]["dice_mean"] == 1.0 and m["by_size"]["<2%"] == {
        "n": 0, "dice_mean": None, "jaccard_mean": None, "jaccard_t_mean": None, "accuracy_mean": None,
        "sensitivity_mean": None, "specificity_mean": None}
    assert (m["detection_rate"], m["lesions"], m["lesions_found"]) == (1.0, 4, 4)
    assert not any(k.startswith(("fg_fraction", "lesions_mean", "lesions_found_mean")) for k in m)


def test_a_model_that_finds_nothing_detects_no_lesion(tmp_path):
    res = evaluate_sets(Oracle(2, zero=True), {"id": make_data()}, 2, None)
    assert (res["id"]["detection_rate"], res["id"]["lesions"], res["id"]["lesions_found"]) == (0.0, 4, 0)
    assert res["id"]["by_size"][">15%"]["dice_mean"] == 0.0 and res["id"]["by_size"]["empty"]["dice_mean"] == 1.0


def test_multiclass_has_fractions_but_no_lesions(tmp_path):
    rows = evaluate_set(Oracle(3), make_data(num_classes=3, stems=["a", "b", "c", "d"]), 3, out_dir=tmp_path,
                        overlays=0, save_predictions=False)
    assert [r["fg_fraction"] for r in rows] == [0.25, 0.375, 0.25, 0.0]  # image 2: labels 2 and 1 both count
    assert "lesions" not in _csv(tmp_path / "per_image.csv")[0]
    res = evaluate_sets(Oracle(3), {"mc": make_data(num_classes=3)}, 3, None)
    assert "by_size" in res["mc"] and "detection_rate" not in res["mc"]


SET = {"dice_mean": 0.697, "dice_std": 0.2, "jaccard_mean": 0.6, "jaccard_std": 0.2, "n": 120,
       "by_size": {"empty": {"n": 0, "dice_mean": None}, "<2%": {"n": 5, "dice_mean": 0.144},
                   "2-5%": {"n": 24, "dice_mean": 0.63}, "5-15%": {"n": 52, "dice_mean": 0.756},
                   ">15%": {"n": 39, "dice_mean": 0.731}},
       "detection_rate": 0.85, "lesions": 140, "lesions_found": 119}


def test_summary_adds_a_size_line_after_the_unchanged_first_line():
    old = {k: v for k, v in SET.items() if k not in ("by_size", "detection_rate", "lesions", "lesions_found")}
    lines = format_summary({"kvasir_seg": {**SET, "note": "2 images left out: x"}, "old": old})
    assert lines == [
        "kvasir_seg  dice 0.697 ± 0.200  jaccard 0.600 ± 0.200  (n=120; 2 images left out: x)",
        "  by object size: <2% 0.144 (n=5) · 2-5% 0.630 (24) · 5-15% 0.756 (52) · >15% 0.731 (39); "
        "detection rate 0.850 (119/140 lesions)",
        "old         dice 0.697 ± 0.200  jaccard 0.600 ± 0.200  (n=120)",  # an old evaluation: no size line
    ]
    assert format_summary({"kv": {**SET, "by_size": {**SET["by_size"], "empty": {"n": 3, "dice_mean": 1.0}},
                                  "detection_rate": None}})[1] == (
        "  by object size: empty 1.000 (n=3) · <2% 0.144 (5) · 2-5% 0.630 (24) · 5-15% 0.756 (52) · "
        ">15% 0.731 (39); detection rate — (119/140 lesions)")


# ------------------------------------------------------------------------------ report

def _run(folder: Path, method: str, seed: int, dice: float, by_size: dict | None, rate: float | None = None) -> None:
    """A finished kvasir_seg run (row ``<method>-unet``, budget 40) scored on one test set."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "kvasir_seg", "budget": 40}, "train": {"seed": seed}, "model": {"name": "unet"},
        "method": {"name": method}}))
    t = {"dice_mean": dice, "dice_std": 0.1, "n": 10}
    if by_size is not None:
        t["by_size"] = {b: {"n": n, "dice_mean": v} for b, (n, v) in by_size.items()}
    if rate is not None:
        t.update(detection_rate=rate, lesions=10, lesions_found=round(rate * 10))
    (folder / "metrics.json").write_text(json.dumps({"best_val": 0.8, "best_step": 10, "tests": {"kvasir_seg": t}}))


def _sizes(small: float, large: float) -> dict:
    return {"empty": (0, None), "<2%": (2, small), "2-5%": (0, None), "5-15%": (3, 0.7), ">15%": (5, large)}


def test_report_renders_the_by_size_table_and_skips_old_runs(tmp_path):
    root = tmp_path / "runs"
    _run(root / "sup" / "s0", "supervised", 0, 0.70, _sizes(0.10, 0.80), rate=0.6)
    _run(root / "sup" / "s1", "supervised", 1, 0.72, _sizes(0.30, 0.90), rate=0.8)
    _run(root / "fix" / "s0", "fixmatch", 0, 0.75, _sizes(0.50, 0.85), rate=0.9)
    _run(root / "old" / "s0", "mean_teacher", 0, 0.65, None)  # evaluated before by_size existed
    md = write_report(root, tmp_path / "report").read_text()
    assert "| mean_teacher-unet | 0.650 |" in md  # still in the main table
    size_md = (tmp_path / "report" / "kvasir_seg_kvasir_seg_by_size.md").read_text()
    assert size_md in md + "\n" and "### kvasir_seg — dice by object size" in md
    # bins without images (empty, 2-5%) are not columns; cells: mean ± sample std over seeds
    # supervised <2%: (0.1 + 0.3)/2 = 0.2 ± 0.1414; >15%: 0.85 ± 0.0707; all: 0.71 ± 0.0141; detection 0.7 ± 0.1414
    assert size_md.splitlines() == [
        "| row | <2% (n=2) | 5-15% (n=3) | >15% (n=5) | all images | detection rate |",
        "|---|:---:|:---:|:---:|:---:|:---:|",
        "| fixmatch-unet | **0.500** | **0.700** | **0.850** | **0.750** | **0.900** |",  # ties: both bold
        "| supervised-unet | 0.200 ± 0.141 | **0.700 ± 0.000** | **0.850 ± 0.071** | 0.710 ± 0.014 | "
        "0.700 ± 0.141 |",
    ]
    assert "mean_teacher" not in size_md


def test_report_of_old_runs_only_has_no_size_section(tmp_path):
    root = tmp_path / "runs"
    _run(root / "old" / "s0", "supervised", 0, 0.65, None)
    _run(root / "old" / "s1", "supervised", 1, 0.67, None)
    md = write_report(root, tmp_path / "report").read_text()
    assert "| supervised-unet | **0.660 ± 0.014** |" in md
    assert "by object size" not in md and not list((tmp_path / "report").glob("*by_size*"))
