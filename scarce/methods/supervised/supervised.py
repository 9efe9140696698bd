"""``supervised``: plain segmenter training, optionally with a classic joint augmentation
(rotate | flip | translate | combine) — the paper's Rotate/Flip/Translate/Combine baselines —
and/or nnU-Net-style intensity augmentation (``method.intensity=nnunet``, applied after it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from scarce.methods import register_method
from scarce.engine.method import Batch, Method


@dataclass
class SupervisedConfig:
    augment: str = "none"
    """none | rotate | flip | translate | combine (one random draw per sample, image+mask)."""
    intensity: str = "none"
    """Intensity augmentation of the real training images: none | nnunet (nnU-Net's brightness,
    contrast, gamma, noise, blur, low-resolution transforms; :mod:`scarce.augment.intensity`).
    Images only, one draw per sample from the run's generator, after ``augment``."""
    intensity_params: dict[str, Any] = field(default_factory=dict)
    """:class:`scarce.augment.intensity.IntensityConfig` overrides, e.g. ``{gamma_prob: 0}``."""


@register_method("supervised")
class Supervised(Method):
    Config = SupervisedConfig
    closure_step = True

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        images, masks = self.augment_pairs(batch.images, batch.masks, self.mcfg.augment)
        self.model.train()
        # a closure, so a two-pass optimiser (train.optim.name=sam|asam) can re-evaluate it
        loss = self.ctx.step(lambda: self.ctx.loss_fn(self.model(images), masks), self.optimizer)
        return {"loss": loss}
