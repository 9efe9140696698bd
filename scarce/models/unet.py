"""Classic U-Net (Ronneberger et al., 2015), with BatchNorm, width and depth configurable.

Why configurable: the paper-size net (width 64, depth 4, ~31M parameters) is meant for a GPU;
the CPU preset uses width 8 (~0.49M parameters), which trains in minutes on 2 cores at 128 px.
Padding keeps sizes ("same" convs) so logits have the input's H×W; the input side must be a
multiple of ``stride = 2**depth``.
"""
from __future__ import annotations

import torch
from torch import nn

from scarce.models.base import SegmentationModel, init_weights


class DoubleConv(nn.Sequential):
    """(3×3 conv → BatchNorm → ReLU) × 2: one U-Net stage. N×cin×H×W → N×cout×H×W."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Up-sample ×2, concatenate the encoder skip, DoubleConv.

    ``bilinear=False`` (Ronneberger's 2×2 up-convolution) halves the channels with a transposed
    conv; ``bilinear=True`` up-samples without parameters and lets the DoubleConv reduce them.
    x: N×cin×h×w, skip: N×cskip×2h×2w → N×cout×2h×2w.
    """

    def __init__(self, cin: int, cskip: int, cout: int, bilinear: bool = False) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            cup = cin
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            cup = cin // 2
        self.conv = DoubleConv(cup + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(SegmentationModel):
    """U-Net: N×in_channels×H×W → N×out_channels×H×W logits (H, W multiples of ``2**depth``).

    Stage ``i`` (0..depth) has ``width * 2**i`` channels; ``depth`` max-pool steps down.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 16,
        depth: int = 4,
        bilinear: bool = False,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"UNet needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.width, self.depth, self.bilinear = int(width), int(depth), bool(bilinear)
        self.stride = 2**self.depth
        chs = [self.width * 2**i for i in range(self.depth + 1)]
        self.inc = DoubleConv(self.in_channels, chs[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(DoubleConv(chs[i], chs[i + 1]) for i in range(self.depth))
        self.up = nn.ModuleList(
            Up(chs[i + 1], chs[i], chs[i], bilinear=self.bilinear) for i in reversed(range(self.depth))
        )
        self.head = nn.Conv2d(chs[0], self.out_channels, kernel_size=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.inc(x)
        skips = [x]
        for stage in self.down:
            x = stage(self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck is not a skip
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)
