"""``pce_gd``: the PCE-GD baseline — gradient descent on partial cross-entropy over the
scribbled pixels only (Eq. 6 of Marin & Boykov). Scribble sources and the use of masks are
described in :mod:`scarce.methods.weak.common`."""
from __future__ import annotations

import torch

from scarce.methods import register_method
from scarce.engine.method import Batch
from scarce.methods.weak.common import WeakConfig, WeakMethod


@register_method("pce_gd")
class PceGD(WeakMethod):
    Config = WeakConfig
    regularised = False

    def training_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        return self.pce_step(batch)
