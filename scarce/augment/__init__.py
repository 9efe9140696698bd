"""Geometric augmentations applied jointly to images and masks, drawn from an explicit generator.

Why this shape: few-label training (and E2EAug, which augments masks alone and synthesises the
matching images) needs the *same* random transform on an image and its mask, exact label ids
after resampling, and draws that are reproducible from the trainer's checkpointed
``torch.Generator`` rather than the global RNG.

Every augmentation is an affine map per sample: the ops (rotate, flip, translate) each give an
N×3×3 pixel-coordinate matrix; ``combine`` multiplies them in a random order per sample. The
composite is applied with one ``kornia.geometry.transform.warp_affine`` call (one interpolation,
not three): images bilinear, masks nearest, fill 0 (0 = background).

>>> g = torch.Generator().manual_seed(0)
>>> images, masks = apply_augment("combine", images, masks, g, max_rotation=15)
>>> masks2 = augment_masks("rotate", masks, g)       # E2EAug: masks only

Intensity augmentation (images only, nnU-Net's transforms) lives in :mod:`scarce.augment.intensity`
with its own registry (``none``, ``nnunet``): apply the geometric draw first, then
``apply_intensity(name, images, g)``; masks are untouched, so geometry stays that of the
geometric op. Methods use it through ``method.intensity`` (:meth:`scarce.engine.method.Method.augment_intensity`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

from scarce.augment.intensity import (INTENSITY_AUGMENTATIONS, IntensityConfig, apply_intensity,
                                      resolve_intensity_config)
from scarce.config import ConfigError, from_dict, to_dict
from scarce.registry import Registry

__all__ = ["AUGMENTATIONS", "AugmentConfig", "AugmentDraw", "apply_augment", "apply", "augment_masks",
           "sample_augment", "warp", "resolve_config", "op_names", "INTENSITY_AUGMENTATIONS", "IntensityConfig",
           "apply_intensity", "resolve_intensity_config"]

OpFn = Callable[[int, int, int, torch.Generator, "AugmentConfig"], torch.Tensor]
"""An op: (n, height, width, generator, config) → N×3×3 forward pixel maps (source → output)."""

AUGMENTATIONS: Registry[OpFn] = Registry("augmentation")


@dataclass
class AugmentConfig:
    """Parameters of the geometric augmentations (angles in degrees, shifts as image fractions)."""

    max_rotation: float = 30.0
    """Rotation angle drawn uniformly in [-max_rotation, max_rotation] degrees."""
    hflip_prob: float = 0.5
    """Probability of a horizontal (left-right) flip, per sample."""
    vflip_prob: float = 0.5
    """Probability of a vertical (up-down) flip, per sample."""
    max_translate: float = 0.1
    """Shift drawn uniformly in [-max_translate, max_translate] × image size, per axis."""
    ops: list[str] = field(default_factory=lambda: ["rotate", "flip", "translate"])
    """Ops that ``combine`` composes (E2EAug ablation: e.g. ``["rotate"]``)."""
    random_order: bool = True
    """``combine`` applies its ops in a random order per sample (else in ``ops`` order)."""


@dataclass
class AugmentDraw:
    """One random draw for a batch: what :func:`warp` applies."""

    matrices: torch.Tensor
    """N×3×3 float32 forward maps in pixel coordinates (source pixel → output pixel)."""
    orders: list[tuple[str, ...]]
    """Per sample, the ops in the order they were applied (``()`` for ``none``)."""
    identity: bool = False
    """True for ``none``: :func:`warp` returns its inputs unchanged."""


# --------------------------------------------------------------------------- config

def resolve_config(config: AugmentConfig | None = None, **params: Any) -> AugmentConfig:
    """``config`` (default :class:`AugmentConfig`) with ``params`` overriding; validated.

    Unknown keys raise :class:`scarce.config.ConfigError` with did-you-mean.
    """
    base = to_dict(config if config is not None else AugmentConfig())
    base.update(params)
    cfg = from_dict(AugmentConfig, base, where="augment.")
    if cfg.max_rotation < 0 or not 0 <= cfg.max_translate < 1:
        raise ConfigError(
            f"augment: need max_rotation >= 0 and 0 <= max_translate < 1, got {cfg.max_rotation}, "
            f"{cfg.max_translate}"
        )
    for key in ("hflip_prob", "vflip_prob"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ConfigError(f"augment.{key} must be a probability in [0, 1], got {getattr(cfg, key)}")
    cfg.ops = [cfg.ops] if isinstance(cfg.ops, str) else list(cfg.ops)
    if not cfg.ops:
        raise ConfigError("augment.ops must name at least one op (rotate, flip, translate)")
    for op in cfg.ops:
        try:
            AUGMENTATIONS.get(op)
        except KeyError as e:
            raise ConfigError(f"augment.ops: {e.args[0]}") from None
        if op.lower() == "combine":
            raise ConfigError("augment.ops cannot contain 'combine' itself")
    return cfg


# --------------------------------------------------------------------------- ops

def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=g.device)


def _eye(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.eye(3, device=g.device).repeat(n, 1, 1)


@AUGMENTATIONS.register("none")
def _none(n: int, height: int, width: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Identity (draws nothing)."""
    return _eye(n, g)


@AUGMENTATIONS.register("rotate")
def _rotate(n: int, height: int, width: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Rotation about the image centre by U(-max_rotation, max_rotation) degrees."""
    angle = _uniform(n, -cfg.max_rotation, cfg.max_rotation, g)
    center = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=g.device).repeat(n, 1)
    m = _eye(n, g)
    m[:, :2] = get_rotation_matrix2d(center, angle, torch.ones(n, 2, device=g.device))
    return m


@AUGMENTATIONS.register("flip")
def _flip(n: int, height: int, width: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Horizontal flip with ``hflip_prob`` and, independently, vertical flip with ``vflip_prob``."""
    h = torch.rand(n, generator=g, device=g.device) < cfg.hflip_prob
    v = torch.rand(n, generator=g, device=g.device) < cfg.vflip_prob
    m = _eye(n, g)
    m[:, 0, 0] = torch.where(h, -1.0, 1.0)
    m[:, 0, 2] = torch.where(h, float(width - 1), 0.0)
    m[:, 1, 1] = torch.where(v, -1.0, 1.0)
    m[:, 1, 2] = torch.where(v, float(height - 1), 0.0)
    return m


@AUGMENTATIONS.register("translate")
def _translate(n: int, height: int, width: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Shift by U(-max_translate, max_translate) × width (x) and × height (y) pixels."""
    t = cfg.max_translate
    m = _eye(n, g)
    m[:, 0, 2] = _uniform(n, -t, t, g) * width
    m[:, 1, 2] = _uniform(n, -t, t, g) * height
    return m


def _draw_combine(n: int, height: int, width: int, g: torch.Generator,
                  cfg: AugmentConfig) -> tuple[torch.Tensor, list[tuple[str, ...]]]:
    """Every op of ``cfg.ops`` per sample, composed in a random (or the listed) order.

    All ops' parameters are drawn first, in ``cfg.ops`` order, then the order: the generator
    consumption does not depend on the drawn values (joint and mask-only calls stay in step).
    """
    ops = [op.lower() for op in cfg.ops]
    mats = torch.stack([AUGMENTATIONS.get(op)(n, height, width, g, cfg) for op in ops], dim=1)  # N×k×3×3
    if cfg.random_order and len(ops) > 1:
        perm = torch.rand(n, len(ops), generator=g, device=g.device).argsort(dim=1)
    else:
        perm = torch.arange(len(ops), device=g.device).repeat(n, 1)
    rows = torch.arange(n, device=g.device)
    total = _eye(n, g)
    for j in range(len(ops)):
        total = mats[rows, perm[:, j]] @ total  # later ops act on the result of earlier ones
    orders = [tuple(ops[i] for i in p) for p in perm.tolist()]
    return total, orders


@AUGMENTATIONS.register("combine")
def _combine(n: int, height: int, width: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """All ops of ``cfg.ops`` (default rotate, flip, translate) in random order per sample."""
    return _draw_combine(n, height, width, g, cfg)[0]


# --------------------------------------------------------------------------- public API

def sample_augment(name: str, n: int, height: int, width: int, generator: torch.Generator,
                   config: AugmentConfig | None = None, **params: Any) -> AugmentDraw:
    """Draw one transform per sample for an N-sample batch of H×W images (no pixels touched)."""
    fn = AUGMENTATIONS.get(name)
    cfg = resolve_config(config, **params)
    key = name.lower()
    if key == "none":
        return AugmentDraw(_none(n, height, width, generator, cfg), [()] * n, identity=True)
    if key == "combine":
        mats, orders = _draw_combine(n, height, width, generator, cfg)
        return AugmentDraw(mats, orders)
    return AugmentDraw(fn(n, height, width, generator, cfg), [(key,)] * n)


def warp(draw: AugmentDraw, images: torch.Tensor | None = None,
         masks: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Apply ``draw`` to images (N×C×H×W float, bilinear) and/or masks (N×H×W int, nearest).

    Outside the source both are filled with 0 (black image, background label). Works on the
    tensors' device; masks keep their dtype and exact label ids.
    """
    if draw.identity:
        return images, masks
    out_img = out_mask = None
    if images is not None:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"images must be a float N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
        m = draw.matrices.to(images.device, images.dtype)[:, :2]
        out_img = warp_affine(images, m, tuple(images.shape[-2:]), mode="bilinear",
                              padding_mode="zeros", align_corners=True)
    if masks is not None:
        if masks.ndim != 3:
            raise ValueError(f"masks must be an N×H×W label tensor, got shape {tuple(masks.shape)}")
        m = draw.matrices.to(masks.device, torch.float32)[:, :2]
        warped = warp_affine(masks.unsqueeze(1).to(torch.float32), m, tuple(masks.shape[-2:]), mode="nearest",
                             padding_mode="zeros", align_corners=True)
        out_mask = warped[:, 0].round().to(masks.dtype)
    return out_img, out_mask


def apply_augment(name: str, images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator,
                  config: AugmentConfig | None = None,
                  **params: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment images (N×C×H×W float) and masks (N×H×W int64, or None) with one draw per sample.

    The same draw moves an image and its mask; parameters come from ``generator`` only, so the
    same generator state gives identical output. ``params`` override ``config`` fields
    (e.g. ``max_rotation=15``, ``ops=["rotate"]``). ``none`` returns the inputs unchanged.
    """
    if masks is not None and (masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]):
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not match")
    n, _, h, w = images.shape
    draw = sample_augment(name, n, h, w, generator, config, **params)
    out_img, out_mask = warp(draw, images, masks)
    assert out_img is not None
    return out_img, out_mask


apply = apply_augment
"""Alias used in docs/DESIGN.md (``augment.apply(name, images, masks, generator)``)."""


def augment_masks(name: str, masks: torch.Tensor, generator: torch.Generator,
                  config: AugmentConfig | None = None, **params: Any) -> torch.Tensor:
    """Mask-only augmentation (E2EAug): N×H×W labels → N×H×W labels, nearest resampling.

    Consumes the generator exactly as :func:`apply_augment` does, so for the same generator
    state the masks equal those :func:`apply_augment` would return.
    """
    n, h, w = masks.shape
    draw = sample_augment(name, n, h, w, generator, config, **params)
    out = warp(draw, None, masks)[1]
    assert out is not None
    return out


def op_names() -> list[str]:
    """Names usable in ``AugmentConfig.ops`` (every registered op except ``none``/``combine``)."""
    return [n for n in AUGMENTATIONS.names() if n not in ("none", "combine")]

