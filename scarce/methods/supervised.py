"""``supervised``: plain segmenter training, optionally with a classic joint augmentation
(rotate | flip | translate | combine) — the paper's Rotate/Flip/Translate/Combine baselines."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scarce.augment import apply_augment
from scarce.methods import register_method
from scarce.methods.base import Batch, Method


@dataclass
class SupervisedConfig:
    augment: str = "none"
    """none | rotate | flip | translate | combine (one random draw per sample, image+mask)."""


@register_method("supervised")
class Supervised(Method):
    Config = SupervisedConfig

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        images, masks = batch.images, batch.masks
        if self.mcfg.augment != "none":
            images, masks = apply_augment(self.mcfg.augment, images, masks, self.ctx.generator)
        self.model.train()
        loss = self.ctx.loss_fn(self.model(images), masks)
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach()}
