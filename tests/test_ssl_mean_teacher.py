"""``mean_teacher``: the EMA update checked by hand on a parameter and a BatchNorm buffer, the
decay warm-up, the sigmoid ramp-up, the consistency target (teacher on the weak view, student on
the strong view), and short trainings through the real Trainer (incl. the SAM closure path)."""
from __future__ import annotations

import math

import pytest
import torch

from scarce.config import ConfigError
from scarce.engine.trainer import Trainer
from scarce.losses import class_probs
from scarce.methods.ssl.mean_teacher import ema_update
from tests.tiny import tiny_config, tiny_run_data


def _trainer(tmp_path, iterations=4, num_classes=2, **method):
    cfg = tiny_config(tmp_path, {"name": "mean_teacher", **method}, iterations=iterations)
    return Trainer(cfg, tiny_run_data(num_classes=num_classes, n_unlabelled=6), tmp_path)


def _param_and_bn(model):
    """(name of the first conv weight, name of the first BatchNorm running mean)."""
    names = dict(model.named_parameters())
    w = next(k for k in names if k.endswith("weight") and names[k].dim() == 4)
    rm = next(k for k, _ in model.named_buffers() if k.endswith("running_mean"))
    return w, rm


@pytest.mark.parametrize("ema,alpha", [(0.3, 0.3), (0.99, 0.5)])
def test_teacher_is_the_ema_of_the_student_after_one_step(tmp_path, ema, alpha):
    """After step 0: teacher = α·teacher₀ + (1 − α)·student₁ with α = min(ema, 1 − 1/2) (Tarvainen's
    warm-up), for a conv weight AND a BatchNorm running mean (the teacher's own forward leaves
    its buffers alone); num_batches_tracked is copied."""
    t = _trainer(tmp_path, ema=ema)
    m = t.method
    w, rm = _param_and_bn(m.model)
    t0 = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    assert torch.equal(t0[w], m.model.state_dict()[w])  # the teacher starts as a copy
    m.training_step(t.next_batch(), 0)
    s1 = m.model.state_dict()
    after = m.teacher.state_dict()
    assert m.decay(0) == alpha
    assert not torch.equal(s1[w], t0[w]) and not torch.equal(s1[rm], t0[rm])  # the student moved
    for k in (w, rm):
        expected = alpha * t0[k] + (1 - alpha) * s1[k]
        assert torch.allclose(after[k], expected, atol=1e-7), k
    # by hand on one scalar
    i = (0,) * t0[w].dim()
    assert after[w][i].item() == pytest.approx(alpha * t0[w][i].item() + (1 - alpha) * s1[w][i].item(), abs=1e-7)
    tracked = next(k for k in after if k.endswith("num_batches_tracked"))
    assert torch.equal(after[tracked], s1[tracked])
    assert not any(p.requires_grad for p in m.teacher.parameters())


def test_decay_warms_up_to_ema(tmp_path):
    m = _trainer(tmp_path, ema=0.99).method
    assert [m.decay(s) for s in (0, 1, 8)] == pytest.approx([1 / 2, 2 / 3, 9 / 10])
    assert m.decay(97) < 0.99 and m.decay(98) == pytest.approx(0.99) and m.decay(10_000) == 0.99


def test_ema_update_function():
    a, b = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        a.weight.fill_(1.0), b.weight.fill_(3.0), a.running_var.fill_(2.0), b.running_var.fill_(4.0)
    b.num_batches_tracked.fill_(7)
    ema_update(a, b, 0.75)
    assert a.weight.tolist() == [1.5, 1.5] and a.running_var.tolist() == [2.5, 2.5]
    assert int(a.num_batches_tracked) == 7


def test_consistency_weight_sigmoid_rampup(tmp_path):
    """λ_u(step) = weight · exp(−5 (1 − step/(rampup · iterations))²), then weight (SSL4MIS)."""
    m = _trainer(tmp_path, iterations=100).method  # defaults: weight 0.1, rampup 1.0
    assert m.consistency_weight(0) == pytest.approx(0.1 * math.exp(-5))
    assert m.consistency_weight(50) == pytest.approx(0.1 * math.exp(-5 * 0.25))
    assert m.consistency_weight(100) == pytest.approx(0.1) and m.consistency_weight(150) == pytest.approx(0.1)
    m2 = _trainer(tmp_path / "b", iterations=100, weight=2.0, rampup=0.2).method
    assert m2.consistency_weight(10) == pytest.approx(2.0 * math.exp(-5 * 0.25))
    assert m2.consistency_weight(20) == pytest.approx(2.0)


def test_consistency_is_mse_between_student_strong_and_teacher_weak(tmp_path):
    """The teacher sees the weak view (no gradient), the student the labelled batch + the strong
    view; loss = loss_x + λ·mean((p_s − p_t)²) over class probabilities."""
    t = _trainer(tmp_path, num_classes=3, weight=5.0, rampup=0.0)
    m = t.method
    seen = {}
    m.teacher.register_forward_hook(lambda mod, a, o: seen.update(t_in=a[0].clone(), t_out=o.detach().clone()))
    m.model.register_forward_hook(lambda mod, a, o: seen.update(s_in=a[0].clone(), s_out=o.detach().clone()))
    batch = t.next_batch()
    out = m.training_step(batch, 0)
    n = batch.images.shape[0]
    u_w, u_s = seen["t_in"], seen["s_in"][n:]
    assert u_w.shape == u_s.shape and not torch.equal(u_w, u_s)  # strong = perturbed weak view
    assert seen["t_out"].requires_grad is False
    expected = torch.mean((class_probs(seen["s_out"][n:]) - class_probs(seen["t_out"])) ** 2)
    assert out["loss_c"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["lambda_u"] == 5.0
    assert out["loss"].item() == pytest.approx((out["loss_x"] + 5.0 * out["loss_c"]).item(), rel=1e-5)


def test_teacher_forward_keeps_its_running_statistics(tmp_path):
    m = _trainer(tmp_path).method
    before = [b.clone() for b in m.teacher.buffers()]
    m.teacher_probs(torch.rand(4, 3, 32, 32))
    assert all(torch.equal(a, b) for a, b in zip(before, m.teacher.buffers()))


def test_bad_ema_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method\.ema.*\[0, 1\].*1\.5"):
        _trainer(tmp_path, ema=1.5)


@pytest.mark.slow
@pytest.mark.parametrize("model,num_classes", [("unet", 3), ("deeplabv3", 2)])
def test_trains_on_tiny_data_without_unlabelled_masks(tmp_path, model, num_classes):
    """A short run through the Trainer (the unlabelled pool is an ImageSet: no masks to read);
    the teacher is checkpointed and resumes bit-identically."""
    data = tiny_run_data(num_classes=num_classes, n_unlabelled=6)
    assert not hasattr(data.unlabelled, "masks")

    def trainer(out):
        cfg = tiny_config(out, {"name": "mean_teacher"}, iterations=4)
        cfg.model.name = model
        cfg.model.width = 8  # (torch 2.13 CPU: a width-4 ResNet crashes in channels_last backward)
        return Trainer(cfg, data, out)

    res = trainer(tmp_path / "a").fit()
    assert res.steps == 4 and math.isfinite(res.best_score)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "loss_x", "loss_c", "lambda_u"} <= set(header)
    saved = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["method"]["modules"]
    assert set(saved) == {"model", "teacher"}
    trainer(tmp_path / "b").fit(max_steps=2)
    b = trainer(tmp_path / "b")
    b.fit(resume=True)
    for name, module in (("model", b.method.model), ("teacher", b.method.teacher)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, saved[name][k]), f"{name}.{k}"


@pytest.mark.slow
def test_sam_two_pass_step_runs(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "mean_teacher"}, iterations=2)
    cfg.train.optim.name = "sam"
    res = Trainer(cfg, tiny_run_data(n_unlabelled=6), tmp_path).fit()
    assert res.steps == 2 and math.isfinite(res.best_score)
