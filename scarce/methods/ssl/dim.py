"""``dim``: DiM — f-divergence-guided sharpness-aware optimisation for semi-supervised,
multi-domain segmentation (our design from the abstract, ``../shared/papers/dim_abstract.md``;
no code or full paper is public, so every choice below is a config field).

The base is :mod:`fixmatch` (labelled loss + confident pseudo-labels on strong views, UniMatch's
additions). DiM adds β·D_f(P_source ‖ P_target): how differently the model behaves on the
labelled source images and on the unlabelled images (from one or several domains):

* P = class-probability maps pooled to distributions (``pooling``): ``batch`` — the mean class
  distribution over all pixels of the batch (K values); ``image`` — per unlabelled image against
  the source batch mean, averaged; ``histogram`` — soft histograms (``bins`` centres from 0 to 1,
  linear interpolation between neighbours)
  of the foreground probability over pixels (binary) or of the max class probability
  (multi-class): the *confidence* profile, which collapses on a shifted domain;
* ``per_domain`` (default on): D_f is computed between the source and each domain present in the
  unlabelled batch and averaged, so every domain is pulled towards the source equally however
  large its share of the pool (``ctx.data.unlabelled.domains``);
* f ∈ kl | reverse_kl | js | chi2 | hellinger | tv (:func:`scarce.losses.divergence.f_divergence`);
  the source side is detached by default (``detach_source``): the unlabelled behaviour moves
  towards the labelled one, not the reverse;
* the whole objective, D_f included, is one closure, so with ``train.optim.name=sam`` (or ``asam``)
  the sharpness perturbation ε = ρ∇L/‖∇L‖ is computed from the divergence-guided objective
  (the "guided" sharpness) and the step is taken with the gradient at θ + ε.

Ablations (same code, switches): base = ``--method fixmatch``; base + SAM = ``fixmatch`` with
``train.optim.name=sam``; base + D_f = ``dim`` with the run's plain optimiser; DiM = ``dim`` with
``train.optim.name=sam``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scarce.losses.divergence import F_FUNCTIONS, f_divergence
from scarce.methods import register_method
from scarce.methods.ssl.fixmatch import FixMatch, FixMatchConfig

POOLINGS = ("batch", "image", "histogram")


@dataclass
class DiMConfig(FixMatchConfig):
    beta: float = 1.0
    """β: weight of D_f(P_source ‖ P_target) (0 = the FixMatch base). Chosen on kvasir_seg
    validation (40 labels, unlabelled kvasir_seg ∪ cvc_clinicdb, seed 0; docs/results/dim/probe):
    best validation Dice 0.749 at β 1 vs 0.735 at 5; at 0.1 (the first default) the term was
    ≈ 4 % of the loss and the run drifted like the base (0.642)."""
    divergence: str = "js"
    """f: kl | reverse_kl | js | chi2 | hellinger | tv (JS: bounded and symmetric, our default)."""
    pooling: str = "histogram"
    """batch | image | histogram (see the module docstring)."""
    bins: int = 10
    """Soft-histogram bins over [0, 1] (``pooling=histogram``)."""
    per_domain: bool = True
    """Average D_f over the domains present in the unlabelled batch (else one mixed target)."""
    detach_source: bool = True
    """Stop the gradient through the source distribution."""


def soft_histogram(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Values in [0, 1] (any shape) → a differentiable ``bins``-bin histogram (sums to 1).

    Bin centres sit at 0, 1/(bins−1), …, 1 and every value is split between its two neighbouring
    centres by linear interpolation (triangular kernels of width 2/(bins−1)), so each value adds
    exactly 1 to the histogram, a saturated value (0 or 1: most pixels of a trained segmenter)
    counts as much as an uncertain one, and the gradient moves mass between neighbouring bins for
    every value, saturated ones included."""
    v = values.reshape(-1).clamp(0, 1)
    centres = torch.linspace(0, 1, bins, device=v.device, dtype=v.dtype)
    w = (1 - (v[:, None] - centres[None, :]).abs() * (bins - 1)).clamp_min(0)
    h = w.sum(0)
    return h / h.sum().clamp_min(1e-12)


def pooled(probs: torch.Tensor, pooling: str, bins: int) -> torch.Tensor:
    """N×K×H×W probabilities → the distribution(s) D_f compares: K (batch), N×K (image) or
    bins (histogram of the foreground probability, or of the max probability for K > 2)."""
    if pooling == "batch":
        return probs.mean(dim=(0, 2, 3))
    if pooling == "image":
        return probs.mean(dim=(2, 3))
    score = probs[:, 1] if probs.shape[1] == 2 else probs.max(dim=1).values
    return soft_histogram(score, bins)


def divergence_term(p_src: torch.Tensor, p_tgt: torch.Tensor, f: str, pooling: str, bins: int) -> torch.Tensor:
    """D_f between the pooled source (labelled) and target (unlabelled) probabilities."""
    src = pooled(p_src, pooling, bins)
    tgt = pooled(p_tgt, pooling, bins)
    if pooling == "image":
        return f_divergence(src.mean(0, keepdim=True).expand_as(tgt), tgt, f)
    return f_divergence(src, tgt, f)


@register_method("dim")
class DiM(FixMatch):
    """FixMatch + β·D_f(source ‖ each unlabelled domain), one closure (SAM-guided with sam/asam)."""

    Config = DiMConfig

    def __init__(self, ctx: Any, mcfg: DiMConfig) -> None:
        from scarce.config import ConfigError
        from scarce.registry import look_up

        look_up(str(mcfg.pooling), POOLINGS, "DiM pooling (method.pooling)")
        if mcfg.divergence not in F_FUNCTIONS:
            look_up(str(mcfg.divergence), tuple(F_FUNCTIONS.names()), "f-divergence (method.divergence)")
        if not isinstance(mcfg.beta, (int, float)) or mcfg.beta < 0:
            raise ConfigError(f"config key 'method.beta' must be a number >= 0, got {mcfg.beta!r} (e.g. --set method.beta=1)")
        if not isinstance(mcfg.bins, int) or mcfg.bins < 2:
            raise ConfigError(f"config key 'method.bins' must be an integer >= 2, got {mcfg.bins!r}")
        super().__init__(ctx, mcfg)

    def extra_loss(self, logits_x: torch.Tensor, logits_u: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        """β·D_f of this step (added to the closure's objective by the FixMatch base)."""
        mc = self.mcfg
        if mc.beta == 0:
            return {}
        p_src = self.probs(logits_x)
        if mc.detach_source:
            p_src = p_src.detach()
        p_tgt = self.probs(logits_u)
        groups = [torch.arange(p_tgt.shape[0], device=p_tgt.device)]
        unl = self.ctx.data.unlabelled
        if mc.per_domain and unl is not None and unl.domains and batch.unlabelled_index is not None:
            doms = [unl.domains[int(i)] for i in batch.unlabelled_index]
            names = sorted(set(doms))
            groups = [torch.tensor([j for j, d in enumerate(doms) if d == n], device=p_tgt.device) for n in names]
        d = torch.stack([divergence_term(p_src, p_tgt[idx], mc.divergence, mc.pooling, mc.bins) for idx in groups]).mean()
        return {"loss_div": mc.beta * d, "divergence": d.detach()}
