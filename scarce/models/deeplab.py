"""DeepLabV3 (Chen et al., 2017) on a plain-torch ResNet, no pretrained weights.

Why written here instead of torchvision: torchvision is not usable in this environment and
nothing may download weights. The structure follows torchvision's ``deeplabv3_resnet*``:
ResNet with dilation replacing stride in the last stage(s) (output stride 8 or 16), ASPP
(1×1 + three 3×3 atrous convs + image pooling), a 3×3 head, a 1×1 classifier and bilinear
up-sampling of the logits to the input size.

Widths scale with ``width / 64``: width 64 gives the standard ResNet (64-128-256-512 planes,
ASPP 256 channels); the CPU default width 16 gives a quarter of every width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.base import SegmentationModel, init_weights
from scarce.registry import look_up

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}
BACKBONES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
             "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3×3 convs + identity (or 1×1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50 block: 1×1 reduce → 3×3 (strided/dilated) → 1×1 expand ×4, + shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet feature extractor (no pooling/fc). N×C×H×W → N×out_channels×H/os×W/os.

    ``output_stride`` 8 dilates layer3 (×2) and layer4 (×4); 16 dilates layer4 (×2); 32 is the
    plain ResNet. The first block of a dilated layer keeps the previous dilation (torchvision).
    """

    def __init__(self, in_channels: int, backbone: str = "resnet18", width: int = 64,
                 output_stride: int = 8) -> None:
        super().__init__()
        look_up(backbone, tuple(BACKBONES), "DeepLabV3 backbone")
        kind, blocks = BACKBONES[backbone]
        block = BasicBlock if kind == "basic" else Bottleneck
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        dilate = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}[output_stride]
        self.inplanes, self.dilation = width, 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        planes = [width, 2 * width, 4 * width, 8 * width]
        self.layer1 = self._make_layer(block, planes[0], blocks[0])
        self.layer2 = self._make_layer(block, planes[1], blocks[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, planes[2], blocks[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, planes[3], blocks[3], 2, dilate[2])
        self.out_channels = planes[3] * block.expansion

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, self.dilation) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: N×cin×h×w → N×cout×h×w.

    Branches: 1×1 conv, three 3×3 atrous convs, global image pooling; concatenated, projected
    by 1×1 conv, dropout 0.5 (as torchvision). The pooling branch has no BatchNorm (a 1×1 map
    normalised over a batch of one would fail in training; scarce-label runs may use batch 1–2).
    """

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int]) -> None:
        super().__init__()

        def cbr(k: int, d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, padding=0 if k == 1 else d, dilation=d, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.branches = nn.ModuleList([cbr(1, 1)] + [cbr(3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(5 * cout, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3(SegmentationModel):
    """DeepLabV3: N×in_channels×H×W → N×out_channels×H×W logits (H, W multiples of ``stride``).

    ``stride`` equals ``output_stride`` (8 or 16): multiples of it make the feature grid align
    exactly with the input before the bilinear up-sampling.
    """

    def __init__(self, in_channels: int, out_channels: int, backbone: str = "resnet18",
                 width: int = 16, output_stride: int = 8) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"DeepLabV3 needs width >= 1, got {width}")
        if output_stride not in ASPP_RATES:
            raise ValueError(f"DeepLabV3 output_stride must be 8 or 16, got {output_stride}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.backbone_name, self.width, self.output_stride = backbone, int(width), int(output_stride)
        self.stride = self.output_stride
        self.backbone = ResNet(self.in_channels, backbone, self.width, self.output_stride)
        aspp_ch = 4 * self.width  # 256 at width 64
        self.aspp = ASPP(self.backbone.out_channels, aspp_ch, ASPP_RATES[self.output_stride])
        self.head = nn.Sequential(
            nn.Conv2d(aspp_ch, aspp_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_ch),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(aspp_ch, self.out_channels, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        size = x.shape[-2:]
        y = self.classifier(self.head(self.aspp(self.backbone(x))))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
