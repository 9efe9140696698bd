"""``fixmatch``: FixMatch with UniMatch's additions, confident weak-view pseudo-labels teaching
strong views, CutMix, feature perturbation and dual strong views (Sohn et al., NeurIPS 2020, and
Yang et al., "Revisiting Weak-to-Strong Consistency in Semi-Supervised Semantic Segmentation",
CVPR 2023).

One step (L labelled, M unlabelled images):

1. views: labelled weak view (image + mask), unlabelled weak view ``u_w`` (geometric), one or
   two strong views of ``u_w`` (:meth:`~scarce.methods.ssl.common.SemiSupervisedMethod.strong_view`:
   intensity only, so ``u_w``'s prediction stays pixel-aligned), each with its own CutMix box
   (probability ``cutmix_prob``) pasting another unlabelled sample of the batch;
2. ``model(cat(x, u_w))`` in train mode (BatchNorm over labelled + weak, as FixMatch/UniMatch):
   the labelled logits get the run's loss; the weak logits, detached, give hard pseudo-labels
   and their confidence (max class probability);
3. the pseudo-labels and confidences are CutMix-ed with the *same* boxes as the strong images
   (a pixel inside a box carries the source sample's image, label and confidence);
4. unsupervised loss: per-pixel (B)CE of each strong view's logits against its pseudo-labels,
   pixels with confidence < ``threshold`` contribute 0, averaged over *all* pixels (FixMatch);
   or (``unsup_loss=dice``, UniMatch's medical recipe) soft Dice per class over the confident
   pixels of the batch, averaged over the classes;
   two strong views are averaged (UniMatch's dual stream); with ``feature_perturbation`` the
   weak view is predicted again with channel dropout on the encoder features
   (:class:`FeatureDropout`) and trained towards the same pseudo-labels: loss_u = ½ strong + ½ FP
   (UniMatch's 0.25 + 0.25 + 0.5);
5. loss = loss_x + λ_u(step) · loss_u (``weight``, optional sigmoid ramp-up ``rampup``).

Every draw (views, boxes, mixing partners, feature-dropout masks) comes from ``ctx.generator``.
The step is a closure (``closure_step``): a two-pass optimiser (``train.optim.name=sam``)
re-evaluates it with the same views, boxes, pseudo-labels and dropout masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scarce.augment.mix import box_masks, cutmix_boxes
from scarce.engine.method import Batch
from scarce.methods import register_method
from scarce.losses import class_probs
from scarce.methods.ssl.common import SemiSupervisedMethod, SSLConfig, pseudo_labels


@dataclass
class FixMatchConfig(SSLConfig):
    """FixMatch/UniMatch hyperparameters (defaults: UniMatch's released configs unless noted)."""

    weight: float = 1.0
    """λ_u: weight of the unsupervised loss (FixMatch's λ_u = 1; UniMatch's equal weighting)."""
    rampup: float = 0.0
    """Sigmoid ramp-up of λ_u over this fraction of ``train.iterations``; 0 = none (FixMatch and
    UniMatch use none: the confidence threshold already keeps early pseudo-labels out)."""
    threshold: float = 0.95
    """τ: pseudo-labelled pixels with confidence (max class probability) below it are ignored
    (FixMatch's 0.95; UniMatch's ``conf_thresh`` 0.95 on ACDC and Pascal)."""
    cutmix_prob: float = 0.5
    """Probability that a strong view gets a CutMix box from another unlabelled sample
    (UniMatch's ``obtain_cutmix_box(p=0.5)``; box area 2–40 %, aspect 0.3–3.3 as there)."""
    dual_strong: bool = False
    """Two independent strong views (each its own intensity draw and CutMix box), losses averaged
    (UniMatch's dual-stream perturbation); False = FixMatch's single strong view. Off by default
    with ``feature_perturbation``: on kvasir_seg validation (40 labels, seed 0) plain FixMatch
    reached 0.720 Dice, with both UniMatch additions 0.618 (supervised Combine + intensity:
    0.705), at 2/3 of the cost per iteration."""
    feature_perturbation: bool = False
    """UniMatch's FP stream: the weak view predicted again with channel dropout on the encoder
    features, trained towards the weak view's pseudo-labels; False = no FP stream (default: see
    ``dual_strong``)."""
    fp_dropout: float = 0.5
    """Channel-dropout probability of the FP stream (UniMatch's ``nn.Dropout2d(0.5)``)."""
    unsup_loss: str = "dice"
    """Loss of the strong and FP streams against the confident pseudo-labels: ``dice`` = soft Dice
    per class over the batch's confident pixels, averaged over the classes incl. background
    (UniMatch's medical recipe: it weighs a small foreground as much as the background);
    ``ce`` = per-pixel (B)CE averaged over all pixels (FixMatch; UniMatch on natural images).
    On kvasir_seg (40 labels, seed 0) ``ce`` with a flip-only labelled branch let confident
    background pseudo-labels take over: validation Dice fell from 0.545 (step 50) to 0.30."""


# ------------------------------------------------------------------------------------------------
# feature perturbation on any registered segmenter


def dropout_mask(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """The N×C×1×1 multiplier of ``nn.functional.dropout2d`` (training) for x (N×C×H×W), drawn
    from ``generator`` (CPU): each channel is zeroed with probability p, the rest scaled by
    1 / (1 − p)."""
    keep = torch.rand((x.shape[0], x.shape[1], 1, 1), generator=generator) >= p
    return keep.to(torch.float32) / (1.0 - p)


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside :class:`~scarce.models.input_norm.Normalized` (else the model)."""
    from scarce.models.input_norm import Normalized

    while isinstance(model, Normalized):
        model = model.net
    return model


class FeatureDropout:
    """Context manager: while active, ``model``'s forward applies channel dropout (``p``, masks
    from ``generator``) to the features its encoder hands to its decoder — UniMatch's feature
    perturbation, realised with forward hooks so it works on any registered segmenter:

    * :class:`~scarce.models.unet.UNet` (from scratch): the bottleneck (output of the deepest
      ``down`` stage) and every skip feature entering an ``up`` block (UniMatch's medical U-Net
      drops every encoder feature before its decoder);
    * :class:`~scarce.models.encoder_models.EncoderUNet` / ``EncoderDeepLabV3``: every feature
      map the pretrained encoder returns (DeepLab uses only the deepest);
    * :class:`~scarce.models.deeplab.DeepLabV3` (from scratch): the backbone's output, before
      ASPP (UniMatch's DeepLabV3+ drops its deepest feature there);
    * any other model: the input of its last convolution / linear layer (the final head).

    The encoder itself runs unperturbed; only what the decoder receives is dropped. ``sites`` names
    the hooked modules; ``calls`` counts the perturbed feature maps (both for tests and logs).
    ``masks``: a list that collects the N×C×1×1 dropout masks in call order; when it already holds
    masks they are replayed instead of drawn (the same perturbation on a second evaluation of one
    step, e.g. SAM's pass at θ + ε).
    """

    def __init__(self, model: nn.Module, p: float, generator: torch.Generator,
                 masks: list[torch.Tensor] | None = None) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"feature dropout probability must be in [0, 1), got {p}")
        self.model, self.p, self.generator = model, float(p), generator
        self.masks = [] if masks is None else masks
        self._replay = len(self.masks) > 0
        self.calls = 0
        self._handles: list[Any] = []
        self.sites = [name for name, _, _ in self._plan()]

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if self._replay:
            keep = self.masks[self.calls]
        else:
            keep = dropout_mask(x, self.p, self.generator)
            self.masks.append(keep)
        self.calls += 1
        return x * keep.to(device=x.device, dtype=x.dtype)

    def _plan(self) -> list[tuple[str, nn.Module, str]]:
        """(module name, module, kind) with kind ``out`` (drop the output, a tensor or a list of
        tensors), ``skip`` (drop the 2nd positional input) or ``in`` (drop the 1st input)."""
        from scarce.models.deeplab import DeepLabV3
        from scarce.models.encoder_models import EncoderDeepLabV3, EncoderUNet
        from scarce.models.unet import UNet

        net = _unwrap(self.model)
        if isinstance(net, UNet):
            return [("down.%d" % (len(net.down) - 1), net.down[-1], "out")] + [
                (f"up.{i}", up, "skip") for i, up in enumerate(net.up)]
        if isinstance(net, (EncoderUNet, EncoderDeepLabV3)):
            return [("encoder", net.encoder, "out")]
        if isinstance(net, DeepLabV3):
            return [("backbone", net.backbone, "out")]
        last = None
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                last = (name, m)
        if last is None:
            raise ValueError(f"feature perturbation: {type(net).__name__} has no convolution to perturb the input of")
        return [(last[0], last[1], "in")]

    def __enter__(self) -> "FeatureDropout":
        for _, module, kind in self._plan():
            if kind == "out":
                self._handles.append(module.register_forward_hook(self._out_hook))
            elif kind == "skip":
                self._handles.append(module.register_forward_pre_hook(self._skip_hook))
            else:
                self._handles.append(module.register_forward_pre_hook(self._in_hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _out_hook(self, module: nn.Module, args: Any, out: Any) -> Any:
        if isinstance(out, torch.Tensor):
            return self._drop(out)
        return type(out)(self._drop(t) for t in out)

    def _skip_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0], self._drop(args[1]), *args[2:])

    def _in_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._drop(args[0]), *args[1:])


# ------------------------------------------------------------------------------------------------
# the loss


def pixel_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy in the output convention of :mod:`scarce.losses.core`: N×1×H×W
    logits → BCE against labels ∈ {0, 1}; N×K×H×W → softmax CE. labels N×H×W int → N×H×W."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, labels.long(), reduction="none")


def confident_ce(logits: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor, threshold: float) -> torch.Tensor:
    """FixMatch's unsupervised loss: per-pixel CE of ``logits`` (N×C×H×W) against pseudo-labels
    ``labels`` (N×H×W) where ``conf`` (N×H×W) ≥ ``threshold``, 0 elsewhere, averaged over all
    N×H×W pixels (so a batch with few confident pixels weighs little)."""
    mask = (conf >= threshold).to(logits.dtype)
    return (pixel_ce(logits, labels) * mask).mean()


def confident_dice(logits: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor, threshold: float,
                   smooth: float = 1e-5) -> torch.Tensor:
    """UniMatch's medical unsupervised loss: for each class k (background included), soft Dice
    1 − (2·Σ p_k·y_k + s) / (Σ p_k² + Σ y_k² + s) over the pixels of the whole batch whose
    confidence ≥ ``threshold``, averaged over the K classes. logits N×C×H×W (binary: one logit,
    probabilities [1 − σ, σ]), labels and conf N×H×W. No confident pixel → 0 (not NaN)."""
    probs = class_probs(logits)
    k = probs.shape[1]
    keep = (conf >= threshold).to(probs.dtype).unsqueeze(1)  # N×1×H×W
    onehot = F.one_hot(labels.long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot * keep).sum(dims)
    denom = (probs * probs * keep).sum(dims) + (onehot * keep).sum(dims)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


UNSUP_LOSSES = ("ce", "dice")


def confident_loss(name: str, logits: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor,
                   threshold: float) -> torch.Tensor:
    """``method.unsup_loss`` by name: :func:`confident_ce` or :func:`confident_dice`."""
    return confident_dice(logits, labels, conf, threshold) if name == "dice" else confident_ce(logits, labels, conf, threshold)


@register_method("fixmatch")
class FixMatch(SemiSupervisedMethod):
    """FixMatch, with UniMatch's dual strong views and feature perturbation as options (module docstring)."""

    Config = FixMatchConfig
    closure_step = True

    def __init__(self, ctx: Any, mcfg: FixMatchConfig) -> None:
        from scarce.config import ConfigError

        for key, lo, hi, hi_open in (("threshold", 0.0, 1.0, False), ("cutmix_prob", 0.0, 1.0, False),
                                     ("fp_dropout", 0.0, 1.0, True)):
            v = getattr(mcfg, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (lo <= v < hi if hi_open else lo <= v <= hi):
                raise ConfigError(f"config key 'method.{key}' must be a number in [{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                                  f"got {v!r} (e.g. --set method.{key}={getattr(FixMatchConfig, key)})")
        if mcfg.unsup_loss not in UNSUP_LOSSES:
            raise ConfigError(f"config key 'method.unsup_loss' must be one of {', '.join(UNSUP_LOSSES)}, "
                              f"got {mcfg.unsup_loss!r} (e.g. --set method.unsup_loss=dice)")
        super().__init__(ctx, mcfg)

    def _strong(self, u_w: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor, src: torch.Tensor,
                boxes: torch.Tensor, strong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CutMix of one strong view: inside sample i's box, the image, pseudo-label and confidence
        all come from sample ``src[i]`` (its strong view and its weak-view pseudo-label)."""
        inside = box_masks(boxes, u_w.shape[-2], u_w.shape[-1], u_w.device)
        img = torch.where(inside[:, None], strong[src], strong)
        return img, torch.where(inside, labels[src], labels), torch.where(inside, conf[src], conf)

    def extra_loss(self, logits_x: torch.Tensor, logits_u: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Hook for subclasses (e.g. ``dim``): extra terms of the step's objective from the labelled
        logits (N×C×S×S) and the weak-view unlabelled logits (M×C×S×S), inside the closure (so SAM
        sees them). Keys starting with ``loss_`` are added to the loss; all are logged."""
        return {}

    def training_step(self, batch: Batch, step: int) -> dict[str, Any]:
        mc, g = self.mcfg, self.ctx.generator
        assert batch.unlabelled is not None
        x, y = self.labelled_view(batch)
        u_w = self.weak_view(batch.unlabelled)
        m, _, h, w = u_w.shape
        n_views = 2 if mc.dual_strong else 1
        strongs = [self.strong_view(u_w) for _ in range(n_views)]
        boxes = [cutmix_boxes(m, h, w, g, prob=mc.cutmix_prob) for _ in range(n_views)]
        # mixing partner: a random cyclic shift of the batch (never the sample itself when M > 1)
        shift = int(torch.randint(1, max(m, 2), (1,), generator=g)) % m
        src = ((torch.arange(m) + shift) % m).to(u_w.device)
        lam = self.consistency_weight(step)
        fp_masks: list[torch.Tensor] = []  # drawn on the first evaluation, replayed on a second
        first: dict[str, Any] = {}  # pseudo-labels and logged parts of the first evaluation

        def compute() -> torch.Tensor:
            # A closure (train.optim.name=sam re-evaluates it at θ + ε): views, boxes, dropout
            # masks and pseudo-labels are those of the first evaluation.
            self.model.train()
            logits = self.model(torch.cat([x, u_w]))
            pred_x = logits[: x.shape[0]]
            if not first:
                labels, conf = pseudo_labels(self.probs(logits[x.shape[0]:].detach()))
                first.update(labels=labels, conf=conf,
                             mixed=[self._strong(u_w, labels, conf, src, b, s) for b, s in zip(boxes, strongs)])
            labels, conf, mixed = first["labels"], first["conf"], first["mixed"]
            loss_x = self.ctx.loss_fn(pred_x, y)
            pred_s = self.model(torch.cat([img for img, _, _ in mixed])).chunk(n_views)
            loss_s = torch.stack([confident_loss(mc.unsup_loss, p, lab, c, mc.threshold)
                                  for p, (_, lab, c) in zip(pred_s, mixed)]).mean()
            parts = {"loss_x": loss_x, "loss_s": loss_s}
            if mc.feature_perturbation:
                with FeatureDropout(self.model, mc.fp_dropout, g, masks=fp_masks):
                    pred_fp = self.model(u_w)
                parts["loss_fp"] = confident_loss(mc.unsup_loss, pred_fp, labels, conf, mc.threshold)
                loss_u = 0.5 * loss_s + 0.5 * parts["loss_fp"]
            else:
                loss_u = loss_s
            parts["loss_u"] = loss_u
            extra = self.extra_loss(pred_x, logits[x.shape[0]:], batch)  # e.g. DiM's β·D_f
            parts.update(extra)
            first.setdefault("parts", {k: v.detach() for k, v in parts.items()})
            return loss_x + lam * loss_u + sum((v for k, v in extra.items() if k.startswith("loss_")),
                                               torch.zeros((), device=loss_x.device))

        loss = self.ctx.step(compute, self.optimizer)
        return {"loss": loss, **first["parts"], "lambda_u": lam,
                "confident": (first["conf"] >= mc.threshold).float().mean()}
