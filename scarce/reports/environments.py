"""Report section: which environments the runs of a dataset's tables trained in.

Why: one config and seed scores differently on different machines (CPU kernels, thread count,
library versions; :mod:`scarce.utils.environment`). A table cell that averages seeds trained in
different environments, or rows compared across environments, can show a "gain" that is the
machine. The section appears only when a dataset's runs do not all share one recorded
environment, and names only the fields that differ. Within the tables, :class:`EnvironmentMarks`
marks each cell whose own runs differ in what can change the numbers (CPU, threads, device,
library versions) and writes the footnote under the table that names those runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

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


MARK = "†"
"""Suffix of a results-table cell whose runs trained in different set-ups (:class:`EnvironmentMarks`)."""
MARK_FIELDS = ("cpu", "cpu_id", "cpu_caches", "cpu_capability", "threads", "device", "world_size", "scarce")
"""Environment fields that mark a cell when they differ between its runs, with every library
version recorded (:data:`scarce.utils.environment.PACKAGES`): what can change a run's numbers.
Not the host, Python, the OS or the CPU count (the thread count is what the kernels use)."""
NOTE = ("Runs of this cell trained in different set-ups (CPU, threads, device, processes or a library version), "
        "so part of its spread or gap may be the machine:")
"""Text of the footnote under a table with marked cells (its list follows)."""
FIELD_NAMES = {"cpu": "CPU", "cpu_id": "CPU family/model", "cpu_caches": "CPU caches",
               "cpu_capability": "kernel ISA", "threads": "threads", "device": "device", "world_size": "processes",
               "scarce": "scarce"}


def _setup(env: dict[str, Any]) -> dict[str, Any]:
    """The :data:`MARK_FIELDS` and library versions of one environment entry (missing ones left out)."""
    out = {k: env[k] for k in MARK_FIELDS if env.get(k) is not None}
    packages = env.get("packages")
    if isinstance(packages, dict):
        out.update({str(k): v for k, v in sorted(packages.items()) if v is not None})
    return out


def _order(who: str, run: str) -> tuple[int, int, str]:
    """Sort key of a run in a footnote: by seed number, runs without a seed after them."""
    seed = who[len("seed "):]
    return (0, int(seed), run) if who.startswith("seed ") and seed.lstrip("-").isdigit() else (1, 0, run)


class EnvironmentMarks:
    """Marks the results-table cells (mean ± std over seeds) whose runs trained in different
    set-ups — CPU model, thread count, device, DDP processes or the version of scarce or of a
    library that can change the numbers — and writes the footnote naming those runs and what
    differs. Call it with the ``collect_runs`` rows of one cell's runs (``mark`` of
    :func:`~scarce.reports.tables.results_table`): :data:`MARK` or ``""``. A run resumed in
    another set-up counts as mixed on its own. Runs without ``environment.json`` (trained before
    scarce recorded it) and fields an entry does not record are unknown and never make a mark.
    """

    def __init__(self, runs_root: str | Path) -> None:
        self.root = Path(runs_root)
        self._setups: dict[str, list[dict[str, Any]]] = {}
        self.marked: dict[tuple[str, Any], dict[str, str]] = {}
        """``{(row, budget): {run: who}}`` of the marked cells, ``who`` e.g. ``seed 2``."""

    def setups(self, run: str) -> list[dict[str, Any]]:
        """The recorded set-ups of ``run`` (``[]`` when it has no ``environment.json``)."""
        if run not in self._setups:
            self._setups[run] = [_setup(e) for e in read_environments(self.root / run)]
        return self._setups[run]

    def differing(self, runs: Sequence[str]) -> list[str]:
        """The fields whose recorded values differ between (or within) the set-ups of ``runs``."""
        entries = [e for r in runs for e in self.setups(r)]
        fields = list(dict.fromkeys(f for e in entries for f in e))
        return [f for f in fields
                if len({json.dumps(e[f], sort_keys=True, default=str) for e in entries if f in e}) > 1]

    def __call__(self, cell: "pd.DataFrame") -> str:
        runs = sorted(cell.drop_duplicates(subset=["run"])["run"].tolist())
        if not self.differing(runs):
            return ""
        for _, r in cell.drop_duplicates(subset=["run"]).iterrows():
            seed = r["seed"]
            who = f"seed {int(seed)}" if seed is not None and seed == seed else f"run {r['run']}"
            self.marked.setdefault((str(r["row"]), r["budget"]), {})[str(r["run"])] = who
        return MARK

    def notes(self) -> list[tuple[str, list[tuple[str, list[tuple[str, list[str]]]]], list[str]]]:
        """Per marked (row, budget), in order: ``(label, [(field, [(value, [who, ...]), ...]), ...],
        [who without a record, ...])``; a value of a run resumed elsewhere reads ``a → b``."""
        out = []
        for (row, budget), runs in sorted(self.marked.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            ordered = sorted(runs, key=lambda r: _order(runs[r], r))
            fields = []
            for f in self.differing(ordered):
                by_value: dict[str, list[str]] = {}
                for r in ordered:
                    seen = [str(e[f]) for e in self.setups(r) if f in e]
                    if seen:
                        value = " → ".join(v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1])
                        by_value.setdefault(value, []).append(runs[r])
                fields.append((FIELD_NAMES.get(f, f), list(by_value.items())))
            missing = [runs[r] for r in ordered if not self.setups(r)]
            out.append((f"{row} @ {budget}", fields, missing))
        return out

    @staticmethod
    def seeds_text(whos: list[str]) -> str:
        """``seeds 0, 2`` (or the runs' names when they have no seed)."""
        seeds = [w[len("seed "):] for w in whos if w.startswith("seed ")]
        if len(seeds) == len(whos):
            return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
        return ", ".join(whos)

    def footnote(self) -> list[str]:
        """Markdown lines under a table (empty when no cell is marked)."""
        notes = self.notes()
        if not notes:
            return []
        lines = [f"{MARK} {NOTE}", ""]
        for label, fields, missing in notes:
            parts = ["; ".join([f"{name}: " + ", ".join(f"{v} ({self.seeds_text(w)})" for v, w in values)
                                for name, values in fields])]
            if missing:
                parts.append(f"not recorded: {self.seeds_text(missing)}")
            lines.append(f"- `{label}` — {'; '.join(parts)}")
        return lines + [""]


__all__ = ["environment_groups", "environment_section", "EnvironmentMarks", "MARK", "MARK_FIELDS", "NOTE", "UNRECORDED"]
