"""One registry + factory per component kind (datasets, models, augmentations, methods, ...).

Why: every component is created by name from a config file, so a typo must fail with one
clear "did you mean" message instead of a KeyError deep inside a run.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

from scarce.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes, factories or metadata records).

    >>> MODELS = Registry("model")
    >>> @MODELS.register("unet")
    ... def make_unet(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        key = name.lower()

        def _add(o: T) -> T:
            if key in self._items and self._items[key] is not o:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = o
            return o

        return _add if obj is None else _add(obj)

    def get(self, name: str) -> T:
        """Look ``name`` up; unknown names raise a KeyError that suggests the closest names."""
        key = str(name).lower()
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, self._items.keys(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}."
        )

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def look_up(name: str, options: list[str] | tuple[str, ...], what: str) -> str:
    """Validate a string option (MONAI ``look_up_option`` style) with a did-you-mean error.

    Raises :class:`scarce.config.ConfigError` (a ValueError), which the CLI prints as one line:
    these options (preset, optimizer, backbone, ...) come from the config.
    """
    if name in options:
        return name
    close = difflib.get_close_matches(str(name), list(options), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown {what} {name!r}.{hint} Choose from: {', '.join(options)}.")


def build(registry: Registry[Callable[..., T]], name: str, **kwargs: Any) -> T:
    """Factory: ``registry.get(name)(**kwargs)``."""
    return registry.get(name)(**kwargs)
