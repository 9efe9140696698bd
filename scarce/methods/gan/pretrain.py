"""The synthetic-pair family's GAN machinery: the mask→image GAN's config fields and Pix2Pix
losses (``e2eaug``, ``separate``), the mask augmentation, ONE cached, seeded pretraining loop
(:func:`pretrain_cached`, parametrised by a :class:`GANRecipe`: networks, inputs, loss pieces) used
by both the mask→image GAN (:func:`pretrain_gan`) and ``gan_aug``'s pair GAN, one cache key, and
one gallery writer.

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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scarce.config import LAMBDA_AXIS, RunConfig, axis_field
from scarce.data.types import RunData, SegData
from scarce.models.gan import create_discriminator, create_generator, one_hot_masks
from scarce.utils import interrupt
from scarce.utils.io import atomic_save_png, atomic_torch_save, torch_load

CACHE_VERSION = 1
PRETRAIN_FIELDS = ("generator", "gen_ngf", "gen_depth", "gen_max_mult", "gen_norm", "gen_dropout",
                   "generator_kwargs", "disc_ndf", "disc_layers", "gan_lr", "gan_betas", "gan_weight_decay",
                   "l1_weight", "pretrain_iters", "pretrain_batch")
"""The config fields pretraining depends on (the cache key); method-specific fields are not."""


@dataclass
class SyntheticImageFields:
    """Fields every synthetic-pair method shares (e2eaug, separate, gan_aug): λ and how the real
    and generated images are augmented before the segmenter sees them."""

    lam: float = axis_field(1.0, LAMBDA_AXIS)
    """λ: weight of the segmentation loss on generated pairs (paper default 1). A report axis."""
    real_augment: str = "none"
    """Classic joint augmentation of the REAL pairs in the segmenter's update: none | rotate |
    flip | translate | combine (one draw per sample, image and mask alike, before ``intensity``).
    ``none`` is the paper's method (geometric variety comes only through the generated pairs of
    augmented masks). Why it exists: the best supervised recipe trains with Combine, and without
    it E2EAug's real half sees 40 fixed images, so E2EAug was compared with a weaker real-data
    recipe than the supervised row it must beat (docs/results.md, "E2EAug out of distribution").
    E2EAug's hypergradient (Stage III) unrolls the un-augmented real pairs."""
    intensity: str = "none"
    """Intensity augmentation of the real training images: none | nnunet (nnU-Net's brightness,
    contrast, gamma, noise, blur, low-resolution transforms; :mod:`scarce.augment.intensity`).
    Images only, one draw per sample from the run's generator: the real half of each batch, and
    the generated half too unless ``intensity_generated: false``."""
    intensity_params: dict[str, Any] = field(default_factory=dict)
    """:class:`scarce.augment.intensity.IntensityConfig` overrides, e.g. ``{gamma_prob: 0}``."""
    intensity_generated: bool = True
    """Also apply ``intensity`` to the generated images the segmenter trains on (a fresh draw per
    generated sample, in the real segmenter update). Why: a GAN trained on 40 images paints
    images in the training set's own intensity distribution, so without this half of every batch
    is un-augmented and the segmenter's robustness to intensity shifts drops (montgomery, 9 labels,
    mean Dice over 24 simulated shifts: see docs/results.md, "E2EAug out of distribution"). ``false``
    feeds the generated images un-augmented. E2EAug's hypergradient unrolls the
    un-augmented objective (the augmentation is a fixed random transform after the generator)."""
    generated_appearance: str = "none"
    """none | match_real: rescale each generated image, per channel, to the mean and standard
    deviation of a real image of the same batch (drawn from the run's generator) before the
    segmenter sees it (and before ``intensity_generated``). Why: a mask→image GAN trained with an
    L1 term paints the conditional MEAN appearance — brightness is not predictable from a mask —
    so its images span a narrower brightness range than the real ones (montgomery E2EAug run:
    per-image mean std 0.058 generated vs 0.118 real, ``benchmarks/e2eaug_generated_stats.py``);
    matching restores the real images' spread while keeping the generated structure."""


@dataclass
class GANConfig(SyntheticImageFields):
    """Hyperparameters of the mask→image cGAN and of the mask augmentation (shared fields)."""

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


def gan_optimizer(params: Iterable[nn.Parameter], gc: Any) -> torch.optim.Optimizer:
    """Adam with the config's ``gan_lr``, ``gan_betas``, ``gan_weight_decay`` (every GAN of the family)."""
    return torch.optim.Adam(params, lr=gc.gan_lr, betas=tuple(gc.gan_betas), weight_decay=gc.gan_weight_decay)


def adv_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The vanilla (non-saturating) GAN loss on discriminator logits of any shape (Pix2Pix's patch
    map, the pair GAN's one logit per sample): BCE with logits against all-real/all-fake."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def disc_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """½(BCE(D(real), 1) + BCE(D(fake), 0)); the caller computes D(fake) on detached fakes."""
    return 0.5 * (adv_loss(real_logits, True) + adv_loss(fake_logits, False))


def update(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """zero_grad → backward → step (pretraining; a method's real steps use ``ctx.step``)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


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
    """The cache file (None without a cache)."""
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None
    """None for GANs whose discriminator is not kept (``gan_aug``'s)."""
    cached: bool
    """True when loaded from the cache instead of trained."""
    losses: dict[str, float]


def _gan_config(cfg: RunConfig) -> tuple[GANConfig, bool]:
    """The run's GAN config and whether its generator is searchable (``separate`` = vanilla)."""
    from scarce.methods import method_spec

    try:
        spec = method_spec(cfg)
        cls, mcfg = spec.cls, spec.config
    except KeyError:
        return GANConfig(), True
    if not isinstance(mcfg, GANConfig):
        return GANConfig(), True
    return mcfg, getattr(cls, "searchable_generator", True)


def cache_key(cfg: RunConfig, data: RunData, gc: Any, fields: Sequence[str], **extra: Any) -> str:
    """Hash of everything a GAN pretraining depends on: the training tensors, the seed, the
    pretraining batch, K, the config ``fields`` the GAN depends on (a dataclass ``gc``) and
    ``extra`` settings (e.g. ``searchable``). Never stale: another split, size or dataset changes
    the tensors."""
    h = hashlib.sha256()
    for t in (data.train.images, data.train.masks):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    keep = {k: v for k, v in asdict(gc).items() if k in fields}
    meta = {"v": CACHE_VERSION, "seed": cfg.train.seed, "gan": keep,
            "batch": gc.pretrain_batch or cfg.train.batch_size, "k": data.train.num_classes, **extra}
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


@dataclass
class GANRecipe:
    """What differs between the family's GAN pretrainings; the rest (seeding, batching, the cache,
    progress, saving) is :func:`pretrain_cached`, written once."""

    tag: str
    """Cache file prefix: the generator's name (``pix2pix``, ``spade``, ...) or ``gan_aug``."""
    variant: str | None
    """File-name part after the seed (``search`` / ``vanilla``), or None."""
    fields: tuple[str, ...]
    """The config fields the result depends on (hashed into the key)."""
    key_extra: dict[str, Any]
    """More settings hashed into the key (e.g. ``{"searchable": True}``)."""
    build: Callable[[], tuple[nn.Module, nn.Module]]
    """(G, D); called under the pretraining's seeded global RNG (their initialisation)."""
    step: Callable[[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer, torch.Tensor, torch.Tensor,
                    torch.Generator], tuple[float, float]]
    """One iteration ``step(G, D, opt_G, opt_D, images N×C×S×S, masks N×S×S, generator)`` on a
    batch of real pairs (on the device; ``generator`` = the pretraining's own, for noise). Returns
    (D loss, G loss)."""
    gen_params: Callable[[nn.Module], Iterable[nn.Parameter]]
    """The generator parameters G's optimizer updates (the mask→image GAN: weights only, α fixed)."""
    keep_discriminator: bool = True
    """Save (and require in the cache) D's weights too."""
    desc: str = "GAN pretrain"
    """Progress-bar label."""


def cache_file(recipe: GANRecipe, data: RunData, seed: int, key: str) -> str:
    """``<tag>-<dataset>-s<seed>[-<variant>]-<key>.pt`` (the names finished caches already have)."""
    name = data.info.name.replace("/", "_")
    variant = f"-{recipe.variant}" if recipe.variant else ""
    return f"{recipe.tag}-{name}-s{seed}{variant}-{key}.pt"


def pretrain_cached(recipe: GANRecipe, cfg: RunConfig, data: RunData, gc: Any, out: str | Path | None = None,
                    device: torch.device | str | None = None, progress: bool = False) -> PretrainedGAN:
    """Train ``recipe``'s GAN on the split's training pairs for ``gc.pretrain_iters`` iterations
    (batches of ``gc.pretrain_batch or train.batch_size`` drawn without replacement per
    iteration), or load it from the cache folder ``out`` (None or "" = no cache).

    Deterministic: the networks are built under ``train.seed + 7919`` inside a forked global RNG
    (restored afterwards) and batches/noise come from an own generator (``train.seed + 104729``),
    so cache hits and misses give identical runs. A cached result is loaded ``weights_only``;
    a corrupt one is retrained and replaced; new results are saved atomically.
    """
    dev = torch.device(device) if device is not None else data.train.images.device
    keys = ("generator", "discriminator") if recipe.keep_discriminator else ("generator",)
    path = None
    if out:
        key = cache_key(cfg, data, gc, recipe.fields, **recipe.key_extra)
        path = Path(out) / cache_file(recipe, data, cfg.train.seed, key)
        st = load_gan_cache(path, dev, keys) if path.exists() else None
        if st is not None:
            return PretrainedGAN(path, st["generator"], st.get("discriminator"), True, st.get("losses", {}))
    train = data.train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed + 7919)
        gen, disc = recipe.build()
        gen, disc = gen.to(dev), disc.to(dev)
        opt_g = gan_optimizer(list(recipe.gen_params(gen)), gc)
        opt_d = gan_optimizer(list(disc.parameters()), gc)
        g = torch.Generator().manual_seed(cfg.train.seed + 104729)
        n = len(train)
        bs = min(n, gc.pretrain_batch or cfg.train.batch_size)
        losses = {"loss_d": float("nan"), "loss_g": float("nan")}
        it: Iterable[int] = range(gc.pretrain_iters)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=recipe.desc, leave=False, dynamic_ncols=True)
        for _ in it:
            interrupt.check(f"during the GAN's pretraining ({recipe.desc}), which has no checkpoint: it starts over "
                            "when the run resumes")
            idx = torch.randperm(n, generator=g)[:bs].to(train.images.device)
            ld, lg = recipe.step(gen, disc, opt_g, opt_d, train.images[idx].to(dev), train.masks[idx].to(dev), g)
            losses = {"loss_d": ld, "loss_g": lg}
    nets = {"generator": gen, "discriminator": disc}
    state: dict[str, Any] = {k: {n_: t.detach().clone() for n_, t in nets[k].state_dict().items()} for k in keys}
    state["losses"] = losses
    if path is not None:
        atomic_torch_save(state, path)
    return PretrainedGAN(path, state["generator"], state.get("discriminator"), False, losses)


def pretrain_gan(cfg: RunConfig, run_data: RunData, out: str | Path | None = None, *,
                 searchable: bool | None = None, device: torch.device | str | None = None,
                 progress: bool = False, gan: GANConfig | None = None) -> PretrainedGAN:
    """Pretrain Pix2Pix (G with α fixed, and D) on the split's training pairs {(M_j, I_j)}
    (:func:`pretrain_cached`; cache file ``<generator>-<dataset>-s<seed>-<search|vanilla>-<key>.pt``).

    ``cfg.method`` supplies the :class:`GANConfig` (defaults when the method has none) unless
    ``gan`` is given (a running method's own config); ``out`` is the cache folder (None or "" = no
    cache).
    """
    gc, default_searchable = _gan_config(cfg) if gan is None else (gan, True)
    searchable = default_searchable if searchable is None else searchable
    k, c = run_data.train.num_classes, int(run_data.train.images.shape[1])
    size = int(run_data.train.images.shape[-1])

    def step(gen, disc, opt_g, opt_d, images, masks, g):
        return gan_train_step(gen, disc, opt_g, opt_d, one_hot_masks(masks, k, images.dtype), images, gc.l1_weight)

    recipe = GANRecipe(
        tag=gc.generator, variant="search" if searchable else "vanilla", fields=PRETRAIN_FIELDS,
        key_extra={"searchable": searchable}, step=step, gen_params=lambda gen: gen.weight_parameters(),
        build=lambda: (build_generator(gc, k, c, size, searchable), build_discriminator(gc, k, c, size)),
        desc="pix2pix pretrain")
    return pretrain_cached(recipe, cfg, run_data, gc, out, device, progress)


def gan_train_step(gen: nn.Module, disc: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                   onehot: torch.Tensor, real: torch.Tensor, l1_weight: float) -> tuple[float, float]:
    """One Pix2Pix pretraining iteration: D step on (real, G(M) detached), then G step
    (adv + λ_L1·L1). onehot N×K×S×S, real N×C×S×S. Returns (D loss, G loss)."""
    fake = gen(onehot)
    ld = disc_loss(disc(onehot, real), disc(onehot, fake.detach()))
    update(ld, opt_d)
    lg = gen_loss(disc(onehot, fake), fake, real, l1_weight)
    update(lg, opt_g)
    return float(ld.detach()), float(lg.detach())


# ----------------------------------------------------------------------------- gallery

def to_rgb(x: torch.Tensor, num_classes: int = 2) -> np.ndarray:
    """One gallery tile → S×S×3 uint8: an image C×S×S in [0, 1] (gray expanded, first 3
    channels), or a label mask S×S (gray level = label / (K − 1))."""
    x = x.detach().float().cpu()
    if x.ndim == 2:
        x = (x / max(1, num_classes - 1)).unsqueeze(0)
    x = x.clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_gallery(path: str | Path, rows: Sequence[Sequence[torch.Tensor]], num_classes: int, pad: int = 2) -> None:
    """The family's gallery grid (white ``pad``-px gaps), one row per sample; each tile is an image
    C×S×S or a label mask S×S (:func:`to_rgb`), all of one size S. Written atomically."""
    n, m, s = len(rows), len(rows[0]), int(rows[0][0].shape[-1])
    grid = np.full((n * (s + pad) + pad, m * (s + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            grid[y:y + s, x:x + s] = to_rgb(t, num_classes)
    atomic_save_png(path, grid)


@torch.no_grad()
def mask_gallery(path: str | Path, gc: GANConfig, gen: nn.Module, train: SegData, seed: int,
                 rows: int | None = None) -> None:
    """The mask→image methods' gallery (Figure 8b), one row per training pair: real image | real
    mask | augmented mask | generated image (G in eval mode, from the augmented mask). The first
    ``rows`` (default ``gc.gallery``) training masks are augmented with the method's OWN mask
    options (``mask_ops``, ``mask_random_order``, ``augment``; all masks, one draw each from a
    generator seeded ``seed + 31``), so every caller shows what the method trains on."""
    n = min(gc.gallery if rows is None else rows, len(train))
    if n <= 0:
        return
    images, masks = train.images[:n], train.masks[:n]
    aug = augment_masks_for(gc, masks, torch.Generator().manual_seed(seed + 31), fraction=1.0)
    was = gen.training
    gen.eval()
    fake = gen(one_hot_masks(aug, train.num_classes, images.dtype))
    gen.train(was)
    write_gallery(path, [[images[i], masks[i], aug[i], fake[i]] for i in range(n)], train.num_classes)


def gan_cache_dir(gan_cache: str | None, run_dir: Path) -> str | None:
    """Where pretrained GANs are cached: ``gan_cache`` if set, None when "" (no cache), else
    ``<run_dir>/../.gan_cache`` (shared by the seeds of one grid row)."""
    if gan_cache == "":
        return None
    return gan_cache or str(Path(run_dir).parent / ".gan_cache")
