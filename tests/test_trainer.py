"""Trainer: loop, validation/best checkpoint, logging, exact resume, early stop."""
import csv

import pytest
import torch

from scarce.engine.trainer import Trainer
from tests.tiny import tiny_config, tiny_run_data


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.method.segmenter.state_dict().items()}


def test_fit_writes_checkpoints_logs_and_learns(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=30, val_every=10)
    cfg.train.optim.lr = 1e-2
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    res = t.fit()
    assert res.steps == 30
    assert (tmp_path / "checkpoints" / "last.pt").exists() and (tmp_path / "checkpoints" / "best.pt").exists()
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    vals = [float(r["val_dice"]) for r in rows if r.get("val_dice")]
    assert len(vals) == 3 and res.best_score == pytest.approx(max(vals))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == res.best_step


@pytest.mark.parametrize("augment", ["none", "combine"])
def test_resume_is_identical(tmp_path, augment):
    method = {"name": "supervised", "augment": augment}
    full = Trainer(tiny_config(tmp_path / "a", method, iterations=6), tiny_run_data(), tmp_path / "a")
    full.fit()
    part = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    part.fit(max_steps=4)  # "killed" after the step-4 checkpoint
    resumed = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    res = resumed.fit(resume=True)
    assert res.steps == 6
    a, b = _weights(full), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "a" / "log.csv").read_text().count("\n") == (tmp_path / "b" / "log.csv").read_text().count("\n")


def test_resume_mid_interval_restarts_from_last_checkpoint(tmp_path):
    method = {"name": "supervised"}
    full = Trainer(tiny_config(tmp_path / "a", method, iterations=6), tiny_run_data(), tmp_path / "a")
    full.fit()
    part = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    part.fit(max_steps=3)  # interrupted after step 3; last checkpoint is step 2
    resumed = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    resumed.fit(resume=True)
    for k, v in _weights(full).items():
        assert torch.equal(v, _weights(resumed)[k]), k
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))


def test_early_stopping(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=100, val_every=2, early_stop=2)
    cfg.train.optim.lr = 0.0  # nothing improves after the first validation
    res = Trainer(cfg, tiny_run_data(), tmp_path).fit()
    assert res.stopped_early and res.steps == 6


def test_unknown_method_field_fails_fast(tmp_path):
    from scarce.config import ConfigError

    cfg = tiny_config(tmp_path, {"name": "supervised", "augmnt": "flip"})
    with pytest.raises(ConfigError, match="augment"):
        Trainer(cfg, tiny_run_data(), tmp_path)


def test_resume_after_early_stop_stays_stopped(tmp_path):
    # killed after stopping early but before evaluation: --resume must not train on
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=100, val_every=2, early_stop=2)
    cfg.train.optim.lr = 0.0
    Trainer(cfg, tiny_run_data(), tmp_path).fit()
    res = Trainer(cfg, tiny_run_data(), tmp_path).fit(resume=True)
    assert res.stopped_early and res.steps == 6


@pytest.mark.parametrize("name, first_selectable", [("grid_gd", 4), ("pce_gd", 1)])
def test_best_checkpoint_skips_unselectable_steps(tmp_path, monkeypatch, name, first_selectable):
    """Validation scores that only fall: the best checkpoint is the first *selectable* step —
    after the PCE pretraining for a regularised weak method (pretrain_iters 3), step 1 for PCE-GD.
    Without the selection rule grid_gd would return its step-1 PCE model."""
    method = {"name": name, "scribbles": "synthetic:0.5"}
    if name == "grid_gd":
        method["pretrain_iters"] = 3
    cfg = tiny_config(tmp_path, method, iterations=6, val_every=1)
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    scores = iter([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    monkeypatch.setattr(t, "validate", lambda: next(scores))
    res = t.fit()
    assert res.best_step == first_selectable
    assert res.best_score == pytest.approx([0.9, 0.8, 0.7, 0.6][first_selectable - 1])
    assert torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)["step"] == first_selectable


def test_last_step_is_selectable_even_when_the_method_excludes_it(tmp_path, monkeypatch):
    """A run shorter than its pretraining still ends with a best checkpoint (the last step)."""
    cfg = tiny_config(tmp_path, {"name": "grid_tr", "scribbles": "synthetic:0.5", "pretrain_iters": 10},
                      iterations=4, val_every=2)
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    res = t.fit()
    assert res.best_step == 4 and (tmp_path / "checkpoints" / "best.pt").exists()
