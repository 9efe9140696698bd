"""Shared parts of the weak-supervision methods ``pce_gd``, ``grid_gd``, ``dense_gd``, ``grid_tr``.

What the methods see of the labels (why it matters): they train from **scribbles only**. The
full masks of the training images (``ctx.data.train.masks``) are never used by a loss; the only
exception is ``method.scribbles=synthetic:L``, which *simulates* an annotator by synthesising the
scribbles from those masks once, before training (:mod:`scarce.data.scribbles`). Validation
(model selection, ReduceLROnPlateau) uses the val split's full masks through the shared
:class:`~scarce.engine.trainer.Trainer`, exactly as every other method does; test sets are
scored against full masks as everywhere.

``method.scribbles`` (where the scribbles come from):

* ``auto`` (default): ``scribbles/<stem>.png`` beside the ``images/`` folder of every training
  image (found through ``SegData.image_paths``); see :mod:`scarce.data.scribbles` for the format.
  In a folder being annotated (images with scribbles and no mask, or masks without scribbles)
  the data layer chooses the images by their scribbles and reads them
  (:mod:`scarce.data.scribble_data`, ``SegData.scribbles``): every scribbled image trains,
  masked ones validate, and with no mask at all held-out scribbled pixels choose the checkpoint.
* ``synthetic:L``: synthesise on the fly from the training masks at length L ∈ [0, 1],
  deterministically per (``train.seed``, image stem) — grids need no pre-written folders.
* a path: a dataset folder holding ``scribbles/``, or a scribbles folder itself.

Pretraining: ``grid_gd``, ``dense_gd`` and ``grid_tr`` start from a PCE-trained model (paper,
Sec. 4.1): the first ``pretrain_iters`` iterations of the same run optimise PCE only
(``None`` = a third of ``train.iterations``). Their best-validation checkpoint is chosen among the
steps after pretraining only (:meth:`WeakMethod.selectable`): on real data PCE's validation score
often peaks at the first validation, and choosing over the whole run would return that PCE model
under the regularised method's name.
"""
from __future__ import annotations

from collections import defaultdict
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scarce.config import ReportAxis, axis_field
from scarce.data.scribbles import (
    UNLABELLED,
    load_scribbles,
    parse_scribble_spec,
    synthetic_scribbles,
)
from scarce.data.types import DataError
from scarce.losses import class_probs
from scarce.losses.weak import partial_cross_entropy
from scarce.engine.method import Batch, Method, TrainContext


def scribble_length(spec: str) -> float:
    """Scribble length L of ``method.scribbles`` (``synthetic:L``; bare ``synthetic`` = 1), NaN for
    real scribbles (``auto`` or a path): the value of the ``scribble_length`` report axis."""
    try:
        kind, value = parse_scribble_spec(spec)
    except ValueError:
        return math.nan
    return float(value) if kind == "synthetic" else math.nan


SCRIBBLE_LENGTH_AXIS = ReportAxis("scribble_length", "scribble length", "L", tunable=False, value=scribble_length)
"""``method.scribbles=synthetic:L`` as a report axis (a data condition, not a hyperparameter)."""


@dataclass
class WeakConfig:
    scribbles: str = axis_field("auto", SCRIBBLE_LENGTH_AXIS)
    """auto (scribbles/ beside images/) | synthetic:L (L in [0, 1]) | path to a dataset or scribbles folder."""
    pretrain_iters: int | None = None
    """PCE-only iterations before the regulariser starts (None = train.iterations // 3)."""


def training_scribbles(ctx: TrainContext, spec: str) -> torch.Tensor:
    """Scribbles of the training split → N×S×S int64 on ``ctx.device`` (255 = unlabelled)."""
    train = ctx.data.train
    k = train.num_classes
    size = int(train.images.shape[-1])
    kind, value = parse_scribble_spec(spec)
    if kind == "synthetic":
        seeds = synthetic_scribbles(train.masks.cpu(), train.stems, float(value), ctx.cfg.train.seed, k)
    elif kind == "path":
        seeds = load_scribbles(str(value), train.stems, size, k)
    elif train.scribbles is not None:  # read by the data layer, which chose the images by their scribbles
        seeds = train.scribbles.clone()
    else:
        if not train.image_paths:
            raise DataError(
                "method.scribbles=auto needs the training images' file paths to find scribbles/ beside "
                "images/, but this data set has none (in-memory or synthetic data); use "
                "method.scribbles=synthetic:L or a path"
            )
        seeds = torch.full((len(train), size, size), UNLABELLED, dtype=torch.int64)
        groups: dict[Path, list[int]] = defaultdict(list)
        for i, p in enumerate(train.image_paths):
            groups[Path(p).parent.parent].append(i)
        for root, idx in groups.items():
            seeds[idx] = load_scribbles(root, [train.stems[i] for i in idx], size, k)
    empty = [train.stems[i] for i in range(len(train)) if not bool((seeds[i] != UNLABELLED).any())]
    if empty:
        raise DataError(f"training image(s) without any scribbled pixel: {', '.join(empty[:5])}")
    return seeds.to(ctx.device)


class WeakMethod(Method):
    """Base of the scribble methods: loads the seeds once (also on resume) and gives PCE."""

    Config = WeakConfig
    patches = False  # the seeds and affinities are per whole image
    labels = "scribbles"

    @classmethod
    def scribble_files(cls, mcfg: Any) -> bool:
        """``method.scribbles=auto``: the dataset's own ``scribbles/`` folder."""
        try:
            return parse_scribble_spec(mcfg.scribbles)[0] == "auto"
        except ValueError:
            return False

    def __init__(self, ctx: TrainContext, mcfg: Any) -> None:
        super().__init__(ctx, mcfg)
        self.seeds = training_scribbles(ctx, mcfg.scribbles)
        """N×S×S int64 seeds of the training split (255 = unlabelled)."""

    @property
    def pretrain_iters(self) -> int:
        p = self.mcfg.pretrain_iters
        return self.ctx.cfg.train.iterations // 3 if p is None else max(0, int(p))

    regularised = True
    """True for methods that start from PCE and then optimise another objective (grid_gd,
    dense_gd, grid_tr): their PCE phase is not selectable as the run's result."""

    def selectable(self, step: int) -> bool:
        """After the PCE pretraining only (for regularised methods): the result of a grid_tr /
        grid_gd / dense_gd run is a model trained with its regulariser, never its PCE start
        (validation keeps running and is logged during pretraining)."""
        return not self.regularised or step > self.pretrain_iters

    def batch_seeds(self, batch: Batch) -> torch.Tensor:
        """Seeds of the batch's images → B×S×S int64 (the batch's full masks are not used)."""
        return self.seeds[batch.index.to(self.seeds.device)]

    def forward(self, batch: Batch) -> torch.Tensor:
        self.model.train()
        return self.model(batch.images)

    def pce_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimiser step on partial cross-entropy (Eq. 6)."""
        logits = self.forward(batch)
        loss = partial_cross_entropy(logits, self.batch_seeds(batch))
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach(), "pce": loss.detach()}

    def regularised_step(self, batch: Batch, regulariser, nu: float) -> dict[str, torch.Tensor]:
        """One step on PCE + ν·regulariser(probs N×K×H×W, batch) (Eq. 8)."""
        logits = self.forward(batch)
        pce = partial_cross_entropy(logits, self.batch_seeds(batch))
        reg = regulariser(class_probs(logits), batch).mean()
        loss = pce + nu * reg
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach(), "pce": pce.detach(), "potts": reg.detach()}
