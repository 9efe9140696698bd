"""``separate``: the paper's "Separate" ablation (Figure 4) — augmentation and segmentation
trained separately.

Pix2Pix with the vanilla (non-searched, 4-2-1) architecture is pretrained on the split's training
pairs (same :func:`~scarce.methods.gan.pretrain.pretrain_gan` and cache as ``e2eaug``), then
frozen; the segmenter trains on L_seg(D_tr; W) + λ·L_seg((f(M̂), M̂); W) with M̂ the batch masks
augmented by rotate/flip/translate in random order. Nothing flows back into the generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scarce.engine.method import Batch, TrainContext
from scarce.methods import register_method
from scarce.methods.gan.base import MaskToImageMethod
from scarce.methods.gan.pretrain import GANConfig
from scarce.models.gan import one_hot_masks


@dataclass
class SeparateConfig(GANConfig):
    """Same GAN/augmentation fields as ``e2eaug`` (no architecture search, no GAN updates)."""


@register_method("separate")
class Separate(MaskToImageMethod):
    """Frozen pretrained vanilla Pix2Pix + segmenter. Modules: model, generator."""

    Config = SeparateConfig
    searchable_generator = False

    def __init__(self, ctx: TrainContext, mcfg: SeparateConfig) -> None:
        super().__init__(ctx, mcfg)
        self.generator.requires_grad_(False)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "generator": self.generator}

    def train(self) -> None:
        self.model.train()
        self.generator.eval()

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        images, masks = batch.images, batch.masks
        aug_masks = self.augment_masks(masks)
        with torch.no_grad():
            fake = self.generator(one_hot_masks(aug_masks, self.ctx.num_classes, images.dtype))
        return self.segmenter_step(images, masks, fake, aug_masks)
