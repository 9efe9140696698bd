"""Report section: which environments the runs of a dataset's tables trained in.

Why: one config and seed scores differently on different machines (CPU kernels, thread count,
library versions; :mod:`scarce.utils.environment`). A table cell that averages seeds trained in
different environments, or rows compared across environments, can show a "gain" that is the
machine. The section appears only when a dataset's runs do not all share one recorded
environment, and names only the fields that differ.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scarce.utils.environment import describe_differences, fingerprint, flat_fingerprint, read_environments

if TYPE_CHECKING:
    import pandas as pd

UNRECORDED = "not recorded"
SHOWN = ("cpu", "threads", "device", "torch")
"""Fields shown for a single recorded environment (when nothing differs between recorded ones)."""


def _key(envs: list[dict[str, Any]]) -> str:
    return json.dumps([fingerprint(e) for e in envs], sort_keys=True)


def _who(runs: list[tuple[str, Any, Any]]) -> str:
    """``row @ budget: seeds a, b`` per row/budget, in order (compact for a table cell)."""
    groups: dict[tuple[str, Any], list[str]] = {}
    for row, budget, seed in runs:
        groups.setdefault((row, budget), []).append("?" if seed is None or seed != seed else str(int(seed)))
    return "; ".join(f"{row} @ {b}: seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for (row, b), s in groups.items())


def environment_groups(df: "pd.DataFrame", runs_root: str | Path, dataset: str) -> list[dict[str, Any]]:
    """The runs of ``dataset`` grouped by recorded environment (each run's whole list of
    environments, so a run resumed elsewhere forms its own group). Each group:
    ``{"label", "envs", "runs": [(row, budget, seed), ...]}``; labels A, B, ... in order of first
    run; runs without ``environment.json`` last, labelled :data:`UNRECORDED`."""
    root = Path(runs_root)
    runs = (df[df["dataset"] == dataset].drop_duplicates(subset=["run"])
            .sort_values(["row", "budget", "seed", "run"], kind="stable"))
    groups: dict[str, dict[str, Any]] = {}
    missing: list[tuple[str, Any, Any]] = []
    for _, r in runs.iterrows():
        envs = read_environments(root / r["run"])
        who = (str(r["row"]), r["budget"], r["seed"])
        if not envs:
            missing.append(who)
            continue
        groups.setdefault(_key(envs), {"envs": envs, "runs": []})["runs"].append(who)
    out = [dict(g, label=chr(ord("A") + i) if i < 26 else f"E{i + 1}") for i, g in enumerate(groups.values())]
    if missing:
        out.append({"label": UNRECORDED, "envs": [], "runs": missing})
    return out


def environment_section(df: "pd.DataFrame", runs_root: str | Path, dataset: str) -> list[str]:
    """Markdown lines for ``dataset`` (empty when its runs share one environment, or none recorded any)."""
    groups = environment_groups(df, runs_root, dataset)
    recorded = [g for g in groups if g["label"] != UNRECORDED]
    if not recorded or len(groups) == 1:
        return []
    # one column per differing field (or SHOWN when nothing differs: one recorded environment beside
    # unrecorded runs); a run resumed elsewhere shows its environments joined by " → "
    flats = {(g["label"], i): flat_fingerprint(e) for g in recorded for i, e in enumerate(g["envs"])}
    fields = sorted({f for d in describe_differences({str(k): v for k, v in flats.items()}).values() for f in d})
    fields = fields or list(SHOWN)
    n_envs = len({json.dumps(f, sort_keys=True) for f in flats.values()})
    lines = [f"### {dataset} — training environments", "",
             f"The runs of these tables come from {n_envs} recorded environment{'s' if n_envs > 1 else ''}"
             + (f" and {len(groups[-1]['runs'])} run(s) without a record (trained before scarce wrote "
                "`environment.json`)" if groups[-1]["label"] == UNRECORDED else "")
             + ". One config and seed can score differently in different environments (CPU kernels, "
               "thread count, library versions), so a difference between rows trained in different "
               "environments may be the machine; compare within one environment where it matters.", ""]
    header = ["environment", "runs", *fields]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for g in groups:
        vals = []
        for f in fields:
            seen = [flats[(g["label"], i)].get(f) for i in range(len(g["envs"]))]
            vals.append(" → ".join("—" if v is None else str(v) for v in seen))
        lines.append("| " + " | ".join([g["label"], _who(g["runs"]), *vals]) + " |")
    lines.append("")
    return lines


__all__ = ["environment_groups", "environment_section", "UNRECORDED"]
