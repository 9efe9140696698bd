"""Robustness report: intensity-shift stress-test results of a grid, mean ± std over seeds.

Why: :func:`scarce.api.evaluate_shifts` scores one run under each shift and severity
(``<run>/eval_shifts/shifts.csv``); comparing methods needs those numbers side by side and
averaged over seeds, as the results report does for the test sets. Like
:mod:`scarce.reports.report` this module only reads files (each run's ``config.yaml`` and
``shifts.csv``) and is deterministic (sorted inputs, no timestamps).

Output (``out_dir``):

* ``robustness.md`` — per dataset and test set (ID first): a table with rows = run labels
  (``<label> @ <budget>`` when a dataset has several budgets) and columns = unshifted, each
  shift averaged over its severities, and the mean over all shifts; cells = mean ± std over
  seeds (sample std; one seed shows the mean) of the dataset's primary metric (Dice; Jaccard
  for skin lesions, as the results report), best per column in **bold**; then the figure.
* ``<dataset>_<test set>_<metric>_shifts.md`` / ``.csv`` — each table on its own;
  ``<dataset>_<test set>_<metric>_shifts.png`` — score vs severity (0 = unshifted), one panel
  per shift, one line per row with a ± std band over seeds.
* ``robustness.csv`` — long table: dataset, test_set, row, budget, shift, severity, metric,
  n_seeds, mean, std (per severity, before averaging).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from scarce.reports.tables import format_cell, to_markdown
from scarce.utils.io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

REPORT_MD, REPORT_CSV = "robustness.md", "robustness.csv"
REFERENCE = "none"
ALL = "mean (all shifts)"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def is_robustness_folder(folder: Path) -> bool:
    """True when ``folder`` holds an earlier robustness report (``robustness.md`` starting with
    ``# Robustness``): it may be rewritten without ``--overwrite``."""
    try:
        return (folder / REPORT_MD).read_text(encoding="utf-8").startswith("# Robustness")
    except (OSError, UnicodeDecodeError):
        return False


def check_robustness_folder(runs_roots: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> Path:
    """``scarce robustness`` destination check, before anything is read or computed: ``out_dir``
    may lie inside a runs folder but never be or contain one, and must be new, empty or an
    earlier robustness report unless ``overwrite`` (then only the report's files are replaced)."""
    from scarce.utils.paths import check_output_folder

    return check_output_folder(out_dir, overwrite=overwrite, what="robustness report folder",
                               previous=is_robustness_folder, containers=list(runs_roots), command="scarce robustness")


def read_shift_results(runs: Sequence[dict[str, Any]]) -> "pd.DataFrame":
    """One row per (run, test set, shift, severity) from each run's ``shifts.csv``.

    ``runs``: dicts with ``run`` (display path), ``dataset``, ``row``, ``budget``, ``seed`` and
    ``csv`` (path of its ``shifts.csv``). Adds ``test_index`` (order of the test sets in the
    file: 0 = in-distribution)."""
    import pandas as pd

    frames = []
    for r in runs:
        d = pd.read_csv(r["csv"])
        order = {t: i for i, t in enumerate(dict.fromkeys(d["test_set"].tolist()))}
        d["test_index"] = d["test_set"].map(order)
        for k in ("run", "dataset", "row", "budget", "seed"):
            d[k] = r[k]
        frames.append(d)
    if not frames:
        return pd.DataFrame(columns=["run", "dataset", "row", "budget", "seed", "test_set", "test_index", "shift",
                                     "severity"])
    return pd.concat(frames, ignore_index=True)


def _label(df: "pd.DataFrame") -> "pd.Series":
    if df["budget"].nunique(dropna=True) > 1:
        return df["row"].astype(str) + " @ " + df["budget"].astype(str)
    return df["row"].astype(str)


def seed_summary(df: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    """Mean and sample std over seeds of ``metric`` per (dataset, test set, label, shift,
    severity): columns ``label, n_seeds, mean, std`` (std NaN with one seed)."""
    import pandas as pd

    col = f"{metric}_mean"
    d = df.assign(label=_label(df))
    out = []
    for key, g in d.groupby(["dataset", "test_set", "label", "row", "budget", "shift", "severity"], sort=True):
        vals = g[col].dropna() if col in g else pd.Series(dtype=float)
        out.append(dict(zip(["dataset", "test_set", "label", "row", "budget", "shift", "severity"], key),
                        metric=metric, n_seeds=int(len(vals)), mean=float(vals.mean()) if len(vals) else math.nan,
                        std=float(vals.std(ddof=1)) if len(vals) > 1 else math.nan))
    return pd.DataFrame.from_records(out)


def robustness_table(df: "pd.DataFrame", metric: str, shifts: Sequence[str], decimals: int = 3
                     ) -> tuple["pd.DataFrame", dict[str, set[str]]]:
    """The table of one dataset and test set: rows = labels, columns = ``unshifted``, each
    shift (per run the mean over its severities, then mean ± std over seeds) and
    ``mean (all shifts)``. Returns (string table, best labels per column)."""
    import pandas as pd

    col = f"{metric}_mean"
    d = df.assign(label=_label(df))
    per_run: dict[str, dict[str, dict[Any, float]]] = {}  # column → label → {seed: score}
    for (label, seed, run), g in d.groupby(["label", "seed", "run"], sort=True, dropna=False):
        ref = g[g["shift"] == REFERENCE][col].dropna()
        if len(ref):
            per_run.setdefault("unshifted", {}).setdefault(label, {})[run] = float(ref.mean())
        all_vals = []
        for s in shifts:
            v = g[(g["shift"] == s) & (g["severity"] > 0)][col].dropna()
            if len(v):
                per_run.setdefault(s, {}).setdefault(label, {})[run] = float(v.mean())
                all_vals.append(float(v.mean()))
        if len(all_vals) == len(shifts) and all_vals:
            per_run.setdefault(ALL, {}).setdefault(label, {})[run] = sum(all_vals) / len(all_vals)
    labels = sorted(d["label"].unique().tolist())
    columns = [c for c in ["unshifted", *shifts, ALL] if c in per_run]
    cells: dict[str, list[str]] = {}
    best: dict[str, set[str]] = {}
    for c in columns:
        cells[c] = []
        rounded: dict[str, float] = {}
        for lab in labels:
            vals = list(per_run[c].get(lab, {}).values())
            mean = sum(vals) / len(vals) if vals else math.nan
            std = float(pd.Series(vals).std(ddof=1)) if len(vals) > 1 else math.nan
            cells[c].append(format_cell(mean, std, decimals))
            if vals:
                rounded[lab] = round(mean, decimals)
        if rounded:
            top = max(rounded.values())
            best[c] = {k for k, v in rounded.items() if v == top}
    return pd.DataFrame(cells, index=pd.Index(labels, name="row")), best


def shift_plot(summary: "pd.DataFrame", metric: str, shifts: Sequence[str], out_png: str | Path,
               title: str = "") -> Path:
    """Score vs severity (0 = unshifted), one panel per shift, one line per label with a ± std
    band over seeds (``summary``: :func:`seed_summary` of one dataset and test set)."""
    from matplotlib.figure import Figure

    from scarce.reports.plots import _colors, _pretty, save_figure

    labels = sorted(summary["label"].unique().tolist()) if len(summary) else []
    colors = _colors(labels)
    ncols = min(4, max(1, len(shifts)))
    nrows = max(1, math.ceil(len(shifts) / ncols))
    fig = Figure(figsize=(3.3 * ncols, 2.9 * nrows + (0.4 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).flatten().tolist()
    for ax, s in zip(axes, shifts):
        for lab in labels:
            g = summary[(summary["label"] == lab) & ((summary["shift"] == s) | (summary["shift"] == REFERENCE))]
            g = g.sort_values("severity")
            if g.empty:
                continue
            x = g["severity"].to_numpy(dtype=float)
            m = g["mean"].to_numpy(dtype=float)
            sd = g["std"].fillna(0.0).to_numpy(dtype=float)
            ax.plot(x, m, marker="o", markersize=3, color=colors[lab], label=lab)
            ax.fill_between(x, m - sd, m + sd, color=colors[lab], alpha=0.2, linewidth=0)
        ax.set_title(s, fontsize=10)
        ax.set_xticks([0, 1, 2, 3])
        ax.grid(True, alpha=0.3)
    for ax in axes[len(shifts):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[:len(shifts)]):
        if i % ncols == 0:
            ax.set_ylabel(_pretty(metric))
        if i >= len(shifts) - ncols:
            ax.set_xlabel("severity")
    if labels and shifts:
        axes[0].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_png)


def write_robustness_report(df: "pd.DataFrame", out_dir: str | Path, shifts: Sequence[str],
                            metric: str | None = None, sources: Sequence[str] = (),
                            notes: Sequence[str] = ()) -> Path:
    """Write the report of :func:`read_shift_results` output ``df`` into ``out_dir`` (see the
    module docstring); ``metric`` forces one metric (default: each dataset's primary metric).
    ``notes`` are listed under the introduction (e.g. runs left out). Returns ``robustness.md``."""
    import pandas as pd

    from scarce.evaluation.shifts import shift_parameter_rows
    from scarce.reports.report import primary_metric
    from scarce.reports.tables import ordered_test_sets

    out = Path(out_dir)
    from scarce.utils.paths import write_marker

    write_marker(out, "scarce robustness")  # checked by check_robustness_folder before any work
    lines = ["# Robustness to intensity shifts", ""]
    src = ", ".join(f"`{Path(s).as_posix()}`" for s in sources)
    n_runs = int(df["run"].nunique()) if len(df) else 0
    lines += [f"{n_runs} finished runs" + (f" from {src}" if src else "") + ".", ""]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += [
        "Each run's best checkpoint is scored on its own test images under deterministic intensity shifts "
        "(`scarce evaluate RUN --shifts all`; parameters below, applied at the network's input resolution). "
        "Cells: mean ± std over seeds (sample std; a single seed shows the mean only) of each run's mean "
        "per-image score; a shift's column averages its severities; `unshifted` = severity 0; best per "
        "column in **bold**.", "",
        "| shift | parameter | 1 | 2 | 3 |", "|---|---|:---:|:---:|:---:|",
        *[f"| {p['shift']} | {p['parameter']} | {p['1']} | {p['2']} | {p['3']} |" for p in shift_parameter_rows(
            list(shifts))], "",
    ]
    long: list[pd.DataFrame] = []
    for ds in sorted(df["dataset"].unique().tolist()) if len(df) else []:
        sub = df[df["dataset"] == ds]
        m = metric or primary_metric(ds, sub)
        if f"{m}_mean" not in sub.columns:
            lines += [f"## {ds}", "", f"No `{m}` in the runs' shifts.csv.", ""]
            continue
        for t in ordered_test_sets(sub):
            part = sub[sub["test_set"] == t]
            stem = f"{_slug(ds)}_{_slug(t)}_{m}_shifts"
            table, best = robustness_table(part, m, shifts)
            atomic_write_text(out / f"{stem}.md", to_markdown(table, best))
            atomic_write_text(out / f"{stem}.csv", table.to_csv())
            summ = seed_summary(part, m)
            long.append(summ)
            title = {"dice": "Dice", "jaccard": "Jaccard", "jaccard_t": "thresholded Jaccard"}.get(m, m)
            kind = "in-distribution" if int(part["test_index"].min()) == 0 else "out-of-distribution"
            lines += [f"## {ds} — test set {t} ({kind}) — {title}", "", to_markdown(table, best).rstrip("\n"), ""]
            shift_plot(summ, m, [s for s in shifts if s in set(part["shift"])], out / f"{stem}.png",
                       title=f"{ds} / {t}")
            lines += [f"![{ds} {t} {m} under intensity shifts]({stem}.png)", ""]
    cols = ["dataset", "test_set", "row", "budget", "shift", "severity", "metric", "n_seeds", "mean", "std"]
    flat = pd.concat(long, ignore_index=True)[cols] if long else pd.DataFrame(columns=cols)
    if len(flat):  # unshifted first, then the shifts in the order asked for
        rank = {s: i for i, s in enumerate([REFERENCE, *shifts])}
        flat = flat.sort_values(["dataset", "row", "budget"], kind="stable")
        flat = flat.assign(_t=flat["test_set"].map({t: i for i, t in enumerate(dict.fromkeys(flat["test_set"]))}),
                           _s=flat["shift"].map(rank))
        flat = flat.sort_values(["dataset", "_t", "row", "budget", "_s", "severity"], kind="stable")[cols]
    atomic_write_text(out / REPORT_CSV, flat.to_csv(index=False, float_format="%.6f"))
    lines += [f"Every severity: [{REPORT_CSV}]({REPORT_CSV}).", ""]
    atomic_write_text(out / REPORT_MD, "\n".join(lines))
    return out / REPORT_MD


__all__ = ["check_robustness_folder", "is_robustness_folder", "read_shift_results", "robustness_table",
           "seed_summary", "shift_plot", "write_robustness_report"]
