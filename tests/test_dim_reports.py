"""DiM reporting: ``eval.monitor`` per-domain curves (logged, never selected on), the
report's curve figure and "mean over test sets" column, and ``scarce tsne``."""
from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch
import yaml

from scarce.cli import main
from scarce.engine.trainer import Trainer
from scarce.evaluation.evaluate import validate
from tests.tiny import tiny_config, tiny_run_data

METHOD = {"name": "supervised", "augment": "combine"}  # augmentation draws: a stray RNG draw would show


def _monitored(tmp_path, iterations=6, **train):
    cfg = tiny_config(tmp_path, METHOD, iterations=iterations, **train)
    cfg.eval.monitor = ["val_copy", "tiny", "inverted"]
    cfg.eval.tta = "flip"
    data = tiny_run_data()
    test = data.tests["tiny"]
    # "inverted" (foreground ↔ background) gets worse as validation improves: its best step differs
    inverted = dataclasses.replace(test, masks=1 - test.masks)
    data.monitor = {"val_copy": data.val, "tiny": test, "inverted": inverted}
    return cfg, data


def _rows(folder):
    return list(csv.DictReader(open(folder / "log.csv")))


def test_monitor_columns_are_logged_and_change_nothing_else(tmp_path):
    cfg, data = _monitored(tmp_path / "m")
    mon = Trainer(cfg, data, tmp_path / "m")
    res_m = mon.fit()
    plain_cfg = tiny_config(tmp_path / "p", METHOD, iterations=6)
    plain_cfg.eval.tta = "flip"
    res_p = Trainer(plain_cfg, tiny_run_data(), tmp_path / "p").fit()
    rows = _rows(tmp_path / "m")
    val_rows = [r for r in rows if r["val_dice"]]
    assert [int(r["step"]) for r in val_rows] == [2, 4, 6]
    # same metric and TTA as validation: the validation set monitored reads exactly val_dice
    assert all(float(r["monitor/val_copy"]) == float(r["val_dice"]) for r in val_rows)
    assert all(r["monitor/tiny"] == "" for r in rows if not r["val_dice"])
    final = validate(mon.eval_model, data.tests["tiny"], "dice", tta="flip")
    assert float(val_rows[-1]["monitor/tiny"]) == pytest.approx(final, abs=1e-12)
    best_inverted = max(val_rows, key=lambda r: float(r["monitor/inverted"]))["step"]
    assert int(best_inverted) != res_m.best_step  # so selecting on a monitored set would show below
    # the trajectory and the selection are bit-identical to the run without monitoring
    assert (res_m.best_step, res_m.best_score) == (res_p.best_step, res_p.best_score)
    for name in ("best.pt", "last.pt"):
        a = torch.load(tmp_path / "m" / "checkpoints" / name, weights_only=True)
        b = torch.load(tmp_path / "p" / "checkpoints" / name, weights_only=True)
        wa, wb = (a["model"], b["model"]) if name == "best.pt" else (a["method"], b["method"])
        assert torch.equal(torch.cat([t.flatten().float() for t in _tensors(wa)]),
                           torch.cat([t.flatten().float() for t in _tensors(wb)])), name
    plain = _rows(tmp_path / "p")
    for r, q in zip(rows, plain):
        assert {k: v for k, v in r.items() if not k.startswith(("monitor/", "sec_per_step"))} == \
               {k: v for k, v in q.items() if k != "sec_per_step"}


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state] if state.is_floating_point() or state.dtype == torch.long else []
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in _tensors(state[k])]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


def test_monitor_columns_survive_resume(tmp_path):
    cfg, data = _monitored(tmp_path / "a")
    Trainer(cfg, data, tmp_path / "a").fit()
    cfg, data = _monitored(tmp_path / "b")
    Trainer(cfg, data, tmp_path / "b").fit(max_steps=3)  # killed after step 3; last.pt is step 2
    cfg, data = _monitored(tmp_path / "b")
    Trainer(cfg, data, tmp_path / "b").fit(resume=True)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert list(a[0]) == list(b[0]) and "monitor/tiny" in a[0]
    drop = lambda r: {k: v for k, v in r.items() if k != "sec_per_step"}  # noqa: E731
    assert [drop(r) for r in a] == [drop(r) for r in b]


def test_monitor_needs_the_sets_and_a_list(tmp_path):
    from scarce.config import ConfigError
    from scarce.data.types import DataError
    from scarce.validate import validate_config

    cfg = tiny_config(tmp_path, METHOD, iterations=2)
    cfg.eval.monitor = ["tiny"]
    with pytest.raises(DataError, match="eval.monitor"):
        Trainer(cfg, tiny_run_data(), tmp_path)  # monitoring asked for, but no set loaded
    cfg.eval.monitor = "tiny"
    with pytest.raises(ConfigError, match="eval.monitor"):
        validate_config(cfg)


def test_monitor_sets_resolve_like_test_sets(tmp_path):
    from scarce.config import DataConfig
    from scarce.data.load import load_test_sets, prepare_run_data

    cfg = DataConfig(dataset="synthetic", size=32, budget=10, synthetic_n=20, cache_dir=str(tmp_path / "c"))
    d = prepare_run_data(cfg, 0, monitor=["synthetic_ood", "synthetic"])
    assert list(d.monitor) == ["synthetic_ood", "synthetic"] and len(d.monitor["synthetic_ood"]) == 10
    assert d.monitor["synthetic"] is d.tests["synthetic"]  # the ID test part, shared
    # an unlabelled source is monitored (and re-evaluated) on its test part only
    cfg.unlabelled = ["synthetic", "synthetic_ood"]
    d = prepare_run_data(cfg, 0, with_unlabelled=True, monitor=["synthetic_ood"])
    assert list(d.monitor) == ["synthetic_ood:test"] and len(d.monitor["synthetic_ood:test"]) == 2
    assert not set(d.monitor["synthetic_ood:test"].stems) & set(d.unlabelled.stems)
    assert {k: len(v) for k, v in load_test_sets(cfg, 0).items()} == {k: len(v) for k, v in d.tests.items()}


# --------------------------------------------------------------------------- report: curves

def _run(folder, row, seed, tests, log=None, dataset="synthetic", budget=20):
    folder.mkdir(parents=True)
    cfg = {"data": {"dataset": dataset, "budget": budget}, "train": {"seed": seed}, "model": {"name": "unet"},
           "method": {"name": row}, "row": row}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.json").write_text(json.dumps({"best_val": 0.5, "tests": {
        t: {"dice_mean": v, "dice_std": 0.1, "n": 5} for t, v in tests.items()}}))
    if log is not None:
        (folder / "log.csv").write_text(log)


def test_report_draws_monitor_curves_only_when_logged(tmp_path):
    from scarce.reports.domains import monitor_curves
    from scarce.reports.report import write_report
    from scarce.reports.tables import collect_runs

    for seed, off in ((0, 0.0), (1, 0.2)):
        log = ("step,loss,val_dice,monitor/synthetic_ood\n1,0.9,,\n"
               f"2,0.8,{0.5 + off},{0.3 + off}\n3,0.7,,\n4,0.6,{0.6 + off},{0.4 + off}\n")
        _run(tmp_path / "runs" / "dim" / f"s{seed}", "dim", seed, {"synthetic": 0.7, "synthetic_ood": 0.5}, log)
    metric, panels = monitor_curves(collect_runs(tmp_path / "runs"), tmp_path / "runs")
    assert metric == "dice" and list(panels) == ["dim"] and set(panels["dim"]) == {"validation", "synthetic_ood"}
    ood = panels["dim"]["synthetic_ood"]
    assert ood.index.tolist() == [2, 4] and ood.mean(axis=1).tolist() == pytest.approx([0.4, 0.5])
    assert ood.std(axis=1, ddof=1).tolist() == pytest.approx([0.2 / math.sqrt(2)] * 2)
    md = write_report(tmp_path / "runs", tmp_path / "rep").read_text()
    assert (tmp_path / "rep" / "synthetic_monitor_curves.png").stat().st_size > 1000
    assert "synthetic_monitor_curves.png" in md and "never on a test domain" in md
    _run(tmp_path / "plain" / "s0", "base", 0, {"synthetic": 0.7}, "step,loss,val_dice\n2,0.8,0.5\n")
    md = write_report(tmp_path / "plain", tmp_path / "rep2").read_text()
    assert "per-domain curves" not in md and not list((tmp_path / "rep2").glob("*monitor*"))


# --------------------------------------------------------------------------- report: mean over test sets

def test_mean_over_test_sets_column(tmp_path):
    from scarce.reports.report import write_report
    from scarce.reports.tables import collect_runs, results_table

    scores = {("base", 0): (0.8, 0.4), ("base", 1): (0.7, 0.5), ("dim", 0): (0.9, 0.6), ("dim", 1): (0.8, 0.5)}
    for (row, seed), (a, b) in scores.items():
        _run(tmp_path / "runs" / row / f"s{seed}", row, seed, {"synthetic": a, "synthetic_ood": b})
    df = collect_runs(tmp_path / "runs")
    table = results_table(df, "dice", mean_column=True)
    assert list(table.columns) == ["synthetic @ 20", "synthetic_ood @ 20", "mean over test sets @ 20"]
    # per run: base (0.6, 0.6), dim (0.75, 0.65) → mean ± sample std over seeds
    assert table.loc["base", "mean over test sets @ 20"] == "0.600 ± 0.000"
    assert table.loc["dim", "mean over test sets @ 20"] == f"0.700 ± {math.sqrt(0.005):.3f}"
    assert list(results_table(df, "dice").columns) == ["synthetic @ 20", "synthetic_ood @ 20"]  # opt-in
    write_report(tmp_path / "runs", tmp_path / "rep")
    md = (tmp_path / "rep" / "synthetic_dice.md").read_text()
    assert "| **0.700 ± 0.071** |" in md and "mean over test sets @ 20" in (tmp_path / "rep" / "synthetic_dice.csv").read_text()
    one = tmp_path / "one"
    _run(one / "s0", "base", 0, {"synthetic": 0.8})
    write_report(one, tmp_path / "rep1")
    assert "mean over" not in (tmp_path / "rep1" / "results.md").read_text()


# --------------------------------------------------------------------------- t-SNE

def _trained_like_run(path, tmp_path, seed, label):
    """A finished-run folder with an untrained tiny U-Net as best.pt (synthetic data)."""
    from scarce.config import load_config, save_config
    from scarce.models import create_model
    from scarce.utils.io import atomic_torch_save, atomic_write_json

    cfg = load_config(sets=[f"out={path}", "data.dataset=synthetic", "data.size=32", "data.synthetic_n=20",
                            "data.budget=10", f"data.cache_dir={tmp_path / 'cache'}", "model.width=4",
                            "model.depth=2", f"train.seed={seed}", f"label={label}"])
    path.mkdir(parents=True)
    save_config(cfg, path / "config.yaml")
    torch.manual_seed(seed)
    atomic_torch_save({"model": create_model("unet", 3, 2, width=4, depth=2).state_dict()},
                      path / "checkpoints" / "best.pt")
    atomic_write_json(path / "metrics.json", {"tests": {}})
    return path


def test_tsne_cli_writes_one_row_per_test_image_by_domain(tmp_path, capsys):
    from scarce.api import load_run_config
    from scarce.data.load import load_test_sets

    runs = [_trained_like_run(tmp_path / n, tmp_path, s, n) for s, n in ((0, "base"), (1, "dim"))]
    out = tmp_path / "tsne"
    assert main(["tsne", *map(str, runs), "-o", str(out), "--set", "train.threads=1"]) == 0
    rows = list(csv.DictReader(open(out / "tsne.csv")))
    assert (out / "tsne.png").stat().st_size > 1000
    for run in runs:  # the run's own test sets (ID test part + OOD set), image by image
        cfg = load_run_config(run)
        want = [(t, s) for t, d in load_test_sets(cfg.data, cfg.train.seed).items() for s in d.stems]
        got = [(r["test_set"], r["stem"]) for r in rows if r["run"] == run.name]
        assert got == want and {t for t, _ in got} == {"synthetic", "synthetic_ood"}
        assert all(math.isfinite(float(r["x"])) and math.isfinite(float(r["y"])) for r in rows)
    # OUT holding other files is refused with one line, and nothing is written
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["tsne", str(runs[0]), "-o", str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scarce: error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    assert main(["tsne", str(runs[0]), "-o", str(out)]) == 0  # an earlier t-SNE output is rewritten


def test_feature_hooks_read_the_deepest_encoder_feature():
    from scarce.models import create_model
    from scarce.reports.tsne import feature_module, pooled_features

    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    unet = create_model("unet", 3, 2, width=4, depth=2).eval()
    with torch.no_grad():
        h = unet.inc(x)
        for stage in unet.down:
            h = stage(unet.pool(h))
    assert torch.allclose(pooled_features(unet, x), h.mean(dim=(2, 3)))  # the bottleneck, 16 channels
    enc = create_model("unet", 3, 2, encoder="efficientnet_lite0", encoder_weights="none")
    f = pooled_features(enc, x)
    net = enc.net if hasattr(enc, "net") else enc
    assert feature_module(enc) is net.encoder and f.shape == (3, net.encoder.out_channels[-1])
    assert feature_module(create_model("deeplabv3", 3, 2, width=4)).__class__.__name__ == "ResNet"
