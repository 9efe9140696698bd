"""Evaluation layer: per-image metrics (numpy) and model evaluation at original resolution.

Imports only ``scarce.data``, ``scarce.losses`` and ``scarce.utils`` (never methods).
``scarce.evaluation.evaluate`` (torch) is imported on first use of its names.
"""
from __future__ import annotations

import importlib
from typing import Any

from scarce.evaluation.metrics import (
    METRICS,
    SegMetric,
    accuracy,
    aggregate,
    confusion,
    dice,
    image_metrics,
    jaccard,
    mean_dice,
    mean_jaccard,
    sensitivity,
    specificity,
    thresholded_jaccard,
)

_EVALUATE = {"predict_probs", "evaluate_set", "evaluate_sets", "validate", "prediction_filename",
             "format_summary", "overlay_image", "check_tta", "TTA_MODES"}

__all__ = [
    "METRICS", "SegMetric", "accuracy", "aggregate", "confusion", "dice", "image_metrics", "jaccard",
    "mean_dice", "mean_jaccard", "sensitivity", "specificity", "thresholded_jaccard", *sorted(_EVALUATE),
]


def __getattr__(name: str) -> Any:
    if name in _EVALUATE:
        return getattr(importlib.import_module("scarce.evaluation.evaluate"), name)
    raise AttributeError(f"module 'scarce.evaluation' has no attribute {name!r}")
