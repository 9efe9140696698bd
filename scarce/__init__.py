"""scarce: medical image segmentation when annotations are scarce.

Importing the package does no work (no torch import, no data scan): submodules are
imported on first attribute access, so ``import scarce`` stays instant for the CLI.

The library in five lines (``scarce.train`` and ``scarce.load`` live in :mod:`scarce.library`)::

    import scarce
    res = scarce.train("synthetic", out="runs/syn", preset="cpu", train={"iterations": 200})
    m = scarce.load(res["run_dir"])
    mask = m.predict("image.png")          # H×W label ids at the image's own size
    probs = m.predict_proba(array)         # K×H×W class probabilities
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "data", "augment", "models", "losses", "evaluation", "methods", "reports",
    "config", "registry", "utils", "experiments", "api",
}


_FUNCTIONS = {"train": "scarce.library", "load": "scarce.library"}
"""Library functions exposed at the top level, imported on first use."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"scarce.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'scarce' has no attribute {name!r}")
