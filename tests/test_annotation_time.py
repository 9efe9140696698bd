"""Equal annotation time: grid rows with budgets of their own, a run's minutes before it trains
(:func:`scarce.reports.cost.planned_minutes`) and the report's "by annotation time" section,
which appears only when a dataset's runs learn from different label kinds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scarce.config import ConfigError, resolve_dict
from scarce.experiments import expand_grid, load_grid
from scarce.reports.cost import SECONDS_PER_IMAGE, annotation_minutes, planned_minutes
from scarce.reports.report import write_report

BASE = {"preset": "cpu", "data": {"size": 32, "synthetic_n": 40}, "model": {"width": 4, "depth": 2},
        "train": {"iterations": 2, "val_every": 2, "batch_size": 4}}


def _grid(tmp_path: Path, **keys) -> dict:
    base = json.loads(json.dumps(BASE))
    base["data"]["cache_dir"] = str(tmp_path / "cache")
    g = {"name": "g", "out": str(tmp_path / "out"), "base": base, "datasets": ["synthetic"], "seeds": [0],
         "methods": [{"label": "masks", "budgets": [5, 10], "method": {"name": "supervised"}},
                     {"label": "scribbles", "budgets": [20], "data": {"val_fraction": 0.05},
                      "method": {"name": "pce_gd", "scribbles": "synthetic:0.5"}}],
         "budgets": [8]}
    g.update(keys)
    return g


def test_a_row_with_budgets_of_its_own_runs_at_those_only(tmp_path):
    specs = expand_grid(load_grid(_grid(tmp_path, methods=[*_grid(tmp_path)["methods"],
                                                           {"label": "grid", "method": {"name": "supervised"}}])))
    got = sorted((s.label, s.budget) for s in specs)
    assert got == [("grid", 8), ("masks", 5), ("masks", 10), ("scribbles", 20)]
    for s in specs:
        assert s.config["data"]["budget"] == s.budget and "budgets" not in s.config
        assert s.run_dir.name == "s0" and s.run_dir.parent.name == f"b{s.budget}"
    assert {s.config["data"]["val_fraction"] for s in specs if s.label == "scribbles"} == {0.05}


def test_row_budgets_are_checked_and_not_combined_with_a_dataset_s_own(tmp_path):
    bad = _grid(tmp_path)
    bad["methods"][0]["budgets"] = [5, "ten"]
    with pytest.raises(ConfigError, match=r"grid key 'methods\[0\]\.budgets' must hold integers >= 0.*got 'ten'"):
        load_grid(bad)
    with pytest.raises(ConfigError, match=r"methods\[0\] \('masks'\) and dataset 'synthetic' both set 'budgets'"):
        load_grid(_grid(tmp_path, datasets=[{"name": "synthetic", "budgets": [4]}]))


def test_planned_minutes_follow_the_split_rules_without_training(tmp_path):
    specs = {(s.label, s.budget): s for s in expand_grid(load_grid(_grid(tmp_path)))}
    mask, scribble = SECONDS_PER_IMAGE["mask"], SECONDS_PER_IMAGE["scribble"]
    # budget 10 at val_fraction 0.2: 8 training masks + 2 validation masks
    assert planned_minutes(specs[("masks", 10)].config) == pytest.approx((10 * mask / 60, 8, 2, "mask"))
    # budget 20 at val_fraction 0.05: 19 scribbled training images + 1 validation mask
    assert planned_minutes(specs[("scribbles", 20)].config) == pytest.approx(
        ((19 * scribble + mask) / 60, 19, 1, "scribble"))
    clicks = resolve_dict({**BASE, "data": {**BASE["data"], "dataset": "synthetic", "budget": 10,
                                             "cache_dir": str(tmp_path / "cache")},
                           "method": {"name": "dense_gd", "scribbles": "synthetic:0"}})
    assert planned_minutes(clicks)[3] == "click"
    assert not (tmp_path / "out").exists()  # nothing trained, no run folder


def test_the_shipped_equal_time_grid_spends_equal_minutes():
    """configs/annotate/equal_time.yaml: at each of its times (half an hour: 1 validation mask,
    one hour: 3), every regime's budget is the largest whose minutes fit (training labels + the
    same validation masks), and every regime is at the same times."""
    root = Path(__file__).resolve().parents[1]
    g = load_grid(root / "configs" / "annotate" / "equal_time.yaml")
    from scarce.data.splits import _round_half_up

    times = set()
    for row in g["methods"]:
        kind = "mask" if row["method"]["name"] == "supervised" else (
            "click" if row["method"]["scribbles"] == "synthetic:0" else "scribble")
        f = row["data"]["val_fraction"]
        row_times = []
        for b in row["budgets"]:
            v = _round_half_up(b * f)
            minutes = ((b - v) * SECONDS_PER_IMAGE[kind] + v * SECONDS_PER_IMAGE["mask"]) / 60
            limit = 30 if minutes <= 30 else 60
            row_times.append(limit)
            assert v == {30: 1, 60: 3}[limit], (row["label"], b, v)
            over = ((b + 1 - _round_half_up((b + 1) * f)) * SECONDS_PER_IMAGE[kind]
                    + _round_half_up((b + 1) * f) * SECONDS_PER_IMAGE["mask"]) / 60
            assert 0.9 * limit < minutes <= limit < over, (row["label"], b, minutes, over)
        times.add(tuple(row_times))
    assert len(times) == 1, times  # the same times in every row


# --------------------------------------------------------------------------- the report section

def _run(root: Path, row: str, method: dict, budget: int, seed: int, n_train: int, n_val: int, score: float) -> None:
    d = root / row / f"b{budget}" / f"s{seed}"
    d.mkdir(parents=True)
    cfg = {"label": row, "data": {"dataset": "kvasir_seg", "budget": budget}, "train": {"seed": seed},
           "model": {"name": "unet"}, "method": method}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "split.json").write_text(json.dumps({"train": [f"t{i}" for i in range(n_train)],
                                              "val": [f"v{i}" for i in range(n_val)]}))
    sets = {"kvasir_seg": {"dice_mean": score, "n": 10}, "cvc_clinicdb": {"dice_mean": score - 0.1, "n": 10}}
    (d / "metrics.json").write_text(json.dumps({"tests": sets}))


def test_the_report_shows_scores_by_annotation_minutes_when_label_kinds_differ(tmp_path):
    runs = tmp_path / "runs"
    for s in range(2):
        _run(runs, "masks", {"name": "supervised"}, 15, s, 12, 3, 0.70 + 0.01 * s)
        _run(runs, "scribbles", {"name": "dense_gd", "scribbles": "synthetic:0.5"}, 85, s, 82, 3, 0.75)
        _run(runs, "clicks", {"name": "dense_gd", "scribbles": "synthetic:0"}, 133, s, 130, 3, 0.65)
    text = write_report(runs, tmp_path / "report").read_text()
    assert "### kvasir_seg — Dice by annotation time" in text
    table = (tmp_path / "report" / "kvasir_seg_annotation_time.md").read_text().splitlines()
    assert [c.strip() for c in table[0].split("|")[1:6]] == ["row", "labels", "labelled images", "annotation minutes",
                                                             "kvasir_seg"]
    body = [line.split("|")[1:6] for line in table[2:]]
    # sorted by minutes: scribbles 59.7, clicks 59.9, masks 59.9 (12 × 239.7 + 3 × 239.7 s)
    assert [c[0].strip() for c in body] == ["scribbles @ 85", "clicks @ 133", "masks @ 15"]
    assert [c[3].strip() for c in body] == ["59.7", "59.9", "59.9"]
    assert body[0][4].strip() == "**0.750 ± 0.000**" and body[2][4].strip() == "0.705 ± 0.007"
    assert (tmp_path / "report" / "kvasir_seg_dice_by_minutes.png").stat().st_size > 0
    # a second band (≈ 30 min): its best is bold too, the 60-minute rows do not outrank it
    _run(runs, "masks", {"name": "supervised"}, 7, 0, 6, 1, 0.60)
    _run(runs, "clicks", {"name": "dense_gd", "scribbles": "synthetic:0"}, 71, 0, 70, 1, 0.62)
    write_report(runs, tmp_path / "report")
    body = [line.split("|")[1:6] for line in (tmp_path / "report" / "kvasir_seg_annotation_time.md").read_text()
            .splitlines()[2:]]
    assert [(c[0].strip(), c[4].strip()) for c in body[:2]] == [("masks @ 7", "0.600"), ("clicks @ 71", "**0.620**")]
    assert body[2][4].strip() == "**0.750 ± 0.000**"
    assert annotation_minutes(runs / "masks" / "b15" / "s0", {"method": {"name": "supervised"}}) == pytest.approx(
        15 * SECONDS_PER_IMAGE["mask"] / 60)


def test_no_annotation_time_section_for_one_label_kind(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "sup", {"name": "supervised"}, 10, 0, 8, 2, 0.7)
    _run(runs, "sup", {"name": "supervised"}, 20, 0, 16, 4, 0.8)
    text = write_report(runs, tmp_path / "report").read_text()
    assert "annotation time" not in text and not list((tmp_path / "report").glob("*annotation_time*"))
