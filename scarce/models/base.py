"""Shared base of every segmentation network: the ``stride`` contract and input checks.

Why: encoders down-sample by a fixed factor; an input whose side is not a multiple of it would
either crash deep inside a ``torch.cat`` (U-Net skips) or silently shift the logits by a pixel.
Checking once at the entry gives one clear message that says which sizes work.
"""
from __future__ import annotations

import torch
from torch import nn


class SegmentationModel(nn.Module):
    """Base class: N×in_channels×H×W images → N×out_channels×H×W logits.

    Subclasses set ``in_channels``, ``out_channels`` and ``stride`` (H and W must be divisible
    by it) and call :meth:`check_input` at the start of ``forward``.
    """

    in_channels: int
    out_channels: int
    stride: int

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the fix when ``x`` (N×C×H×W) does not fit this model."""
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects a 4-D N×C×H×W image batch, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_channels}-channel images but got "
                f"{x.shape[1]} channels (shape {tuple(x.shape)}); build it with in_channels={x.shape[1]}"
            )
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = self.stride
        if h % s or w % s:
            ok = [m * s for m in range(max(1, h // s), max(1, h // s) + 2)]
            raise ValueError(
                f"{type(self).__name__}: input size {h}×{w} is not divisible by the model stride {s}; "
                f"resize to a multiple of {s} (e.g. {ok[0]} or {ok[1]})"
            )


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, unit/zero BatchNorm — as torchvision's ResNet and common U-Nets."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
