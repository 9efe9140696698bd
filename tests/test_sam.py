"""SAM / ASAM as registered optimisers on the closure-based step."""
from __future__ import annotations

import math

import pytest
import torch

from scarce.config import OptimConfig
from scarce.engine.method import TrainContext, frozen_batchnorm
from scarce.engine.optim import OPTIMIZERS, SAM, make_optimizer
from tests.tiny import tiny_config, tiny_run_data


def _ctx(tmp_path):
    return TrainContext(tiny_config(tmp_path), tiny_run_data(), tmp_path, torch.device("cpu"), torch.Generator(),
                        lambda a, b: a)


A = torch.tensor([[2.0, 0.0], [0.0, 0.5]])


def _loss(theta):
    return 0.5 * theta @ A @ theta


def test_sam_two_steps_by_hand(tmp_path):
    """L(θ) = ½ θᵀAθ, base SGD (lr η, no momentum): θ ← θ − η A(θ + ρ Aθ/‖Aθ‖), twice."""
    ctx = _ctx(tmp_path)
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = make_optimizer([theta], OptimConfig(name="sam", base="sgd", lr=0.1, momentum=0.0, weight_decay=0.0,
                                               rho=0.05))
    assert isinstance(opt, SAM)
    ref = torch.tensor([1.0, -2.0])
    for _ in range(2):
        g = A @ ref
        eps = 0.05 * g / g.norm()
        ref = ref - 0.1 * (A @ (ref + eps))
        loss = ctx.step(lambda: _loss(theta), opt)
        assert math.isfinite(float(loss))
    assert torch.allclose(theta.detach(), ref, atol=1e-6)
    # by hand, first step: g = (2, -1), ε = 0.05·(2, -1)/√5, θ₁ = θ₀ − 0.1·A(θ₀ + ε)
    e = 0.05 / math.sqrt(5)
    t1 = (1 - 0.1 * 2 * (1 + 2 * e), -2 - 0.1 * 0.5 * (-2 - e))
    g1 = (2 * t1[0], 0.5 * t1[1])
    n1 = math.hypot(*g1)
    t2 = (t1[0] - 0.1 * 2 * (t1[0] + 0.05 * g1[0] / n1), t1[1] - 0.1 * 0.5 * (t1[1] + 0.05 * g1[1] / n1))
    assert theta.detach().tolist() == pytest.approx(list(t2), abs=1e-6)


def test_asam_scales_the_perturbation_by_the_weights(tmp_path):
    """ASAM: ε = ρ·T²g/‖Tg‖ with T = |θ| (Kwon et al., Eq. 9)."""
    ctx = _ctx(tmp_path)
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = make_optimizer([theta], OptimConfig(name="asam", base="sgd", lr=0.1, momentum=0.0, weight_decay=0.0,
                                               rho=0.5))
    t0 = torch.tensor([1.0, -2.0])
    g = A @ t0
    tg = t0.abs() * g
    eps = 0.5 * t0.abs() * tg / tg.norm()
    ctx.step(lambda: _loss(theta), opt)
    assert torch.allclose(theta.detach(), t0 - 0.1 * (A @ (t0 + eps)), atol=1e-6)


def test_sam_is_registered_and_schedules_act_on_its_base(tmp_path):
    assert {"sam", "asam"} <= set(OPTIMIZERS.names())
    net = torch.nn.Linear(2, 1)
    opt = make_optimizer(net.parameters(), OptimConfig(name="sam", base="adam", lr=0.01))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    ctx = _ctx(tmp_path)
    ctx.step(lambda: net(torch.ones(3, 2)).pow(2).mean(), opt)
    sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.005)
    state = opt.state_dict()
    again = make_optimizer(net.parameters(), OptimConfig(name="sam", base="adam", lr=0.01))
    again.load_state_dict(state)
    assert again.base.state_dict()["state"].keys() == state["state"].keys()


def test_sam_needs_a_closure(tmp_path):
    from scarce.config import ConfigError

    net = torch.nn.Linear(2, 1)
    opt = make_optimizer(net.parameters(), OptimConfig(name="sam", base="sgd", lr=0.1))
    with pytest.raises(ConfigError, match="evaluates the loss twice"):
        _ctx(tmp_path).step(net(torch.ones(1, 2)).sum(), opt)


def test_second_pass_leaves_batchnorm_running_statistics_alone(tmp_path):
    """One SAM step updates running mean/var exactly as one forward pass would."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    nets = [torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    ctx = _ctx(tmp_path)
    ctx.modules = lambda: {"model": nets[0]}
    opt = make_optimizer(nets[0].parameters(), OptimConfig(name="sam", base="sgd", lr=0.0, momentum=0.0,
                                                           weight_decay=0.0))
    ctx.step(lambda: nets[0](x).pow(2).mean(), opt)
    nets[1](x)  # one plain forward in train mode
    for k in ("running_mean", "running_var", "num_batches_tracked"):  # (weights: θ + ε − ε round-off)
        assert torch.equal(nets[0][1].state_dict()[k], nets[1][1].state_dict()[k]), k
    with frozen_batchnorm([nets[1]]):
        nets[1](x * 3)
    assert torch.equal(nets[1][1].running_mean, nets[0][1].running_mean)


def test_supervised_trains_with_sam(tmp_path):
    from scarce.engine.trainer import Trainer

    cfg = tiny_config(tmp_path, {"name": "supervised"}, iterations=2)
    cfg.train.optim.name, cfg.train.optim.base = "sam", "adam"
    res = Trainer(cfg, tiny_run_data(), tmp_path).fit()
    assert res.steps == 2 and math.isfinite(res.best_score)


def test_config_validation_names_the_problem():
    from scarce.config import ConfigError, load_config
    from scarce.validate import validate_config

    with pytest.raises(ConfigError, match="method 'e2eaug' computes it once. Methods that support it: .*supervised"):
        validate_config(load_config(sets=["train.optim.name=sam", "method.name=e2eaug"]))
    with pytest.raises(ConfigError, match="Did you mean 'adam'"):
        validate_config(load_config(sets=["train.optim.name=asam", "train.optim.base=adm"]))
    with pytest.raises(ConfigError, match="train.optim.rho"):
        validate_config(load_config(sets=["train.optim.name=sam", "train.optim.rho=0"]))
    validate_config(load_config(sets=["train.optim.name=asam", "train.optim.rho=1.0"]))
