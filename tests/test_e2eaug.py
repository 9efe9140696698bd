"""E2EAug correctness: hypergradient vs numerical derivative (for every generator family:
pix2pix, SPADE, ASAPNet), a cut gradient path is caught, one end-to-end step moves α, exact
resume, ``separate``, the searchable cells and the GAN cache."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from scarce.losses import get_loss
from scarce.engine.bilevel import cosine, flat_norm
from scarce.methods.gan.e2eaug import E2EAugObjective
from scarce.engine.trainer import Trainer
from scarce.models.asapnet import ASAPNetGenerator
from scarce.models.gan import GENERATORS, PatchDiscriminator, Pix2PixGenerator
from scarce.models.spade import SPADEGenerator
from scarce.models.search import MixedConv
from scarce.models.unet import UNet
from tests.tiny import tiny_config, tiny_run_data

torch.set_num_threads(1)

S = 16
LR_G, LR_W = 0.05, 0.5  # large virtual steps: a hypergradient well above float64 round-off


class SmoothSeg(nn.Module):
    """conv → tanh → 1×1 conv: a segmenter without ReLU/max-pool kinks (see test docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


GENERATOR_FAMILIES = tuple(GENERATORS.names())  # every registered generator goes through the testers


def test_paper_generators_registered():
    assert {"pix2pix", "spade", "asapnet"} <= set(GENERATOR_FAMILIES)


def tiny_generator(name: str) -> nn.Module:
    """A 2-cell searchable generator of each family: pix2pix depth 1 (one Conv + one UpConv
    cell), SPADE depth 2 (two UpConv cells, 4 px start), ASAPNet depth 2 (two Conv cells in the
    low-res trunk, 4×4 px MLP blocks)."""
    if name == "pix2pix":
        return Pix2PixGenerator(2, 3, depth=1, ngf=4)
    if name == "spade":
        return SPADEGenerator(2, 3, depth=2, ngf=4, max_mult=2)
    return ASAPNetGenerator(2, 3, depth=2, ngf=4, max_mult=2, mlp_width=8, n_freq=2)


def tiny_problem(segmenter: str = "smooth", detach: bool = False, generator: str = "pix2pix"):
    """float64, 16 px, 2-cell generator (see :func:`tiny_generator`), tiny nets."""
    torch.manual_seed(0)
    gen = tiny_generator(generator).double()
    assert len(list(gen.cells())) == 2
    if generator != "pix2pix":  # PyTorch's default conv init instead of N(0, 0.02): a generated
        for m in gen.modules():  # image that visibly depends on α (hypergradient ≫ round-off)
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.reset_parameters()
    for _, cell in gen.cells():
        cell.alpha.data = 0.5 * torch.randn(3, dtype=torch.float64)  # away from the uniform point
    disc = PatchDiscriminator(5, ndf=4, n_layers=1).double()
    seg = (SmoothSeg() if segmenter == "smooth" else UNet(3, 1, width=4, depth=2)).double()
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(4, S, S, generator=g) > 0.5).long()
    images = torch.rand(4, 3, S, S, generator=g, dtype=torch.float64)
    aug = masks.flip(-1)[:2]
    val_masks = (torch.rand(3, S, S, generator=g) > 0.5).long()
    val_images = torch.rand(3, 3, S, S, generator=g, dtype=torch.float64)
    obj = E2EAugObjective(seg, gen, disc, get_loss("bce_dice"), 2, detach_generated=detach)
    return obj, (images, masks, aug, val_images, val_masks, LR_G, LR_W)


def numerical_hypergradient(obj: E2EAugObjective, args, h: float = 1e-5) -> dict[str, torch.Tensor]:
    """Central differences of L_val(W'(G'(α), α)) in every α entry (unrolled Stage I+II)."""
    out = {}
    for name, p in obj.gen.named_arch_parameters():
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += h
            plus = obj.unrolled_val_loss(*args)
            with torch.no_grad():
                p.view(-1)[i] -= 2 * h
            minus = obj.unrolled_val_loss(*args)
            with torch.no_grad():
                p.view(-1)[i] += h
            g.view(-1)[i] = (plus - minus) / (2 * h)
        out[name] = g
    return out


def check_hypergradient(obj: E2EAugObjective, args, fd_cosine: bool = True, fd_eps: float = 0.01) -> None:
    """The assertions of the correctness test (reused to show they fail on a cut path)."""
    exact = obj.hypergradient(*args, mode="exact").grads
    num = numerical_hypergradient(obj, args)
    assert flat_norm(num) > 1e-8, "validation loss does not depend on α"
    assert flat_norm(exact) > 1e-8, "exact hypergradient is zero"
    diff = {k: exact[k] - num[k] for k in num}
    assert flat_norm(diff) / flat_norm(num) < 1e-3
    if fd_cosine:
        fd = obj.hypergradient(*args, mode="finite_difference", eps=fd_eps).grads
        assert cosine(fd, exact) >= 0.9


FD_EPS = {"pix2pix": 0.01, "spade": 1e-5, "asapnet": 1e-5}
"""DARTS' ε per family for the cosine check. SPADE's and ASAPNet's (Leaky)ReLUs sit closer to
their kinks on this tiny problem: with the default ε = 0.01 the central differences cross them
(cosine to exact 0.65 / −0.47), at ε ≤ 1e-5 they agree (cosine 1.0) — the FD *implementation* is
right, its step size is what the kinks bias (one more reason ``exact`` is the default)."""


@pytest.mark.parametrize("generator", GENERATOR_FAMILIES)
def test_exact_hypergradient_matches_numerical_and_fd_agrees(generator):
    obj, args = tiny_problem("smooth", generator=generator)
    check_hypergradient(obj, args, fd_cosine=True, fd_eps=FD_EPS[generator])


def test_exact_hypergradient_matches_numerical_with_unet():
    """Real U-Net segmenter (BatchNorm, ReLU, max-pool): exact still equals the numerical
    derivative. DARTS' central differences are *not* checked here: moving W by ±εv crosses ReLU /
    max-pool kinks, which biases them (cosine to exact ≈ 0.8 here) — why ``exact`` is the default."""
    obj, args = tiny_problem("unet")
    check_hypergradient(obj, args, fd_cosine=False)
    bn = [m for m in obj.seg.modules() if isinstance(m, nn.BatchNorm2d)][0]
    assert int(bn.num_batches_tracked) == 0  # virtual passes never touched the real buffers


@pytest.mark.parametrize("generator", GENERATOR_FAMILIES)
def test_cut_gradient_path_is_detected(generator):
    """Detaching the generated images (as the authors' code does) zeroes the hypergradient in
    both modes, and the correctness check above fails on it."""
    obj, args = tiny_problem("smooth", detach=True, generator=generator)
    for mode in ("exact", "finite_difference"):
        assert flat_norm(obj.hypergradient(*args, mode=mode).grads) == 0.0
    with pytest.raises(AssertionError):
        check_hypergradient(obj, args)


def test_mixed_conv_fusion_is_exact():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for transposed in (False, True):
        cell = MixedConv(3, 5, transposed=transposed).double()
        cell.alpha.data = torch.randn(3, dtype=torch.float64)
        fused = cell(x)
        cell.fuse = False
        assert torch.allclose(fused, cell(x), atol=1e-12)
        assert fused.shape[-1] == (16 if transposed else 4)


def _e2e_config(tmp_path, iterations: int, **method):
    m = {"name": "e2eaug", "pretrain_iters": 2, "arch_every": 1, "gallery": 2, **method}
    return tiny_config(tmp_path, m, iterations=iterations)


def _alpha_step_check(trainer: Trainer, before: torch.Tensor) -> None:
    gen = trainer.method.generator
    grads = [p.grad for p in gen.arch_parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0, "α got no hypergradient"
    assert not torch.equal(gen.arch_alphas(), before), "α did not change"


@pytest.mark.parametrize("detach", [False, True])
def test_end_to_end_iteration_moves_alpha(tmp_path, detach):
    trainer = Trainer(_e2e_config(tmp_path, 2, detach_generated=detach), tiny_run_data(), tmp_path)
    res = trainer.fit()
    assert res.steps == 2
    before = trainer.method.alpha_history[0]  # α after pretraining (step 0)
    if detach:  # the cut path is caught by the same check
        with pytest.raises(AssertionError, match="no hypergradient"):
            _alpha_step_check(trainer, before)
        return
    _alpha_step_check(trainer, before)
    arch = json.loads((tmp_path / "architecture.json").read_text())
    assert len(arch["cells"]) == 2 * trainer.method.generator.depth and arch["steps"] == [0, 1, 2]
    assert (tmp_path / "gallery.png").exists()


@pytest.mark.slow
def test_resume_is_identical(tmp_path):
    def state(t):
        out = {f"{m}.{k}": v.clone() for m, mod in t.method.modules().items() for k, v in mod.state_dict().items()}
        out["alpha_history"] = torch.stack(t.method.alpha_history)
        return out

    full = Trainer(_e2e_config(tmp_path / "a", 4), tiny_run_data(), tmp_path / "a")
    full.fit()
    part = Trainer(_e2e_config(tmp_path / "b", 4), tiny_run_data(), tmp_path / "b")
    part.fit(max_steps=2)
    resumed = Trainer(_e2e_config(tmp_path / "b", 4), tiny_run_data(), tmp_path / "b")
    assert resumed.fit(resume=True).steps == 4
    a, b = state(full), state(resumed)
    assert any(k.endswith("alpha") for k in a) and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = full.method.opt_arch.state_dict(), resumed.method.opt_arch.state_dict()
    for k in oa["state"]:
        assert torch.equal(oa["state"][k]["exp_avg"], ob["state"][k]["exp_avg"])


def test_separate_runs_one_step_with_frozen_generator(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "separate", "pretrain_iters": 2, "gallery": 2}, iterations=1)
    trainer = Trainer(cfg, tiny_run_data(), tmp_path)
    trainer.method.setup()
    before = {k: v.clone() for k, v in trainer.method.generator.state_dict().items()}
    res = Trainer(cfg, tiny_run_data(), tmp_path).fit()
    assert res.steps == 1
    assert not trainer.method.generator.is_searchable
    assert (tmp_path / "log.csv").read_text().splitlines()[1].split(",")[0] == "1"  # the one step was logged
    after = Trainer(cfg, tiny_run_data(), tmp_path)
    after.fit(resume=True)
    for k, v in after.method.generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert (tmp_path / "gallery.png").exists()


def test_pretrain_cache_hit_is_identical(tmp_path):
    from scarce.methods.gan.pretrain import pretrain_gan

    cfg = _e2e_config(tmp_path, 1)
    data = tiny_run_data()
    rng = torch.get_rng_state()
    first = pretrain_gan(cfg, data, tmp_path / "cache")
    assert torch.equal(rng, torch.get_rng_state())  # global RNG untouched
    second = pretrain_gan(cfg, data, tmp_path / "cache")
    assert not first.cached and second.cached and first.path == second.path
    for k, v in first.generator.items():
        assert torch.equal(v, second.generator[k])
    other = pretrain_gan(cfg, data, tmp_path / "cache", searchable=False)
    assert other.path != first.path


@pytest.mark.parametrize("generator", [g for g in GENERATOR_FAMILIES if g != "pix2pix"])  # pix2pix: the tests above
def test_generator_families_run_e2eaug_and_separate(tmp_path, generator):
    """``method.generator`` selects the family for both methods: e2eaug searches its cells (α gets
    a hypergradient and moves), separate uses the vanilla frozen network; pretraining is cached
    per family."""
    trainer = Trainer(_e2e_config(tmp_path / "e", 1, generator=generator), tiny_run_data(), tmp_path / "e")
    assert trainer.fit().steps == 1
    gen = trainer.method.generator
    assert type(gen).__name__.lower().startswith(generator[:5]) and len(list(gen.cells())) >= 1
    _alpha_step_check(trainer, trainer.method.alpha_history[0])
    arch = json.loads((tmp_path / "e" / "architecture.json").read_text())
    assert arch["cells"] == gen.cell_names()
    assert any(p.name.startswith(f"{generator}-") for p in (tmp_path / ".gan_cache").iterdir())
    cfg = tiny_config(tmp_path / "s", {"name": "separate", "generator": generator, "pretrain_iters": 2,
                                       "gallery": 2}, iterations=1)
    sep = Trainer(cfg, tiny_run_data(), tmp_path / "s")
    assert sep.fit().steps == 1
    assert not sep.method.generator.is_searchable and (tmp_path / "s" / "gallery.png").exists()


def test_generator_vanilla_mode_and_shapes():
    """Every family: vanilla = no α (single 4-2-1 op), searchable = K = 3 ops per cell, images in
    [0, 1] of the mask's size, and a mask size that is not a multiple of the stride is refused."""
    from scarce.models.gan import create_generator, one_hot_masks

    masks = one_hot_masks(torch.randint(0, 3, (2, 32, 32)), 3)
    for name in GENERATORS.names():
        torch.manual_seed(0)
        s = create_generator(name, 3, 1, 32, searchable=True, ngf=4)
        v = create_generator(name, 3, 1, 32, searchable=False, ngf=4)
        assert not v.is_searchable and v.arch_parameters() == []
        assert all(len(c.op_names) == 3 for _, c in s.cells())
        for g in (s, v):
            y = g(masks).detach()
            assert y.shape == (2, 1, 32, 32) and float(y.min()) >= 0 and float(y.max()) <= 1
        with pytest.raises(ValueError, match="multiple"):
            s(one_hot_masks(torch.randint(0, 3, (1, 34, 34)), 3))
