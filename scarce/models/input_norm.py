"""Input normalisation inside the model (``model.input_norm``): auto | none | imagenet | zscore.

Why inside the model: images are float [0, 1] everywhere in the project (datasets, augmentation,
E2EAug's generated images, evaluation, ``scarce predict``), so normalising in the network's first
step applies the same transform on every path, and a checkpoint cannot be used with the wrong
one. The statistics are non-persistent buffers: they are constants, not learned, and checkpoints
keep the same keys whatever the mode.

- ``imagenet``: (x - mean) / std with ImageNet's RGB statistics (what pretrained encoders expect);
  1-channel images use the mean of the RGB means / stds (0.449 / 0.226), other channel counts
  repeat the RGB values cyclically (as the adapted stem repeats the filters).
- ``zscore``: per-image, per-channel standardisation over H×W (robust to global brightness and
  contrast shifts between hospitals/devices). The std is clamped at 1e-3 (a quarter of one 8-bit
  grey level), so a (near-)constant channel maps to ≈ 0 instead of amplified rounding noise.
- ``none``: identity; ``auto``: ``imagenet`` for an encoder with ImageNet weights, else ``none``
  (so the from-scratch networks and all finished runs stay exactly as they were).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from scarce.models.base import SegmentationModel
from scarce.models.encoders import IMAGENET_MEAN, IMAGENET_STD

INPUT_NORMS = ("auto", "none", "imagenet", "zscore")


def resolve_input_norm(mode: str, encoder: str | None, encoder_weights: str) -> str:
    """``auto`` → ``imagenet`` when an encoder with ImageNet weights is used, else ``none``."""
    from scarce.registry import look_up

    mode = look_up(str(mode).lower(), INPUT_NORMS, "model.input_norm")
    if mode != "auto":
        return mode
    return "imagenet" if encoder and str(encoder_weights).lower() == "imagenet" else "none"


def imagenet_stats(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std for ``channels`` input channels, each shaped 1×C×1×1."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    else:
        idx = torch.arange(channels) % 3
        mean, std = mean[idx], std[idx]
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


class InputNorm(nn.Module):
    """N×C×H×W images in [0, 1] → normalised N×C×H×W (see the module docstring)."""

    def __init__(self, mode: str, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        if mode not in ("none", "imagenet", "zscore"):
            raise ValueError(f"InputNorm mode must be none, imagenet or zscore, got {mode!r}")
        self.mode, self.eps = mode, float(eps)
        mean, std = imagenet_stats(channels)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "imagenet":
            return (x - self.mean) / self.std
        if self.mode == "zscore":
            mu = x.mean(dim=(2, 3), keepdim=True)
            sd = x.std(dim=(2, 3), keepdim=True, unbiased=False)
            return (x - mu) / sd.clamp_min(self.eps)
        return x

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class Normalized(SegmentationModel):
    """``net`` with :class:`InputNorm` in front: N×C×H×W [0, 1] → N×out_channels×H×W logits.

    Keeps the wrapped model's contract (``in_channels``, ``out_channels``, ``stride``) and its
    ``encoder_parameters()`` (for a lower encoder learning rate).
    """

    def __init__(self, net: nn.Module, mode: str) -> None:
        super().__init__()
        self.net = net
        self.in_channels, self.out_channels = int(net.in_channels), int(net.out_channels)
        self.stride = int(net.stride)
        self.norm = InputNorm(mode, self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(self.norm(x))

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        fn: Any = getattr(self.net, "encoder_parameters", None)
        return fn() if fn is not None else iter(())
