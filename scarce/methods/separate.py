"""``separate``: the paper's "Separate" ablation (Figure 4) — augmentation and segmentation
trained separately.

Pix2Pix with the vanilla (non-searched, 4-2-1) architecture is pretrained on the split's training
pairs (same :func:`~scarce.methods.gan_pretrain.pretrain_gan` and cache as ``e2eaug``), then
frozen; the segmenter trains on L_seg(D_tr; W) + λ·L_seg((f(M̂), M̂); W) with M̂ the batch masks
augmented by rotate/flip/translate in random order. Nothing flows back into the generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scarce.methods import register_method
from scarce.methods.gan_pretrain import gan_cache_dir
from scarce.methods.base import Batch, Method, TrainContext
from scarce.methods.gan_pretrain import GANConfig, augment_masks_for, build_generator, pretrain_gan, write_gallery
from scarce.models.gan import one_hot_masks


@dataclass
class SeparateConfig(GANConfig):
    """Same GAN/augmentation fields as ``e2eaug`` (no architecture search, no GAN updates)."""


@register_method("separate")
class Separate(Method):
    """Frozen pretrained vanilla Pix2Pix + segmenter. Modules: model, generator."""

    Config = SeparateConfig
    searchable_generator = False

    def __init__(self, ctx: TrainContext, mcfg: SeparateConfig) -> None:
        super().__init__(ctx, mcfg)
        size = int(ctx.data.train.images.shape[-1])
        self.generator = build_generator(mcfg, ctx.num_classes, ctx.in_channels, size, searchable=False).to(ctx.device)
        self.generator.requires_grad_(False)

    def cache_dir(self) -> str | None:
        return gan_cache_dir(self.mcfg.gan_cache, self.ctx.run_dir)

    def setup(self) -> None:
        """Pretrain (or load the cached) vanilla Pix2Pix for this split."""
        if self.mcfg.pretrain_iters > 0:
            pre = pretrain_gan(self.ctx.cfg, self.ctx.data, self.cache_dir(), searchable=False,
                               device=self.ctx.device, progress=self.ctx.cfg.train.progress and self.ctx.is_main)
            self.generator.load_state_dict(pre.generator)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "generator": self.generator}

    def train(self) -> None:
        self.model.train()
        self.generator.eval()

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        images, masks = batch.images, batch.masks
        aug_masks = augment_masks_for(self.mcfg, masks, self.ctx.generator)
        with torch.no_grad():
            fake = self.generator(one_hot_masks(aug_masks, self.ctx.num_classes, images.dtype))
        logits = self.model(torch.cat([self.augment_intensity(images), fake], dim=0))
        n = images.shape[0]  # real pairs first, then the ⌈f·n⌉ generated ones
        loss_real = self.ctx.loss_fn(logits[:n], masks)
        loss_aug = self.ctx.loss_fn(logits[n:], aug_masks)
        loss = loss_real + self.mcfg.lam * loss_aug
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach(), "loss_real": loss_real.detach(), "loss_aug": loss_aug.detach()}

    def finalize(self, run_dir: Path) -> None:
        """``gallery.png``: real image | mask | augmented mask | generated image."""
        n = min(self.mcfg.gallery, len(self.ctx.data.train))
        if n > 0:
            g = torch.Generator().manual_seed(self.ctx.cfg.train.seed + 31)
            tr = self.ctx.data.train
            aug = augment_masks_for(self.mcfg, tr.masks[:n], g, fraction=1.0)
            write_gallery(Path(run_dir) / "gallery.png", self.generator, tr.images[:n], tr.masks[:n], aug,
                          self.ctx.num_classes)
