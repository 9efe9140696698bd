"""``train.schedule`` (plateau | cosine | onecycle | poly) with
``train.warmup`` / ``train.poly_power``, and ``train.ema`` (an exponential moving average of the
segmenter's weights used by validation and ``best.pt``).

LR values are checked against numbers worked out by hand from the documented curves; the EMA
against the average computed by hand from the segmenter's weights after each step."""
import csv
import math

import pytest
import torch
from torch import nn

from scarce.engine.optim import make_ema, make_lr_scheduler
from scarce.engine.trainer import Trainer
from tests.tiny import tiny_config, tiny_run_data

LR = 1e-2


def _train_cfg(tmp_path, **train):
    return tiny_config(tmp_path, {"name": "supervised"}, **train).train


def _two_group_optimizer(name: str = "adam") -> torch.optim.Optimizer:
    """Decoder group at LR, encoder group at LR × 0.1 (what ``encoder_lr_mult`` builds)."""
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    groups = [{"params": [a]}, {"params": [b], "lr": LR * 0.1}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=LR, momentum=0.9)
    return torch.optim.Adam(groups, lr=LR, betas=(0.9, 0.999))


def _lr_curve(tmp_path, steps: int, opt_name: str = "adam", **train
              ) -> tuple[list[float], list[float], torch.optim.Optimizer]:
    """Group-0 and group-1 lr used by each of ``steps`` training steps (read before the step,
    scheduler stepped after it, as the trainer does)."""
    opt = _two_group_optimizer(opt_name)
    sched = make_lr_scheduler(opt, _train_cfg(tmp_path, **train))
    g0, g1 = [], []
    for _ in range(steps):
        g0.append(opt.param_groups[0]["lr"])
        g1.append(opt.param_groups[1]["lr"])
        opt.step()
        sched.step()
    return g0, g1, opt


# ----------------------------------------------------------------------------- LR curves
COS_09 = 0.5 * (1 + math.cos(0.9 * math.pi))  # 0.0244717...


@pytest.mark.parametrize("schedule, warmup, expected", [
    # cosine over 10 steps: f(k) = ½(1 + cos(πk/10))
    ("cosine", 0, {0: 1.0, 5: 0.5, 9: COS_09}),
    # 2 warmup steps (½, 1), then cosine over the remaining 8: f(2) = 1, f(6) = ½(1 + cos(π·4/8)) = ½
    ("cosine", 2, {0: 0.5, 1: 1.0, 2: 1.0, 6: 0.5, 9: 0.5 * (1 + math.cos(7 / 8 * math.pi))}),
    # poly 0.9: f(k) = (1 − k/10)^0.9
    ("poly", 0, {0: 1.0, 5: 0.5 ** 0.9, 9: 0.1 ** 0.9}),
    # 4 warmup steps: ¼, ½, ¾, 1, then (1 − (k−4)/6)^0.9
    ("poly", 4, {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 7: 0.5 ** 0.9}),
    # OneCycleLR, rise over 4 steps (pct_start 0.4): lr/25 at step 0, lr at step 3 (end of the
    # rise), step 1: cosine a third of the way up = lr − ¾(lr − lr/25); step 6 half-way down =
    # (lr + lr/25/1e4)/2; step 9: lr/25/1e4
    ("onecycle", 4, {0: 1 / 25, 1: 1 - 0.75 * (1 - 1 / 25), 3: 1.0, 6: (1 + 1 / 25 / 1e4) / 2, 9: 1 / 25 / 1e4}),
    # onecycle without train.warmup: torch's 30 % → rise ends at step 2 (0.3·10 − 1)
    ("onecycle", 0, {0: 1 / 25, 2: 1.0, 9: 1 / 25 / 1e4}),
])
def test_lr_curves_match_hand_computed_values_and_keep_the_group_ratio(tmp_path, schedule, warmup, expected):
    g0, g1, _ = _lr_curve(tmp_path, 10, schedule=schedule, warmup=warmup, iterations=10)
    for step, factor in expected.items():
        assert g0[step] == pytest.approx(LR * factor, rel=1e-9, abs=1e-15), (step, g0)
    for a, b in zip(g0, g1):  # the encoder group keeps lr × 0.1 at every step
        assert b == pytest.approx(0.1 * a, rel=1e-9)


def test_onecycle_leaves_momentum_and_betas_as_configured(tmp_path):
    """OneCycleLR would cycle Adam's β1 (0.85–0.95) and SGD's momentum by default: the optimizer
    settings of train.optim must stay what the user set."""
    for opt_name, key, value in [("adam", "betas", (0.9, 0.999)), ("sgd", "momentum", 0.9)]:
        _, _, opt = _lr_curve(tmp_path, 5, opt_name, schedule="onecycle", iterations=10)
        assert all(g[key] == value for g in opt.param_groups), opt_name


def test_trainer_logs_the_lr_each_step_trains_with(tmp_path):
    """Stepped once per training step, logged as the lr the logged step used (group 0)."""
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=6, val_every=3, schedule="cosine", warmup=2)
    cfg.train.optim.lr = LR
    Trainer(cfg, tiny_run_data(), tmp_path).fit()
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    got = [float(r["lr"]) for r in rows]
    f = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    assert got == pytest.approx([LR * x for x in f], rel=1e-9)


def test_plateau_is_unchanged(tmp_path, monkeypatch):
    """The default schedule is still ReduceLROnPlateau on the validation score (factor 0.5,
    patience 0 here): scores 0.5, 0.4, 0.6, 0.6, 0.3 → halved after validations 2, 4 and 5,
    so steps 1–6 train with lr, lr, lr/2, lr/2, lr/4, lr/8; nothing moves between validations."""
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=6, val_every=1, plateau_patience=0)
    assert cfg.train.schedule == "plateau" and cfg.train.warmup == 0 and cfg.train.ema == 0
    cfg.train.optim.lr = LR
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    assert [type(s).__name__ for s in t.schedulers] == ["ReduceLROnPlateau"] and t.ema is None
    scores = iter([0.5, 0.4, 0.6, 0.6, 0.3, 0.2])
    monkeypatch.setattr(t, "validate", lambda: next(scores))
    t.fit()
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [float(r["lr"]) for r in rows] == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4, LR / 8], rel=1e-12)
    assert t.scheduled[0].param_groups[0]["lr"] == pytest.approx(LR / 16)  # after validation 6
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert "ema" not in last and set(last["schedulers"][0]) >= {"best", "num_bad_epochs"}


# ----------------------------------------------------------------------------- resume
def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("schedule, ema", [("cosine", 0.9), ("onecycle", 0.0), ("poly", 0.5)])
def test_resume_is_bit_exact_with_schedule_and_ema(tmp_path, schedule, ema):
    def trainer(d):
        cfg = tiny_config(d, {"name": "supervised"}, iterations=6, val_every=2, schedule=schedule,
                          warmup=2, ema=ema)
        return Trainer(cfg, tiny_run_data(), d)

    full = trainer(tmp_path / "a")
    full.fit()
    trainer(tmp_path / "b").fit(max_steps=3)  # killed after step 3: the last checkpoint is step 2
    resumed = trainer(tmp_path / "b")
    assert resumed.fit(resume=True).steps == 6
    for name, a, b in [("segmenter", full.method.segmenter, resumed.method.segmenter),
                       ("eval model", full.eval_model, resumed.eval_model)]:
        wa, wb = _weights(a), _weights(b)
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)
    assert full.scheduled[0].param_groups[0]["lr"] == resumed.scheduled[0].param_groups[0]["lr"]
    ba = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=True)
    bb = torch.load(tmp_path / "b" / "checkpoints" / "best.pt", weights_only=True)
    assert ba["step"] == bb["step"] and all(torch.equal(ba["model"][k], bb["model"][k]) for k in ba["model"])
    lr_a = [r["lr"] for r in csv.DictReader(open(tmp_path / "a" / "log.csv"))]
    lr_b = [r["lr"] for r in csv.DictReader(open(tmp_path / "b" / "log.csv"))]
    assert lr_a == lr_b and len(lr_a) == 6


# ----------------------------------------------------------------------------- EMA
def test_ema_is_the_hand_computed_average_of_a_toy_model():
    """Parameters and BatchNorm running statistics: e1 = w1, e(t) = d·e(t−1) + (1 − d)·w(t);
    the integer num_batches_tracked is copied (torch's EMA function would truncate it)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    ema = make_ema(model, 0.75)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    expected: dict[str, torch.Tensor] | None = None
    for _ in range(3):
        loss = model(torch.randn(4, 2, 5, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        w = _weights(model)
        expected = w if expected is None else {
            k: (0.75 * expected[k] + 0.25 * w[k]) if w[k].is_floating_point() else w[k] for k in w}
    got = ema.module.state_dict()
    assert set(got) == set(expected)
    for k in expected:
        assert torch.allclose(got[k], expected[k], rtol=1e-6, atol=1e-7), k
    for k in ("0.weight", "1.weight", "1.running_mean", "1.running_var"):  # an average, not a copy
        assert not torch.allclose(got[k], model.state_dict()[k]), k
    assert int(got["1.num_batches_tracked"]) == 3


def test_best_checkpoint_holds_the_ema_weights(tmp_path):
    """Trainer-level: the EMA (decay 0.5) of the segmenter's weights after each of 3 steps is
    what validation scores and what best.pt stores, as a plain segmenter state_dict."""
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=3, val_every=3, ema=0.5)
    cfg.train.optim.lr = LR
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    seen: list[dict[str, torch.Tensor]] = []
    step = t.method.training_step

    def recording_step(batch, i):
        out = step(batch, i)
        seen.append(_weights(t.method.segmenter))
        return out

    t.method.training_step = recording_step
    validated: list[nn.Module] = []
    from scarce.evaluation import evaluate

    real_validate = evaluate.validate

    def spy(model, *a, **k):
        validated.append(model)
        return real_validate(model, *a, **k)

    import unittest.mock

    with unittest.mock.patch.object(evaluate, "validate", spy):
        t.fit()
    expected = seen[0]
    for w in seen[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * w[k] if w[k].is_floating_point() else w[k] for k in w}
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == 3 and set(best["model"]) == set(t.method.segmenter.state_dict())
    for k, v in expected.items():
        assert torch.allclose(best["model"][k], v, rtol=1e-6, atol=1e-7), k
    live = t.method.segmenter.state_dict()
    assert any(not torch.equal(best["model"][k], live[k]) for k in live)  # not the live weights
    assert validated and all(m is t.ema.module for m in validated)
    # evaluation / predict load best.pt into the segmenter: they get the average
    for k, v in t.load_best().state_dict().items():
        assert torch.equal(v, best["model"][k]), k


def test_ema_off_keeps_best_checkpoint_the_live_weights(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=2, val_every=2)
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    t.fit()
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    for k, v in t.method.segmenter.state_dict().items():
        assert torch.equal(best["model"][k], v), k


# ----------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("sets, text", [
    ({"schedule": "cosin"}, "Did you mean 'cosine'"),
    ({"warmup": -1}, "'train.warmup' must be an integer >= 0"),
    ({"warmup": 1.5}, "'train.warmup' expects an integer"),
    ({"schedule": "cosine", "warmup": 400}, "'train.warmup' is 400, not below train.iterations=400"),
    ({"warmup": 10}, "needs a per-iteration schedule, but train.schedule is 'plateau'"),
    ({"schedule": "onecycle", "warmup": 1}, "too short for train.schedule=onecycle"),
    ({"schedule": "poly", "poly_power": 0}, "'train.poly_power' must be a number in (0, ∞)"),
    ({"ema": 1.0}, "'train.ema' must be a number in [0, 1)"),
    ({"ema": -0.1}, "'train.ema' must be a number in [0, 1)"),
])
def test_bad_values_are_one_line_config_errors(sets, text, capsys):
    from scarce.cli import main

    args = ["train", "--set", "train.iterations=400", "--set", "train.progress=false", "--out", "/nonexistent/x"]
    for k, v in sets.items():
        args += ["--set", f"train.{k}={v}"]
    assert main(args) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scarce: error: ") and text in lines[0], lines


def test_good_values_pass_validation(tmp_path):
    from scarce.validate import validate_config

    for sets in [{"schedule": "cosine", "warmup": 20, "ema": 0.999}, {"schedule": "onecycle"},
                 {"schedule": "poly", "poly_power": 2.0, "ema": 0.0}, {"schedule": "Cosine"}]:
        validate_config(tiny_config(tmp_path, {"name": "supervised"}, **sets))
