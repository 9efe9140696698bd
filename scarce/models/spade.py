"""SPADE mask→image generator (Park et al. 2019, "GauGAN"), made searchable for E2EAug.

Why this shape: the paper's Figure 7 compares Pix2Pix with SPADE and ASAPNet "where we made
their generators' architectures searchable as described in Section 3.2" (resolution-changing
convolutions become cells over Conv/UpConv-421/622/823). SPADE starts from the mask
down-sampled to a low resolution and grows the image through SPADE residual blocks; the
original up-samples with nearest-neighbour interpolation between blocks. Here each of those
``depth`` up-sampling steps is an **UpConv cell** (:class:`~scarce.models.search.MixedConv`,
transposed, K = 3 candidates) — the only resolution-changing operations of the network — so the
same α machinery (Searchable mixin, e2eaug's 3-level optimisation) applies unchanged.
``searchable=False`` gives the vanilla network with the single 4-2-1 up-convolution.

Simplifications vs. the original (CPU-sized, functional-call friendly): no spectral norm (its
power-iteration buffers would be updated by the unrolled virtual passes), no VAE encoder / noise
input (the mask is the only input, as with Pix2Pix), instance norm (no running buffers) as the
parameter-free normalisation by default, and the SPADE hidden width equals the block width.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.search import DEFAULT_CANDIDATES, VANILLA, ConvSpec, MixedConv, Searchable, parse_candidates

__all__ = ["SPADE", "SPADEResBlock", "SPADEGenerator", "default_spade_depth"]


def default_spade_depth(size: int, start: int = 8) -> int:
    """Up-sampling steps so that the generator starts at ≈ ``start`` px (SPADE-256 starts at 8 px);
    at least 1, and only exact halvings of ``size``."""
    d = 0
    while size % (2 ** (d + 1)) == 0 and size // (2 ** (d + 1)) >= start:
        d += 1
    return max(1, d)


def _param_free_norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(ch, affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose instance | batch | none")


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``norm(x) · (1 + γ(M)) + β(M)``.

    x: N×ch×h×w features; seg: N×K×S×S one-hot mask, resized (nearest) to h×w; γ, β come from a
    shared 3×3 conv + ReLU followed by one 3×3 conv each (Park et al., Fig. 2).
    """

    def __init__(self, ch: int, label_nc: int, hidden: int, norm: str = "instance") -> None:
        super().__init__()
        self.norm = _param_free_norm(norm, ch)
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, 1, 1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, ch, 3, 1, 1)
        self.beta = nn.Conv2d(hidden, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if seg.shape[-2:] != x.shape[-2:]:
            seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        a = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEResBlock(nn.Module):
    """SPADE ResBlk: ``shortcut(x) + conv(act(SPADE(conv(act(SPADE(x, M))), M)))``; the shortcut
    is SPADE + 1×1 conv when ``fin != fout``. N×fin×h×w → N×fout×h×w (resolution kept)."""

    def __init__(self, fin: int, fout: int, label_nc: int, norm: str = "instance") -> None:
        super().__init__()
        mid = min(fin, fout)
        self.norm_0 = SPADE(fin, label_nc, max(fin, 8), norm)
        self.conv_0 = nn.Conv2d(fin, mid, 3, 1, 1)
        self.norm_1 = SPADE(mid, label_nc, max(mid, 8), norm)
        self.conv_1 = nn.Conv2d(mid, fout, 3, 1, 1)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, max(fin, 8), norm)
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        xs = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return xs + dx


class SPADEGenerator(Searchable):
    """Searchable SPADE generator: one-hot mask N×K×S×S → image N×C×S×S in [0, 1].

    The mask is resized (nearest) to S/2^depth and mapped by a 3×3 conv to ``ch[0]`` channels;
    then per level i: SPADE ResBlk (ch[i]) → **UpConv cell** ``levels.i.cell`` (ch[i] → ch[i+1],
    ×2); then a full-resolution SPADE ResBlk, LeakyReLU, 3×3 conv to C, ``(tanh + 1) / 2``.
    ``ch[i] = ngf·min(2^(depth−i), max_mult)`` (widest at the lowest resolution, as SPADE).
    ``depth`` cells in total; S must be a multiple of ``2**depth``.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 4, ngf: int = 8, max_mult: int = 8,
                 norm: str = "instance", searchable: bool = True,
                 candidates: Sequence[ConvSpec | str] = DEFAULT_CANDIDATES, fuse: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"SPADE generator depth must be >= 1, got {depth}")
        self.in_channels, self.out_channels, self.depth = int(in_channels), int(out_channels), int(depth)
        self.stride = 2 ** self.depth
        cands = parse_candidates(candidates) if searchable else VANILLA
        ch = [ngf * min(2 ** (depth - i), max_mult) for i in range(depth + 1)]
        self.fc = nn.Conv2d(in_channels, ch[0], 3, 1, 1)
        self.levels = nn.ModuleList(
            nn.ModuleDict({"res": SPADEResBlock(ch[i], ch[i], in_channels, norm),
                           "cell": MixedConv(ch[i], ch[i + 1], cands, transposed=True, bias=True, fuse=fuse)})
            for i in range(depth))
        self.out_block = SPADEResBlock(ch[depth], ch[depth], in_channels, norm)
        self.conv_img = nn.Conv2d(ch[depth], out_channels, 3, 1, 1)
        for m in self.modules():  # Pix2Pix/SPADE-style N(0, 0.02) init
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        h, w = onehot.shape[-2:]
        if onehot.ndim != 4 or onehot.shape[1] != self.in_channels or h % self.stride or w % self.stride:
            raise ValueError(f"SPADEGenerator expects N×{self.in_channels}×S×S one-hot masks with S a multiple "
                             f"of {self.stride}, got {tuple(onehot.shape)}")
        x = F.interpolate(onehot, size=(h // self.stride, w // self.stride), mode="nearest")
        x = self.fc(x)
        for level in self.levels:
            x = level["res"](x, onehot)
            x = level["cell"](x)
        x = self.out_block(x, onehot)
        x = self.conv_img(F.leaky_relu(x, 0.2))
        return (torch.tanh(x) + 1) / 2
