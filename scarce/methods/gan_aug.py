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
  rather than "learned appearance for known shapes".
* **Discriminator on (image, mask) pairs** (DCGAN conv stack down to the start size, one logit per
  sample), so the generated mask has to agree with the generated image. It sees the *soft* mask
  (sigmoid / softmax) of fakes and the exact 0/1 (one-hot) mask of real pairs, which pushes the
  generator towards crisp masks. Non-saturating BCE loss, Adam (DCGAN's 2e-4, betas 0.5/0.999).
* **Instance norm** (not DCGAN's batch norm): no running statistics, so a sample does not depend
  on its batch-mates nor on train/eval mode, and the frozen generator's samples are reproducible.
* **Trained separately, then frozen**: pretrained in :meth:`GanAug.setup` on the split's training
  pairs only (no extra data), cached like ``pretrain_gan`` (key = training tensors + seed + GAN
  settings; atomic save; ``weights_only`` load), then frozen. Each iteration draws ⌈f·B⌉ pairs from
  the method's checkpointed ``torch.Generator`` and trains the segmenter on
  L_seg(D_tr; W) + λ·L_seg(D_gan; W) (λ = ``lam``, the same weighting as ``separate``/``e2eaug``).

Tensors: images N×C×S×S in [0, 1], masks N×S×S int64; z is N×nz×1×1.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scarce.config import RunConfig
from scarce.data.types import RunData
from scarce.methods import register_method
from scarce.methods.gan_pretrain import gan_cache_dir, load_gan_cache
from scarce.methods.base import Batch, Method, TrainContext
from scarce.models.search import init_gan_weights, norm_layer
from scarce.utils.io import atomic_save_png, atomic_torch_save

CACHE_VERSION = 1
PRETRAIN_FIELDS = ("nz", "ngf", "ndf", "max_mult", "norm", "gan_lr", "gan_betas", "gan_weight_decay",
                   "pretrain_iters", "pretrain_batch")
"""Fields the pretrained pair GAN depends on (its cache key); λ, f, gallery, cache path are not."""


@dataclass
class GanAugConfig:
    """Pair-GAN baseline hyperparameters (CPU preset defaults)."""

    lam: float = 1.0
    """λ: weight of the segmentation loss on generated pairs."""
    intensity: str = "none"
    """Intensity augmentation of the real training images: none | nnunet (nnU-Net's brightness,
    contrast, gamma, noise, blur, low-resolution transforms; :mod:`scarce.augment.intensity`).
    Images only, one draw per sample from the run's generator (the segmenter's real half of each batch; generated images are not augmented)."""
    intensity_params: dict[str, Any] = field(default_factory=dict)
    """:class:`scarce.augment.intensity.IntensityConfig` overrides, e.g. ``{gamma_prob: 0}``."""
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


def _start_size(size: int) -> tuple[int, int]:
    """(start px, number of ×2 up-samplings): the smallest start ≥ 4 px reached by exact halvings."""
    n = 0
    while size % (2 ** (n + 1)) == 0 and size // (2 ** (n + 1)) >= 4:
        n += 1
    return size // 2 ** n, n


def mask_channels(num_classes: int) -> int:
    """Mask channels of a generated pair: 1 (binary, sigmoid) or K (multi-class, softmax)."""
    return 1 if num_classes == 2 else num_classes


def soft_mask(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits N×M×S×S → probabilities (sigmoid for M = 1, softmax over M otherwise)."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def hard_labels(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits N×M×S×S → int64 labels N×S×S (``sigmoid > 0.5`` ≡ logit > 0, or argmax)."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


def real_mask(masks: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Real masks N×S×S → N×M×S×S in the generator's mask format (0/1 or one-hot)."""
    if num_classes == 2:
        return masks.unsqueeze(1).to(dtype)
    return F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).to(dtype)


class PairGenerator(nn.Module):
    """DCGAN-style z N×nz×1×1 → N×(C+M)×S×S: C image channels + M mask-logit channels."""

    def __init__(self, nz: int, image_channels: int, num_classes: int, size: int, ngf: int = 16,
                 max_mult: int = 8, norm: str = "instance") -> None:
        super().__init__()
        self.nz, self.image_channels, self.num_classes = int(nz), int(image_channels), int(num_classes)
        start, n_up = _start_size(size)
        ch = [ngf * min(2 ** (n_up - i), max_mult) for i in range(n_up + 1)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch[0], start, 1, 0, bias=False), norm_layer(norm, ch[0]), nn.ReLU()]
        for i in range(n_up):
            layers += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False), norm_layer(norm, ch[i + 1]), nn.ReLU()]
        layers.append(nn.Conv2d(ch[-1], image_channels + mask_channels(num_classes), 3, 1, 1))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z N×nz(×1×1) → (images N×C×S×S in [0, 1], mask logits N×M×S×S)."""
        out = self.net(z.view(z.shape[0], self.nz, 1, 1))
        c = self.image_channels
        return (torch.tanh(out[:, :c]) + 1) / 2, out[:, c:]

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """N×nz×1×1 standard-normal noise (drawn on the CPU generator, moved to the net's device)."""
        dev = self.net[0].weight.device
        return torch.randn(n, self.nz, 1, 1, generator=generator).to(dev, self.net[0].weight.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n generated pairs: images n×C×S×S in [0, 1], int64 label masks n×S×S."""
        images, logits = self(self.noise(n, generator))
        return images, hard_labels(logits)


class PairDiscriminator(nn.Module):
    """DCGAN-style critic on pairs: cat(image, mask) N×(C+M)×S×S → one logit per sample, N."""

    def __init__(self, in_channels: int, size: int, ndf: int = 16, max_mult: int = 8, norm: str = "instance") -> None:
        super().__init__()
        start, n_down = _start_size(size)
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(n_down):
            cout = ndf * min(2 ** i, max_mult)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0 or norm == "none")]
            if i > 0:
                layers.append(norm_layer(norm, cout))
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, start, 1, 0))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([images, mask], dim=1)).flatten()


def build_pair_gan(gc: GanAugConfig, image_channels: int, num_classes: int, size: int
                   ) -> tuple[PairGenerator, PairDiscriminator]:
    gen = PairGenerator(gc.nz, image_channels, num_classes, size, gc.ngf, gc.max_mult, gc.norm)
    disc = PairDiscriminator(image_channels + mask_channels(num_classes), size, gc.ndf, gc.max_mult, gc.norm)
    return gen, disc


def pair_gan_step(gen: PairGenerator, disc: PairDiscriminator, opt_g: torch.optim.Optimizer,
                  opt_d: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor, z: torch.Tensor
                  ) -> tuple[float, float]:
    """One GAN iteration on real pairs (images N×C×S×S, masks N×S×S) and noise z: D step (real vs
    detached fake), then G step (non-saturating BCE). Returns (D loss, G loss)."""
    bce = F.binary_cross_entropy_with_logits
    real_m = real_mask(masks, gen.num_classes, images.dtype)
    fake_i, fake_logits = gen(z)
    fake_m = soft_mask(fake_logits)
    d_real = disc(images, real_m)
    d_fake = disc(fake_i.detach(), fake_m.detach())
    ld = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
    opt_d.zero_grad(set_to_none=True)
    ld.backward()
    opt_d.step()
    d_gen = disc(fake_i, fake_m)
    lg = bce(d_gen, torch.ones_like(d_gen))
    opt_g.zero_grad(set_to_none=True)
    lg.backward()
    opt_g.step()
    return float(ld.detach()), float(lg.detach())


def pair_cache_key(cfg: RunConfig, data: RunData, gc: GanAugConfig) -> str:
    """Hash of the training tensors, the seed and the pair-GAN settings (never stale)."""
    h = hashlib.sha256()
    for t in (data.train.images, data.train.masks):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    keep = {k: v for k, v in asdict(gc).items() if k in PRETRAIN_FIELDS}
    meta = {"v": CACHE_VERSION, "seed": cfg.train.seed, "gan": keep, "k": data.train.num_classes,
            "batch": gc.pretrain_batch or cfg.train.batch_size}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def pretrain_pair_gan(cfg: RunConfig, data: RunData, gc: GanAugConfig, out: str | Path | None = None,
                      device: torch.device | str | None = None, progress: bool = False
                      ) -> tuple[dict[str, torch.Tensor], Path | None, bool, dict[str, float]]:
    """Train the pair GAN on the split's training pairs; returns (generator state, cache path,
    loaded-from-cache?, last losses). Deterministic (own seeded RNG; the global RNG is restored),
    so cache hits and misses give identical runs. ``out`` None/"" = no cache."""
    dev = torch.device(device) if device is not None else data.train.images.device
    path = None
    if out:
        name = data.info.name.replace("/", "_")
        path = Path(out) / f"gan_aug-{name}-s{cfg.train.seed}-{pair_cache_key(cfg, data, gc)}.pt"
        st = load_gan_cache(path, dev, ("generator",)) if path.exists() else None
        if st is not None:
            return st["generator"], path, True, st.get("losses", {})
    k, c, size = data.train.num_classes, int(data.train.images.shape[1]), int(data.train.images.shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed + 7919)
        gen, disc = build_pair_gan(gc, c, k, size)
        gen, disc = gen.to(dev), disc.to(dev)
        opt_g = torch.optim.Adam(gen.parameters(), lr=gc.gan_lr, betas=tuple(gc.gan_betas),
                                 weight_decay=gc.gan_weight_decay)
        opt_d = torch.optim.Adam(disc.parameters(), lr=gc.gan_lr, betas=tuple(gc.gan_betas),
                                 weight_decay=gc.gan_weight_decay)
        g = torch.Generator().manual_seed(cfg.train.seed + 104729)
        n = len(data.train)
        bs = min(n, gc.pretrain_batch or cfg.train.batch_size)
        losses = {"loss_d": float("nan"), "loss_g": float("nan")}
        it: Any = range(gc.pretrain_iters)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="pair GAN pretrain", leave=False, dynamic_ncols=True)
        for _ in it:
            idx = torch.randperm(n, generator=g)[:bs].to(data.train.images.device)
            ld, lg = pair_gan_step(gen, disc, opt_g, opt_d, data.train.images[idx].to(dev),
                                   data.train.masks[idx].to(dev), gen.noise(bs, g))
            losses = {"loss_d": ld, "loss_g": lg}
    state = {n_: t.detach().clone() for n_, t in gen.state_dict().items()}
    if path is not None:
        atomic_torch_save({"generator": state, "losses": losses}, path)
    return state, path, False, losses


def _rgb(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float().cpu().clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_pair_gallery(path: str | Path, images: torch.Tensor, masks: torch.Tensor, num_classes: int,
                       pad: int = 2) -> None:
    """Grid of generated pairs, one row each: image | mask (gray levels = labels)."""
    n, s = images.shape[0], images.shape[-1]
    grid = np.full((n * (s + pad) + pad, 2 * (s + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        tiles = [_rgb(images[i]), _rgb((masks[i].float() / max(1, num_classes - 1)).unsqueeze(0))]
        for j, t in enumerate(tiles):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            grid[y:y + s, x:x + s] = t
    atomic_save_png(path, grid)


@register_method("gan_aug")
class GanAug(Method):
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

    def cache_dir(self) -> str | None:
        return gan_cache_dir(self.mcfg.gan_cache, self.ctx.run_dir)

    def setup(self) -> None:
        """Train (or load the cached) pair GAN on this split's training pairs; keep G frozen."""
        if self.mcfg.pretrain_iters > 0:
            state, _, _, _ = pretrain_pair_gan(
                self.ctx.cfg, self.ctx.data, self.mcfg, self.cache_dir(), device=self.ctx.device,
                progress=self.ctx.cfg.train.progress and self.ctx.is_main)
            self.pair_generator.load_state_dict(state)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "pair_generator": self.pair_generator}

    def train(self) -> None:
        self.model.train()
        self.pair_generator.eval()

    def training_step(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        images, masks = batch.images, batch.masks
        n = images.shape[0]
        n_fake = max(1, math.ceil(self.mcfg.aug_fraction * n - 1e-9))
        fake_images, fake_masks = self.pair_generator.sample(n_fake, self.ctx.generator)
        fake_images = fake_images.to(images.dtype)
        if images.is_contiguous(memory_format=torch.channels_last):
            fake_images = fake_images.contiguous(memory_format=torch.channels_last)
        logits = self.model(torch.cat([self.augment_intensity(images), fake_images], dim=0))
        loss_real = self.ctx.loss_fn(logits[:n], masks)
        loss_aug = self.ctx.loss_fn(logits[n:], fake_masks)
        loss = loss_real + self.mcfg.lam * loss_aug
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach(), "loss_real": loss_real.detach(), "loss_aug": loss_aug.detach()}

    def finalize(self, run_dir: Path) -> None:
        """``gallery.png``: generated image | generated mask, one pair per row."""
        if self.mcfg.gallery > 0:
            g = torch.Generator().manual_seed(self.ctx.cfg.train.seed + 31)
            images, masks = self.pair_generator.sample(self.mcfg.gallery, g)
            write_pair_gallery(Path(run_dir) / "gallery.png", images, masks, self.ctx.num_classes)
