"""``ctbct``: cross teaching between the run's CNN and a from-scratch 2-D Swin UNETR (MONAI).

Fast tests use hand-built logits; tests that build MONAI networks (its import alone takes a few
seconds) or train are marked slow."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from scarce.config import ConfigError
from scarce.losses import class_probs, get_loss
from scarce.methods.ssl.ctbct import CTBCT, CTBCTConfig, check_config, cross_pseudo_labels
from tests.tiny import tiny_config, tiny_run_data


def _fake(iterations: int = 100, **fields):
    """The attributes CTBCT's loss and weight functions read, without building networks."""
    return SimpleNamespace(mcfg=CTBCTConfig(**fields), probs=class_probs,
                           ctx=SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(iterations=iterations)),
                                               loss_fn=get_loss("bce_dice")))


@pytest.mark.parametrize("channels", [1, 3])
def test_cross_pseudo_labels_are_the_other_nets_argmax_without_gradient(channels):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, channels, 5, 5, generator=g, requires_grad=True)
    b = torch.randn(2, channels, 5, 5, generator=g, requires_grad=True)
    for_a, for_b = cross_pseudo_labels(a, b)
    own_a = class_probs(a).argmax(1)
    own_b = class_probs(b).argmax(1)
    assert torch.equal(for_a, own_b) and torch.equal(for_b, own_a)
    assert not torch.equal(for_a, own_a)  # the fixture tells "other" from "own" apart
    assert for_a.dtype == torch.int64 and not for_a.requires_grad and not for_b.requires_grad


@pytest.mark.slow  # imports MONAI (its Dice)
@pytest.mark.parametrize("channels,k", [(1, 2), (3, 3)])
def test_unsupervised_term_teaches_only_the_student(channels, k):
    """Each net's loss = 0.5·run loss + λ·Dice(own probs, OTHER's argmax); its gradient reaches
    only its own logits (the teacher's pseudo-labels are hard and detached)."""
    from scarce.methods.ssl.ctbct import dice_to_labels

    g = torch.Generator().manual_seed(1)
    n, m = 2, 3
    cnn = torch.randn(n + m, channels, 8, 8, generator=g, requires_grad=True)
    tr = torch.randn(n + m, channels, 8, 8, generator=g, requires_grad=True)
    masks = torch.randint(0, k, (n, 8, 8), generator=g)
    fake = _fake()
    fake.ctx.loss_fn = get_loss("ce_dice")
    out = CTBCT.losses(fake, cnn, tr, masks, 0.1)
    # the unsupervised term is the Dice to the transformer's argmax, not to the CNN's own
    expected = dice_to_labels(class_probs(cnn[n:]), class_probs(tr[n:]).argmax(1))
    own = dice_to_labels(class_probs(cnn[n:]), class_probs(cnn[n:]).argmax(1))
    assert torch.allclose(out["cps_cnn"], expected) and not torch.allclose(out["cps_cnn"], own)
    assert torch.allclose(out["cnn"], 0.5 * get_loss("ce_dice")(cnn[:n], masks) + 0.1 * expected)
    out["cnn"].backward(retain_graph=True)
    assert cnn.grad is not None and cnn.grad[n:].abs().sum() > 0  # unlabelled part learns
    assert tr.grad is None  # nothing reaches the teacher
    cnn.grad = None
    out["transformer"].backward()
    assert tr.grad is not None and cnn.grad is None


def test_rampup_weight_is_sigmoid_over_the_whole_run_with_ssl4mis_weight():
    fake = _fake(iterations=200)
    w = [CTBCT.consistency_weight(fake, s) for s in (0, 50, 100, 200, 400)]
    assert w[0] == pytest.approx(0.1 * math.exp(-5))
    assert w[1] == pytest.approx(0.1 * math.exp(-5 * 0.75 ** 2))
    assert w[2] == pytest.approx(0.1 * math.exp(-5 * 0.25))
    assert w[3] == pytest.approx(0.1) and w[4] == pytest.approx(0.1)
    assert CTBCT.consistency_weight(_fake(rampup=0.0), 0) == pytest.approx(0.1)


@pytest.mark.parametrize("fields,size,match", [
    ({}, 48, r"multiple of 32; config key 'data.size' is 48: use e.g. --set data.size=32 or 64"),
    ({"transformer_norm": "instance"}, 32, r"transformer_norm=instance needs data.size >= 64"),
    ({"transformer_norm": "layer"}, 64, r"method.transformer_norm.*batch or instance"),
    ({"transformer_features": 16}, 64, r"method.transformer_features.*multiple of 12"),
    ({"weight": -1.0}, 64, r"method.weight"),
    ({"transformer_lr": 0.0}, 64, r"method.transformer_lr"),
])
def test_bad_settings_fail_with_one_clear_config_error(fields, size, match):
    with pytest.raises(ConfigError, match=match):
        check_config(CTBCTConfig(**fields), size)
    check_config(CTBCTConfig(), 64)  # the defaults work


def test_validate_config_refuses_a_size_the_transformer_cannot_take(tmp_path):
    from scarce.validate import validate_config

    cfg = tiny_config(tmp_path, {"name": "ctbct"})
    validate_config(cfg)
    cfg.data.size = 48
    with pytest.raises(ConfigError, match=r"'data.size' is 48.*--set data.size=32 or 64"):
        validate_config(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_trains_through_the_trainer(tmp_path, k):
    from scarce.data.types import out_channels
    from scarce.engine.trainer import Trainer

    cfg = tiny_config(tmp_path, {"name": "ctbct", "transformer_lr": 0.005}, iterations=2)
    t = Trainer(cfg, tiny_run_data(num_classes=k, n_unlabelled=6), tmp_path)
    m = t.method
    assert set(m.modules()) == {"model", "transformer"} and set(m.optimizers()) == {"model", "transformer"}
    assert m.opt_transformer.param_groups[0]["lr"] == 0.005 and m.optimizer.param_groups[0]["lr"] == 1e-3
    x = torch.rand(2, 3, 32, 32)
    assert m.transformer(x).shape == m.model(x).shape == (2, out_channels(k), 32, 32)  # one output convention
    before = {n: p.detach().clone() for n, p in m.transformer.named_parameters()}
    res = t.fit()
    assert res.steps == 2 and math.isfinite(res.best_score)
    assert any(not torch.equal(before[n], p) for n, p in m.transformer.named_parameters())  # it trains too
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"cps_cnn", "cps_transformer", "sup_cnn", "lambda_u", "val_transformer_dice"} <= set(header)
    state = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert state.keys() == m.model.state_dict().keys()  # best.pt is the CNN
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert set(last["method"]["modules"]) == {"model", "transformer"}
    assert len(last["schedulers"]) == 2  # both nets follow train.schedule
