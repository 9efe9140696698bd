"""HTML report (``scarce report ... --html``): statistics checked against hand computations, the
tests wired to the right pairs, and the page's structure (self-contained, every picture present).

Run folders here are written by hand (config.yaml, metrics.json, split.json, per_image.csv,
predictions/): no training, so the page is built in seconds; the browser test
(tests/test_html_browser.py) uses a real trained grid.
"""
from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from scarce.cli import main
from scarce.reports.stats import comparison_table, holm, paired_seed_test, per_image_test, t_interval

T_975_DF2 = 4.302652729749464
"""Student t quantile t_{0.975, 2} (tables: 4.303)."""


# --------------------------------------------------------------------------- statistics by hand

def test_t_interval_matches_hand_computation_for_three_values():
    # mean 0.83; deviations -0.03, -0.01, 0.04 → s² = (9 + 1 + 16)e-4 / 2 = 0.0013
    mean, lo, hi = t_interval([0.80, 0.82, 0.87])
    half = T_975_DF2 * math.sqrt(0.0013) / math.sqrt(3)  # 0.08957: a z-interval (1.96) would give 0.0408
    assert mean == pytest.approx(0.83)
    assert (lo, hi) == (pytest.approx(0.83 - half, abs=1e-12), pytest.approx(0.83 + half, abs=1e-12))
    one = t_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])
    assert t_interval([0.80, float("nan"), 0.82, 0.87]) == pytest.approx((mean, lo, hi))


def test_holm_on_a_hand_table():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4) → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.01, float("nan"), 0.04, 0.03, 0.005])  # a missing test neither counts nor moves
    assert math.isnan(got[1]) and [got[i] for i in (0, 2, 3, 4)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_seed_test_is_paired_by_seed_and_falls_back_to_welch():
    a = {0: 0.80, 1: 0.82, 2: 0.85}
    b = {0: 0.78, 1: 0.79, 2: 0.80}
    # differences 0.02, 0.03, 0.05: mean 1/30, sample sd √(0.00046667/2); t = mean / (sd/√3), 2 df
    d = np.array([0.02, 0.03, 0.05])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    from scipy import stats

    res = paired_seed_test(a, b)
    assert res["test"] == "paired t" and res["n"] == 3 and res["diff"] == pytest.approx(1 / 30)
    assert res["p"] == pytest.approx(2 * stats.t.sf(t, 2))
    assert res["p"] < 0.1  # Welch over the same numbers (unpaired) gives p ≈ 0.15: pairing matters
    assert stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue > 0.1
    # seed 2's runs do not share a split: two pairs left
    two = paired_seed_test(a, b, paired=[0, 1])
    assert two["n"] == 2 and two["diff"] == pytest.approx(0.025)
    # no shared split at all: Welch's unpaired test
    welch = paired_seed_test(a, b, paired=[])
    assert welch["test"] == "Welch t"
    assert welch["p"] == pytest.approx(stats.ttest_ind([0.80, 0.82, 0.85], [0.78, 0.79, 0.80], equal_var=False).pvalue)
    assert math.isnan(paired_seed_test({0: 0.8}, {0: 0.7})["p"])  # one seed: no test
    assert paired_seed_test({0: 0.8, 1: 0.7}, {0: 0.8, 1: 0.7})["p"] == 1.0


def test_per_image_wilcoxon_pairs_images_within_seeds():
    # two seeds; per image the differences are taken within each seed and then averaged:
    # differences 0.11·k (seed 0) and 0.1 + 0.11·k (seed 1) → per image 0.05 + 0.11·k: all six
    # positive and distinct → exact two-sided p = 2/2⁶
    a = {0: {f"i{k}": 0.5 + 0.1 * k for k in range(6)}, 1: {f"i{k}": 0.6 + 0.1 * k for k in range(6)}}
    b = {0: {f"i{k}": 0.5 - 0.01 * k for k in range(6)}, 1: {f"i{k}": 0.5 - 0.01 * k for k in range(6)}}
    res = per_image_test(a, b)
    assert res["n"] == 6 and res["p"] == pytest.approx(2 / 64)
    assert res["diff"] == pytest.approx(0.05 + 0.11 * 2.5)
    # unpaired images (only in one run) and NaN scores are left out; equal scores give p = 1
    a[0]["extra"] = 0.9
    b[1]["i0"] = float("nan")
    assert per_image_test(a, b)["n"] == 6
    assert per_image_test({0: {"x": 0.5, "y": 0.4}}, {0: {"x": 0.5, "y": 0.4}})["p"] == 1.0
    assert per_image_test({0: {"x": 0.5}}, {1: {"x": 0.5}})["n"] == 0  # different seeds never pair


# --------------------------------------------------------------------------- hand-made run folders

ROWS = {"plain": ("supervised", "none"), "aug": ("supervised", "combine")}


def _fake_runs(root: Path, cache: Path, seeds=(0, 1), predictions: bool = True, split_of=None) -> dict:
    """Finished-run folders of a 2-row × len(seeds) synthetic grid: ``plain`` scores 0.5 on every
    image, ``aug`` 0.6 + noise (better on every image); predictions = ground truth (aug) or the
    empty mask (plain). Returns the loaded test sets."""
    from scarce.config import DataConfig
    from scarce.data.load import load_test_sets
    from scarce.evaluation.evaluate import prediction_filename, save_mask_png

    data = {"dataset": "synthetic", "size": 32, "synthetic_n": 40, "cache_dir": str(cache), "budget": 10}
    tests = load_test_sets(DataConfig(**data), seed=0)
    rng = np.random.default_rng(0)
    for row, (method, augment) in ROWS.items():
        for s in seeds:
            run = root / row / f"s{s}"
            cfg = {"out": str(run), "label": row, "data": data,
                   "train": {"seed": s}, "model": {"name": "unet"}, "method": {"name": method, "augment": augment}}
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(yaml.safe_dump(cfg))
            split = split_of(row, s) if split_of else s
            (run / "split.json").write_text(json.dumps({"train": [f"syn_{split}"], "val": []}))
            metrics = {}
            for name, d in tests.items():
                scores = (0.5 + 0 * rng.random(len(d)) if row == "plain" else 0.6 + 0.01 * s + 0.1 * rng.random(len(d)))
                ev = run / "eval" / name
                ev.mkdir(parents=True)
                (ev / "per_image.csv").write_text("stem,dice\n" + "".join(f"{st},{v:.6f}\n" for st, v in
                                                                             zip(d.stems, scores)))
                if predictions:
                    for st, gt in zip(d.stems, d.orig_masks):
                        save_mask_png(ev / "predictions" / prediction_filename(st),
                                      gt if row == "aug" else np.zeros_like(gt), 2)
                metrics[name] = {"dice_mean": float(scores.mean()), "dice_std": float(scores.std()), "n": len(d)}
                metrics[name]["trimap"] = {"2": 0.5 + 0.1 * (row == "aug"), "8": 0.7}
            (run / "metrics.json").write_text(json.dumps(metrics))
            if row == "aug":  # an E2EAug-style run: α history + gallery
                (run / "architecture.json").write_text(json.dumps({
                    "cells": ["g.cell"], "ops": {"g.cell": ["conv", "skip"]}, "steps": [0, 1],
                    "weights": [[[0.5, 0.5]], [[0.7, 0.3]]], "derived": {"g.cell": "conv"}}))
                Image.fromarray(np.full((16, 64, 3), 128, np.uint8)).save(run / "gallery.png")
    return tests


def test_comparison_table_pairs_seeds_only_on_shared_splits(tmp_path):
    from scarce.reports.tables import collect_runs

    _fake_runs(tmp_path / "runs", tmp_path / "cache", seeds=(0, 1, 2),
               split_of=lambda row, s: s if (row, s) != ("aug", 2) else 99)  # aug's seed-2 split differs
    df = collect_runs(tmp_path / "runs")
    comp = comparison_table(df, "dice", "plain", tmp_path / "runs")
    aug = comp[comp["row"] == "aug"].set_index("test_set")
    assert (aug["seed_test"] == "paired t").all() and (aug["n_pairs"] == 2).all()
    assert (aug["n_images"] > 0).all() and (aug["diff_images"] > 0.09).all()
    # Holm over the table's comparisons (2 test sets): adjusted = min(1, 2·smaller p), then monotone
    p = aug["p_images"].tolist()
    assert aug["p_images_holm"].tolist() == pytest.approx(holm(p))
    assert min(aug["p_images_holm"]) == pytest.approx(min(1.0, 2 * min(p)))
    plain = comp[comp["row"] == "plain"]
    assert plain["seed_test"].eq("").all() and plain["p_seeds"].isna().all()
    ci = comp[(comp["row"] == "aug")].iloc[0]
    assert ci["ci_low"] < ci["mean"] < ci["ci_high"] and ci["n_seeds"] == 3


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        self._in = a.get("id") if tag == "script" else None

    def handle_data(self, data):
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data


def test_html_report_is_self_contained_and_complete(tmp_path, capsys):
    tests = _fake_runs(tmp_path / "runs", tmp_path / "cache")
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "-o", str(out), "--html"]) == 0
    assert f"html report: {out / 'index.html'}" in capsys.readouterr().out
    text = (out / "index.html").read_text()
    page = _Page()
    page.feed(text)
    ids = {a.get("id") for _, a in page.tags}
    assert {"stats", "browser", "report", "pi-set", "pi-sort", "pi-methods", "pi-grid", "pi-data"} <= ids
    # offline: no external URL anywhere, scripts and styles inline, every referenced file present
    assert "http://" not in text and "https://" not in text
    assert not [a for t, a in page.tags if t == "script" and a.get("src")]
    assert not [a for t, a in page.tags if t == "link" and a.get("rel") == "stylesheet"]
    for t, a in page.tags:
        ref = a.get("src") if t == "img" else a.get("href") if t == "a" else None
        if ref and not ref.startswith("#"):
            assert (out / ref).is_file(), ref
    # the Markdown report's figures: sample efficiency / bars, trimap, α history, gallery
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    for suffix in ("_bars.png", "_trimap.png", "_alpha.png", "_gallery.png"):
        assert any(s.endswith(suffix) for s in srcs), suffix
    # the stats table: both rows, intervals, the reference and a significant (▲) image test
    assert text.count('<table class="stats"') == 1 and "reference: plain" in text
    assert "▲" in text and "Holm" in text and "[" in text
    stats = (out / "synthetic_dice_stats.csv").read_text().splitlines()
    assert stats[0].startswith("dataset,row,budget,test_set,n_seeds,mean,std,ci_low,ci_high")
    # the browser's data: one entry per test set, every image and prediction tile on disk
    sets = json.loads(page.data["pi-data"])["sets"]
    assert [s["test_set"] for s in sets] == list(tests)
    for s in sets:
        assert s["methods"] == ["plain", "aug"]  # the reference first
        assert len(s["images"]) == s["n_total"] == len(tests[s["test_set"]])
        for im in s["images"]:
            for rel in [im["image"], im["gt"], *im["pred"]]:
                assert rel and (out / rel).is_file()
            assert im["score"][0] == pytest.approx(0.5)
    # the Markdown report is the one `scarce report` writes without --html
    assert main(["report", str(tmp_path / "runs"), str(tmp_path / "md")]) == 0
    assert (out / "results.md").read_text() == (tmp_path / "md" / "results.md").read_text()
    assert not (tmp_path / "md" / "index.html").exists()


def test_browser_caps_images_and_predicts_runs_without_saved_predictions(tmp_path):
    from scarce.reports.html import pick_images, write_html_report

    _fake_runs(tmp_path / "runs", tmp_path / "cache", predictions=False)
    calls = []

    def predict(run_dir: Path, dest: Path) -> None:  # stands in for scarce.api.evaluate_run
        calls.append(run_dir.name)
        for name in ("synthetic", "synthetic_ood"):
            (dest / name / "predictions").mkdir(parents=True)
            for line in (run_dir / "eval" / name / "per_image.csv").read_text().splitlines()[1:]:
                stem = line.split(",")[0]
                Image.fromarray(np.zeros((8, 8), np.uint8)).save(dest / name / "predictions" / f"{stem}.png")

    index = write_html_report(tmp_path / "runs", tmp_path / "rep", browser_images=3, predict=predict)
    assert sorted(calls) == ["s0", "s0"]  # one run per row (seed 0), each predicted once for all test sets
    sets = json.loads(index.read_text().split('id="pi-data">')[1].split("</script>")[0])["sets"]
    assert all(len(s["images"]) == 3 and all(all(im["pred"]) for im in s["images"]) for s in sets)
    # each method's worst image in turn
    scores = {"a": {"x": 0.1, "y": 0.9, "z": 0.5, "w": 0.2}, "b": {"x": 0.9, "y": 0.0, "z": 0.3, "w": 0.8}}
    assert pick_images(scores, ["w", "x", "y", "z"], 3) == ["x", "y", "w"]
    assert pick_images(scores, ["w", "x"], 3) == ["w", "x"]


def test_report_cli_errors_are_one_line(tmp_path, capsys):
    _fake_runs(tmp_path / "runs", tmp_path / "cache", seeds=(0,))
    assert main(["report", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == (
        "scarce: error: scarce report needs a report folder: scarce report RUNS... -o OUT (or RUNS OUT)")
    assert main(["report", str(tmp_path / "runs"), "-o", str(tmp_path / "rep"), "--html", "--reference", "plian"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("scarce: error: --reference 'plian' is not a row of dataset 'synthetic' (did you mean 'plain'?); "
                   "choose one of: aug, plain; nothing written")
    assert not (tmp_path / "rep").exists()
    # several RUNS folders are one report
    assert main(["report", str(tmp_path / "runs" / "plain"), str(tmp_path / "runs" / "aug"),
                 "-o", str(tmp_path / "both")]) == 0
    md = (tmp_path / "both" / "results.md").read_text()
    assert "| plain |" in md and "| aug |" in md
