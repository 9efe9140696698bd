"""Report section: the primary metric by object size, and the lesion detection rate.

Why: a mean Dice over a test set hides how the small objects fare (on polyp sets the images
whose polyp covers < 2 % of the frame score far below the rest), so per dataset and test set the
report shows a table of rows = report rows, columns = object-size bins
(:data:`~scarce.evaluation.metrics.SIZE_BINS`, plus ``empty`` when a set has images without
foreground), each cell the mean ± std over seeds of each run's mean over the images of that bin,
with the images per bin in the header; then the run's mean over all images and, for binary
tasks, the detection rate (ground-truth lesions found / lesions, docs/evaluation.md).

The data come from ``metrics.json`` (``tests.<set>.by_size``, ``detection_rate``), read by
:func:`~scarce.reports.tables.collect_runs` into ``size:<bin>:<metric>`` / ``size:<bin>:n``
columns. Runs evaluated before these fields existed have no such columns: they are left out of
the table, and a dataset without any such run gets no section (its report is unchanged).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from scarce.evaluation.metrics import size_bins
from scarce.reports.tables import SIZE_PREFIX, format_cell, ordered_test_sets, to_markdown
from scarce.utils.io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

ALL = "all images"
DETECTION = "detection rate"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _col(b: str, what: str) -> str:
    return f"{SIZE_PREFIX}{b}:{what}"


def _n_label(values: "pd.Series") -> str:
    """``n=5``, or ``n=4–5`` when the runs' test sets differ (images left out of some)."""
    ns = sorted({int(v) for v in values.dropna()})
    if not ns:
        return "n=0"
    return f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"


def size_table(df: "pd.DataFrame", metric: str, decimals: int = 3) -> tuple["pd.DataFrame", dict[str, set[str]]]:
    """The by-size table of one test set's :func:`~scarce.reports.tables.collect_runs` rows
    (string DataFrame, index ``row``; rows ``<row> @ <budget>`` when several budgets) and the
    rows to bold per column (best mean). Empty when no run recorded ``metric`` by size."""
    import pandas as pd

    cols = {b: _col(b, metric) for b in size_bins() if _col(b, metric) in df.columns}
    if not cols:
        return pd.DataFrame(), {}
    d = df[df[list(cols.values())].notna().any(axis=1)]
    d = d.drop_duplicates(subset=["row", "budget", "seed"], keep="last")
    if d.empty:
        return pd.DataFrame(), {}
    shown = [b for b in cols if _col(b, "n") in d and (d[_col(b, "n")].fillna(0) > 0).any()]
    several = d["budget"].nunique(dropna=False) > 1
    columns = {f"{b} ({_n_label(d[_col(b, 'n')])})": cols[b] for b in shown}  # header → source column
    if f"{metric}_mean" in d:
        columns[ALL] = f"{metric}_mean"
    if "detection_rate" in d and d["detection_rate"].notna().any():
        columns[DETECTION] = "detection_rate"
    cells: dict[str, dict[str, str]] = {c: {} for c in columns}
    ranked: dict[str, dict[str, float]] = {c: {} for c in columns}
    labels: list[str] = []
    for (row, budget), g in d.groupby(["row", "budget"], sort=True, dropna=False):
        label = f"{row} @ {budget:g}" if several and not pd.isna(budget) else str(row)
        labels.append(label)
        for c, src in columns.items():
            vals = g[src].dropna() if src in g else pd.Series(dtype=float)
            mean = float(vals.mean()) if len(vals) else float("nan")
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            cells[c][label] = format_cell(mean, std, decimals)
            if not math.isnan(mean):
                ranked[c][label] = round(mean, decimals)
    best = {c: {k for k, v in r.items() if v == max(r.values())} for c, r in ranked.items() if r and len(labels) > 1}
    table = pd.DataFrame({c: [cells[c].get(r, "") for r in labels] for c in columns},
                         index=pd.Index(labels, name="row"))
    return table, best


def size_section(df: "pd.DataFrame", dataset: str, metric: str, out: Path) -> list[str]:
    """Markdown lines of the by-object-size tables of ``dataset`` (one per test set, also written
    to ``<dataset>_<test set>_by_size.md``/``.csv``); nothing when no run recorded them."""
    sub = df[df["dataset"] == dataset]
    lines: list[str] = []
    for t in ordered_test_sets(sub):
        table, best = size_table(sub[sub["test_set"] == t], metric)
        if table.empty:
            continue
        stem = f"{_slug(dataset)}_{_slug(t)}_by_size"
        md = to_markdown(table, best)
        atomic_write_text(out / f"{stem}.md", md)
        atomic_write_text(out / f"{stem}.csv", table.to_csv())
        if not lines:
            lines += [f"### {dataset} — {metric} by object size", "",
                      f"Each run's mean {metric} over the test images whose ground truth covers that share "
                      "of the frame (`empty`: no foreground), then mean ± std over seeds; n = images per bin. "
                      f"`{DETECTION}`: ground-truth lesions (connected components) found / all lesions "
                      "(IoU ≥ 0.1 with a predicted component, or centroid inside the prediction; binary tasks). "
                      "Runs evaluated before these fields existed are not listed.", ""]
        lines += [f"**{t}**", "", md.rstrip("\n"), ""]
    return lines


__all__ = ["size_section", "size_table"]
