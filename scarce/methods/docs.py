"""Method documentation read from the registry, so it cannot drift from the code.

``scarce methods NAME`` and ``scarce methods --markdown [--family F]`` (the pages under
``docs/methods/``, checked by ``tests/test_method_docs.py``) both come from here: the method's
family (its sub-package), its module docstring's summary, its ``streams`` and ``patches`` class
attributes, and its Config dataclass (key, type, default and the attribute docstring written
below each field).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from typing import Any

from scarce.methods import load_builtin_methods
from scarce.registry import look_up


def method_family(cls: type) -> str:
    """``scarce.methods.gan.e2eaug`` → ``gan`` (``-`` for a method outside a family package)."""
    parts = cls.__module__.split(".")
    return parts[2] if len(parts) >= 4 and parts[:2] == ["scarce", "methods"] else "-"


def method_summary(cls: type, limit: int | None = None) -> str:
    """First paragraph of the method module's docstring (the method's description; class
    docstrings only name its modules), without its ``name``: prefix; with ``limit``, its first
    sentence cut to ``limit`` characters."""
    doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0]
    text = re.sub(r"^``\w+``:\s*", "", " ".join(doc.split()))
    if limit is None:
        return text
    text = re.split(r"(?<=[.;])\s(?=[A-Z])", text)[0]
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _own_field_docs(klass: type) -> dict[str, str]:
    """Attribute docstrings (a string statement right below ``name: type = ...``) of one class body."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def field_docs(config: type) -> dict[str, str]:
    """Config field → its attribute docstring, looked up along the MRO (a subclass that only
    changes a default keeps its base's docstring)."""
    docs: dict[str, str] = {}
    for klass in reversed(config.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def field_default(f: dataclasses.Field) -> str:
    """A Config field's default as ``repr`` (empty when the field is required)."""
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return ""


def config_rows(cls: type) -> list[dict[str, str]]:
    """One row per key of the method's Config: key (``method.X``), type, default, help."""
    docs = field_docs(cls.Config)
    return [{"key": f"method.{f.name}", "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
             "default": field_default(f), "help": docs.get(f.name, "")}
            for f in dataclasses.fields(cls.Config)]


def families() -> list[str]:
    """Families of the registered methods (sorted)."""
    reg = load_builtin_methods()
    return sorted({method_family(reg.get(n)) for n in reg.names()})


def _cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code and text else text


def method_markdown(cls: type) -> str:
    """One method's Markdown section."""
    patch = "supported" if getattr(cls, "patches", True) else "not supported (trains on whole images)"
    lines = [f"## `{cls.name}`", "",
             f"- family: `{method_family(cls)}`",
             f"- data streams: {', '.join(f'`{s}`' for s in cls.streams)}",
             f"- `data.patch`: {patch}", "",
             method_summary(cls), ""]
    rows = config_rows(cls)
    if rows:
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{r['key']}` | {_cell(r['type'], True)} | {_cell(r['default'], True) or 'required'} | "
                  f"{_cell(r['help'])} |" for r in rows]
    else:
        lines.append("No config keys of its own.")
    return "\n".join(lines) + "\n"


def family_markdown(family: str) -> str:
    """The page ``docs/methods/<family>.md``: a header, then every method of the family."""
    look_up(family, families(), "method family")
    reg = load_builtin_methods()
    sections = [method_markdown(reg.get(n)) for n in reg.names() if method_family(reg.get(n)) == family]
    head = (f"# `{family}` methods\n\nGenerated by `scarce methods --markdown --family {family} > "
            f"docs/methods/{family}.md`; do not edit by hand.\n")
    return "\n".join([head, *sections])


def methods_markdown(family: str | None = None) -> str:
    """``scarce methods --markdown [--family F]``: one family's page, or every family's in turn."""
    if family is not None:
        return family_markdown(family)
    return "\n".join(family_markdown(f) for f in families())
