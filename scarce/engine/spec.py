"""The run's method as the engine takes it: resolved once, by the caller, and passed down.

The engine sits below :mod:`scarce.methods` and never imports it: whoever builds a
:class:`~scarce.engine.trainer.Trainer` (:func:`scarce.api.train_run`) resolves ``cfg.method``
once with :func:`scarce.methods.method_spec` and passes the spec in. A spec is anything with
``name``, ``cls`` (a :class:`~scarce.engine.method.Method` subclass) and ``config`` (an
instance of its ``Config`` dataclass), i.e. a :class:`scarce.methods.MethodSpec`.

A trainer given a config alone (a script, a test) asks :func:`resolve_method`, which uses the
resolver that :mod:`scarce.methods` registers here when it is imported: the dependency points
from the methods to the engine, never back.
"""
from __future__ import annotations

from typing import Any, Callable

_resolver: Callable[[Any], Any] | None = None


def set_method_resolver(resolver: Callable[[Any], Any]) -> None:
    """Register ``resolver(cfg) → spec`` (:func:`scarce.methods.method_spec`; done on its import)."""
    global _resolver
    _resolver = resolver


def resolve_method(cfg: Any) -> Any:
    """The spec of ``cfg.method`` by the registered resolver; a TypeError naming the fix when
    no method registry was imported."""
    if _resolver is None:
        raise TypeError("the run's method is not resolved: pass the trainer method=scarce.methods.method_spec(cfg) "
                        "(importing scarce.methods also lets it resolve the config's method itself)")
    return _resolver(cfg)
