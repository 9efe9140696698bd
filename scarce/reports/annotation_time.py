"""Report section: scores against annotation time, when a dataset's runs learn from different labels.

Why: weak labels exist to be cheap, so runs on masks, scribbles and clicks are compared at
equal *annotation minutes* (the ``annotation_minutes`` column of
:func:`~scarce.reports.tables.collect_runs`, cost model :mod:`scarce.reports.cost`), not at an
equal number of images, which the main table's ``@ <budget>`` columns count. Shown only when the
runs of a dataset hold at least two label kinds (``label_kind``: mask, scribble, click) with
known minutes, so every other report is unchanged.

Per dataset: a table of rows = (report row, budget) sorted by minutes, with the label kind, the
labelled images (training + validation), the minutes and the metric on each test set (mean ±
std over seeds), also written to ``<dataset>_annotation_time.md``/``.csv``, and a plot of the
metric against minutes, one line per report row (``<dataset>_<metric>_by_minutes.png``).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from scarce.reports.cost import SECONDS_PER_IMAGE
from scarce.reports.plots import _colors, _figure, _pretty, save_figure
from scarce.reports.tables import format_cell, ordered_test_sets, to_markdown
from scarce.utils.io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

MINUTES = "annotation minutes"
IMAGES = "labelled images"
KIND = "labels"
BAND = 0.1
"""Entries whose minutes lie within 10 % of each other (from the smallest up) are compared: the
best score of each such band is bold (a 60-minute row beating a 30-minute one says nothing)."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _runs(df: "pd.DataFrame", dataset: str) -> "pd.DataFrame":
    """The dataset's rows with known minutes, one per (row, budget, seed, test set)."""
    sub = df[df["dataset"] == dataset]
    if "annotation_minutes" not in sub or "label_kind" not in sub:
        return sub.iloc[0:0]
    sub = sub[sub["annotation_minutes"].notna()]
    return sub.drop_duplicates(subset=["row", "budget", "seed", "test_set"], keep="last")


def shows_annotation_time(df: "pd.DataFrame", dataset: str) -> bool:
    """True when ``dataset``'s runs with known minutes learn from two label kinds or more."""
    sub = _runs(df, dataset)
    return not sub.empty and sub["label_kind"].dropna().nunique() >= 2


def annotation_time_table(df: "pd.DataFrame", dataset: str, metric: str,
                          decimals: int = 3) -> tuple["pd.DataFrame", dict[str, set[str]]]:
    """The section's table (string DataFrame, index ``<row> @ <budget>``, sorted by minutes;
    columns: label kind, labelled images, minutes, one per test set) and, per test set column,
    the entries to bold: the best mean of each band of about equal minutes (:data:`BAND`)."""
    import pandas as pd

    sub = _runs(df, dataset)
    sets = ordered_test_sets(sub)
    col = f"{metric}_mean"
    entries = []
    for (row, budget), g in sub.groupby(["row", "budget"], sort=True, dropna=False):
        per_run = g.drop_duplicates(subset=["seed"])
        rec = {"label": f"{row} @ {budget:g}" if not pd.isna(budget) else str(row),
               KIND: ", ".join(sorted(set(map(str, per_run["label_kind"].dropna())))),
               IMAGES: "" if pd.isna(budget) else f"{int(budget)}",
               "_minutes": float(per_run["annotation_minutes"].mean())}
        spread = per_run["annotation_minutes"].max() - per_run["annotation_minutes"].min()
        rec[MINUTES] = f"{rec['_minutes']:.1f}" + (f" (±{spread / 2:.1f})" if spread > 0.05 else "")
        for t in sets:
            vals = g[g["test_set"] == t][col].dropna() if col in g else pd.Series(dtype=float)
            mean = float(vals.mean()) if len(vals) else float("nan")
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            rec[t] = format_cell(mean, std, decimals)
            rec[f"_{t}"] = mean
        entries.append(rec)
    entries.sort(key=lambda r: (r["_minutes"], r["label"]))
    columns = [KIND, IMAGES, MINUTES, *sets]
    table = pd.DataFrame({c: [r.get(c, "") for r in entries] for c in columns},
                         index=pd.Index([r["label"] for r in entries], name="row"))
    bands: list[list[dict]] = []  # entries within BAND of the band's first (smallest) minutes
    for r in entries:
        if bands and r["_minutes"] <= bands[-1][0]["_minutes"] * (1 + BAND):
            bands[-1].append(r)
        else:
            bands.append([r])
    best: dict[str, set[str]] = {}
    for t in sets:
        for band in bands:
            ranked = {r["label"]: round(r[f"_{t}"], decimals) for r in band if not math.isnan(r[f"_{t}"])}
            if len(ranked) > 1:
                best.setdefault(t, set()).update(k for k, v in ranked.items() if v == max(ranked.values()))
    return table, best


def annotation_time_plot(df: "pd.DataFrame", dataset: str, metric: str, out_png: str | Path) -> Path:
    """``metric`` against annotation minutes, one line per report row (mean ± std over seeds),
    one panel per test set (ID first)."""
    import numpy as np

    sub = _runs(df, dataset)
    sets = ordered_test_sets(sub)
    col = f"{metric}_mean"
    rows = sorted(sub["row"].unique().tolist())
    colors = _colors(rows)
    fig, axes = _figure(len(sets))
    for ax, t in zip(axes, sets):
        for row in rows:
            g = sub[(sub["row"] == row) & (sub["test_set"] == t)]
            pts = []
            for _, b in g.groupby("budget", sort=True, dropna=False):
                vals = b[col].dropna() if col in b else b.iloc[0:0]
                if len(vals):
                    pts.append((float(b["annotation_minutes"].mean()), float(vals.mean()),
                                float(vals.std(ddof=1)) if len(vals) > 1 else 0.0))
            if not pts:
                continue
            pts.sort()
            x, m, sd = (np.array(v) for v in zip(*pts))
            ax.plot(x, m, marker="o", color=colors[row], label=row)
            ax.fill_between(x, m - sd, m + sd, color=colors[row], alpha=0.2, linewidth=0)
        ax.set_title(t)
        ax.set_xlabel("annotation minutes")
        ax.grid(True, alpha=0.3)
    if axes:
        axes[0].set_ylabel(_pretty(metric))
        if rows:
            axes[-1].legend(fontsize=8, loc="lower right")
    return save_figure(fig, out_png)


def annotation_time_section(df: "pd.DataFrame", dataset: str, metric: str, out: Path) -> list[str]:
    """Markdown lines of the section (table + plot, files beside it); nothing unless
    :func:`shows_annotation_time`."""
    if not shows_annotation_time(df, dataset):
        return []
    table, best = annotation_time_table(df, dataset, metric)
    stem = f"{_slug(dataset)}_annotation_time"
    md = to_markdown(table, best)
    atomic_write_text(out / f"{stem}.md", md)
    atomic_write_text(out / f"{stem}.csv", table.to_csv())
    png = f"{_slug(dataset)}_{metric}_by_minutes.png"
    annotation_time_plot(df, dataset, metric, out / png)
    secs = ", ".join(f"{k} {v:g}" for k, v in SECONDS_PER_IMAGE.items())
    return [f"### {dataset} — {_pretty(metric)} by annotation time", "",
            f"Each run's annotation minutes: training images × their label's seconds ({secs}) + validation "
            "images × a mask's seconds, / 60 (the cost model of scarce/reports/cost.py, docs/annotate.md). Rows "
            "sorted by minutes; scores mean ± std over seeds; bold: the best of the rows within 10 % of the same "
            "minutes.", "", md.rstrip("\n"), "",
            f"![{dataset} {metric} by annotation minutes]({png})", ""]


__all__ = ["annotation_time_section", "annotation_time_table", "annotation_time_plot", "shows_annotation_time"]
