"""DiM (our design): the divergence term, per-domain averaging, the ablation switches
and SAM guided by the full objective."""
from __future__ import annotations

import math

import pytest
import torch

from scarce.engine.trainer import Trainer
from scarce.losses.divergence import f_divergence
from scarce.methods.ssl.dim import divergence_term, pooled, soft_histogram
from tests.tiny import tiny_config, tiny_run_data


def test_soft_histogram_by_hand():
    h = soft_histogram(torch.tensor([0.0, 1.0, 0.5]), 2)  # centres 0, 1
    # 0 → bin 0; 1 → bin 1; 0.5 → half/half: (1.5, 1.5) / 3
    assert h.tolist() == pytest.approx([0.5, 0.5])
    h = soft_histogram(torch.tensor([0.0, 0.5]), 3)  # centres 0, .5, 1: one value per bin
    assert h.tolist() == pytest.approx([0.5, 0.5, 0.0])
    # 4 bins, centres 0, 1/3, 2/3, 1: 0.1 → 0.7 / 0.3; 1.0 → bin 3; each value counts 1
    h = soft_histogram(torch.tensor([0.1, 1.0]), 4)
    assert h.tolist() == pytest.approx([0.35, 0.15, 0.0, 0.5])


def test_soft_histogram_moves_saturated_values():
    # a saturated value (p = 0.99, 10 bins) still has a gradient: lowering it moves mass from the
    # top bin (centre 1) to the next (centre 8/9)
    v = torch.tensor([0.99], requires_grad=True)
    h = soft_histogram(v, 10)
    assert h[-1].item() == pytest.approx(1 - 0.01 * 9)
    h[-1].backward()
    assert v.grad.item() == pytest.approx(9.0)


def test_pooling_shapes_and_batch_value():
    p = torch.zeros(2, 2, 2, 2)
    p[:, 1] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    p[:, 0] = 1 - p[:, 1]
    assert pooled(p, "batch", 4).tolist() == pytest.approx([0.75, 0.25])
    assert pooled(p, "image", 4).shape == (2, 2)
    assert pooled(p, "histogram", 4).shape == (4,)


def test_divergence_is_zero_for_identical_behaviour_and_matches_f_divergence():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(3, 2, 4, 4), 1)
    for pooling in ("batch", "histogram"):
        assert float(divergence_term(a, a, "js", pooling, 8)) == pytest.approx(0.0, abs=1e-7)
    same = a[:1].expand(3, -1, -1, -1)  # "image": each target image vs the source batch mean
    assert float(divergence_term(same, same, "js", "image", 8)) == pytest.approx(0.0, abs=1e-7)
    b = torch.softmax(torch.randn(3, 2, 4, 4) * 3, 1)
    assert float(divergence_term(a, b, "kl", "batch", 8)) == pytest.approx(
        float(f_divergence(a.mean((0, 2, 3)), b.mean((0, 2, 3)), "kl")))


def _cfg(tmp_path, method, **train):
    return tiny_config(tmp_path, {"name": "dim", **method}, iterations=2, **train)


def test_extra_term_per_domain_and_beta_zero_is_fixmatch(tmp_path):
    data = tiny_run_data(n_unlabelled=6)
    data.unlabelled.domains = ["a", "a", "a", "b", "b", "b"]
    t = Trainer(_cfg(tmp_path / "d", {"pooling": "batch", "beta": 0.3}), data, tmp_path / "d")
    torch.manual_seed(0)
    lx = torch.randn(4, 1, 32, 32)
    lu = torch.randn(6, 1, 32, 32)
    batch = t.next_batch()
    batch.unlabelled_index = torch.tensor([0, 1, 3, 4, 5, 2])
    out = t.method.extra_loss(lx, lu, batch)
    ps, pt = t.method.probs(lx), t.method.probs(lu)
    dom_a, dom_b = [0, 1, 5], [2, 3, 4]
    want = 0.5 * (divergence_term(ps, pt[dom_a], "js", "batch", 10) + divergence_term(ps, pt[dom_b], "js", "batch", 10))
    assert float(out["loss_div"]) == pytest.approx(0.3 * float(want), rel=1e-5)
    mixed = divergence_term(ps, pt, "js", "batch", 10)
    assert float(want) != pytest.approx(float(mixed), rel=1e-3)  # per-domain ≠ one mixed target
    zero = Trainer(_cfg(tmp_path / "z", {"beta": 0.0}), data, tmp_path / "z")
    assert zero.method.extra_loss(lx, lu, batch) == {}


def test_source_is_detached_by_default(tmp_path):
    data = tiny_run_data(n_unlabelled=6)
    t = Trainer(_cfg(tmp_path, {"pooling": "batch"}), data, tmp_path)
    lx = torch.randn(4, 1, 8, 8, requires_grad=True)
    lu = torch.randn(6, 1, 8, 8, requires_grad=True)
    t.method.extra_loss(lx, lu, t.next_batch())["loss_div"].backward()
    assert lx.grad is None and lu.grad is not None and float(lu.grad.abs().sum()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("optim", ["adam", "sam"])
def test_dim_trains_with_and_without_sam_and_resumes(tmp_path, optim):
    data = tiny_run_data(n_unlabelled=6)
    data.unlabelled.domains = ["a", "b"] * 3
    cfg = _cfg(tmp_path / "a", {}, **({"optim.name": "sam", "optim.base": "adam"} if optim == "sam" else {}))
    cfg.train.iterations = 4
    a = Trainer(cfg, data, tmp_path / "a")
    res = a.fit()
    assert res.steps == 4 and math.isfinite(res.best_score)
    assert "divergence" in (tmp_path / "a" / "log.csv").read_text().splitlines()[0]


def test_bad_settings_are_one_line(tmp_path):
    from scarce.config import ConfigError

    with pytest.raises(ConfigError, match="pooling"):
        Trainer(_cfg(tmp_path, {"pooling": "pixel"}), tiny_run_data(n_unlabelled=6), tmp_path)
    with pytest.raises(ConfigError, match="Did you mean 'hellinger'"):
        Trainer(_cfg(tmp_path, {"divergence": "helinger"}), tiny_run_data(n_unlabelled=6), tmp_path)
    with pytest.raises(ConfigError, match="method.beta"):
        Trainer(_cfg(tmp_path, {"beta": -1}), tiny_run_data(n_unlabelled=6), tmp_path)
