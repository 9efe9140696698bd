"""``gan_aug``: GAN pair augmentation, the paper's "GAN-UNet" / "GAN-DeepLab" baseline (Table 2).

The paper only says "a GAN model was trained to generate image-mask pairs". Design choice made
here (and why):

* **Unconditional pair GAN, not mask→image.** The generator maps noise z (``nz``) to image AND
  mask together (DCGAN layout: a transposed conv from 1×1 to a 4–8 px start, then ×2 transposed
  4-2-1 convs, instance norm + ReLU, a 3×3 conv to C + M channels): the first C channels are the
  image ``(tanh + 1) / 2``, the remaining M are mask logits — M = 1 for binary tasks (label =
  ``sigmoid > 0.5``), M = K for multi-class tasks (label = argmax over the K channels). This is
  what distinguishes it from ``separate`` (a frozen Pix2Pix that paints images for *augmented real
  masks*): here the masks themselves are synthetic too, so the baseline tests "more GAN pairs"
  rather than "learned appearance for known shapes". The networks are
  :mod:`scarce.models.pair_gan`; the mask channels and labels follow the segmenters' convention
  (:func:`scarce.data.types.out_channels`; labels by the rule of :func:`scarce.losses.predict`).
* **Discriminator on (image, mask) pairs** (DCGAN conv stack down to the start size, one logit per
  sample), so the generated mask has to agree with the generated image. It sees the *soft* mask
  (sigmoid / softmax) of fakes and the exact 0/1 (one-hot) mask of real pairs, which pushes the
  generator towards crisp masks. Non-saturating BCE loss, Adam (DCGAN's 2e-4, betas 0.5/0.999).
* **Instance norm** (not DCGAN's batch norm): no running statistics, so a sample does not depend
  on its batch-mates nor on train/eval mode, and the frozen generator's samples are reproducible.
* **Trained separately, then frozen**: pretrained in :meth:`GanAug.setup` on the split's training
  pairs only (no extra data) by the family's one cached, seeded pretraining loop
  (:func:`~scarce.methods.gan.pretrain.pretrain_cached`: key = training tensors + seed + GAN
  settings; atomic save; ``weights_only`` load), then frozen. Each iteration draws ⌈f·B⌉ pairs from
  the method's checkpointed ``torch.Generator`` and trains the segmenter on
  L_seg(D_tr; W) + λ·L_seg(D_gan; W) (λ = ``lam``, the same weighting as ``separate``/``e2eaug``).

Tensors: images N×C×S×S in [0, 1], masks N×S×S int64; z is N×nz×1×1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scarce.config import LAMBDA_AXIS, RunConfig, axis_field
from scarce.data.types import RunData, out_channels
from scarce.engine.method import Batch, TrainContext
from scarce.methods import register_method
from scarce.methods.gan.base import SyntheticPairMethod
from scarce.methods.gan.pretrain import (
    GANRecipe, PretrainedGAN, SyntheticImageFields, adv_loss, disc_loss, pretrain_cached, update, write_gallery,
)
from scarce.models.pair_gan import PairDiscriminator, PairGenerator, real_mask, soft_mask

PRETRAIN_FIELDS = ("nz", "ngf", "ndf", "max_mult", "norm", "gan_lr", "gan_betas", "gan_weight_decay",
                   "pretrain_iters", "pretrain_batch")
"""Fields the pretrained pair GAN depends on (its cache key); λ, f, gallery, cache path are not."""


@dataclass
class GanAugConfig(SyntheticImageFields):
    """Pair-GAN baseline hyperparameters (CPU preset defaults)."""

    aug_fraction: float = 0.5
    """Generated pairs per iteration = ⌈f·B⌉ (as e2eaug/separate's CPU default)."""
    nz: int = 64
    """Noise dimension (DCGAN: 100)."""
    ngf: int = 16
    """Generator base width (DCGAN: 64); the widest level has ngf·max_mult channels."""
    ndf: int = 16
    """Discriminator base width (DCGAN: 64)."""
    max_mult: int = 8
    norm: str = "instance"
    """instance | batch | none, in G and D (see module docstring)."""
    gan_lr: float = 2e-4
    gan_betas: tuple[float, float] = (0.5, 0.999)
    gan_weight_decay: float = 0.0
    pretrain_iters: int = 1000
    """Pair-GAN training iterations on the split's training pairs (0 = untrained generator)."""
    pretrain_batch: int = 0
    """Pretraining batch size; 0 = ``train.batch_size``."""
    gan_cache: str | None = None
    """Cache folder; None = ``<run_dir>/../.gan_cache``; "" = no caching."""
    gallery: int = 8
    """Generated pairs in ``gallery.png`` at the end of training (0 = none)."""


def build_pair_gan(gc: GanAugConfig, image_channels: int, num_classes: int, size: int
                   ) -> tuple[PairGenerator, PairDiscriminator]:
    gen = PairGenerator(gc.nz, image_channels, num_classes, size, gc.ngf, gc.max_mult, gc.norm)
    disc = PairDiscriminator(image_channels + out_channels(num_classes), size, gc.ndf, gc.max_mult, gc.norm)
    return gen, disc


def pair_gan_step(gen: PairGenerator, disc: PairDiscriminator, opt_g: torch.optim.Optimizer,
                  opt_d: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor, z: torch.Tensor
                  ) -> tuple[float, float]:
    """One GAN iteration on real pairs (images N×C×S×S, masks N×S×S) and noise z: D step (real vs
    detached fake), then G step (non-saturating BCE). Returns (D loss, G loss)."""
    real_m = real_mask(masks, gen.num_classes, images.dtype)
    fake_i, fake_logits = gen(z)
    fake_m = soft_mask(fake_logits)
    ld = disc_loss(disc(images, real_m), disc(fake_i.detach(), fake_m.detach()))
    update(ld, opt_d)
    lg = adv_loss(disc(fake_i, fake_m), True)
    update(lg, opt_g)
    return float(ld.detach()), float(lg.detach())


def pretrain_pair_gan(cfg: RunConfig, data: RunData, gc: GanAugConfig, out: str | Path | None = None,
                      device: torch.device | str | None = None, progress: bool = False) -> PretrainedGAN:
    """Train the pair GAN on the split's training pairs with the family's
    :func:`~scarce.methods.gan.pretrain.pretrain_cached` (cache file
    ``gan_aug-<dataset>-s<seed>-<key>.pt``, generator only; ``out`` None/"" = no cache)."""
    c, k, size = int(data.train.images.shape[1]), data.train.num_classes, int(data.train.images.shape[-1])
    recipe = GANRecipe(
        tag="gan_aug", variant=None, fields=PRETRAIN_FIELDS, key_extra={},
        build=lambda: build_pair_gan(gc, c, k, size), gen_params=lambda gen: gen.parameters(),
        step=lambda gen, disc, opt_g, opt_d, images, masks, g: pair_gan_step(
            gen, disc, opt_g, opt_d, images, masks, gen.noise(images.shape[0], g)),
        keep_discriminator=False, desc="pair GAN pretrain")
    return pretrain_cached(recipe, cfg, data, gc, out, device, progress)


@register_method("gan_aug")
class GanAug(SyntheticPairMethod):
    """Frozen pretrained pair GAN + segmenter (see module docstring). Modules: model, pair_generator."""

    Config = GanAugConfig

    def __init__(self, ctx: TrainContext, mcfg: GanAugConfig) -> None:
        super().__init__(ctx, mcfg)
        if not 0 < mcfg.aug_fraction <= 1:
            raise ValueError(f"aug_fraction must be in (0, 1], got {mcfg.aug_fraction}")
        size = int(ctx.data.train.images.shape[-1])
        self.pair_generator = PairGenerator(mcfg.nz, ctx.in_channels, ctx.num_classes, size, mcfg.ngf,
                                            mcfg.max_mult, mcfg.norm).to(ctx.device)
        self.pair_generator.requires_grad_(False)

    def pretrain(self) -> PretrainedGAN:
        return pretrain_pair_gan(self.ctx.cfg, self.ctx.data, self.mcfg, self.cache_dir(), device=self.ctx.device,
                                 progress=self.show_progress)

    def load_pretrained(self, pre: PretrainedGAN) -> None:
        self.pair_generator.load_state_dict(pre.generator)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "pair_generator": self.pair_generator}

    def train(self) -> None:
        self.model.train()
        self.pair_generator.eval()

    def training_step(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        images, masks = batch.images, batch.masks
        n_fake = max(1, math.ceil(self.mcfg.aug_fraction * images.shape[0] - 1e-9))
        fake_images, fake_masks = self.pair_generator.sample(n_fake, self.ctx.generator)
        fake_images = fake_images.to(images.dtype)
        if images.is_contiguous(memory_format=torch.channels_last):
            fake_images = fake_images.contiguous(memory_format=torch.channels_last)
        return self.segmenter_step(images, masks, fake_images, fake_masks)

    def gallery(self, path: Path) -> None:
        """Generated image | generated mask, one pair per row (``method.gallery`` rows)."""
        g = torch.Generator().manual_seed(self.ctx.cfg.train.seed + 31)
        images, masks = self.pair_generator.sample(self.mcfg.gallery, g)
        write_gallery(path, [[images[i], masks[i]] for i in range(images.shape[0])], self.ctx.num_classes)
