"""scarce: medical image segmentation when annotations are scarce.

Importing the package does no work (no torch import, no data scan): submodules are
imported on first attribute access, so ``import scarce`` stays instant for the CLI.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "data", "augment", "models", "losses", "evaluation", "methods", "reports",
    "config", "registry", "utils", "experiments", "api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"scarce.{name}")
    raise AttributeError(f"module 'scarce' has no attribute {name!r}")
