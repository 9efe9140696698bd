"""Training methods (one file each) on the shared :class:`~scarce.methods.trainer.Trainer`.

``METHODS`` maps names to :class:`~scarce.methods.base.Method` subclasses. Built-in method
modules are imported on first use of the registry so that ``import scarce`` stays free.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from scarce.config import from_dict
from scarce.registry import Registry

METHODS: Registry[type] = Registry("method")

_BUILTIN = ("supervised", "e2eaug", "separate", "gan_aug", "pce_gd", "grid_gd", "dense_gd", "grid_tr")
_loaded = False


def register_method(name: str):
    """Class decorator: ``@register_method("supervised")``."""

    def deco(cls: type) -> type:
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return deco


def load_builtin_methods() -> Registry[type]:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN:
            importlib.import_module(f"scarce.methods.{mod}")
    return METHODS


def get_method(name: str) -> type:
    return load_builtin_methods().get(name)


def resolve_method_config(method: Mapping[str, Any]) -> tuple[type, Any]:
    """``{"name": "e2eaug", "lam": 1.0}`` → (method class, its Config dataclass instance)."""
    cls = get_method(method["name"])
    fields_ = {k: v for k, v in method.items() if k != "name"}
    return cls, from_dict(cls.Config, fields_, where="method.")
