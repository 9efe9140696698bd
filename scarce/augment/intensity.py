"""nnU-Net-style intensity augmentation of image batches, drawn from an explicit generator.

Why: the geometric ops (:mod:`scarce.augment`) teach shape invariances only; models trained on a
few images from one scanner then fail on brighter, blurrier or noisier images from another
(the out-of-distribution sets). nnU-Net's default intensity transforms are the field's standard
answer. They act on images only — masks are never touched — so they compose with any geometric
augmentation: apply the geometric draw first (image + mask), then this (image only).

Same contract as the geometric ops: every random number comes from the ``torch.Generator``
passed in (the trainer's checkpointed ``ctx.generator``, never kornia's or torch's global RNG),
one draw per sample, and the generator is consumed by the same amount whatever the drawn values
are, so runs are reproducible and resume bit-exactly (an op that no sample draws is skipped,
which only saves time). The pixel operations are kornia's
(``enhance.adjust_contrast`` = multiplicative brightness, ``adjust_contrast_with_mean_subtraction``,
``adjust_gamma``, ``filters.gaussian_blur2d``) and ``torch.nn.functional.interpolate``.

Images: float N×C×H×W in [0, 1]; the output has the same shape, dtype and device and stays in
[0, 1] (every op clamps). A sample whose op is not drawn keeps its pixels bit-exactly.

Transforms in nnU-Net v2's order, with its default probabilities and ranges
(``nnUNetTrainer.get_training_transforms``), adapted to [0, 1] images:

==================  ====================  ==========================================================
op                  probability / sample  parameters
==================  ====================  ==========================================================
Gaussian noise      0.1                   std ~ U(0, 0.1) × the image's own std (nnU-Net adds
                                          U(0, 0.1)-std noise to z-scored images, i.e. std 1)
Gaussian blur       0.1 (0.2 × 0.5)       σ ~ U(0.5, 1) px
brightness (×)      0.15                  factor ~ U(0.75, 1) or U(1, 1.25), each side with p 0.5
contrast            0.15                  (x − mean)·f + mean, f as brightness; clipped to the
                                          image's own [min, max] (nnU-Net's preserve_range)
low resolution      0.125 (0.25 × 0.5)    down-sample by U(0.5, 1) (nearest), back up (bicubic)
inverted gamma      0.1                   1 − (1 − x̂)^γ on the min–max rescaled image x̂,
                                          γ ~ U(0.7, 1) or U(1, 1.5); mean/std restored
gamma               0.3                   x̂^γ, same γ and statistics handling
==================  ====================  ==========================================================

Differences from nnU-Net, on purpose: parameters are drawn per sample and shared by the
channels (nnU-Net draws per channel because its channels are separate MRI modalities; for RGB
photographs a per-channel factor would be a colour cast). nnU-Net's blur and low-resolution
transforms additionally pick each channel with p 0.5; with shared channels the product is the
per-sample probability, which equals nnU-Net's exactly for 1-channel images (X-ray, ultrasound).

>>> g = torch.Generator().manual_seed(0)
>>> images = apply_intensity("nnunet", images, g)           # masks untouched
>>> images = apply_intensity("nnunet", images, g, gamma_prob=0.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from scarce.config import ConfigError, from_dict, to_dict
from scarce.registry import Registry, look_up

__all__ = ["INTENSITY_AUGMENTATIONS", "IntensityConfig", "apply_intensity", "resolve_intensity_config",
           "check_intensity_name"]

IntensityFn = Callable[[torch.Tensor, torch.Generator, "IntensityConfig"], torch.Tensor]
"""(images N×C×H×W in [0, 1], generator, config) → augmented images of the same shape."""

INTENSITY_AUGMENTATIONS: Registry[IntensityFn] = Registry("intensity augmentation")


@dataclass
class IntensityConfig:
    """Probabilities (per sample) and ranges of the ``nnunet`` intensity augmentation.

    Defaults are nnU-Net v2's (see the module docstring); set a probability to 0 to switch an op
    off (e.g. ``method.intensity_params: {lowres_prob: 0}``).
    """

    noise_prob: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.1)
    """Noise std range, as a fraction of each image's own intensity std."""
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    """Gaussian σ range in pixels (at the training resolution)."""
    brightness_prob: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    """Multiplicative factor range (below/above 1 chosen with p 0.5 each, as nnU-Net's BGContrast)."""
    contrast_prob: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    lowres_prob: float = 0.125
    lowres_scale: tuple[float, float] = (0.5, 1.0)
    """Down-sampling factor range of the low-resolution simulation."""
    gamma_inverted_prob: float = 0.1
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    gamma_retain_stats: bool = True
    """Restore each image's mean and std after a gamma change (nnU-Net: retain_stats)."""


_PROBS = ("noise_prob", "blur_prob", "brightness_prob", "contrast_prob", "lowres_prob",
          "gamma_inverted_prob", "gamma_prob")
_RANGES = {"noise_std": 0.0, "blur_sigma": 0.0, "brightness_range": 0.0, "contrast_range": 0.0,
           "lowres_scale": 1e-6, "gamma_range": 1e-6}
"""Range fields → smallest allowed lower bound."""


def check_intensity_name(name: str, key: str = "method.intensity") -> str:
    """The registered name (``none``, ``nnunet``) or ConfigError with did-you-mean naming ``key``."""
    return look_up(str(name).lower(), INTENSITY_AUGMENTATIONS.names(), key)


def resolve_intensity_config(config: IntensityConfig | None = None, where: str = "intensity.",
                             **params: Any) -> IntensityConfig:
    """``config`` (default :class:`IntensityConfig`) with ``params`` overriding; validated.

    Unknown keys and bad values raise :class:`scarce.config.ConfigError` naming ``where`` + key.
    """
    base = to_dict(config if config is not None else IntensityConfig())
    base.update(params)
    cfg = from_dict(IntensityConfig, base, where=where)
    for key in _PROBS:
        if not 0.0 <= float(getattr(cfg, key)) <= 1.0:
            raise ConfigError(f"{where}{key} must be a probability in [0, 1], got {getattr(cfg, key)}")
    for key, low in _RANGES.items():
        value = getattr(cfg, key)
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}{key} expects [low, high], got {value!r}") from None
        if not low <= lo <= hi:
            raise ConfigError(f"{where}{key} expects [low, high] with {low} <= low <= high, got {value!r}")
        if key == "lowres_scale" and hi > 1:
            raise ConfigError(f"{where}lowres_scale must lie in (0, 1] (a down-sampling factor), got {value!r}")
        setattr(cfg, key, (lo, hi))
    return cfg


# --------------------------------------------------------------------------- draws

def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def _bg_contrast(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    """nnU-Net's BGContrast: a range around 1 is sampled below or above 1 with p 0.5 each (so
    shrinking and growing are equally likely however asymmetric the range); else U(lo, hi).
    Always two draws per sample (fixed generator consumption)."""
    below = torch.rand(n, generator=g, device=g.device) < 0.5
    u = torch.rand(n, generator=g, device=g.device)
    if lo < 1.0 < hi:
        return torch.where(below, lo + (1.0 - lo) * u, 1.0 + (hi - 1.0) * u)
    return lo + (hi - lo) * u


def _applies(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.to(x.device).view(-1, 1, 1, 1)


def _on_drawn(fn: Any, x: torch.Tensor, apply: torch.Tensor, *per_sample: torch.Tensor) -> torch.Tensor:
    """``fn(x, *per_sample)`` (a per-sample op: no value depends on another sample) on the samples
    that drew the op only, the others passed through. Bit-identical to computing it on the whole
    batch and selecting (tests/test_intensity.py), at the cost of the drawn samples: with
    nnU-Net's probabilities (0.1–0.3 per sample) most of a batch skips each op."""
    idx = apply.nonzero().flatten()
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return fn(x, *per_sample)
    dev = idx.to(x.device)
    out = x.clone()  # keeps x's memory layout, as torch.where(apply, y, x) did
    out[dev] = fn(x[dev], *(p.to(x.device)[dev] for p in per_sample))
    return out


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and channel mean and (population) std, N×C×1×1."""
    return x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True, correction=0)


# --------------------------------------------------------------------------- ops

def _noise(x: torch.Tensor, apply: torch.Tensor, rel_std: torch.Tensor,
           noise: torch.Tensor) -> torch.Tensor:
    def op(x: torch.Tensor, rel_std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        sd = rel_std.to(x) * x.std(dim=(1, 2, 3), correction=0)
        return (x + noise.to(x) * sd.view(-1, 1, 1, 1)).clamp(0.0, 1.0)

    return _on_drawn(op, x, apply, rel_std, noise)


def _blur(x: torch.Tensor, apply: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    from kornia.filters import gaussian_blur2d

    idx = apply.nonzero().flatten().to(x.device)
    h, w = x.shape[-2:]
    ks = 2 * math.ceil(3 * max_sigma) + 1
    ks = min(ks, 2 * ((min(h, w) - 1) // 2) + 1)  # reflect padding needs kernel < image
    if idx.numel() == 0 or ks < 3:
        return x
    s = sigma.to(x)[idx].view(-1, 1).repeat(1, 2)
    out = x.clone()
    out[idx] = gaussian_blur2d(x[idx], (ks, ks), s, border_type="reflect").clamp(0.0, 1.0)
    return out


def _brightness(x: torch.Tensor, apply: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    from kornia.enhance import adjust_contrast  # kornia's "contrast" is x · factor (clipped)

    if not bool(apply.any()):
        return x
    return torch.where(_per_sample(apply, x), adjust_contrast(x, factor.to(x)), x)


def _contrast(x: torch.Tensor, apply: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    from kornia.enhance import adjust_contrast_with_mean_subtraction

    def op(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        y = adjust_contrast_with_mean_subtraction(x, factor.to(x))
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        return torch.minimum(torch.maximum(y, lo), hi)  # preserve_range

    return _on_drawn(op, x, apply, factor)


def _lowres(x: torch.Tensor, apply: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    idx = apply.nonzero().flatten().tolist()
    if not idx:
        return x
    out = x.clone()
    for i in idx:  # a different size per sample: one interpolate pair each
        s = float(scale[i])
        small = (max(1, round(h * s)), max(1, round(w * s)))
        down = F.interpolate(x[i:i + 1], size=small, mode="nearest")
        out[i:i + 1] = F.interpolate(down, size=(h, w), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    return out


def _gamma(x: torch.Tensor, apply: torch.Tensor, gamma: torch.Tensor, invert: bool,
           retain_stats: bool) -> torch.Tensor:
    from kornia.enhance import adjust_gamma

    def op(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        eps = 1e-7
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        rng = hi - lo
        xr = ((x - lo) / (rng + eps)).clamp(0.0, 1.0)
        if invert:
            xr = 1.0 - xr
        yr = adjust_gamma(xr, gamma.to(x))
        if invert:
            yr = 1.0 - yr
        y = yr * rng + lo
        if retain_stats:
            mean, std = _stats(x)
            y_mean, y_std = _stats(y)
            y = (y - y_mean) / (y_std + eps) * std + mean
        return y.clamp(0.0, 1.0)

    return _on_drawn(op, x, apply, gamma)


@INTENSITY_AUGMENTATIONS.register("none")
def _none(images: torch.Tensor, g: torch.Generator, cfg: IntensityConfig) -> torch.Tensor:
    """Identity (draws nothing)."""
    return images


@INTENSITY_AUGMENTATIONS.register("nnunet")
def _nnunet(images: torch.Tensor, g: torch.Generator, cfg: IntensityConfig) -> torch.Tensor:
    """nnU-Net's intensity transforms in its order (module docstring). Every op draws its apply
    flag and parameters for all samples, whatever was drawn before (fixed consumption)."""
    n = images.shape[0]
    x = images
    # noise
    apply = _applies(n, cfg.noise_prob, g)
    rel = _uniform(n, *cfg.noise_std, g)
    noise = torch.randn(tuple(images.shape), generator=g, device=g.device)
    x = _noise(x, apply, rel, noise)
    # blur
    apply = _applies(n, cfg.blur_prob, g)
    x = _blur(x, apply, _uniform(n, *cfg.blur_sigma, g), cfg.blur_sigma[1])
    # multiplicative brightness
    apply = _applies(n, cfg.brightness_prob, g)
    x = _brightness(x, apply, _bg_contrast(n, *cfg.brightness_range, g))
    # contrast
    apply = _applies(n, cfg.contrast_prob, g)
    x = _contrast(x, apply, _bg_contrast(n, *cfg.contrast_range, g))
    # low resolution
    apply = _applies(n, cfg.lowres_prob, g)
    x = _lowres(x, apply, _uniform(n, *cfg.lowres_scale, g))
    # inverted gamma, then gamma
    apply = _applies(n, cfg.gamma_inverted_prob, g)
    x = _gamma(x, apply, _bg_contrast(n, *cfg.gamma_range, g), True, cfg.gamma_retain_stats)
    apply = _applies(n, cfg.gamma_prob, g)
    x = _gamma(x, apply, _bg_contrast(n, *cfg.gamma_range, g), False, cfg.gamma_retain_stats)
    return x


# --------------------------------------------------------------------------- public API

def apply_intensity(name: str, images: torch.Tensor, generator: torch.Generator,
                    config: IntensityConfig | None = None, **params: Any) -> torch.Tensor:
    """Intensity-augment images (float N×C×H×W in [0, 1]) with one draw per sample.

    ``name``: a registered intensity augmentation (``none``, ``nnunet``); ``params`` override
    ``config`` fields (e.g. ``gamma_prob=0``). Parameters come from ``generator`` only: the same
    generator state gives identical output. ``none`` returns ``images`` itself and draws nothing.
    The input tensor is never modified in place.
    """
    fn = INTENSITY_AUGMENTATIONS.get(check_intensity_name(name, "intensity augmentation"))
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
    cfg = resolve_intensity_config(config, **params)
    return fn(images, generator, cfg)
