"""The package's import graph: no cycles between modules, and layers import leftward only.

Why: a cycle (``registry`` ↔ ``config``, ``evaluate`` ↔ ``trimap``) works only while one side
imports lazily, and breaks the day someone moves an import to the top; a layer importing
rightward (models taking a rule from losses) makes the layering in docs/DESIGN.md fiction.
Every ``import``/``from ... import`` counts, including the lazy ones inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import scarce

ROOT = Path(scarce.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module → scarce modules it imports (``from pkg import name`` counts as ``pkg.name`` when
    that is a module, else ``pkg``)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t.startswith("scarce") and t != mod and t in modules:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


# lowest first; a module may import its own layer's modules and any layer to its left; a name
# covers its package's modules (scarce.cli: scarce/cli/__init__.py and the command modules beside it)
LAYERS = [
    ["scarce.errors", "scarce.registry", "scarce.config", "scarce.utils"],
    ["scarce.data"],
    ["scarce.augment"],
    ["scarce.models", "scarce.losses"],
    ["scarce.evaluation"],
    ["scarce.engine"],
    ["scarce.methods", "scarce.validate", "scarce.suggest"],
    ["scarce.runfolder"],
    ["scarce.reports"],
    ["scarce.experiments", "scarce.api", "scarce.demo", "scarce.robustness", "scarce.status", "scarce.model_export",
     "scarce.library", "scarce.annotate"],
    ["scarce.cli", "scarce.__main__"],
]


def _layer(mod: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{mod} is in no layer of LAYERS: add it")


def test_layers_import_leftward_only():
    graph = import_graph()
    wrong = sorted(f"{m} → {t}" for m, ts in graph.items() if m != "scarce" for t in ts
                   if t != "scarce" and _layer(t) > _layer(m))
    assert wrong == []


def test_models_and_losses_do_not_import_each_other():
    graph = import_graph()
    cross = sorted(f"{m} → {t}" for m, ts in graph.items() for t in ts
                   if (m.startswith("scarce.models") and t.startswith("scarce.losses"))
                   or (m.startswith("scarce.losses") and t.startswith("scarce.models")))
    assert cross == []
