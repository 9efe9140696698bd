"""Training methods (one file each) on the shared :class:`~scarce.engine.trainer.Trainer`.

``METHODS`` maps names to :class:`~scarce.engine.method.Method` subclasses. The method modules
are found by scanning the family packages (``supervised/``, ``gan/``, ``weak/``, ``ssl/``: every
sub-package of this one) on first use of the registry, so ``import scarce`` stays free and adding
a method is one file that registers itself with :func:`register_method`. The family packages'
helper modules (``gan/base.py``, ``weak/common.py``, ...) are imported by the same scan and
register nothing.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Mapping

from scarce.config import from_dict
from scarce.registry import Registry

METHODS: Registry[type] = Registry("method")
_loaded = False


def register_method(name: str):
    """Class decorator: ``@register_method("supervised")``."""

    def deco(cls: type) -> type:
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return deco


def load_builtin_methods() -> Registry[type]:
    """The registry with every method of the family packages imported (once; in sorted order, so
    the scan does not depend on the file system's listing)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for family in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg):
            package = importlib.import_module(f"{__name__}.{family}")
            for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
                importlib.import_module(f"{package.__name__}.{module}")
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


def method_spec(method: Mapping[str, Any] | Any) -> MethodSpec:
    """``{"name": "e2eaug", "lam": 1.0}`` (or a :class:`~scarce.config.RunConfig`) → its
    :class:`MethodSpec`. Unknown method names and keys raise did-you-mean errors (ConfigError /
    KeyError). Nothing is cached: a run's caller resolves its method once and passes the spec on
    (:func:`scarce.api.train_run` → the trainer, the plan, ``method.json``)."""
    d = dict(method if isinstance(method, Mapping) else method.method)
    cls = get_method(d["name"])
    fields_ = {k: v for k, v in d.items() if k != "name"}
    return MethodSpec(cls.name, cls, from_dict(cls.Config, fields_, where="method."))


def _register_resolver() -> None:
    """Let a trainer given a config alone resolve its method here (:mod:`scarce.engine.spec`)."""
    from scarce.engine.spec import set_method_resolver

    set_method_resolver(method_spec)


_register_resolver()
