"""Segmentation networks, created by name: ``create_model("unet", in_channels, num_classes)``.

Contract (docs/DESIGN.md): a model maps N×C×H×W float images to N×out_channels(K)×H×W logits
(binary tasks → 1 channel), and has ``stride``: H and W must be multiples of it (a clear
ValueError otherwise). Model init uses the global torch RNG; the caller seeds it
(``torch.manual_seed(train.seed)``) before building.

``encoder=<name>`` (``scarce.models.encoders.ENCODERS``, e.g. ``efficientnet_lite0``) turns
``unet``/``deeplabv3`` into their smp-style versions on an ImageNet-pretrained encoder
(:mod:`scarce.models.encoder_models`); ``encoder=None``/``"none"`` keeps the from-scratch
networks exactly as before. ``input_norm`` wraps any model in :class:`Normalized`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from torch import nn

from scarce.data.types import out_channels
from scarce.models.base import SegmentationModel, count_parameters
from scarce.models.deeplab import DeepLabV3
from scarce.models.encoder_models import EncoderDeepLabV3, EncoderUNet
from scarce.models.encoders import ENCODERS, create_encoder
from scarce.models.input_norm import INPUT_NORMS, InputNorm, Normalized, resolve_input_norm
from scarce.models.unet import UNet
from scarce.registry import Registry

MODELS: Registry[Callable[..., SegmentationModel]] = Registry("model")

__all__ = ["MODELS", "ENCODERS", "INPUT_NORMS", "create_model", "create_encoder", "model_from_config",
           "count_parameters", "encoder_parameters", "SegmentationModel", "UNet", "DeepLabV3", "EncoderUNet",
           "EncoderDeepLabV3", "InputNorm", "Normalized"]


def _encoder_name(encoder: str | None) -> str | None:
    """``None``, ``""`` and ``"none"`` mean: no pretrained encoder (the from-scratch network)."""
    if encoder is None or str(encoder).strip().lower() in ("", "none", "null"):
        return None
    return str(encoder)


@MODELS.register("unet")
def _unet(in_channels: int, out_channels: int, width: int = 16, depth: int = 4,
          backbone: str = "resnet18", output_stride: int = 8, bilinear: bool = False,
          encoder: str | None = None, encoder_weights: str = "imagenet",
          decoder_channels: Sequence[int] = (128, 64, 32, 16)) -> SegmentationModel:
    """U-Net. Without ``encoder``: the from-scratch U-Net (``width``/``depth``/``bilinear``;
    the encoder options are ignored). With ``encoder``: :class:`EncoderUNet` (``width``,
    ``depth``, ``bilinear`` ignored). ``backbone``/``output_stride`` never apply."""
    if _encoder_name(encoder) is None:
        return UNet(in_channels, out_channels, width=width, depth=depth, bilinear=bilinear)
    return EncoderUNet(in_channels, out_channels, encoder=str(encoder), encoder_weights=encoder_weights,
                       decoder_channels=decoder_channels)


@MODELS.register("deeplabv3")
def _deeplabv3(in_channels: int, out_channels: int, width: int = 16, depth: int = 4,
               backbone: str = "resnet18", output_stride: int = 8, encoder: str | None = None,
               encoder_weights: str = "imagenet", decoder_channels: Sequence[int] = (128, 64, 32, 16),
               ) -> SegmentationModel:
    """DeepLabV3 on a from-scratch ResNet (``backbone``, ``width``), or with ``encoder`` on that
    encoder (:class:`EncoderDeepLabV3`, ``backbone``/``width`` ignored). ``depth`` and
    ``decoder_channels`` do not apply and are ignored."""
    if _encoder_name(encoder) is None:
        return DeepLabV3(in_channels, out_channels, backbone=backbone, width=width, output_stride=output_stride)
    return EncoderDeepLabV3(in_channels, out_channels, encoder=str(encoder), encoder_weights=encoder_weights,
                            output_stride=output_stride)


def create_model(
    name: str,
    in_channels: int,
    num_classes: int,
    width: int = 16,
    depth: int = 4,
    backbone: str = "resnet18",
    output_stride: int = 8,
    input_norm: str = "auto",
    **extra: Any,
) -> nn.Module:
    """Build a registered model with ``out_channels(num_classes)`` logit channels.

    ``num_classes`` counts background (binary = 2 → 1 sigmoid channel). ``extra`` holds
    model-specific options (e.g. ``bilinear=True`` for the U-Net; ``encoder``,
    ``encoder_weights``, ``decoder_channels`` for the pretrained-encoder versions). Unknown
    names raise a KeyError with did-you-mean. ``input_norm`` (auto | none | imagenet | zscore)
    wraps the model in :class:`Normalized` unless it resolves to ``none`` (``auto``: ImageNet
    mean/std for an encoder with ImageNet weights, else none).
    """
    factory = MODELS.get(name)
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, {num_classes}")
    if "encoder" in extra:
        extra["encoder"] = _encoder_name(extra["encoder"])
    norm = resolve_input_norm(input_norm, extra.get("encoder"), extra.get("encoder_weights", "imagenet"))
    model = factory(in_channels=in_channels, out_channels=out_channels(num_classes), width=width,
                    depth=depth, backbone=backbone, output_stride=output_stride, **extra)
    return model if norm == "none" else Normalized(model, norm)


def model_from_config(cfg: Any, in_channels: int, num_classes: int, pretrained: bool = True) -> nn.Module:
    """Build from a :class:`scarce.config.ModelConfig`.

    ``pretrained=False`` skips loading the encoder's ImageNet weights (the network, its stem and
    the ``auto`` input normalisation stay those of ``encoder_weights``): for rebuilding a trained
    model whose checkpoint holds every weight, so that needs no weights package.
    """
    encoder = _encoder_name(getattr(cfg, "encoder", None))
    weights = str(getattr(cfg, "encoder_weights", "imagenet"))
    norm = resolve_input_norm(getattr(cfg, "input_norm", "auto"), encoder, weights)
    kw: dict[str, Any] = {}
    if encoder is not None:
        kw = {"encoder": encoder, "encoder_weights": weights if pretrained else "none",
              "decoder_channels": tuple(getattr(cfg, "decoder_channels", (128, 64, 32, 16)))}
    return create_model(cfg.name, in_channels, num_classes, width=cfg.width, depth=cfg.depth,
                        backbone=cfg.backbone, output_stride=cfg.output_stride, input_norm=norm, **kw)


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The pretrained encoder's parameters of ``model`` (empty for models without one)."""
    fn = getattr(model, "encoder_parameters", None)
    return list(fn()) if fn is not None else []


def segmenter_param_groups(model: nn.Module, lr: float, encoder_lr_mult: float = 1.0
                           ) -> Iterable[nn.Parameter] | list[dict[str, Any]]:
    """Optimizer parameters of a segmenter: all parameters (one group) when ``encoder_lr_mult``
    is 1 or the model has no encoder; else ``[{rest}, {encoder, lr: lr * mult}]`` — the
    decoder group first, so ``param_groups[0]["lr"]`` stays the base learning rate."""
    enc = encoder_parameters(model)
    if encoder_lr_mult == 1.0 or not enc:
        return model.parameters()
    ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": enc, "lr": lr * float(encoder_lr_mult)}]
