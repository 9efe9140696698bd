"""Training methods (one file each) on the shared :class:`~scarce.engine.trainer.Trainer`.

``METHODS`` maps names to :class:`~scarce.engine.method.Method` subclasses. Built-in method
modules are imported on first use of the registry so that ``import scarce`` stays free.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from scarce.config import from_dict
from scarce.registry import Registry

METHODS: Registry[type] = Registry("method")

# family package → its method modules (one method per file); the CLI and the docs read the list of
# method names from the registry, never from here.
_BUILTIN = {
    "supervised": ("supervised",),
    "gan": ("e2eaug", "separate", "gan_aug"),
    "weak": ("pce_gd", "grid_gd", "dense_gd", "grid_tr"),
    "ssl": ("mean_teacher", "fixmatch", "ctbct", "dct", "dim"),
}
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
        for family, mods in _BUILTIN.items():
            for mod in mods:
                importlib.import_module(f"scarce.methods.{family}.{mod}")
    return METHODS


def get_method(name: str) -> type:
    return load_builtin_methods().get(name)


@dataclass(frozen=True)
class MethodSpec:
    """A run's method, resolved once: the registered class and its typed Config dataclass.

    Why one object: the trainer, the API (config comparison, GAN pretraining), the validator,
    grids and reports all need the method's settings with its defaults filled in; parsing the
    untyped ``cfg.method`` dict in each of them let them drift apart. Report axes (λ, scribble
    length) are declared on the Config fields (``field(metadata={"axis": ...})``) and read here,
    never parsed from run labels.
    """

    name: str
    cls: type
    config: Any

    def as_dict(self) -> dict[str, Any]:
        """``{"name": ..., **every Config field}`` (defaults filled in): two configs that differ
        only by spelling a default out are the same method."""
        return {"name": self.name, **dataclasses.asdict(self.config)}

    def axes(self, explicit: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Report axis key → value for every Config field declared as an axis
        (:func:`scarce.config.axis_field`). With ``explicit`` (the run's method dict as written),
        only fields set there count: a run that left λ at its default is a reference row, not a
        point of a λ sweep."""
        out: dict[str, float] = {}
        for f in dataclasses.fields(self.config):
            axis = f.metadata.get("axis")
            if axis is None or (explicit is not None and f.name not in explicit):
                continue
            value = getattr(self.config, f.name)
            out[axis.key] = float(axis.value(value) if axis.value else value)
        return out

    def axis_fields(self) -> dict[str, str]:
        """Report axis key → the Config field that carries it (e.g. ``method_lam`` → ``lam``)."""
        return {f.metadata["axis"].key: f.name for f in dataclasses.fields(self.config) if "axis" in f.metadata}


def report_axes() -> dict[str, Any]:
    """Every report axis declared on a registered method's Config (key → :class:`~scarce.config.ReportAxis`)."""
    axes: dict[str, Any] = {}
    for name in load_builtin_methods().names():
        for f in dataclasses.fields(METHODS.get(name).Config):
            if "axis" in f.metadata:
                axes.setdefault(f.metadata["axis"].key, f.metadata["axis"])
    return dict(sorted(axes.items()))


METHOD_FILE = "method.json"
"""A run folder's file holding :func:`method_spec`'s fields (defaults spelled out) as the run
started. ``config.yaml`` keeps the method section as written — reports tell a λ-sweep point from a
reference row by whether λ was written — so without this file a default changed between a run's
start and its resume would be invisible: the resume would go on under the new default."""


def method_spec(method: Mapping[str, Any] | Any) -> MethodSpec:
    """``{"name": "e2eaug", "lam": 1.0}`` (or a :class:`~scarce.config.RunConfig`) → its
    :class:`MethodSpec`. Unknown method names and keys raise did-you-mean errors (ConfigError /
    KeyError). For a RunConfig the spec is kept on the object and reused until ``cfg.method``
    changes, so one run parses its method config once."""
    holder = None if isinstance(method, Mapping) else method
    d = dict(method if holder is None else holder.method)
    if holder is not None:
        cached = holder.__dict__.get("_method_spec")
        if cached is not None and cached[0] == d:
            return cached[1]
    cls = get_method(d["name"])
    fields_ = {k: v for k, v in d.items() if k != "name"}
    spec = MethodSpec(cls.name, cls, from_dict(cls.Config, fields_, where="method."))
    if holder is not None:
        holder.__dict__["_method_spec"] = (copy.deepcopy(d), spec)
    return spec
