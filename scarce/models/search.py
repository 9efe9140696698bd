"""Differentiable architecture search cells (DARTS-style), shared by searchable generators.

Why a separate module: the E2EAug generator search space ("every down-sampling conv and
up-sampling transposed conv is a cell mixing K candidate operators") is independent of the
generator family. Pix2Pix uses it now; SPADE/ASAPNet generators can reuse the same cells.

A cell's output is ``y = Σ_k softmax(α)_k · o_k(x)`` (paper Sec. 3.2). Each :class:`MixedOp`
owns its α (a length-K ``nn.Parameter`` named ``alpha``) so that ``state_dict``/checkpoints and
``torch.func.functional_call`` see α like any other tensor, while :class:`Searchable` splits
a network's parameters into architecture (α) and weight parameters for separate optimizers.

:class:`MixedConv` fuses K *linear* conv candidates of equal stride whose receptive fields are
centred identically (4-2-1, 6-2-2, 8-2-3 are: kernel k with padding (k-2)/2) into **one** conv
whose kernel is the α-weighted sum of the zero-padded candidate kernels. That is exactly the
mixed output (convolution is linear in its kernel) at the cost of the largest candidate only,
and keeps α's gradient exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConvSpec:
    """A candidate (transposed) convolution: kernel, stride, padding (paper's ``Conv-xyz``)."""

    kernel: int
    stride: int
    padding: int

    @property
    def name(self) -> str:
        return f"{self.kernel}-{self.stride}-{self.padding}"


DEFAULT_CANDIDATES: tuple[ConvSpec, ...] = (ConvSpec(4, 2, 1), ConvSpec(6, 2, 2), ConvSpec(8, 2, 3))
"""The paper's K = 3 candidates: Conv/UpConv-421, -622, -823 (all exactly halve / double H×W)."""
VANILLA: tuple[ConvSpec, ...] = (ConvSpec(4, 2, 1),)
"""Pix2Pix's own (non-searched) down/up-sampling operator."""


def parse_candidates(specs: Sequence[str | Sequence[int] | ConvSpec]) -> tuple[ConvSpec, ...]:
    """``["4-2-1", (6, 2, 2)]`` → ConvSpecs (config files hold strings)."""
    out = []
    for s in specs:
        if isinstance(s, ConvSpec):
            out.append(s)
        elif isinstance(s, str):
            k, st, p = (int(v) for v in s.replace("_", "-").split("-"))
            out.append(ConvSpec(k, st, p))
        else:
            out.append(ConvSpec(*(int(v) for v in s)))
    return tuple(out)


class MixedOp(nn.Module):
    """Generic cell: ``Σ_k softmax(alpha)_k · op_k(x)`` over arbitrary candidate modules.

    ``alpha`` (K,) is initialised to ``1e-3·N(0, 1)`` as in DARTS (near-uniform mixture).
    With a single candidate there is no α and the op is applied as is (non-searched net).
    """

    def __init__(self, ops: dict[str, nn.Module]) -> None:
        super().__init__()
        if not ops:
            raise ValueError("MixedOp needs at least one candidate operator")
        self.op_names = list(ops)
        self.ops = nn.ModuleList(ops.values())
        self.alpha: nn.Parameter | None = (
            nn.Parameter(1e-3 * torch.randn(len(ops))) if len(ops) > 1 else None
        )

    @property
    def searchable(self) -> bool:
        return self.alpha is not None

    def weights(self) -> torch.Tensor:
        """softmax(α): K mixture weights (a constant 1 for a single op)."""
        if self.alpha is None:
            return torch.ones(1)
        return torch.softmax(self.alpha, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha is None:
            return self.ops[0](x)
        w = torch.softmax(self.alpha, dim=0)
        return sum(w[k] * op(x) for k, op in enumerate(self.ops))

    def derived(self) -> str:
        """Name of the argmax op (the derived architecture of this cell)."""
        if self.alpha is None:
            return self.op_names[0]
        return self.op_names[int(self.alpha.detach().argmax())]


class MixedConv(MixedOp):
    """Mixed (transposed) conv over candidate :class:`ConvSpec`s, fused into one conv.

    x: N×cin×H×W → N×cout×(H/s)×(W/s) (conv) or N×cout×(H·s)×(W·s) (``transposed``).
    Candidates must share the stride and the centring ``kernel − 2·padding`` (true for the
    paper's 4-2-1 / 6-2-2 / 8-2-3), so padding every kernel to the largest one is exact.
    ``fuse=False`` evaluates the K convs separately (reference path used by the tests).
    """

    def __init__(self, cin: int, cout: int, candidates: Sequence[ConvSpec] = DEFAULT_CANDIDATES,
                 transposed: bool = False, bias: bool = True, fuse: bool = True) -> None:
        candidates = tuple(candidates)
        if len({c.stride for c in candidates}) != 1 or len({c.kernel - 2 * c.padding for c in candidates}) != 1:
            raise ValueError(f"MixedConv candidates must share stride and kernel-2*padding, got "
                             f"{[c.name for c in candidates]}")
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        ops = {("upconv-" if transposed else "conv-") + c.name:
               conv(cin, cout, c.kernel, stride=c.stride, padding=c.padding, bias=bias) for c in candidates}
        super().__init__(ops)
        self.candidates = candidates
        self.transposed = transposed
        self.fuse = fuse
        big = max(candidates, key=lambda c: c.kernel)
        self._kmax, self._pmax, self._stride = big.kernel, big.padding, big.stride

    def fused_kernel(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Σ_k w_k · pad(kernel_k) (and Σ_k w_k · bias_k): the single equivalent conv."""
        kernel = None
        bias = None
        for wk, op, c in zip(w, self.ops, self.candidates):
            pad = (self._kmax - c.kernel) // 2
            k = F.pad(op.weight, (pad, pad, pad, pad)) if pad else op.weight
            kernel = wk * k if kernel is None else kernel + wk * k
            if op.bias is not None:
                bias = wk * op.bias if bias is None else bias + wk * op.bias
        return kernel, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha is None or not self.fuse:
            return super().forward(x)
        kernel, bias = self.fused_kernel(torch.softmax(self.alpha, dim=0))
        if self.transposed:
            return F.conv_transpose2d(x, kernel, bias, stride=self._stride, padding=self._pmax)
        return F.conv2d(x, kernel, bias, stride=self._stride, padding=self._pmax)


class Searchable(nn.Module):
    """Mixin for networks built from :class:`MixedOp` cells: α vs weight parameters.

    α live inside the cells (so checkpoints and ``functional_call`` include them) but are
    optimised by their own optimizer; :meth:`weight_parameters` is what the weight optimizer
    gets. ``named_*`` variants give the names ``torch.func.functional_call`` expects.
    """

    def cells(self) -> Iterator[tuple[str, MixedOp]]:
        """(name, cell) of every *searchable* cell in module order."""
        for name, m in self.named_modules():
            if isinstance(m, MixedOp) and m.searchable:
                yield name, m

    def named_arch_parameters(self) -> list[tuple[str, nn.Parameter]]:
        ids = {id(c.alpha) for _, c in self.cells()}
        return [(n, p) for n, p in self.named_parameters() if id(p) in ids]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        ids = {id(c.alpha) for _, c in self.cells()}
        return [(n, p) for n, p in self.named_parameters() if id(p) not in ids]

    def arch_parameters(self) -> list[nn.Parameter]:
        """The α of every searchable cell (empty for a non-searched network)."""
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    @property
    def is_searchable(self) -> bool:
        return bool(self.arch_parameters())

    def arch_weights(self) -> torch.Tensor:
        """softmax(α) of all cells stacked: n_cells×K (detached, CPU float32)."""
        rows = [c.weights().detach().float().cpu() for _, c in self.cells()]
        return torch.stack(rows) if rows else torch.zeros(0, 0)

    def arch_alphas(self) -> torch.Tensor:
        """Raw α of all cells stacked: n_cells×K (detached, CPU float32)."""
        rows = [c.alpha.detach().float().cpu() for _, c in self.cells()]  # type: ignore[union-attr]
        return torch.stack(rows) if rows else torch.zeros(0, 0)

    def cell_names(self) -> list[str]:
        return [n for n, _ in self.cells()]

    def derived_architecture(self) -> dict[str, str]:
        """Cell name → argmax op name (the architecture the search currently selects)."""
        return {n: c.derived() for n, c in self.cells()}


def norm_layer(kind: str, ch: int) -> nn.Module:
    """Normalisation of the GAN networks: instance (affine, Pix2Pix default) | batch | none."""
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose instance | batch | none")


def init_gan_weights(module: nn.Module) -> None:
    """Pix2Pix/DCGAN init: N(0, 0.02) conv weights, zero biases, N(1, 0.02) norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
