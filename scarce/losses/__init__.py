"""Segmentation losses as pure functions (logits, targets → scalar), plus the output-channel
convention shared by models, metrics and methods.

Convention: binary tasks (K = 2) use **one** logit channel with a sigmoid; multi-class tasks use
K channels with a softmax. :func:`class_probs` hides the difference (always N×K×H×W).

:mod:`.core` holds the registry and the supervised losses, :mod:`.weak` the weak-supervision ones
(both register into :data:`LOSSES`); this package re-exports them.
"""
from __future__ import annotations

from scarce.losses.core import (  # noqa: F401
    LOSSES,
    bce_dice,
    bce_jaccard,
    ce,
    ce_dice,
    class_probs,
    cross_entropy,
    get_loss,
    predict,
    soft_overlap,
    out_channels,
)
from scarce.losses import weak as _weak  # noqa: E402,F401  (registers robust_kl & co.)

__all__ = ["LOSSES", "bce_dice", "bce_jaccard", "ce", "ce_dice", "class_probs", "cross_entropy", "get_loss", "out_channels", "predict", "soft_overlap"]
