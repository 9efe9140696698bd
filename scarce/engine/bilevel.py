"""Shared multi-level (bilevel, trilevel) optimisation machinery: one-step unrolling and
hypergradients w.r.t. architecture/meta parameters A (DARTS, Liu et al. 2019; E2EAug Sec. 3.3).

Why one module: every method that differentiates a validation loss through unrolled inner
updates (DARTS-style search, E2EAug's three stages) needs the same two things, and they are
easy to get subtly wrong (a detached tensor silently zeroes the hypergradient).

Problem form — a *chain* of levels i = 1..n with parameters θ_i, each approximated by one
SGD-style virtual step (the inner lr ξ_i, as DARTS):

    θ_i' = θ_i − ξ_i ∇_{θ_i} L_i(θ_i, θ_1', …, θ_{i−1}', A)
    hypergradient = d/dA  L_out(θ_1', …, θ_n', A)

E2EAug: level 1 = generator weights G (L_1 = Pix2Pix generator loss), level 2 = segmenter W
(L_2 = L_seg(D_tr) + λ·L_seg(D_aug(G', A))), L_out = L_seg(D_val; W'). DARTS is the n = 1 case.

Modes:

* ``exact``: autograd through the unrolled steps (``create_graph=True``); second-order terms
  exact. Parameters are plain tensors in dicts, networks are evaluated with
  ``torch.func.functional_call`` inside the level losses.
* ``finite_difference``: DARTS' central-difference Hessian-vector products, applied level by
  level (reverse order): with u_i = dL_out/dθ_i' (accumulated adjoint) and ε = eps/‖u_i‖,
  ``∂²L_i/∂x∂θ_i · u_i ≈ [∇_x L_i(θ_i + εu_i) − ∇_x L_i(θ_i − εu_i)] / 2ε`` for x ∈ {A, θ_j'<i};
  contributions −ξ_i·(…) go to the A-gradient and to the adjoints of lower levels (so the
  G-level product uses the W-level result, as the chain rule demands). Two extra
  first-order gradient evaluations per level; no double backward.

Tensors: all parameter dicts map ``functional_call`` names to tensors of the module's shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from scarce.registry import look_up

Params = dict[str, torch.Tensor]
LevelLoss = Callable[[Params, Sequence[Params], Params], torch.Tensor]
"""``loss(θ_i, [θ_1', …, θ_{i−1}'], A) -> scalar``."""
OuterLoss = Callable[[Sequence[Params], Params], torch.Tensor]
"""``loss([θ_1', …, θ_n'], A) -> scalar`` (e.g. the validation loss of the last level)."""

MODES = ("exact", "finite_difference")


@dataclass
class Level:
    """One inner level: its current parameters θ_i, its loss and its virtual-step lr ξ_i."""

    name: str
    params: Params
    loss: LevelLoss
    lr: float


@dataclass
class HyperResult:
    grads: Params
    """dL_out/dA, one tensor per A entry (zeros where A has no influence)."""
    outer_loss: torch.Tensor
    """L_out at the unrolled parameters (detached scalar)."""
    unrolled: list[Params]
    """θ_i' per level (detached)."""


def named_params(module: nn.Module, names: Sequence[str] | None = None) -> Params:
    """The module's parameters (optionally a subset) as a name → tensor dict (not copies)."""
    params = dict(module.named_parameters())
    return params if names is None else {n: params[n] for n in names}


def buffers_copy(module: nn.Module) -> Params:
    """Cloned buffers: pass them to ``functional_call`` so virtual forward passes (e.g.
    BatchNorm running-stat updates) leave the real module untouched."""
    return {n: b.clone() for n, b in module.named_buffers()}


def virtual_step(params: Params, grads: Sequence[torch.Tensor | None], lr: float) -> Params:
    """SGD-style virtual step θ − ξ·g (None gradients leave the tensor as is)."""
    return {n: (p if g is None else p - lr * g) for (n, p), g in zip(params.items(), grads)}


def should_update(step: int, every: int) -> bool:
    """True on the iterations where A is updated (every ``every``-th, starting at step 0)."""
    return every > 0 and step % every == 0


def _detached(params: Params, requires_grad: bool = True) -> Params:
    return {n: p.detach().requires_grad_(requires_grad) for n, p in params.items()}


def _grads(loss: torch.Tensor, params: Params, create_graph: bool = False) -> list[torch.Tensor]:
    """∂loss/∂params with zeros where a parameter is unused (never None)."""
    vals = list(params.values())
    if not vals:
        return []
    if not loss.requires_grad:  # no path at all (e.g. a cut graph): all zeros
        return [torch.zeros_like(p) for p in vals]
    gs = torch.autograd.grad(loss, vals, create_graph=create_graph, allow_unused=True,
                             retain_graph=create_graph or None)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(vals, gs)]


def unroll(levels: Sequence[Level], arch: Params, create_graph: bool) -> list[Params]:
    """θ_i' for every level, in order. ``create_graph=True`` keeps the graph (exact mode)."""
    out: list[Params] = []
    for lvl in levels:
        theta = lvl.params if create_graph else _detached(lvl.params)
        lower = out if create_graph else [_detached(p) for p in out]
        loss = lvl.loss(theta, lower, arch)
        gs = torch.autograd.grad(loss, list(theta.values()), create_graph=create_graph, allow_unused=True)
        new = virtual_step(theta, gs, lvl.lr)
        out.append(new if create_graph else {n: p.detach() for n, p in new.items()})
    return out


def hypergradient(levels: Sequence[Level], outer: OuterLoss, arch: Params, mode: str = "exact",
                  eps: float = 0.01) -> HyperResult:
    """dL_out(θ_1', …, θ_n', A)/dA for the one-step unrolled chain (see module docstring).

    ``arch`` tensors must require grad in ``exact`` mode (they are the leaves differentiated);
    level parameters may be the live module parameters — nothing is written to ``.grad``.
    """
    look_up(mode, MODES, "hypergradient mode")
    if mode == "exact":
        with torch.enable_grad():
            return _exact(levels, outer, arch)
    return _finite_difference(levels, outer, arch, eps)


def _exact(levels: Sequence[Level], outer: OuterLoss, arch: Params) -> HyperResult:
    unrolled = unroll(levels, arch, create_graph=True)
    loss = outer(unrolled, arch)
    grads = _grads(loss, arch)
    return HyperResult(dict(zip(arch, grads)), loss.detach(), [{n: p.detach() for n, p in u.items()} for u in unrolled])


def _finite_difference(levels: Sequence[Level], outer: OuterLoss, arch: Params, eps: float) -> HyperResult:
    with torch.enable_grad():
        unrolled = unroll(levels, arch, create_graph=False)
        ups = [_detached(u) for u in unrolled]
        a = _detached(arch)
        loss = outer(ups, a)
        flat = _grads(loss, {**{f"{i}/{n}": p for i, u in enumerate(ups) for n, p in u.items()},
                             **{f"A/{n}": p for n, p in a.items()}})
        it = iter(flat)
        adjoint = [[next(it) for _ in u] for u in ups]
        grad_a = [next(it) for _ in a]
        for i in reversed(range(len(levels))):
            lvl, u = levels[i], adjoint[i]
            norm = torch.sqrt(sum((v.double() ** 2).sum() for v in u)) if u else torch.zeros(())
            if float(norm) == 0.0:
                continue
            e = eps / float(norm)
            diff: list[torch.Tensor] | None = None
            for sign in (1.0, -1.0):
                theta = {n: (p.detach() + sign * e * v) for (n, p), v in zip(lvl.params.items(), u)}
                lower = [_detached(p) for p in unrolled[:i]]
                a_i = _detached(arch)
                li = lvl.loss(theta, lower, a_i)
                g = _grads(li, {**{f"A/{n}": p for n, p in a_i.items()},
                                **{f"{j}/{n}": p for j, lo in enumerate(lower) for n, p in lo.items()}})
                diff = g if diff is None else [x - y for x, y in zip(diff, g)]
            assert diff is not None
            scale = -lvl.lr / (2 * e)
            it = iter(diff)
            grad_a = [ga + scale * next(it) for ga in grad_a]
            for j in range(i):
                adjoint[j] = [aj + scale * next(it) for aj in adjoint[j]]
    return HyperResult(dict(zip(arch, [g.detach() for g in grad_a])), loss.detach(), unrolled)


def cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Cosine similarity of two gradient dicts (flattened, float64)."""
    va = torch.cat([a[k].detach().double().flatten() for k in a])
    vb = torch.cat([b[k].detach().double().flatten() for k in a])
    return float(torch.dot(va, vb) / (va.norm() * vb.norm()).clamp_min(1e-300))


def flat_norm(g: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of a gradient dict (0 for an empty one)."""
    return float(torch.sqrt(sum((v.detach().double() ** 2).sum() for v in g.values()))) if g else 0.0
