"""Mask→image GAN pieces shared by ``e2eaug`` and ``separate``: config fields, Pix2Pix losses,
mask augmentation, per-split pretraining with an on-disk cache, and the synthetic-pair gallery.

Why pretraining is cached: both methods start from Pix2Pix trained on the *current split's*
training pairs (paper Sec. 4.1, "we pre-train Pix2Pix on the training dataset"); the result only
depends on those pairs, the seed and the GAN hyperparameters, so runs of the same split (e2eaug
and separate, U-Net and DeepLab rows of a grid) share one pretraining. The key hashes the
training tensors themselves, so a different split, size or dataset can never hit a stale file.

Defaults are the CPU preset (see :class:`GANConfig`); the paper's values are in each field's doc.
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
from scarce.models.gan import create_discriminator, create_generator, one_hot_masks
from scarce.utils.io import atomic_save_png, atomic_torch_save, torch_load

CACHE_VERSION = 1
PRETRAIN_FIELDS = ("generator", "gen_ngf", "gen_depth", "gen_max_mult", "gen_norm", "gen_dropout",
                   "generator_kwargs", "disc_ndf", "disc_layers", "gan_lr", "gan_betas", "gan_weight_decay",
                   "l1_weight", "pretrain_iters", "pretrain_batch")
"""The config fields pretraining depends on (the cache key); method-specific fields are not."""


@dataclass
class GANConfig:
    """Hyperparameters of the mask→image cGAN and of the mask augmentation (shared fields)."""

    lam: float = 1.0
    """λ: weight of the segmentation loss on generated pairs (paper default 1)."""
    intensity: str = "none"
    """Intensity augmentation of the real training images: none | nnunet (nnU-Net's brightness,
    contrast, gamma, noise, blur, low-resolution transforms; :mod:`scarce.augment.intensity`).
    Images only, one draw per sample from the run's generator (the segmenter's real half of each batch; generated images are not augmented)."""
    intensity_params: dict[str, Any] = field(default_factory=dict)
    """:class:`scarce.augment.intensity.IntensityConfig` overrides, e.g. ``{gamma_prob: 0}``."""
    mask_ops: list[str] = field(default_factory=lambda: ["rotate", "flip", "translate"])
    """Basic mask augmentations applied in random order (paper); one op = Figure 5 ablation."""
    mask_random_order: bool = True
    aug_fraction: float = 0.5
    """Fraction of each batch's masks that are augmented and synthesised per iteration (the
    first ⌈f·B⌉ of the shuffled batch). Paper: 1.0 (every mask); the CPU default 0.5 keeps an
    iteration ≤ 2.5× a supervised one (the segmenter pass dominates); λ weights the mean loss,
    so the expected weight of generated pairs does not change."""
    augment: dict[str, Any] = field(default_factory=dict)
    """Extra :class:`scarce.augment.AugmentConfig` fields (max_rotation, max_translate, ...)."""
    generator: str = "pix2pix"
    """Registered generator (``scarce.models.gan.GENERATORS``)."""
    gen_ngf: int = 8
    """Generator base width (Pix2Pix: 64; 8 keeps CPU iterations cheap: the searchable cells
    cost ~4× a vanilla 4-2-1 conv)."""
    gen_depth: int = 0
    """Down-sampling levels; 0 = down to 1 px (at most 8), as Pix2Pix's U-Net-256."""
    gen_max_mult: int = 8
    gen_norm: str = "instance"
    gen_dropout: float = 0.0
    """Pix2Pix uses 0.5 as its noise source; 0 keeps the unrolled steps deterministic."""
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the generator factory (e.g. candidates, fuse)."""
    disc_ndf: int = 8
    """PatchGAN base width (Pix2Pix: 64)."""
    disc_layers: int = 3
    """PatchGAN strided layers (3 = 70×70 patches; reduced automatically for small images)."""
    gan_lr: float = 2e-4
    """Adam lr of G and D. Paper: 1e-5 (5000 GPU iterations); the CPU default 2e-4 (Pix2Pix's
    own) is needed for the GAN to learn anything in a few hundred iterations."""
    gan_betas: tuple[float, float] = (0.5, 0.999)
    gan_weight_decay: float = 1e-3
    """Paper: 1e-3."""
    l1_weight: float = 100.0
    """λ_L1 of Pix2Pix's generator loss."""
    pretrain_iters: int = 300
    """Pix2Pix pretraining iterations on the split's training pairs (0 = none)."""
    pretrain_batch: int = 0
    """Pretraining batch size; 0 = ``train.batch_size``."""
    gan_cache: str | None = None
    """Pretrained-GAN cache folder; None = ``<run_dir>/../.gan_cache``; "" = no caching."""
    gallery: int = 8
    """Synthetic image–mask pairs in ``gallery.png`` at the end of training (0 = none)."""


def build_generator(gc: GANConfig, num_classes: int, channels: int, size: int, searchable: bool) -> nn.Module:
    kw = dict(depth=gc.gen_depth or None, ngf=gc.gen_ngf, max_mult=gc.gen_max_mult, norm=gc.gen_norm,
              dropout=gc.gen_dropout)
    kw.update(gc.generator_kwargs)
    return create_generator(gc.generator, num_classes, channels, size, searchable=searchable, **kw)


def build_discriminator(gc: GANConfig, num_classes: int, channels: int, size: int) -> nn.Module:
    return create_discriminator(num_classes, channels, size, ndf=gc.disc_ndf, n_layers=gc.disc_layers,
                                norm=gc.gen_norm)


def gan_optimizer(params: list[nn.Parameter], gc: GANConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=gc.gan_lr, betas=tuple(gc.gan_betas), weight_decay=gc.gan_weight_decay)


def adv_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Pix2Pix's vanilla GAN loss on patch logits (BCE with logits against all-real/all-fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def disc_loss(disc: nn.Module, onehot: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """½(BCE(D(M, I), 1) + BCE(D(M, Î), 0)); ``fake`` should be detached by the caller."""
    return 0.5 * (adv_loss(disc(onehot, real), True) + adv_loss(disc(onehot, fake), False))


def gen_loss(disc_logits: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, l1_weight: float) -> torch.Tensor:
    """Pix2Pix generator loss: BCE(D(M, Î), 1) + λ_L1·|Î − I|₁."""
    return adv_loss(disc_logits, True) + l1_weight * (fake - real).abs().mean()


def augment_masks_for(gc: GANConfig, masks: torch.Tensor, generator: torch.Generator,
                      fraction: float | None = None) -> torch.Tensor:
    """Paper's mask augmentation: ``gc.mask_ops`` in random order per sample, applied to the
    first ⌈fraction·N⌉ masks (default ``gc.aug_fraction``). N×S×S → n×S×S."""
    from scarce.augment import AugmentConfig, augment_masks

    frac = gc.aug_fraction if fraction is None else fraction
    if not 0 < frac <= 1:
        raise ValueError(f"aug_fraction must be in (0, 1], got {frac}")
    masks = masks[:max(1, math.ceil(frac * masks.shape[0] - 1e-9))]

    cfg = AugmentConfig(**{**gc.augment, "ops": list(gc.mask_ops), "random_order": gc.mask_random_order})
    return augment_masks("combine", masks, generator, cfg)


# ----------------------------------------------------------------------------- pretraining

@dataclass
class PretrainedGAN:
    path: Path | None
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    cached: bool
    """True when loaded from the cache instead of trained."""
    losses: dict[str, float]


def _gan_config(cfg: RunConfig) -> tuple[GANConfig, bool]:
    """The run's GAN config and whether its generator is searchable (``separate`` = vanilla)."""
    from scarce.methods import resolve_method_config

    try:
        cls, mcfg = resolve_method_config(cfg.method)
    except KeyError:
        return GANConfig(), True
    if not isinstance(mcfg, GANConfig):
        return GANConfig(), True
    return mcfg, getattr(cls, "searchable_generator", True)


def cache_key(cfg: RunConfig, data: RunData, gc: GANConfig, searchable: bool) -> str:
    """Hash of everything pretraining depends on: training tensors, seed, GAN hyperparameters."""
    h = hashlib.sha256()
    for t in (data.train.images, data.train.masks):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    keep = {k: v for k, v in asdict(gc).items() if k in PRETRAIN_FIELDS}
    meta = {"v": CACHE_VERSION, "seed": cfg.train.seed, "searchable": searchable, "gan": keep,
            "batch": gc.pretrain_batch or cfg.train.batch_size, "k": data.train.num_classes}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def load_gan_cache(path: Path, device: torch.device, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A GAN cache file's state, or None (after a one-line warning) when it is corrupt, truncated
    or not a cache file: the GAN is then retrained — pretraining is deterministic, so the run is
    the same as with a good cache — and the file replaced atomically. A pickle payload is never
    executed (weights-only loading)."""
    import warnings

    from scarce.utils.io import CheckpointError

    try:
        st = torch_load(path, map_location=device)
    except CheckpointError as e:
        warnings.warn(f"{e}; GAN cache entry ignored: retraining the GAN (the file is replaced)", stacklevel=2)
        return None
    if not isinstance(st, dict) or any(k not in st for k in keys):
        warnings.warn(f"GAN cache file {path} does not hold a GAN ({', '.join(keys)}); retraining the GAN "
                      "(the file is replaced)", stacklevel=2)
        return None
    return st


def pretrain_gan(cfg: RunConfig, run_data: RunData, out: str | Path | None = None, *,
                 searchable: bool | None = None, device: torch.device | str | None = None,
                 progress: bool = False) -> PretrainedGAN:
    """Pretrain Pix2Pix (G with α fixed, and D) on the split's training pairs {(M_j, I_j)}.

    ``cfg.method`` supplies the :class:`GANConfig` (defaults when the method has none);
    ``out`` is the cache folder (None or "" = no cache). A cached result is loaded
    (``weights_only``) instead of retraining; new results are saved atomically. Deterministic:
    its own seeded RNG (the global RNG is restored), so cache hits and misses give identical runs.
    """
    gc, default_searchable = _gan_config(cfg)
    searchable = default_searchable if searchable is None else searchable
    dev = torch.device(device) if device is not None else run_data.train.images.device
    path = None
    if out:
        key = cache_key(cfg, run_data, gc, searchable)
        name = run_data.info.name.replace("/", "_")
        path = Path(out) / f"{gc.generator}-{name}-s{cfg.train.seed}-{'search' if searchable else 'vanilla'}-{key}.pt"
        st = load_gan_cache(path, dev, ("generator", "discriminator")) if path.exists() else None
        if st is not None:
            return PretrainedGAN(path, st["generator"], st["discriminator"], True, st.get("losses", {}))
    k, c, size = run_data.train.num_classes, int(run_data.train.images.shape[1]), int(run_data.train.images.shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed + 7919)
        gen = build_generator(gc, k, c, size, searchable).to(dev)
        disc = build_discriminator(gc, k, c, size).to(dev)
        opt_g = gan_optimizer(list(gen.weight_parameters()), gc)
        opt_d = gan_optimizer(list(disc.parameters()), gc)
        g = torch.Generator().manual_seed(cfg.train.seed + 104729)
        n = len(run_data.train)
        bs = min(n, gc.pretrain_batch or cfg.train.batch_size)
        losses = {"loss_d": float("nan"), "loss_g": float("nan")}
        it = range(gc.pretrain_iters)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="pix2pix pretrain", leave=False, dynamic_ncols=True)
        for _ in it:
            idx = torch.randperm(n, generator=g)[:bs].to(run_data.train.images.device)
            real = run_data.train.images[idx].to(dev)
            onehot = one_hot_masks(run_data.train.masks[idx].to(dev), k, real.dtype)
            ld, lg = gan_train_step(gen, disc, opt_g, opt_d, onehot, real, gc.l1_weight)
            losses = {"loss_d": ld, "loss_g": lg}
    state = {"generator": {n_: t.detach().clone() for n_, t in gen.state_dict().items()},
             "discriminator": {n_: t.detach().clone() for n_, t in disc.state_dict().items()},
             "losses": losses}
    if path is not None:
        atomic_torch_save(state, path)
    return PretrainedGAN(path, state["generator"], state["discriminator"], False, losses)


def gan_train_step(gen: nn.Module, disc: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                   onehot: torch.Tensor, real: torch.Tensor, l1_weight: float, step=None) -> tuple[float, float]:
    """One Pix2Pix iteration: D step on (real, G(M) detached), then G step (adv + λ_L1·L1).

    ``step(loss, optimizer)`` performs the update (default zero_grad/backward/step; methods pass
    ``ctx.step`` for distributed sync). Returns (D loss, G loss).
    """
    def _step(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step = step or _step
    fake = gen(onehot)
    ld = disc_loss(disc, onehot, real, fake.detach())
    step(ld, opt_d)
    lg = gen_loss(disc(onehot, fake), fake, real, l1_weight)
    step(lg, opt_g)
    return float(ld.detach()), float(lg.detach())


# ----------------------------------------------------------------------------- gallery

def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """C×S×S in [0, 1] → S×S×3 uint8."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x[:3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _mask_rgb(m: torch.Tensor, k: int) -> np.ndarray:
    v = (m.detach().cpu().float() / max(1, k - 1)).unsqueeze(0)
    return _to_rgb(v)


@torch.no_grad()
def write_gallery(path: str | Path, gen: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                  aug_masks: torch.Tensor, num_classes: int, pad: int = 2) -> None:
    """Figure 8b-style grid, one row per sample: real image | real mask | augmented mask |
    generated image (from the augmented mask). images N×C×S×S, masks N×S×S."""
    was = gen.training
    gen.eval()
    fake = gen(one_hot_masks(aug_masks, num_classes, images.dtype))
    gen.train(was)
    n, s = images.shape[0], images.shape[-1]
    grid = np.full((n * (s + pad) + pad, 4 * (s + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        tiles = [_to_rgb(images[i]), _mask_rgb(masks[i], num_classes), _mask_rgb(aug_masks[i], num_classes),
                 _to_rgb(fake[i])]
        for j, t in enumerate(tiles):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            grid[y:y + s, x:x + s] = t
    atomic_save_png(path, grid)


def gan_cache_dir(gan_cache: str | None, run_dir: Path) -> str | None:
    """Where pretrained GANs are cached: ``gan_cache`` if set, None when "" (no cache), else
    ``<run_dir>/../.gan_cache`` (shared by the seeds of one grid row)."""
    if gan_cache == "":
        return None
    return gan_cache or str(Path(run_dir).parent / ".gan_cache")
