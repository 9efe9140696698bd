"""Reports from fabricated run folders: 2 methods × 2 budgets × 3 seeds, ID + OOD test set.

Seed values are v − s, v, v + s, so the table must show exactly ``v ± s`` (sample std, ddof 1).
"""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from scarce.reports.plots import bar_plot, curves_plot, sample_efficiency_plot
from scarce.reports.report import write_report
from scarce.reports.tables import collect_runs, results_table, row_label, summarize

# (method, model) → budget → test set → (v, s)
GRID = {
    ("supervised", "unet"): {20: {"isic2018": (0.70, 0.02), "ph2": (0.60, 0.04)},
                             40: {"isic2018": (0.75, 0.01), "ph2": (0.65, 0.03)}},
    ("combine", "deeplabv3"): {20: {"isic2018": (0.72, 0.03), "ph2": (0.58, 0.05)},
                               40: {"isic2018": (0.80, 0.02), "ph2": (0.70, 0.01)}},
}


def write_run(folder, method, model, budget, seed, metrics, extra=None, sub=""):
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"data": {"dataset": "isic2018", "budget": budget}, "train": {"seed": seed},
           "model": {"name": model}, "method": {"name": method}, **(extra or {})}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / sub / "metrics.json").write_text(json.dumps(metrics))


def make_runs(root):
    for (method, model), budgets in GRID.items():
        for budget, sets in budgets.items():
            for seed, off in enumerate((-1, 0, 1)):
                metrics = {}
                for t in ("isic2018", "ph2"):  # ID first
                    v, s = sets[t]
                    j = v + off * s
                    metrics[t] = {"dice_mean": j + 0.1, "dice_std": 0.2, "jaccard_mean": j,
                                  "jaccard_std": 0.2, "jaccard_t_mean": j - 0.1, "jaccard_t_std": 0.3, "n": 50}
                write_run(root / f"{method}-{model}" / f"b{budget}" / f"s{seed}", method, model, budget, seed,
                          metrics, sub="eval" if seed == 2 else "")
    # unfinished run (no metrics.json) is skipped
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "isic2018"}}))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_runs(root)
    return root


def test_collect_runs(runs):
    df = collect_runs(runs)
    assert len(df) == 2 * 2 * 3 * 2  # runs × test sets
    assert set(df["row"]) == {"supervised-unet", "combine-deeplabv3"}
    assert df[df["test_set"] == "isic2018"]["test_index"].eq(0).all()
    assert sorted(df["seed"].unique().tolist()) == [0, 1, 2]
    assert "unfinished" not in set(df["run"])


def test_results_table_values(runs, tmp_path):
    df = collect_runs(runs)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    table = results_table(df, "jaccard", out_md=md, out_csv=csv)
    assert list(table.columns) == ["isic2018 @ 20", "ph2 @ 20", "isic2018 @ 40", "ph2 @ 40"]
    assert list(table.index) == ["combine-deeplabv3", "supervised-unet"]
    assert table.loc["supervised-unet", "isic2018 @ 20"] == "0.700 ± 0.020"
    assert table.loc["supervised-unet", "ph2 @ 20"] == "0.600 ± 0.040"
    assert table.loc["supervised-unet", "isic2018 @ 40"] == "0.750 ± 0.010"
    assert table.loc["supervised-unet", "ph2 @ 40"] == "0.650 ± 0.030"
    assert table.loc["combine-deeplabv3", "isic2018 @ 20"] == "0.720 ± 0.030"
    assert table.loc["combine-deeplabv3", "ph2 @ 20"] == "0.580 ± 0.050"
    assert table.loc["combine-deeplabv3", "ph2 @ 40"] == "0.700 ± 0.010"
    text = md.read_text()
    # best per column in bold: combine wins all but ph2 @ 20 (supervised 0.600 > 0.580)
    assert "| combine-deeplabv3 | **0.720 ± 0.030** | 0.580 ± 0.050 | **0.800 ± 0.020** | **0.700 ± 0.010** |" in text
    assert "| supervised-unet | 0.700 ± 0.020 | **0.600 ± 0.040** | 0.750 ± 0.010 | 0.650 ± 0.030 |" in text
    back = pd.read_csv(csv, index_col=0)
    assert back.loc["supervised-unet", "isic2018 @ 20"] == "0.700 ± 0.020"
    assert "**" not in csv.read_text()
    # dice = jaccard + 0.1
    assert results_table(df, "dice").loc["supervised-unet", "isic2018 @ 20"] == "0.800 ± 0.020"


def test_summarize_numbers(runs):
    s = summarize(collect_runs(runs), ["jaccard"])
    r = s[(s["row"] == "combine-deeplabv3") & (s["budget"] == 40) & (s["test_set"] == "isic2018")].iloc[0]
    assert r["n_seeds"] == 3
    assert r["jaccard_mean"] == pytest.approx(0.80)
    assert r["jaccard_std"] == pytest.approx(0.02)


def test_row_labels(tmp_path):
    base = {"model": {"name": "unet"}, "method": {"name": "supervised"}}
    assert row_label(base) == "supervised-unet"
    assert row_label({**base, "method": {"name": "supervised", "augment": "standard"}}) == "supervised+standard-unet"
    assert row_label({**base, "method": {"name": "supervised", "augment": None}}) == "supervised-unet"
    assert row_label({**base, "row": "Ours (E2EAug)"}) == "Ours (E2EAug)"
    write_run(tmp_path / "r", "e2eaug", "unet", 40, 0, {"id": {"dice_mean": 0.5, "n": 3}}, extra={"row": "Ours"})
    df = collect_runs(tmp_path)
    assert df["row"].tolist() == ["Ours"]
    table = results_table(df, "dice")
    assert table.loc["Ours", "id @ 40"] == "0.500"  # one seed → mean only


def test_collect_api_result_format(tmp_path):
    """scarce.api.train_run writes {best_val, ..., tests: {set: metrics}} as run_dir/metrics.json."""
    result = {"run_dir": "x", "best_val": 0.9, "best_step": 300, "steps": 400, "stopped_early": False,
              "tests": {"id": {"dice_mean": 0.8, "dice_std": 0.1, "n": 10},
                        "ood": {"dice_mean": 0.6, "dice_std": None, "n": 5}}}
    write_run(tmp_path / "r", "supervised", "unet", 40, 0, result)
    df = collect_runs(tmp_path)
    assert df["test_set"].tolist() == ["id", "ood"]
    assert df["best_val"].tolist() == [0.9, 0.9] and df["dice_mean"].tolist() == [0.8, 0.6]
    assert np.isnan(df["dice_std"].iloc[1])


def test_plots_written(runs, tmp_path):
    df = collect_runs(runs)
    p = sample_efficiency_plot(df, "jaccard", tmp_path / "se.png")
    with Image.open(p) as im:
        assert im.mode == "P"  # palette PNG: committed report folders stay small
        img = np.asarray(im.convert("RGB"))
    assert img.shape[1] > img.shape[0]  # two panels side by side
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 4  # lines and text kept their colours
    bar_plot(df, "jaccard", "method", tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    log = tmp_path / "log.csv"
    log.write_text("step,loss,val_metric\n1,0.9,\n2,0.7,0.5\n3,0.6,\n4,0.5,0.6\n")
    curves_plot(log, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    (tmp_path / "odd.csv").write_text("foo\n1\n2\n")  # no known columns: still a picture
    curves_plot(tmp_path / "odd.csv", tmp_path / "odd.png")
    assert (tmp_path / "odd.png").is_file()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_write_report_deterministic(runs, tmp_path):
    (runs / "supervised-unet" / "b20" / "s0" / "log.csv").write_text(
        "step,loss,lr,sec_per_step,val_jaccard\n1,1.0,0.001,0.1,\n2,0.5,0.001,0.1,0.7\n")
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    md = write_report(runs, out1, metric="jaccard", curves=True)
    write_report(runs, out2, metric="jaccard", curves=True)
    text = md.read_text()
    assert "**0.800 ± 0.020**" in text
    assert "isic2018_jaccard_sample_efficiency.png" in text
    assert (out1 / "isic2018_jaccard_sample_efficiency.png").is_file()
    assert (out1 / "curves" / "supervised-unet_b20_s0.png").is_file()
    csv = pd.read_csv(out1 / "results.csv")
    assert len(csv) == 2 * 2 * 2 and {"jaccard_mean", "jaccard_std", "dice_mean", "n_seeds"} <= set(csv.columns)
    for f in sorted(p.relative_to(out1) for p in out1.rglob("*") if p.is_file()):
        assert (out1 / f).read_bytes() == (out2 / f).read_bytes(), f


def test_write_report_default_metric_and_empty(runs, tmp_path):
    md = write_report(runs, tmp_path / "r")  # primary metric from the registry, else dice
    assert "isic2018" in md.read_text()
    empty = tmp_path / "none"
    empty.mkdir()
    assert "No finished runs" in write_report(empty, tmp_path / "e").read_text()
