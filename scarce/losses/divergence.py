"""f-divergences between discrete distributions, one generic function (DiM's divergence term).

D_f(P ‖ Q) = Σ_i q_i · f(p_i / q_i) for a convex f with f(1) = 0 (Csiszár). The six used here:

==============  =====================================  ======================================
name            f(t)                                   closed form
==============  =====================================  ======================================
``kl``          t log t                                Σ p log(p/q)
``reverse_kl``  −log t                                 Σ q log(q/p)
``js``          ½[t log t − (1+t) log((1+t)/2)]        ½ KL(p‖m) + ½ KL(q‖m), m = (p+q)/2
``chi2``        (t − 1)²                               Σ (p − q)² / q   (Pearson)
``hellinger``   (√t − 1)²                              Σ (√p − √q)²     (squared, unnormalised)
``tv``          ½ |t − 1|                              ½ Σ |p − q|
==============  =====================================  ======================================

Why one function: DiM's design (docs/methods.md) makes f a config field; every f shares the same
numerically safe evaluation (probabilities clamped to ``eps`` and renormalised, so a zero in Q
gives a large finite value instead of inf/nan and gradients stay finite).

Inputs: P, Q of the same shape …×K (the last dimension sums to 1); the divergence is summed over
K and averaged over the leading dimensions. Differentiable in both arguments.
"""
from __future__ import annotations

from typing import Callable

import torch

from scarce.registry import Registry

F_FUNCTIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("f-divergence")


@F_FUNCTIONS.register("kl")
def _kl(t: torch.Tensor) -> torch.Tensor:
    return t * torch.log(t)


@F_FUNCTIONS.register("reverse_kl")
def _reverse_kl(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(t)


@F_FUNCTIONS.register("js")
def _js(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (t * torch.log(t) - (1 + t) * torch.log((1 + t) / 2))


@F_FUNCTIONS.register("chi2")
def _chi2(t: torch.Tensor) -> torch.Tensor:
    return (t - 1) ** 2


@F_FUNCTIONS.register("hellinger")
def _hellinger(t: torch.Tensor) -> torch.Tensor:
    return (torch.sqrt(t) - 1) ** 2


@F_FUNCTIONS.register("tv")
def _tv(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (t - 1).abs()


def f_divergence(p: torch.Tensor, q: torch.Tensor, f: str = "kl", eps: float = 1e-6) -> torch.Tensor:
    """D_f(P ‖ Q) = Σ_k q_k f(p_k / q_k), averaged over leading dimensions (a scalar tensor).

    p, q: …×K probabilities (same shape). ``f`` a name of :data:`F_FUNCTIONS` (did-you-mean on a
    typo). Probabilities are clamped to ``eps`` and renormalised before the ratio."""
    if p.shape != q.shape:
        raise ValueError(f"f_divergence: P {tuple(p.shape)} and Q {tuple(q.shape)} differ in shape")
    fn = F_FUNCTIONS.get(f)
    p = p.clamp_min(eps)
    q = q.clamp_min(eps)
    p = p / p.sum(-1, keepdim=True)
    q = q / q.sum(-1, keepdim=True)
    return (q * fn(p / q)).sum(-1).mean()


__all__ = ["F_FUNCTIONS", "f_divergence"]
