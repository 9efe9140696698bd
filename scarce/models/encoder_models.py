"""U-Net and DeepLabV3 on a registered (ImageNet-pretrained) encoder, smp-style.

Selected with ``model.encoder=<name>`` (``scarce.models.encoders.ENCODERS``) on ``model.name``
``unet`` or ``deeplabv3``; with ``model.encoder=none`` those names build the paper's from-scratch
networks, unchanged. Images should reach these models through ``model.input_norm`` (``auto`` =
ImageNet mean/std for ImageNet weights; see :mod:`scarce.models.input_norm`).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.base import SegmentationModel, init_weights
from scarce.models.deeplab import ASPP, ASPP_RATES
from scarce.models.encoders import create_encoder


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """smp U-Net decoder stage: nearest up-sample ×2, concatenate the skip (if any), two
    3×3 conv-BN-ReLU. x: N×cin×h×w, skip: N×cskip×2h×2w → N×cout×2h×2w."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _cbr(cin + cskip, cout)
        self.conv2 = _cbr(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class EncoderUNet(SegmentationModel):
    """U-Net decoder on an encoder's stride-2…32 features: N×C×H×W → N×out_channels×H×W logits.

    Decoder stage i (``decoder_channels[i]`` channels) up-samples ×2 and fuses the encoder
    feature of stride 16, 8, 4, 2 (a 5th stage, if given, reaches full resolution without a
    skip, as smp). With 4 stages (default 128-64-32-16) the 3×3 logit head works at stride 2 and
    the logits are up-sampled bilinearly ×2. H and W must be multiples of 32 (``stride``).
    """

    def __init__(self, in_channels: int, out_channels: int, encoder: str = "efficientnet_lite0",
                 encoder_weights: str = "imagenet", decoder_channels: Sequence[int] = (128, 64, 32, 16)) -> None:
        super().__init__()
        dec = [int(c) for c in decoder_channels]
        if not 1 <= len(dec) <= 5 or min(dec) < 1:
            raise ValueError(f"decoder_channels needs 1 to 5 positive channel counts, got {list(decoder_channels)}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.stride = 32
        self.encoder_name, self.decoder_channels = encoder, tuple(dec)
        self.encoder = create_encoder(encoder, self.in_channels, weights=encoder_weights)
        skips = list(reversed(self.encoder.out_channels[:-1]))  # strides 16, 8, 4, 2
        cin = self.encoder.out_channels[-1]
        self.decoder = nn.ModuleList()
        for i, cout in enumerate(dec):
            self.decoder.append(DecoderBlock(cin, skips[i] if i < len(skips) else 0, cout))
            cin = cout
        self.head = nn.Conv2d(cin, self.out_channels, 3, padding=1)
        self.head_stride = 2 ** (5 - len(dec))
        init_weights(self.decoder)
        init_weights(self.head)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        feats = self.encoder(x)
        y = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        y = self.head(y)
        if self.head_stride > 1:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y


class EncoderDeepLabV3(SegmentationModel):
    """DeepLabV3 on an encoder: the last stage(s) dilated to ``output_stride`` (8 or 16), ASPP,
    3×3 conv-BN-ReLU, 1×1 classifier, bilinear up-sampling. N×C×H×W → N×out_channels×H×W;
    H and W multiples of 32 (the stem and early stages still down-sample by 2 each)."""

    def __init__(self, in_channels: int, out_channels: int, encoder: str = "efficientnet_lite0",
                 encoder_weights: str = "imagenet", output_stride: int = 16, aspp_channels: int = 128) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ValueError(f"DeepLabV3 output_stride must be 8 or 16, got {output_stride}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.stride = 32
        self.output_stride = int(output_stride)
        self.encoder = create_encoder(encoder, self.in_channels, weights=encoder_weights,
                                      output_stride=self.output_stride)
        self.aspp = ASPP(self.encoder.out_channels[-1], aspp_channels, ASPP_RATES[self.output_stride])
        self.head = _cbr(aspp_channels, aspp_channels)
        self.classifier = nn.Conv2d(aspp_channels, self.out_channels, 1)
        init_weights(self.aspp)
        init_weights(self.head)
        init_weights(self.classifier)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        y = self.classifier(self.head(self.aspp(self.encoder(x)[-1])))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
