"""``dct``: deep co-training (Peng et al. 2020) — JSD agreement, FGSM view difference, views."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from scarce.config import ConfigError
from scarce.losses import cross_entropy
from scarce.methods.ssl.dct import DCT, DCTConfig, check_config, fgsm, js_divergence, kl_to
from tests.tiny import tiny_config, tiny_run_data


def _maps(*dists):
    """Each distribution (K values) as a 1×K×2×2 probability map."""
    return [torch.tensor(d, dtype=torch.float64).view(1, -1, 1, 1).expand(1, len(d), 2, 2) for d in dists]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_js_divergence_matches_the_closed_form():
    p, q = [0.2, 0.8], [0.6, 0.4]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    expected = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    out = js_divergence(_maps(p, q))
    assert out.shape == (1, 2, 2) and torch.allclose(out, torch.full_like(out, expected), atol=1e-12)
    disjoint = js_divergence(_maps([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    assert torch.allclose(disjoint, torch.full_like(disjoint, math.log(2)))  # its maximum for 2 views
    assert torch.allclose(js_divergence(_maps(p, p)), torch.zeros(1, 2, 2, dtype=torch.float64), atol=1e-15)
    three = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
    mean = [sum(d[k] for d in three) / 3 for k in range(3)]
    got = js_divergence(_maps(*three))
    assert torch.allclose(got, torch.full_like(got, sum(_kl(d, mean) for d in three) / 3), atol=1e-12)


def test_kl_to_matches_the_closed_form_for_one_and_k_channel_logits():
    target = _maps([0.3, 0.7])[0].float()
    p = 0.6  # sigmoid(logit) of the student
    logit = torch.full((1, 1, 2, 2), math.log(p / (1 - p)))
    assert kl_to(target, logit).item() == pytest.approx(_kl([0.3, 0.7], [1 - p, p]), abs=1e-6)
    logits = torch.log(torch.tensor([0.5, 0.25, 0.25])).view(1, 3, 1, 1)
    target3 = _maps([0.2, 0.3, 0.5])[0].float()[..., :1, :1]
    assert kl_to(target3, logits).item() == pytest.approx(_kl([0.2, 0.3, 0.5], [0.5, 0.25, 0.25]), abs=1e-6)


def _net(seed, out=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, out, 3, padding=1)).eval()


def test_fgsm_step_has_sup_norm_epsilon_and_increases_the_loss_of_its_own_view():
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(4, 3, 16, 16, generator=g)  # away from 0 and 1: nothing clipped
    y = torch.randint(0, 2, (4, 16, 16), generator=g)
    a, b = _net(1), _net(2)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss_a, loss_b = cross_entropy(a(xa), y), cross_entropy(b(xb), y)
    eps = 0.03
    da, db = fgsm(loss_a + loss_b, [xa, xb], eps)
    eps32 = torch.tensor(eps).item()  # ε in the images' float32
    assert da.abs().max().item() == eps32 and set(da.abs().unique().tolist()) <= {0.0, eps32}
    with torch.no_grad():
        assert cross_entropy(a(x + da), y) > cross_entropy(a(x), y)
        assert cross_entropy(b(x + db), y) > cross_entropy(b(x), y)
    # each view's perturbation is its own: the sign of ITS loss gradient only
    xa2 = x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(cross_entropy(a(xa2), y), [xa2])
    assert torch.equal(da, eps * ga.sign())
    assert not torch.equal(da, db)


def _fake(iterations: int = 100, **fields):
    return SimpleNamespace(mcfg=DCTConfig(**fields),
                           ctx=SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(iterations=iterations))))


def test_rampup_of_both_weights():
    fake = _fake(iterations=100)  # ramp over 0.8 × 100 = 80 iterations
    for step, r in ((0, math.exp(-5)), (40, math.exp(-5 * 0.25)), (80, 1.0), (100, 1.0)):
        assert DCT.consistency_weight(fake, step) == pytest.approx(1.0 * r)
        assert DCT.dif_weight(fake, step) == pytest.approx(0.05 * r)


@pytest.mark.parametrize("fields,match", [
    ({"views": 1}, r"method.views.*>= 2"),
    ({"epsilon": 0.0}, r"method.epsilon"),
    ({"dif_weight": -0.1}, r"method.dif_weight"),
    ({"rampup": -1.0}, r"method.rampup"),
])
def test_bad_settings_fail_with_one_clear_config_error(fields, match):
    with pytest.raises(ConfigError, match=match):
        check_config(DCTConfig(**fields))
    check_config(DCTConfig())


def test_validate_config_refuses_bad_settings_before_data_loads(tmp_path):
    from scarce.validate import validate_config

    cfg = tiny_config(tmp_path, {"name": "dct", "views": 1})
    with pytest.raises(ConfigError, match=r"'method.views' must be an integer >= 2.*--set method.views=2"):
        validate_config(cfg)


def _trainer(tmp_path, k=2, **fields):
    from scarce.engine.trainer import Trainer

    cfg = tiny_config(tmp_path, {"name": "dct", **fields}, iterations=2)
    return Trainer(cfg, tiny_run_data(num_classes=k, n_unlabelled=6), tmp_path)


def test_views_start_from_different_weights_reproducibly(tmp_path):
    t = _trainer(tmp_path / "a", views=3)
    m = t.method
    assert list(m.modules()) == ["model", "view1", "view2"]
    states = [v.state_dict() for v in m.views]
    for i in range(3):
        for j in range(i + 1, 3):
            weights = [key for key, v in states[i].items() if v.is_floating_point() and v.dim() > 1]
            assert all(not torch.equal(states[i][key], states[j][key]) for key in weights), (i, j)
    again = _trainer(tmp_path / "b", views=3).method  # same run seed → the same views
    for v, w in zip(m.views, again.views):
        assert all(torch.equal(a, b) for a, b in zip(v.state_dict().values(), w.state_dict().values()))
    # one optimizer holds every view's parameters exactly once
    params = [p for g in m.optimizer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == sum(len(list(v.parameters())) for v in m.views)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_trains_through_the_trainer(tmp_path, k):
    t = _trainer(tmp_path, k=k)
    before = [{n: p.detach().clone() for n, p in v.named_parameters()} for v in t.method.views]
    res = t.fit()
    assert res.steps == 2 and math.isfinite(res.best_score)
    for v, b in zip(t.method.views, before):
        assert any(not torch.equal(b[n], p) for n, p in v.named_parameters())
    rows = (tmp_path / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"sup_0", "sup_1", "cot", "dif", "lambda_cot", "lambda_dif"} <= set(header)
    last = rows[-1].split(",")
    assert float(last[header.index("cot")]) > 0 and float(last[header.index("dif")]) > 0
    state = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert state.keys() == t.method.model.state_dict().keys()  # best.pt is view 0, the segmenter
