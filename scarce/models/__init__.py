"""Segmentation networks, created by name: ``create_model("unet", in_channels, num_classes)``.

Contract (docs/DESIGN.md): a model maps N×C×H×W float images to N×out_channels(K)×H×W logits
(binary tasks → 1 channel), and has ``stride``: H and W must be multiples of it (a clear
ValueError otherwise). Model init uses the global torch RNG; the caller seeds it
(``torch.manual_seed(train.seed)``) before building.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from scarce.losses import out_channels
from scarce.models.base import SegmentationModel, count_parameters
from scarce.models.deeplab import DeepLabV3
from scarce.models.unet import UNet
from scarce.registry import Registry

MODELS: Registry[Callable[..., SegmentationModel]] = Registry("model")

__all__ = ["MODELS", "create_model", "model_from_config", "count_parameters", "SegmentationModel",
           "UNet", "DeepLabV3"]


@MODELS.register("unet")
def _unet(in_channels: int, out_channels: int, width: int = 16, depth: int = 4,
          backbone: str = "resnet18", output_stride: int = 8, bilinear: bool = False) -> UNet:
    """U-Net; ``backbone``/``output_stride`` do not apply and are ignored."""
    return UNet(in_channels, out_channels, width=width, depth=depth, bilinear=bilinear)


@MODELS.register("deeplabv3")
def _deeplabv3(in_channels: int, out_channels: int, width: int = 16, depth: int = 4,
               backbone: str = "resnet18", output_stride: int = 8) -> DeepLabV3:
    """DeepLabV3 on a ResNet; ``depth`` does not apply and is ignored."""
    return DeepLabV3(in_channels, out_channels, backbone=backbone, width=width, output_stride=output_stride)


def create_model(
    name: str,
    in_channels: int,
    num_classes: int,
    width: int = 16,
    depth: int = 4,
    backbone: str = "resnet18",
    output_stride: int = 8,
    **extra: Any,
) -> nn.Module:
    """Build a registered model with ``out_channels(num_classes)`` logit channels.

    ``num_classes`` counts background (binary = 2 → 1 sigmoid channel). ``extra`` holds
    model-specific options (e.g. ``bilinear=True`` for the U-Net). Unknown names raise a
    KeyError with did-you-mean.
    """
    factory = MODELS.get(name)
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, {num_classes}")
    return factory(in_channels=in_channels, out_channels=out_channels(num_classes), width=width,
                   depth=depth, backbone=backbone, output_stride=output_stride, **extra)


def model_from_config(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    """Build from a :class:`scarce.config.ModelConfig` (name, width, depth, backbone, output_stride)."""
    return create_model(cfg.name, in_channels, num_classes, width=cfg.width, depth=cfg.depth,
                        backbone=cfg.backbone, output_stride=cfg.output_stride)
