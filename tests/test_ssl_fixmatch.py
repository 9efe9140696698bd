"""``fixmatch`` (FixMatch + UniMatch's dual strong views and feature perturbation): confidence
masking on hand-built logits, CutMix moving image, pseudo-label and confidence alike, each
UniMatch stream's share of the loss, the feature-dropout hook on every registered segmenter, and
short trainings through the real Trainer (incl. the SAM closure path)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scarce.config import ConfigError
from scarce.engine.trainer import Trainer
from scarce.methods.ssl import fixmatch as fm
from scarce.methods.ssl.common import pseudo_labels
from scarce.losses import class_probs
from tests.tiny import tiny_config, tiny_run_data


def _trainer(tmp_path, num_classes=2, **method):
    cfg = tiny_config(tmp_path, {"name": "fixmatch", **method}, iterations=4)
    return Trainer(cfg, tiny_run_data(num_classes=num_classes, n_unlabelled=6), tmp_path)


# ------------------------------------------------------------------ confidence masking


def test_binary_pixels_below_threshold_contribute_nothing():
    """1-logit convention: p = σ(z), label = p > ½, confidence = max(p, 1 − p). With τ = 0.9 only
    |z| ≥ logit(0.9) ≈ 2.2 counts; the loss is their BCE summed over ALL four pixels' count."""
    z = torch.tensor([3.0, 0.1, -4.0, -0.2]).view(1, 1, 1, 4)
    labels, conf = pseudo_labels(class_probs(z))
    assert labels.tolist() == [[[1, 1, 0, 0]]]
    assert conf[0, 0].tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item(), 0.52498, 0.98201, 0.54983],
                                                abs=1e-4)
    student = torch.tensor([0.5, -1.0, 1.0, 2.0]).view(1, 1, 1, 4).requires_grad_()
    loss = fm.confident_ce(student, labels, conf, 0.9)
    expected = (F.softplus(torch.tensor(-0.5)) + F.softplus(torch.tensor(1.0))) / 4  # pixels 0 (label 1) and 2 (label 0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert student.grad[0, 0, 0, 1] == 0 and student.grad[0, 0, 0, 3] == 0  # unconfident: no gradient
    assert student.grad[0, 0, 0, 0] != 0 and student.grad[0, 0, 0, 2] != 0
    # τ above every confidence: nothing left, loss 0 (not NaN)
    assert fm.confident_ce(student, labels, conf, 0.999).item() == 0.0


def test_multiclass_pixels_below_threshold_contribute_nothing():
    # 3 classes, 3 pixels: confident class 2, unconfident (uniform), confident class 0
    z = torch.tensor([[0.0, 0.0, 9.0], [1.0, 1.0, 1.0], [8.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    labels, conf = pseudo_labels(class_probs(z))
    assert labels.tolist() == [[[2, 0, 0]]] and conf[0, 0, 1].item() == pytest.approx(1 / 3)
    student = torch.randn(1, 3, 1, 3, generator=torch.Generator().manual_seed(0))
    per_pixel = F.cross_entropy(student, labels, reduction="none")[0, 0]
    loss = fm.confident_ce(student, labels, conf, 0.95)
    assert loss.item() == pytest.approx(((per_pixel[0] + per_pixel[2]) / 3).item(), rel=1e-6)
    changed = student.clone()
    changed[0, :, 0, 1] = torch.tensor([-5.0, 7.0, 3.0])  # the unconfident pixel: free
    assert fm.confident_ce(changed, labels, conf, 0.95).item() == pytest.approx(loss.item(), rel=1e-6)


def test_confident_dice_by_hand_binary():
    """Binary, 4 pixels, τ = 0.9: pixels 0 (label 1) and 2 (label 0) are confident. Student
    probabilities p = σ(z) = [σ(0.5), ·, σ(1), ·]; per class over the confident pixels:
    background (1 − p): y = [0, 1] → 1 − (2·(1 − σ(1)) + s) / ((1 − σ(.5))² + (1 − σ(1))² + 1 + s);
    foreground p: y = [1, 0] → 1 − (2·σ(.5) + s) / (σ(.5)² + σ(1)² + 1 + s); loss = their mean."""
    z = torch.tensor([3.0, 0.1, -4.0, -0.2]).view(1, 1, 1, 4)
    labels, conf = pseudo_labels(class_probs(z))
    student = torch.tensor([0.5, -1.0, 1.0, 2.0]).view(1, 1, 1, 4).requires_grad_()
    a, b, s = torch.sigmoid(torch.tensor(0.5)).item(), torch.sigmoid(torch.tensor(1.0)).item(), 1e-5
    bg = 1 - (2 * (1 - b) + s) / ((1 - a) ** 2 + (1 - b) ** 2 + 1 + s)
    fg = 1 - (2 * a + s) / (a ** 2 + b ** 2 + 1 + s)
    loss = fm.confident_dice(student, labels, conf, 0.9)
    assert loss.item() == pytest.approx((bg + fg) / 2, rel=1e-6)
    loss.backward()
    assert student.grad[0, 0, 0, 1] == 0 and student.grad[0, 0, 0, 3] == 0  # unconfident: no gradient
    assert fm.confident_dice(student, labels, conf, 0.999).item() == 0.0  # nothing confident: 0, not NaN
    # a perfect confident prediction costs ~0; the CE variant of the same pixels does not weigh classes
    perfect = torch.tensor([20.0, 0.0, -20.0, 0.0]).view(1, 1, 1, 4)
    assert fm.confident_dice(perfect, labels, conf, 0.9).item() == pytest.approx(0.0, abs=1e-6)


def test_confident_dice_weighs_a_small_foreground_like_the_background():
    """Why the medical recipe uses Dice: 1 foreground pixel among 99 background ones, all confident.
    Predicting all background costs CE only the one pixel's share (≈ 1 % of the worst case) but
    costs Dice half its maximum (the foreground class scores 0)."""
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, 0, 0] = 1
    conf = torch.ones(1, 10, 10)
    all_bg = torch.full((1, 1, 10, 10), -6.0)
    assert fm.confident_dice(all_bg, labels, conf, 0.95).item() > 0.49
    assert fm.confident_ce(all_bg, labels, conf, 0.95).item() < 0.07


def test_defaults_are_plain_fixmatch_with_the_medical_loss(tmp_path, monkeypatch):
    """Validation chose them (kvasir_seg): one strong view, no FP stream, Dice on pseudo-labels."""
    t = _trainer(tmp_path, threshold=0.0)
    spy = _Spy(t.method.model, monkeypatch)
    out = t.method.training_step(t.next_batch(), 0)
    assert [x.shape[0] for x in spy.inputs] == [8, 4] and "loss_fp" not in out  # labelled+weak, 1 strong
    assert t.method.mcfg.unsup_loss == "dice" and len(spy.ce) == 1


def test_unsup_loss_dice_drives_the_strong_and_fp_streams(tmp_path, monkeypatch):
    calls = []
    real = fm.confident_dice
    monkeypatch.setattr(fm, "confident_dice", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(fm, "confident_ce", lambda *a, **k: pytest.fail("ce used with unsup_loss=dice"))
    t = _trainer(tmp_path, threshold=0.0, unsup_loss="dice", dual_strong=True, feature_perturbation=True)
    out = t.method.training_step(t.next_batch(), 0)
    assert len(calls) == 3 and out["loss_s"] > 0 and out["loss_fp"] > 0  # 2 strong views + FP
    with pytest.raises(ConfigError, match="method.unsup_loss"):
        _trainer(tmp_path / "bad", unsup_loss="focal")


# ------------------------------------------------------------------ one step, instrumented


class _Spy:
    """Records the model's forward inputs/outputs and each unsupervised-loss call of one step."""

    def __init__(self, model, monkeypatch):
        self.inputs, self.outputs, self.ce = [], [], []
        def hook(module, args, out):
            self.inputs.append(args[0].detach().clone())
            self.outputs.append(out.detach().clone())

        model.register_forward_hook(hook)
        real = fm.confident_loss

        def record(name, logits, labels, conf, threshold):
            value = real(name, logits, labels, conf, threshold)
            self.ce.append((labels.clone(), conf.clone(), value.detach()))
            return value

        monkeypatch.setattr(fm, "confident_loss", record)


def test_cutmix_moves_image_pseudo_label_and_confidence_alike(tmp_path, monkeypatch):
    """With the strong intensity view switched off (identity) the strong batch differs from the
    weak view only inside CutMix boxes; there every pixel carries the source sample's image AND
    its pseudo-label AND its confidence, and outside the sample's own."""
    # flip-only weak view: Combine's translations pad with zeros, and two padded borders would
    # look alike, hiding part of a box from the image comparison below
    t = _trainer(tmp_path, num_classes=3, cutmix_prob=1.0, threshold=0.0, feature_perturbation=False, augment="flip",
                 dual_strong=True)
    method = t.method
    method.strong_view = lambda images, **kw: images.clone()
    spy = _Spy(method.model, monkeypatch)
    batch = t.next_batch()
    method.training_step(batch, 0)
    n_lab = batch.images.shape[0]
    u_w = spy.inputs[0][n_lab:]
    labels_w, conf_w = pseudo_labels(class_probs(spy.outputs[0][n_lab:]))
    assert len(spy.inputs) == 2 and spy.inputs[1].shape[0] == 2 * u_w.shape[0]  # dual strong views
    mixed_any = 0
    for view in range(2):
        strong = spy.inputs[1].chunk(2)[view]
        labels_s, conf_s, _ = spy.ce[view]
        for i in range(u_w.shape[0]):
            inside = (strong[i] != u_w[i]).any(0)
            assert torch.equal(labels_s[i][~inside], labels_w[i][~inside])
            assert torch.equal(conf_s[i][~inside], conf_w[i][~inside])
            if not inside.any():
                continue
            mixed_any += 1
            ys, xs = inside.nonzero(as_tuple=True)  # a rectangle
            assert int(inside.sum()) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            src = [j for j in range(u_w.shape[0]) if j != i and torch.equal(strong[i][:, inside], u_w[j][:, inside])]
            assert len(src) == 1, "the box holds exactly one other sample's pixels"
            assert torch.equal(labels_s[i][inside], labels_w[src[0]][inside])
            assert torch.equal(conf_s[i][inside], conf_w[src[0]][inside])
    assert mixed_any >= 6  # cutmix_prob=1: (nearly) every sample of both views got a box


def test_each_unimatch_stream_has_its_share_of_the_loss(tmp_path, monkeypatch):
    """loss = loss_x + λ·(½·mean(strong views) + ½·FP); with FP off loss = loss_x + λ·strong.
    The FP pass runs last, so loss_x and the strong losses are identical with it on or off."""
    out = {}
    for fp in (True, False):
        t = _trainer(tmp_path / str(fp), threshold=0.0, feature_perturbation=fp, dual_strong=True)
        spy = _Spy(t.method.model, monkeypatch)
        out[fp] = (t.method.training_step(t.next_batch(), 0), spy)
        monkeypatch.undo()
    on, spy_on = out[True]
    off, spy_off = out[False]
    lam = on["lambda_u"]
    assert lam == 1.0  # rampup 0 by default: FixMatch's constant λ_u
    assert [x.shape[0] for x in spy_on.inputs] == [8, 8, 4]  # labelled+weak, 2 strong, FP(weak)
    assert [x.shape[0] for x in spy_off.inputs] == [8, 8]
    s1, s2, fp_value = (c[2] for c in spy_on.ce)
    assert on["loss_s"].item() == pytest.approx(((s1 + s2) / 2).item(), rel=1e-6)
    assert on["loss_fp"].item() == pytest.approx(fp_value.item(), rel=1e-6) and fp_value > 0
    assert on["loss"].item() == pytest.approx((on["loss_x"] + lam * (0.5 * on["loss_s"] + 0.5 * on["loss_fp"])).item(),
                                              rel=1e-5)
    assert off["loss_x"].item() == on["loss_x"].item() and off["loss_s"].item() == on["loss_s"].item()
    assert off["loss"].item() == pytest.approx((off["loss_x"] + off["loss_s"]).item(), rel=1e-5)
    assert "loss_fp" not in off and off["loss"].item() != pytest.approx(on["loss"].item(), rel=1e-6)
    # the FP pass sees the weak view itself, perturbed only inside the network
    assert torch.equal(spy_on.inputs[2], spy_on.inputs[0][4:])
    # one strong view instead of two: one CE term, a different loss
    t = _trainer(tmp_path / "single", threshold=0.0, feature_perturbation=False, dual_strong=False)
    spy = _Spy(t.method.model, monkeypatch)
    single = t.method.training_step(t.next_batch(), 0)
    assert [x.shape[0] for x in spy.inputs] == [8, 4] and len(spy.ce) == 1
    assert single["loss"].item() != pytest.approx(off["loss"].item(), rel=1e-6)


def test_bad_threshold_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"method\.threshold.*\[0, 1\].*1\.5"):
        _trainer(tmp_path, threshold=1.5)
    with pytest.raises(ConfigError, match=r"method\.fp_dropout"):
        _trainer(tmp_path, fp_dropout=1.0)


# ------------------------------------------------------------------ feature perturbation hook


class _Plain(nn.Module):
    """A segmenter the hook knows nothing about: falls back to the input of its last conv."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _models():
    from scarce.models import create_model

    yield "unet", create_model("unet", 3, 2, width=4, depth=2), ["down.1", "up.0", "up.1"], 3
    yield "deeplabv3", create_model("deeplabv3", 3, 3, width=8), ["backbone"], 1
    yield "unet+lite0", create_model("unet", 3, 2, encoder="efficientnet_lite0", encoder_weights="none"), ["encoder"], 5
    yield ("deeplabv3+lite0", create_model("deeplabv3", 3, 3, encoder="efficientnet_lite0", encoder_weights="none"),
           ["encoder"], 5)
    yield "unet+zscore", create_model("unet", 3, 2, width=4, depth=2, input_norm="zscore"), ["down.1", "up.0", "up.1"], 3
    yield "plain", _Plain(), ["head"], 1


@pytest.mark.slow  # builds two EfficientNet-Lite0 networks
def test_feature_dropout_on_every_registered_segmenter():
    """On each model: the named encoder sites are hooked, the output changes, the same generator
    state gives the same perturbation, recorded masks replay exactly (a second evaluation of one
    step), gradients flow, and leaving the context removes every hook."""
    from scarce.models import MODELS

    seen = set()
    for name, model, sites, calls in _models():
        seen.add(name.split("+")[0])
        model.eval()  # deterministic apart from the hook
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            clean = model(x)
        fd = fm.FeatureDropout(model, 0.5, torch.Generator().manual_seed(1))
        assert fd.sites == sites, name
        with fd:
            pert = model(x)
        assert fd.calls == calls, name
        assert pert.shape == clean.shape, name
        assert (pert - clean).abs().max() > 1e-2 * clean.abs().max(), name  # (untrained logits can be ~1e-10)
        with fm.FeatureDropout(model, 0.5, torch.Generator().manual_seed(1)):
            assert torch.equal(model(x), pert), name
        with fm.FeatureDropout(model, 0.5, torch.Generator().manual_seed(99), masks=list(fd.masks)):
            assert torch.equal(model(x), pert), f"{name}: replayed masks"
        model.zero_grad()
        with fm.FeatureDropout(model, 0.5, torch.Generator().manual_seed(2)):
            model(x).sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name
        with torch.no_grad():
            assert torch.equal(model(x), clean), f"{name}: hooks left behind"
    assert seen >= set(MODELS.names()) | {"plain"}


def test_dropout_mask_is_dropout2d_statistics():
    x = torch.ones(64, 50, 2, 2)
    keep = fm.dropout_mask(x, 0.5, torch.Generator().manual_seed(0))
    assert keep.shape == (64, 50, 1, 1) and set(keep.unique().tolist()) == {0.0, 2.0}
    assert abs(float((keep == 0).float().mean()) - 0.5) < 0.05


# ------------------------------------------------------------------ through the trainer


@pytest.mark.slow
@pytest.mark.parametrize("model,num_classes", [("unet", 3), ("deeplabv3", 2)])
def test_trains_on_tiny_data_without_unlabelled_masks(tmp_path, model, num_classes):
    """A short run through the Trainer; the unlabelled pool is an ImageSet (no masks to read),
    the log has the confident-pixel fraction, resume is bit-identical."""
    data = tiny_run_data(num_classes=num_classes, n_unlabelled=6)
    assert not hasattr(data.unlabelled, "masks")

    def trainer(out):
        cfg = tiny_config(out, {"name": "fixmatch", "threshold": 0.5, "dual_strong": True, "feature_perturbation": True},
                          iterations=4)  # every UniMatch stream
        cfg.model.name = model
        cfg.model.width = 8  # (torch 2.13 CPU: a width-4 ResNet crashes in channels_last backward)
        return Trainer(cfg, data, out)

    res = trainer(tmp_path / "a").fit()
    assert res.steps == 4 and math.isfinite(res.best_score)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "loss_x", "loss_s", "loss_fp", "loss_u", "confident", "lambda_u"} <= set(header)
    trainer(tmp_path / "b").fit(max_steps=2)
    b = trainer(tmp_path / "b")
    b.fit(resume=True)
    a_state = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["method"]["modules"]["model"]
    for k, v in b.method.model.state_dict().items():
        assert torch.equal(v, a_state[k]), k


@pytest.mark.slow
def test_sam_re_evaluates_the_same_step(tmp_path, monkeypatch):
    """train.optim.name=sam calls the closure twice: the second evaluation replays the views,
    boxes, pseudo-labels and dropout masks of the first (only the weights moved)."""
    cfg = tiny_config(tmp_path, {"name": "fixmatch", "threshold": 0.0, "dual_strong": True, "feature_perturbation": True},
                      iterations=2)
    cfg.train.optim.name = "sam"
    t = Trainer(cfg, tiny_run_data(n_unlabelled=6), tmp_path)
    spy = _Spy(t.method.model, monkeypatch)
    t.method.training_step(t.next_batch(), 0)
    assert len(spy.inputs) == 6  # three forward passes, twice
    for a, b in zip(spy.inputs[:3], spy.inputs[3:]):
        assert torch.equal(a, b)
    for (la, ca, _), (lb, cb, _) in zip(spy.ce[:3], spy.ce[3:]):
        assert torch.equal(la, lb) and torch.equal(ca, cb)
