"""Channels-last segmenters and ``train.precision``: same outputs as NCHW within
float tolerance, every method family's segmenter built channels-last in one place, checkpoints
loadable across layouts, the precision key validated in one line, the bf16/fp16 paths on tiny data.
No timing here (benchmarks/step_speed.py measures)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from scarce.config import ConfigError, load_config
from scarce.engine.precision import apply_precision, cpu_bf16_supported, resolve_precision
from scarce.engine.trainer import Trainer
from scarce.methods import METHODS, load_builtin_methods
from tests.tiny import tiny_config, tiny_run_data

load_builtin_methods()
CL = torch.channels_last
BF16 = pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16")


def _nets():
    from scarce.models import model_from_config

    # the pretrained encoder (as trained): a random-init Lite0 is ill-conditioned enough (BatchNorm
    # over a few deep pixels) that float rounding alone moves its early gradients by ~1 %
    lite = load_config(sets=["model.encoder=efficientnet_lite0", "model.encoder_weights=imagenet"]).model
    unet = load_config(sets=["model.encoder=none", "model.width=4", "model.depth=2"]).model
    torch.manual_seed(0)
    return [model_from_config(lite, in_channels=3, num_classes=2),
            model_from_config(unet, in_channels=3, num_classes=3)]


@pytest.mark.parametrize("k", [0, 1], ids=["lite0_unet", "unet"])
def test_channels_last_model_matches_nchw(k):
    """Train-mode forward + backward and eval-mode forward: same logits and gradients (float
    rounding only), whatever the input's layout; activations come out channels-last."""
    nchw = _nets()[k]
    cl = copy.deepcopy(nchw).to(memory_format=CL)
    assert all(p.is_contiguous(memory_format=CL) for p in cl.parameters() if p.dim() == 4)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    nchw.eval(), cl.eval()  # first: train-mode passes below update the BatchNorm running statistics
    with torch.no_grad():
        ya = nchw(x)
        torch.testing.assert_close(cl(x), ya, rtol=1e-3, atol=1e-5 * float(ya.abs().max()))
    nchw.train(), cl.train()
    ya = nchw(x)
    for inp in (x, x.contiguous(memory_format=CL)):
        yb = cl(inp)
        assert yb.is_contiguous(memory_format=CL)
        torch.testing.assert_close(yb, ya, rtol=1e-3, atol=1e-4 * float(ya.detach().abs().max()))
    ya.square().mean().backward()
    cl.zero_grad()
    yb.square().mean().backward()
    scale = max(float(p.grad.abs().max()) for p in nchw.parameters())  # some grads are ~0 (cancellation)
    for (name, pa), pb in zip(nchw.named_parameters(), cl.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-3, atol=1e-4 * scale, msg=name)


# one representative of each family, plus the methods that build a second segmenter
FAMILIES = ["supervised", "separate", "pce_gd", "mean_teacher", "fixmatch", "dct", "ctbct"]


def _method(name):
    import dataclasses

    fields = {f.name for f in dataclasses.fields(METHODS.get(name).Config)}
    fast = {"pretrain_iters": 2, "workers": 0, "scribbles": "synthetic:0.5"}
    return {"name": name, **{k: v for k, v in fast.items() if k in fields}}


def _trainer(tmp_path, name, **train):
    data = tiny_run_data(n_unlabelled=6 if "unlabelled" in METHODS.get(name).streams else 0)
    cfg = tiny_config(tmp_path, _method(name), **{"iterations": 2, **train})
    if name == "ctbct":
        cfg.data.size = 32
    return Trainer(cfg, data, tmp_path)


def _segmenters(t):
    """Every network of the method that maps images to logits (the segmenter, a teacher, DCT's
    other views, CTBCT's Transformer), not a GAN's generator/discriminator."""
    mods = t.method.modules()
    keep = [k for k in mods if k in ("model", "teacher", "transformer") or k.startswith("view")]
    return {k: mods[k] for k in keep}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_channels_last(tmp_path, name):
    """The engine builds every segmenter channels-last (TrainContext.prepare_network), the
    weights stay so through training (optimizer steps keep the layout), and
    ``train.channels_last=false`` gives NCHW."""
    t = _trainer(tmp_path / "cl", name)
    nets = _segmenters(t)
    assert "model" in nets and len(nets) == 1 + (name in ("mean_teacher", "dct", "ctbct"))
    t.fit()
    for k, net in nets.items():
        convs = [p for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert convs and all(p.is_contiguous(memory_format=CL) for p in convs), f"{name}: {k} is not channels-last"
    if t.ema is not None:
        assert all(p.is_contiguous(memory_format=CL) for p in t.ema.module.parameters() if p.dim() == 4)
    u = _trainer(tmp_path / "nchw", name, channels_last="false")
    w = next(p for p in u.method.segmenter.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert not w.is_contiguous(memory_format=CL)


def test_checkpoint_loads_in_either_layout(tmp_path):
    """best.pt of a channels-last run: identical tensor values in an NCHW or channels-last model
    (state dicts are layout-free), the same predictions within float tolerance; load_segmenter
    follows the run's ``train.channels_last``."""
    from scarce.api import load_segmenter
    from scarce.config import save_config
    from scarce.evaluation.evaluate import predict_probs

    t = _trainer(tmp_path, "supervised")
    t.fit()
    cfg = t.cfg
    cfg.data.dataset = "synthetic"
    save_config(cfg, tmp_path / "config.yaml")
    m_cl = load_segmenter(tmp_path, cfg, in_channels=3, num_classes=2)
    cfg_n = copy.deepcopy(cfg)
    cfg_n.train.channels_last = False
    m_n = load_segmenter(tmp_path, cfg_n, in_channels=3, num_classes=2)
    assert next(p for p in m_cl.parameters() if p.dim() == 4).is_contiguous(memory_format=CL)
    assert not next(p for p in m_n.parameters() if p.dim() == 4 and p.shape[-1] > 1).is_contiguous(memory_format=CL)
    sa, sb = m_cl.state_dict(), m_n.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = t.data.val.images
    torch.testing.assert_close(predict_probs(m_cl, x), predict_probs(m_n, x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(predict_probs(m_cl, x), predict_probs(t.load_best(), x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the precision key

@pytest.mark.parametrize("value", ["bogus", "bf61", 16, None])
def test_precision_key_fails_in_one_line(tmp_path, value):
    from scarce.validate import validate_config

    cfg = tiny_config(tmp_path)
    cfg.train.precision = value
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    assert "train.precision" in str(e.value) and "\n" not in str(e.value)


def test_precision_resolution_on_cpu(monkeypatch):
    from scarce.engine import precision as P

    assert resolve_precision("auto", "cpu") == "fp32"  # measured: bf16 is slower on this project's CPUs
    assert resolve_precision(" FP32 ", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="no native bf16"):
        resolve_precision("bf16", "cpu")
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_fp16_refused_with_sam(tmp_path, monkeypatch):
    from scarce.engine import precision as P
    from scarce.validate import validate_config

    real = P.resolve_precision
    monkeypatch.setattr(P, "resolve_precision", lambda name, dev: "fp16" if name == "fp16" else real(name, dev))
    cfg = tiny_config(tmp_path)
    cfg.train.optim.name = "sam"
    cfg.train.precision = "fp16"
    with pytest.raises(ConfigError, match="GradScaler"):
        validate_config(cfg)


def test_fp32_installs_nothing():
    """fp32 (the CPU default) leaves the network untouched: runs stay bit-identical."""
    net = _nets()[1]
    apply_precision(net, "fp32", "cpu")
    assert not net._forward_hooks and not net._forward_pre_hooks


@BF16
@pytest.mark.parametrize("name", ["supervised", "mean_teacher", "fixmatch"])
def test_bf16_trains_on_tiny_data(tmp_path, name):
    """bf16: convolutions of the training forward run in bf16, the logits come back float32,
    weights/grads/optimizer stay float32, eval mode (validation) runs float32; resumes identically."""
    t = _trainer(tmp_path / "a", name, precision="bf16", iterations=4)
    assert t.precision == "bf16"
    seen: list[tuple[bool, torch.dtype]] = []
    conv = next(m for m in t.method.segmenter.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
    res = t.fit()
    assert res.steps == 4 and res.best_score == res.best_score
    assert (True, torch.bfloat16) in seen and (False, torch.float32) in seen and (True, torch.float32) not in seen
    seg = t.method.segmenter
    assert all(p.dtype == torch.float32 for p in seg.parameters())
    b = _trainer(tmp_path / "b", name, precision="bf16", iterations=4)
    b.fit(max_steps=2)
    b2 = _trainer(tmp_path / "b", name, precision="bf16", iterations=4)
    b2.fit(resume=True)
    sa, sb = seg.state_dict(), b2.method.segmenter.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    twin = copy.deepcopy(seg).train()  # a copy (mean teacher's teacher, EMA) keeps the autocast hooks
    seen.clear()
    out = twin(t.data.train.images[:2])
    assert seen == [(True, torch.bfloat16)]  # (the test's conv hook was copied with the conv)
    assert out.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def test_fp16_grad_scaler_step_and_checkpoint(tmp_path):
    """fp16's GradScaler path of ctx.step (exercised on CPU, where torch's GradScaler and fp16
    autocast exist even though the config refuses fp16 off CUDA) and its checkpoint entry."""
    from scarce.engine.method import TrainContext
    from scarce.engine.optim import make_optimizer
    from scarce.models import model_from_config

    cfg = tiny_config(tmp_path)
    try:
        ctx = TrainContext(cfg, tiny_run_data(), tmp_path, torch.device("cpu"), torch.Generator(),
                           lambda a, b: a, precision="fp16")
        net = ctx.prepare_network(model_from_config(cfg.model, in_channels=3, num_classes=2))
        x = torch.rand(2, 3, 32, 32)
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(x, torch.rand(1, 3, 1, 1))
    except (RuntimeError, TypeError, ValueError) as e:  # pragma: no cover - torch without CPU fp16
        pytest.skip(f"no fp16 autocast / GradScaler on CPU here: {e}")
    assert ctx.scaler is not None
    opt = make_optimizer(net.parameters(), cfg.train.optim)
    before = [p.detach().clone() for p in net.parameters()]
    for i in range(24):  # steps whose scaled fp16 gradients overflow are skipped and halve the scale
        loss = ctx.step(lambda: net(x).square().mean(), opt) if i % 2 else ctx.step(net(x).square().mean(), opt)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        if any(not torch.equal(a, p) for a, p in zip(before, net.parameters())):
            break
    else:
        pytest.fail("no fp16 step was taken")
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert "scale" in ctx.scaler.state_dict()


def test_environment_records_precision_and_layout():
    from scarce.utils.environment import environment_info, same_setup

    env = environment_info("cpu", 1, precision="fp32", channels_last=True)
    assert env["precision"] == "fp32" and env["channels_last"] is True
    old = {k: v for k, v in env.items() if k not in ("precision", "channels_last")}
    assert "precision" not in environment_info("cpu")  # the API without them is unchanged
    assert same_setup(old, env)  # an entry written before these fields matches
    assert not same_setup(env, {**env, "precision": "bf16"})
    json.dumps(env)


def test_train_run_writes_effective_precision(tmp_path):
    from scarce.api import train_run
    from scarce.utils.environment import read_environments

    cfg = tiny_config(tmp_path / "run", iterations=2)
    cfg.out = str(tmp_path / "run")
    cfg.data.dataset = "synthetic"
    cfg.data.synthetic_n, cfg.data.budget, cfg.data.cache_dir = 24, 12, str(tmp_path / "cache")
    cfg.eval.save_predictions, cfg.eval.overlays = False, 0
    train_run(cfg)
    env = read_environments(tmp_path / "run")[-1]
    assert env["precision"] == "fp32" and env["channels_last"] is True


def test_fused_adam_is_opt_in(tmp_path):
    """``train.optim.fused``: off by default (runs stay bit-identical); on, the same update up to
    float rounding."""
    from scarce.config import OptimConfig
    from scarce.engine.optim import make_optimizer

    assert not OptimConfig().fused
    ps = [torch.nn.Parameter(torch.randn(8, 4, 3, 3).contiguous(memory_format=CL)), torch.nn.Parameter(torch.randn(5))]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    a, b = make_optimizer(ps, OptimConfig()), make_optimizer(qs, OptimConfig(fused=True))
    assert not a.defaults.get("fused") and b.defaults["fused"]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(ps, qs):
            # as autograd makes them: in the parameter's layout (torch 2.13's fused CPU kernel
            # misreads a gradient whose layout differs from its parameter's)
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=g))
            q.grad = p.grad.clone()
        a.step(), b.step()
    for p, q in zip(ps, qs):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    t = _trainer(tmp_path, "supervised", **{"optim.fused": "true"})
    assert t.method.optimizer.defaults["fused"] and t.fit().steps == 2


@pytest.mark.parametrize("size,layout", [(32, "nchw"), (50, "cl"), (64, "cl")])
def test_intensity_ops_on_drawn_samples_are_bit_identical(size, layout):
    """nnU-Net intensity ops run on the samples that drew them only (faster steps): the same bits
    and memory layout as computing them on the whole batch and selecting, as before."""
    from scarce.augment import intensity as I

    g = torch.Generator().manual_seed(size)
    x = torch.rand(8, 3, size, size, generator=g)
    if layout == "cl":
        x = x.contiguous(memory_format=CL)
    everyone = torch.ones(8, dtype=torch.bool)
    param = torch.rand(8, generator=g) + 0.6
    noise = torch.randn(x.shape, generator=g)
    ops = {"noise": lambda a: I._noise(x, a, param * 0.1, noise), "contrast": lambda a: I._contrast(x, a, param),
           "gamma": lambda a: I._gamma(x, a, param, False, True),
           "gamma_inv": lambda a: I._gamma(x, a, param, True, True)}
    for apply in (torch.tensor([1, 0, 0, 1, 0, 1, 0, 0], dtype=torch.bool), torch.zeros(8, dtype=torch.bool), everyone):
        for name, op in ops.items():
            ref = torch.where(apply.view(-1, 1, 1, 1), op(everyone), x)
            out = op(apply)
            assert torch.equal(out, ref) and out.stride() == ref.stride(), name
