"""ASAPNet mask→image generator (Shaham et al. 2021, "Spatially-Adaptive Pixelwise Networks"),
made searchable for E2EAug.

Why this shape: ASAPNet's cost sits in a **low-resolution** convolutional trunk that predicts,
for every low-resolution cell, the parameters of a small per-pixel MLP; the MLP is then applied
independently at every full-resolution pixel of that cell to (mask value, positional encoding).
The trunk's resolution-changing operations are its strided down-sampling convolutions, so, as in
the paper's Figure 7 ("generators' architectures searchable as described in Section 3.2"), each
of them is a **Conv cell** (:class:`~scarce.models.search.MixedConv`, Conv-421/622/823): α
changes the predicted MLP weights and thereby every pixel. ``searchable=False`` gives the vanilla
4-2-1 trunk.

Deviations (CPU-sized, stated): the per-pixel MLP parameters are ``base + head(trunk)`` with a
learned, Linear-initialised ``base`` (keeps the MLP well-conditioned at initialisation while the
trunk still modulates every weight), global sinusoidal positional encodings, instance norm in
the trunk (no running buffers for the unrolled functional passes), no noise input.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scarce.models.search import DEFAULT_CANDIDATES, VANILLA, ConvSpec, MixedConv, Searchable, init_gan_weights, norm_layer, parse_candidates

__all__ = ["ASAPNetGenerator", "positional_encoding"]


def positional_encoding(h: int, w: int, n_freq: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Sinusoidal encoding of the pixel grid: 4·n_freq×h×w, ``sin/cos(2^k·π·u)`` for each of the
    normalised coordinates u ∈ [−1, 1] (rows, columns), k = 0..n_freq−1."""
    ys = torch.linspace(-1, 1, h, dtype=dtype, device=device).view(h, 1).expand(h, w)
    xs = torch.linspace(-1, 1, w, dtype=dtype, device=device).view(1, w).expand(h, w)
    feats = []
    for k in range(n_freq):
        f = (2 ** k) * math.pi
        feats += [torch.sin(f * ys), torch.cos(f * ys), torch.sin(f * xs), torch.cos(f * xs)]
    return torch.stack(feats) if feats else torch.zeros(0, h, w, dtype=dtype, device=device)


class ASAPNetGenerator(Searchable):
    """Searchable ASAPNet: one-hot mask N×K×S×S → image N×C×S×S in [0, 1].

    * Trunk (low resolution): ``depth`` **Conv cells** ``down.i.cell`` (×½ each; widths
      ``ngf·min(2^i, max_mult)``), LeakyReLU + norm between them, then ``trunk_blocks``
      3×3 conv + norm + LeakyReLU at S/2^depth, then a 1×1 head to P parameters per low-res cell.
    * Per-pixel MLP (full resolution): input = cat(one-hot mask, positional encoding)
      (K + 4·n_freq features), ``mlp_layers`` linear layers of width ``mlp_width`` with LeakyReLU,
      output C, ``(tanh + 1) / 2``. Pixel (y, x) uses the parameters of low-res cell
      (y // 2^depth, x // 2^depth) (applied block-wise with one einsum, never up-sampled).
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 4, ngf: int = 8, max_mult: int = 8,
                 norm: str = "instance", searchable: bool = True,
                 candidates: Sequence[ConvSpec | str] = DEFAULT_CANDIDATES, fuse: bool = True,
                 mlp_width: int = 16, mlp_layers: int = 3, n_freq: int = 4, trunk_blocks: int = 1) -> None:
        super().__init__()
        if depth < 1 or mlp_layers < 1:
            raise ValueError(f"ASAPNet needs depth >= 1 and mlp_layers >= 1, got {depth}, {mlp_layers}")
        self.in_channels, self.out_channels, self.depth = int(in_channels), int(out_channels), int(depth)
        self.stride = 2 ** self.depth
        self.n_freq = int(n_freq)
        cands = parse_candidates(candidates) if searchable else VANILLA
        ch = [ngf * min(2 ** i, max_mult) for i in range(depth)]
        self.down = nn.ModuleList()
        for i in range(depth):
            layers: dict[str, nn.Module] = {}
            if i > 0:
                layers["act"] = nn.LeakyReLU(0.2)
            layers["cell"] = MixedConv(in_channels if i == 0 else ch[i - 1], ch[i], cands, transposed=False,
                                       bias=True, fuse=fuse)
            if i > 0:
                layers["norm"] = norm_layer(norm, ch[i])
            self.down.append(nn.ModuleDict(layers))
        blocks: list[nn.Module] = [nn.LeakyReLU(0.2)]
        for _ in range(trunk_blocks):
            blocks += [nn.Conv2d(ch[-1], ch[-1], 3, 1, 1), norm_layer(norm, ch[-1]), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*blocks)
        feat = in_channels + 4 * self.n_freq
        self.mlp_dims = [(feat if li == 0 else mlp_width, out_channels if li == mlp_layers - 1 else mlp_width)
                         for li in range(mlp_layers)]
        self.num_mlp_params = sum((din + 1) * dout for din, dout in self.mlp_dims)
        self.head = nn.Conv2d(ch[-1], self.num_mlp_params, 1)
        base = []
        for din, dout in self.mlp_dims:  # nn.Linear-style init of the static part
            bound = 1 / math.sqrt(din)
            base += [torch.empty(din * dout).uniform_(-bound, bound), torch.zeros(dout)]
        self.base = nn.Parameter(torch.cat(base))
        init_gan_weights(self)

    def mlp_parameters(self, onehot: torch.Tensor) -> torch.Tensor:
        """Low-resolution stream: N×K×S×S → per-cell MLP parameters N×P×(S/2^d)×(S/2^d)."""
        x = onehot
        for block in self.down:
            for layer in block.values():
                x = layer(x)
        return self.base.view(1, -1, 1, 1) + self.head(self.trunk(x))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        n, k, h, w = onehot.shape if onehot.ndim == 4 else (0, 0, 0, 0)
        if onehot.ndim != 4 or k != self.in_channels or h % self.stride or w % self.stride:
            raise ValueError(f"ASAPNetGenerator expects N×{self.in_channels}×S×S one-hot masks with S a multiple "
                             f"of {self.stride}, got {tuple(onehot.shape)}")
        params = self.mlp_parameters(onehot)  # N×P×hh×ww
        b, hh, ww = self.stride, h // self.stride, w // self.stride
        pe = positional_encoding(h, w, self.n_freq, onehot.dtype, onehot.device).unsqueeze(0).expand(n, -1, -1, -1)
        feats = torch.cat([onehot, pe], dim=1)
        f = feats.shape[1]
        # N×F×H×W → N×hh×ww×(b·b)×F: the pixels of each low-res cell
        x = feats.reshape(n, f, hh, b, ww, b).permute(0, 2, 4, 3, 5, 1).reshape(n, hh, ww, b * b, f)
        p = params.permute(0, 2, 3, 1)
        off = 0
        for li, (din, dout) in enumerate(self.mlp_dims):
            wgt = p[..., off:off + din * dout].reshape(n, hh, ww, din, dout)
            off += din * dout
            bias = p[..., off:off + dout].unsqueeze(3)
            off += dout
            x = torch.einsum("nijpf,nijfo->nijpo", x, wgt) + bias
            if li < len(self.mlp_dims) - 1:
                x = F.leaky_relu(x, 0.2)
        c = self.out_channels
        out = x.reshape(n, hh, ww, b, b, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
        return (torch.tanh(out) + 1) / 2
