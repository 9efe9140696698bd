"""Mask→image conditional GANs for learned augmentation (E2EAug, Separate).

``GENERATORS`` maps names to factories ``f(num_classes, out_channels, image_size, searchable,
**kwargs) -> Searchable generator``; a generator maps a one-hot mask N×K×S×S to an image
N×C×S×S in [0, 1]. ``pix2pix`` is the paper's generator (Isola et al. 2017): a U-Net whose
down-sampling convs and up-sampling transposed convs are searchable cells (paper Sec. 3.2,
Sec. 4.1: candidates Conv/UpConv-421, -622, -823, see :mod:`scarce.models.search`).
``spade`` (:mod:`scarce.models.spade`: its up-sampling steps are UpConv cells) and ``asapnet``
(:mod:`scarce.models.asapnet`: its low-res trunk's down-sampling convs are Conv cells) are the
paper's Figure 7 alternatives, searchable over the same candidates; every factory takes the same
keywords (``depth, ngf, max_mult, norm, dropout, candidates, fuse``) so configs switch freely.
The discriminator is Pix2Pix's conditional PatchGAN (sees mask and image).

Why instance norm by default: it has no running buffers, so the functional (unrolled)
forward passes of the bilevel optimisation have no side effects and a sample's output does not
depend on its batch-mates; ``norm="batch"`` gives the original Pix2Pix behaviour.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.asapnet import ASAPNetGenerator
from scarce.models.search import DEFAULT_CANDIDATES, VANILLA, ConvSpec, MixedConv, Searchable, init_gan_weights, norm_layer, parse_candidates
from scarce.models.spade import SPADEGenerator, default_spade_depth
from scarce.registry import Registry

GENERATORS: Registry[Callable[..., Searchable]] = Registry("generator")

__all__ = ["GENERATORS", "Pix2PixGenerator", "SPADEGenerator", "ASAPNetGenerator", "PatchDiscriminator", "create_generator",
           "create_discriminator", "one_hot_masks", "default_depth", "default_disc_layers"]


def one_hot_masks(masks: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N×S×S int64 label ids → N×K×S×S one-hot (the generator's conditioning input)."""
    return F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).to(dtype)


def default_depth(size: int, max_depth: int = 8) -> int:
    """Number of ×2 down-samplings that takes ``size`` down to 1 px (Pix2Pix: 256 px → 8),
    limited to ``max_depth`` and to exact halvings."""
    d = 0
    while d < max_depth and size % (2 ** (d + 1)) == 0:
        d += 1
    return max(1, d)


def default_disc_layers(size: int, n_layers: int = 3) -> int:
    """PatchGAN strided layers that still leave ≥ 2×2 patches (instance norm needs > 1 px)."""
    return max(1, min(n_layers, int(math.floor(math.log2(max(size, 8) / 4)))))


class Pix2PixGenerator(Searchable):
    """Pix2Pix U-Net generator with searchable down/up-sampling cells.

    one-hot mask N×K×S×S → image N×C×S×S in [0, 1] (``(tanh + 1) / 2``); S must be a multiple
    of ``2**depth``. Level ``i`` has ``ngf·min(2^i, max_mult)`` channels; skip connections
    concatenate the encoder feature of the same level (Pix2Pix's ``UnetSkipConnectionBlock``).
    Cells: ``down.i.cell`` (conv) and ``up.j.cell`` (transposed conv), ``2·depth`` in total.
    ``searchable=False`` builds the vanilla 4-2-1 network (no α).
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 7, ngf: int = 16,
                 max_mult: int = 8, norm: str = "instance", dropout: float = 0.0, searchable: bool = True,
                 candidates: Sequence[ConvSpec | str] = DEFAULT_CANDIDATES, fuse: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"generator depth must be >= 1, got {depth}")
        self.in_channels, self.out_channels, self.depth = int(in_channels), int(out_channels), int(depth)
        self.stride = 2 ** self.depth
        cands = parse_candidates(candidates) if searchable else VANILLA
        ch = [ngf * min(2 ** i, max_mult) for i in range(depth)]
        self.down = nn.ModuleList()
        for i in range(depth):
            cin = in_channels if i == 0 else ch[i - 1]
            layers: dict[str, nn.Module] = {}
            if i > 0:
                layers["act"] = nn.LeakyReLU(0.2)
            layers["cell"] = MixedConv(cin, ch[i], cands, transposed=False, bias=True, fuse=fuse)
            if 0 < i < depth - 1:
                layers["norm"] = norm_layer(norm, ch[i])
            self.down.append(nn.ModuleDict(layers))
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            cin = ch[i] if i == depth - 1 else 2 * ch[i]
            cout = ch[i - 1] if i > 0 else out_channels
            layers = {"act": nn.ReLU(), "cell": MixedConv(cin, cout, cands, transposed=True, bias=True, fuse=fuse)}
            if i > 0:
                layers["norm"] = norm_layer(norm, cout)
                if dropout > 0 and i >= depth - 3 and i < depth - 1:
                    layers["drop"] = nn.Dropout(dropout)
            self.up.append(nn.ModuleDict(layers))
        init_gan_weights(self)

    @staticmethod
    def _run(block: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        for layer in block.values():
            x = layer(x)
        return x

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        s = onehot.shape[-1]
        if onehot.ndim != 4 or onehot.shape[1] != self.in_channels or s % self.stride or onehot.shape[-2] % self.stride:
            raise ValueError(f"Pix2PixGenerator expects N×{self.in_channels}×S×S one-hot masks with S a multiple "
                             f"of {self.stride}, got {tuple(onehot.shape)}")
        feats = []
        h = onehot
        for block in self.down:
            h = self._run(block, h)
            feats.append(h)
        for j, block in enumerate(self.up):
            i = self.depth - 1 - j
            h = self._run(block, h if i == self.depth - 1 else torch.cat([feats[i], h], dim=1))
        return (torch.tanh(h) + 1) / 2


class PatchDiscriminator(nn.Module):
    """Pix2Pix conditional PatchGAN ("70×70" for ``n_layers=3``): cat(one-hot mask, image)
    N×(K+C)×S×S → patch logits N×1×h×w (real/fake per overlapping patch)."""

    def __init__(self, in_channels: int, ndf: int = 16, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=norm == "none"), norm_layer(norm, ndf * mult),
                       nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=norm == "none"), norm_layer(norm, ndf * mult),
                   nn.LeakyReLU(0.2), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, onehot: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([onehot, image], dim=1))


@GENERATORS.register("pix2pix")
def _pix2pix(num_classes: int, out_channels: int, image_size: int, searchable: bool = True,
             depth: int | None = None, ngf: int = 16, max_mult: int = 8, norm: str = "instance",
             dropout: float = 0.0, candidates: Sequence[str] | None = None, fuse: bool = True) -> Pix2PixGenerator:
    """Pix2Pix U-Net generator; ``depth=None`` = down to 1 px (at most 8 levels)."""
    return Pix2PixGenerator(num_classes, out_channels, depth=depth or default_depth(image_size), ngf=ngf,
                            max_mult=max_mult, norm=norm, dropout=dropout, searchable=searchable,
                            candidates=candidates or DEFAULT_CANDIDATES, fuse=fuse)


@GENERATORS.register("spade")
def _spade(num_classes: int, out_channels: int, image_size: int, searchable: bool = True,
           depth: int | None = None, ngf: int = 16, max_mult: int = 8, norm: str = "instance",
           dropout: float = 0.0, candidates: Sequence[str] | None = None, fuse: bool = True) -> SPADEGenerator:
    """SPADE generator; ``depth=None`` = start at ≈ 8 px (SPADE-256's 8×8). ``dropout`` does not
    apply (accepted so that all generators share the config fields)."""
    return SPADEGenerator(num_classes, out_channels, depth=depth or default_spade_depth(image_size), ngf=ngf,
                          max_mult=max_mult, norm=norm, searchable=searchable,
                          candidates=candidates or DEFAULT_CANDIDATES, fuse=fuse)


@GENERATORS.register("asapnet")
def _asapnet(num_classes: int, out_channels: int, image_size: int, searchable: bool = True,
             depth: int | None = None, ngf: int = 16, max_mult: int = 8, norm: str = "instance",
             dropout: float = 0.0, candidates: Sequence[str] | None = None, fuse: bool = True,
             mlp_width: int = 16, mlp_layers: int = 3, n_freq: int = 4, trunk_blocks: int = 1) -> ASAPNetGenerator:
    """ASAPNet generator; ``depth=None`` = low-res trunk at ≈ 8 px (per-pixel MLP blocks of
    S/8 px). ``dropout`` does not apply."""
    return ASAPNetGenerator(num_classes, out_channels, depth=depth or default_spade_depth(image_size), ngf=ngf,
                            max_mult=max_mult, norm=norm, searchable=searchable,
                            candidates=candidates or DEFAULT_CANDIDATES, fuse=fuse, mlp_width=mlp_width,
                            mlp_layers=mlp_layers, n_freq=n_freq, trunk_blocks=trunk_blocks)


def create_generator(name: str, num_classes: int, out_channels: int, image_size: int, searchable: bool = True,
                     **kwargs: Any) -> Searchable:
    """Build a registered mask→image generator (one-hot K channels → C-channel image in [0, 1])."""
    return GENERATORS.get(name)(num_classes=num_classes, out_channels=out_channels, image_size=image_size,
                                searchable=searchable, **kwargs)


def create_discriminator(num_classes: int, image_channels: int, image_size: int, ndf: int = 16,
                         n_layers: int = 3, norm: str = "instance") -> PatchDiscriminator:
    """Conditional PatchGAN; ``n_layers`` is reduced for small images (≥ 2×2 patch map)."""
    return PatchDiscriminator(num_classes + image_channels, ndf=ndf,
                              n_layers=default_disc_layers(image_size, n_layers), norm=norm)
