"""The semi-supervised family's base: what ``mean_teacher``, ``fixmatch``, ``ctbct`` and ``dct`` share.

* streams: a labelled and an unlabelled batch each step (the trainer's checkpointed samplers;
  unlabelled images are loaded without masks — :func:`scarce.data.load.load_unlabelled`);
* views: the *weak* view = ``method.augment`` (geometric, image and mask alike; unlabelled images
  get their own draw), the *strong* view = stronger nnU-Net intensity perturbation of the weak
  view (same geometry, so a weak-view prediction is a pixel-aligned target for it) and optional
  CutMix (:mod:`scarce.augment.mix`);
* the consistency weight: ``weight`` × sigmoid ramp-up exp(−5 (1 − t)²) over ``rampup`` × the
  run's iterations (Laine & Aila; the mean-teacher and SSL4MIS recipes);
* pseudo-labels: hard labels and their confidence from class probabilities.

Every draw uses ``ctx.generator`` (exact resume).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from scarce.augment import apply_augment
from scarce.engine.method import Batch, Method
from scarce.losses import class_probs

STRONG_INTENSITY = {"noise_prob": 0.5, "blur_prob": 0.5, "brightness_prob": 0.8, "contrast_prob": 0.8,
                    "lowres_prob": 0.25, "gamma_prob": 0.5, "gamma_inverted_prob": 0.1,
                    "brightness_range": (0.6, 1.4), "contrast_range": (0.6, 1.4)}
"""The strong view's intensity perturbation: nnU-Net's ops drawn far more often and wider (the
gray-image analogue of FixMatch/UniMatch's colour jitter + blur)."""


@dataclass
class SSLConfig:
    """Shared hyperparameters of the semi-supervised family."""

    augment: str = "combine"
    """Weak view: none | rotate | flip | translate | combine (labelled: image+mask; unlabelled: image).
    Default ``combine`` with ``intensity=nnunet``: the labelled branch trains like the best
    supervised recipe (kvasir_seg, 40 labels, seed 0, best validation Dice: mean teacher 0.669 with
    ``flip`` alone vs 0.762 with Combine + intensity; supervised Combine + intensity 0.705), so a
    semi-supervised gain is measured over that recipe, not over a weaker one."""
    intensity: str = "nnunet"
    """nnU-Net intensity augmentation of the labelled images (as ``supervised``; ``none`` = off)."""
    intensity_params: dict[str, Any] = field(default_factory=dict)
    unlabelled_batch: int = 0
    """Unlabelled images per step; 0 = ``train.batch_size``."""
    weight: float = 1.0
    """λ_u: weight of the unsupervised loss after ramp-up."""
    rampup: float = 0.4
    """Fraction of ``train.iterations`` over which λ_u ramps up (sigmoid); 0 = no ramp-up."""


def sigmoid_rampup(step: int, length: float) -> float:
    """exp(−5 (1 − t)²) with t = step / length clipped to [0, 1]; 1 when ``length`` ≤ 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def pseudo_labels(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """N×K×H×W class probabilities → (N×H×W int64 argmax labels, N×H×W confidence = max prob)."""
    conf, labels = probs.max(dim=1)
    return labels, conf


class SemiSupervisedMethod(Method):
    """Base of the family: consumes the unlabelled stream and provides the views and weights."""

    streams = ("labelled", "unlabelled")

    def unlabelled_batch_size(self) -> int:
        return int(self.mcfg.unlabelled_batch or self.ctx.cfg.train.batch_size)

    def consistency_weight(self, step: int) -> float:
        """λ_u(step) = weight × sigmoid ramp-up over ``rampup`` × iterations."""
        return float(self.mcfg.weight) * sigmoid_rampup(step, self.mcfg.rampup * self.ctx.cfg.train.iterations)

    def labelled_view(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Weak geometric augmentation (image + mask, one draw) then ``method.intensity``."""
        return self.augment_pairs(batch.images, batch.masks, self.mcfg.augment)

    def weak_view(self, images: torch.Tensor) -> torch.Tensor:
        """Weak view of unlabelled images (geometric ``method.augment``, images only)."""
        if self.mcfg.augment == "none":
            return images
        out, _ = apply_augment(self.mcfg.augment, images, None, self.ctx.generator)
        return out

    def strong_view(self, images: torch.Tensor, **overrides: Any) -> torch.Tensor:
        """Strong intensity perturbation (:data:`STRONG_INTENSITY`, ``overrides`` win) of images
        whose geometry stays put: a weak-view prediction remains a pixel-aligned target."""
        from scarce.augment.intensity import apply_intensity, resolve_intensity_config

        cfg = resolve_intensity_config(None, where="strong view ", **{**STRONG_INTENSITY, **overrides})
        return apply_intensity("nnunet", images, self.ctx.generator, cfg)

    @staticmethod
    def probs(logits: torch.Tensor) -> torch.Tensor:
        """N×C×H×W logits → N×K×H×W probabilities (binary: [1 − p, p])."""
        return class_probs(logits)
