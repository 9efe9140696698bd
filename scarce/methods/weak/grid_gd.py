"""``grid_gd``: Grid-GD — gradient descent on PCE + ν·(bilinear relaxation of the 8-grid Potts
model with Gaussian colour affinities), Eq. 7–8, started from the PCE-trained model (the first
``pretrain_iters`` iterations optimise PCE only). The relaxation is normalised by the image's
total affinity (:func:`scarce.losses.weak.potts_grid_bilinear`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scarce.losses.weak import grid_affinities, potts_grid_bilinear
from scarce.methods import register_method
from scarce.engine.method import Batch, TrainContext
from scarce.methods.weak.common import WeakConfig, WeakMethod


@dataclass
class GridGDConfig(WeakConfig):
    nu: float = 10.0
    """ν: weight of the normalised Potts relaxation (fraction of affinity cut, in [0, 1))."""
    sigma: float | None = None
    """Colour scale of w_ij in [0, 1] intensity units (None = per-image mean squared neighbour difference)."""


@register_method("grid_gd")
class GridGD(WeakMethod):
    Config = GridGDConfig

    def __init__(self, ctx: TrainContext, mcfg: GridGDConfig) -> None:
        super().__init__(ctx, mcfg)
        self.affinities = grid_affinities(ctx.data.train.images.cpu(), mcfg.sigma).to(ctx.device)
        """N×4×S×S 8-grid affinities of the training images (depend on the images only)."""

    def _potts(self, probs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return potts_grid_bilinear(probs, self.affinities[batch.index.to(self.affinities.device)])

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if step < self.pretrain_iters:
            return self.pce_step(batch)
        return self.regularised_step(batch, self._potts, self.mcfg.nu)
