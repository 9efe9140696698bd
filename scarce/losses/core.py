"""Segmentation losses as pure functions (the core: registry, convention, supervised losses) (logits, targets → scalar), plus the output-channel
convention shared by models, metrics and methods.

Convention: binary tasks (K = 2) use **one** logit channel with a sigmoid; multi-class tasks use
K channels with a softmax. :func:`class_probs` hides the difference (always N×K×H×W).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from scarce.data.types import out_channels  # noqa: F401  (the convention, re-exported here)
from scarce.registry import Registry

LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("loss")


def class_probs(logits: torch.Tensor) -> torch.Tensor:
    """N×C×H×W logits → N×K×H×W class probabilities (binary: cat(1 − p, p))."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def predict(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """N×C×H×W logits → N×H×W int64 labels (binary: sigmoid > threshold)."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) > threshold).long()
    return logits.argmax(dim=1)


def _one_hot(target: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(torch.float32)


def soft_overlap(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-class soft Dice and soft Jaccard (N×K each), smoothed by ``eps``."""
    dims = (2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (total + eps)
    jacc = (inter + eps) / (total - inter + eps)
    return dice, jacc


def _foreground(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = probs.shape[1]
    onehot = _one_hot(target, k).to(probs.dtype)
    return probs[:, 1:], onehot[:, 1:]


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits (1 channel) or CE (K channels); ``weight`` N×H×W per-pixel weights (optional)."""
    if logits.shape[1] == 1:
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    else:
        loss = F.cross_entropy(logits, target.long(), reduction="none")
    if weight is not None:
        return (loss * weight).sum() / weight.sum().clamp_min(1e-8)
    return loss.mean()


@LOSSES.register("bce_dice")
def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B)CE + (1 − soft Dice over foreground classes). Paper's loss for non-skin tasks."""
    probs, onehot = _foreground(class_probs(logits), target)
    dice, _ = soft_overlap(probs, onehot)
    return cross_entropy(logits, target) + (1 - dice.mean())


@LOSSES.register("bce_jaccard")
def bce_jaccard(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B)CE + (1 − soft Jaccard over foreground classes). Paper's loss for skin lesions."""
    probs, onehot = _foreground(class_probs(logits), target)
    _, jacc = soft_overlap(probs, onehot)
    return cross_entropy(logits, target) + (1 - jacc.mean())


@LOSSES.register("ce_dice")
def ce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Alias of bce_dice for multi-class tasks (CE + soft Dice over foreground classes)."""
    return bce_dice(logits, target)


@LOSSES.register("ce")
def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, target)


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return LOSSES.get(name)

