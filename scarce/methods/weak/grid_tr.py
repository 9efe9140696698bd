"""``grid_tr``: the Robust Trust Region (Marin & Boykov, Algorithm 1) for the 8-grid Potts model.

1. PCE pretraining for ``pretrain_iters`` iterations (Eq. 6).
2. Repeat until ``train.iterations``:

   * **Stage A** (Eq. 16, d_A = KL, Ẽ = PCE + Potts): for every training image,
     ``s = argmin_{one-hot s} hard seeds + ν·Σ w_ij [s_i ≠ s_j] + λ·KL(s ‖ f(θ_t))`` by α-expansion
     (GCO v3, ≤ ``max_expansions`` cycles, labels restricted to those in the image's scribbles);
     see :mod:`scarce.methods.weak.stage_a`. Runs in ``workers`` spawned processes (1 = in-process).
   * **Stage B** (Eq. 17–18): ``epochs_per_stage`` (M) epochs of gradient steps on the robust
     metric d_B = KL_{ε,seeds}(s ‖ f(θ)) (Eq. 24, :func:`scarce.losses.weak.robust_kl`).

   An "epoch" is ⌈N / global batch⌉ trainer iterations, so Stage A runs at iterations
   ``pretrain_iters + r·M·epoch`` (r = 0, 1, …) with the weights of that moment.
   λ = 0 makes Stage A independent of the network: the proposals are computed once and kept
   ("fixed proposals", the λ = 0 end of the paper's Figure 7).

The proposals (N×S×S uint8) and the number of Stage-A rounds are method state: they are
checkpointed, so a resumed run continues with the same proposals and ends identical to an
uninterrupted one. Training masks are not used (:mod:`scarce.methods.weak.common`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from scarce.config import LAMBDA_AXIS, axis_field
from scarce.losses.weak import grid_affinities, robust_coefficients, robust_kl
from scarce.methods import register_method
from scarce.engine.method import Batch, TrainContext
from scarce.methods.weak.stage_a import StageAJob, solve_many
from scarce.methods.weak.common import WeakConfig, WeakMethod


@dataclass
class GridTRConfig(WeakConfig):
    lam: float = axis_field(1.0, LAMBDA_AXIS)
    """λ: trust-region weight of KL(s ‖ f(θ_t)) in Stage A (0 = fixed proposals). Only λ/ν
    matters. Default chosen on real data by validation Dice (``configs/weak_lambda.yaml``:
    kvasir_seg, scribbles L = 0.5, U-Net, 3 seeds, λ ∈ {0 … 10}: best at λ = 1); small λ lets
    the Potts term shrink or bleed regions between the sparse seeds of weakly-contrasted medical
    images. The paper used λ = 0.1 with Potts weight 100 on Pascal VOC. Sweep it per dataset."""
    potts_weight: float = 1.0
    """ν: weight of the 8-grid Potts term Σ w_ij [s_i ≠ s_j] in Stage A (w_ij ∈ (0, 1])."""
    eps: float = 0.2
    """ε: outlier probability of d_B on non-seed pixels (0 = plain cross-entropy); < (K−1)/K."""
    epochs_per_stage: int = 5
    """M: Stage-B epochs per Stage A."""
    max_expansions: int = 5
    """α-expansion cycles per Stage A (the paper: 5)."""
    workers: int = 1
    """Stage-A worker processes (1 = in the training process)."""
    sigma: float | None = None
    """Colour scale of w_ij (None = per-image mean squared neighbour difference)."""


@register_method("grid_tr")
class GridTR(WeakMethod):
    Config = GridTRConfig

    def __init__(self, ctx: TrainContext, mcfg: GridTRConfig) -> None:
        super().__init__(ctx, mcfg)
        robust_coefficients(mcfg.eps, ctx.num_classes)  # validate ε early
        if mcfg.epochs_per_stage < 1 or mcfg.max_expansions < 1:
            raise ValueError("method.epochs_per_stage and method.max_expansions must be >= 1")
        self.affinities = grid_affinities(ctx.data.train.images.cpu(), mcfg.sigma).numpy()
        """N×4×S×S 8-grid affinities (numpy, shipped to Stage-A workers)."""
        self.proposals: torch.Tensor | None = None
        """N×S×S uint8 current Stage-A labelling s_t of every training image."""
        self.rounds = 0
        self.last_stage_a_seconds = 0.0

    # ------------------------------------------------------------------ schedule
    @property
    def steps_per_epoch(self) -> int:
        global_batch = self.ctx.cfg.train.batch_size * self.ctx.world_size
        return max(1, math.ceil(len(self.ctx.data.train) / global_batch))

    @property
    def stage_length(self) -> int:
        """Trainer iterations between two Stage A runs (M epochs)."""
        return self.mcfg.epochs_per_stage * self.steps_per_epoch

    def needs_stage_a(self, step: int) -> bool:
        start = self.pretrain_iters
        if step < start or (step - start) % self.stage_length != 0:
            return False
        return not (self.mcfg.lam == 0 and self.proposals is not None)

    # ------------------------------------------------------------------ Stage A
    @torch.no_grad()
    def stage_a(self) -> torch.Tensor:
        """Run Stage A on all training images with the current network → N×S×S uint8."""
        from scarce.evaluation.evaluate import predict_probs

        t0 = time.perf_counter()
        train = self.ctx.data.train
        n = len(train)
        k = train.num_classes
        size = int(train.images.shape[-1])
        if self.mcfg.lam == 0:
            probs = torch.full((n, k, size, size), 1.0 / k)  # unused by the energy when λ = 0
        else:
            probs = predict_probs(self.model, train.images, batch_size=self.ctx.cfg.train.batch_size)
        seeds = self.seeds.cpu().numpy()
        jobs = [
            StageAJob(probs[i].numpy(), seeds[i], self.affinities[i], lam=self.mcfg.lam,
                      potts_weight=self.mcfg.potts_weight, max_iter=self.mcfg.max_expansions)
            for i in range(n)
        ]
        out = solve_many(jobs, self.mcfg.workers)
        self.last_stage_a_seconds = time.perf_counter() - t0
        return torch.stack([torch.from_numpy(o) for o in out])

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor | float]:
        if step < self.pretrain_iters:
            return self.pce_step(batch)
        out: dict[str, torch.Tensor | float] = {}
        if self.needs_stage_a(step):
            self.proposals = self.stage_a().to(self.seeds.device)
            self.rounds += 1
        assert self.proposals is not None
        idx = batch.index.to(self.seeds.device)
        logits = self.forward(batch)
        loss = robust_kl(logits, self.proposals[idx].long(), self.mcfg.eps, seeds=self.seeds[idx])
        self.ctx.step(loss, self.optimizer)
        out["loss"] = loss.detach()
        out["d_b"] = loss.detach()
        return out

    def on_validation(self, step: int, score: float) -> dict[str, float]:
        return {"stage_a_rounds": float(self.rounds), "stage_a_sec": float(self.last_stage_a_seconds)}

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {
            "proposals": self.proposals.cpu() if self.proposals is not None else torch.empty(0, dtype=torch.uint8),
            "rounds": int(self.rounds),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        p = state.get("proposals")
        self.proposals = p.to(self.seeds.device) if p is not None and p.numel() else None
        self.rounds = int(state.get("rounds", 0))
