"""Optional report sections, drawn only when the run folders carry the data for them.

Why a separate module: the main table/plot of :mod:`scarce.reports.report` must look the same
for every grid, while some experiments record more (trimap accuracy, a searched architecture,
a scribble-length or λ axis). Each section here returns Markdown lines (empty when there is
nothing to show), so a grid without such data gets exactly the report it always got.

* **Trimap** (``eval.trimap_widths``): per dataset and test set a plot like the weak-supervision
  paper's Figure 6 (rows = run labels, mean ± std over seeds; one panel per scribble length when
  the runs span several, full supervision dashed in each) and a table of mIoU per width.
* **Axes** (scribble length, λ, ...: every :class:`~scarce.config.ReportAxis` declared on a
  method Config field): when runs of one dataset differ in such a field set explicitly (e.g.
  ``method.scribbles: synthetic:L``, ``method.lam``), a table and plot of the metric against
  that value. A line is the set of runs whose configs are equal apart from that field (and
  seeds), named by the tokens their labels share (``grid_tr-l0.5-unet``, ``grid_tr-l1-unet`` →
  ``grid_tr-unet``); rows without the value (e.g. full supervision) are drawn as dashed
  reference lines. The λ axis (a hyperparameter) also gets a ``validation (selection)``
  column/panel (each run's best validation score) and names the value validation chooses.
* **Searched architecture** (any run folder with ``architecture.json``, written by E2EAug's
  ``finalize``): α softmax weights over training steps per cell for one seed, the final derived
  architecture per run, and a downscaled copy of that run's ``gallery.png``.
"""
from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from scarce.reports.plots import _colors, _pretty, save_figure
from scarce.reports.tables import ordered_test_sets, to_markdown, trimap_results, trimap_widths
from scarce.utils.io import atomic_write_bytes, atomic_write_text
from scarce.utils.runfolder import ARCHITECTURE_FILE

if TYPE_CHECKING:
    import pandas as pd

VALIDATION = "validation (selection)"
"""Pseudo test set of the axis tables/plots: each run's best validation score (the method's
validation metric, Dice for binary data), the only score a hyperparameter such as λ may be
chosen by."""

GALLERY_MAX_BYTES = 300_000
"""Copied gallery PNGs stay below this (the report folder is committed)."""
GALLERY_MAX_SIDE = 768

def known_axes() -> dict[str, Any]:
    """Report axes: every :class:`~scarce.config.ReportAxis` declared on a method Config field
    (``scribble_length``, ``method_lam``, ...), key → axis (title, short symbol, tunable)."""
    from scarce.methods import report_axes

    return report_axes()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _fmt_value(v: float) -> str:
    return f"{v:g}"


# --------------------------------------------------------------------------- trimap

def trimap_table(results: Mapping[str, Mapping[int, Sequence[float]]], decimals: int = 3) -> str:
    """Markdown table of trimap mIoU: rows = run labels, columns = band widths, mean ± std
    over seeds (sample std; one seed shows the mean only), best per column in bold."""
    from scarce.reports.tables import format_cell

    import numpy as np
    import pandas as pd

    widths = sorted({int(w) for r in results.values() for w in r})
    cells: dict[str, list[str]] = {}
    best: dict[str, set[str]] = {}
    for w in widths:
        col = f"w = {w} px"
        rounded: dict[str, float] = {}
        column = []
        for row, by_w in results.items():
            vals = np.asarray(by_w.get(w, []), dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            mean = float(vals.mean()) if vals.size else float("nan")
            std = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
            column.append(format_cell(mean, std, decimals))
            if not math.isnan(mean):
                rounded[row] = round(mean, decimals)
        cells[col] = column
        if rounded:
            top = max(rounded.values())
            best[col] = {k for k, v in rounded.items() if v == top}
    table = pd.DataFrame(cells, index=pd.Index(list(results), name="row"))
    return to_markdown(table, best)


def _trimap_panels(sub: "pd.DataFrame", res: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split trimap results into one panel per scribble length (lines = labels without their
    ``-l<L>`` token; rows without a length, e.g. full supervision, become dashed references in
    every panel) when the runs span at least two lengths; else (all rows, no panels)."""
    if "scribble_length" not in sub.columns:
        return res, None
    lengths = sub.groupby("row")["scribble_length"].first()
    if lengths.dropna().nunique() < 2:
        return res, None
    names = line_names(sub, "scribble_length")
    refs: dict[str, Any] = {}
    by_len: dict[float, dict[str, Any]] = {}
    for row, by_w in res.items():
        length = lengths.get(row)
        if length is None or math.isnan(float(length)):
            refs[row] = by_w
        else:
            by_len.setdefault(float(length), {})[names.get(row, row)] = by_w
    return refs, {f"{known_axes()['scribble_length'].short} = {_fmt_value(v)}": by_len[v] for v in sorted(by_len)}


def trimap_section(df: "pd.DataFrame", dataset: str, out: Path) -> list[str]:
    """Trimap plot + table per test set of ``dataset`` (nothing when no run has trimap data)."""
    from scarce.reports.trimap_plot import plot_trimap

    if not trimap_widths(df):
        return []
    sub = df[df["dataset"] == dataset]
    lines: list[str] = []
    for t in ordered_test_sets(sub):
        res = trimap_results(sub, dataset, t)
        if not res:
            continue
        stem = f"{_slug(dataset)}_{_slug(t)}_trimap"
        refs, panels = _trimap_panels(sub, res)
        plot_trimap(refs, out / f"{stem}.png", title=f"Trimap accuracy — {dataset} → {t}", panels=panels)
        table = trimap_table(res)
        atomic_write_text(out / f"{stem}.md", table)
        if not lines:
            lines += [f"### {dataset} — trimap accuracy", "",
                      "mIoU inside bands of width w pixels around ground-truth boundaries (all "
                      "classes, accumulated over each test set), mean ± std over seeds.", ""]
        lines += [f"**{t}**", "", table.rstrip("\n"), "", f"![{dataset} {t} trimap]({stem}.png)", ""]
    return lines


# --------------------------------------------------------------------------- axes (length, λ)

def _common_label(labels: Sequence[str]) -> str:
    """Display name of one line: the ``-``-separated tokens its members' labels share at the
    start and the end (``grid_tr-l0.5-unet``, ``grid_tr-l1-unet`` → ``grid_tr-unet``); a single
    label is kept as it is."""
    labels = sorted(set(labels))
    if len(labels) == 1:
        return labels[0]
    parts = [lab.split("-") for lab in labels]
    n = min(len(p) for p in parts)
    pre = 0
    while pre < n and len({p[pre] for p in parts}) == 1:
        pre += 1
    suf = 0
    while suf < n - pre and len({p[-1 - suf] for p in parts}) == 1:
        suf += 1
    name = "-".join(parts[0][:pre] + (parts[0][len(parts[0]) - suf:] if suf else []))
    return name or labels[0]


def line_names(df: "pd.DataFrame", axis: str) -> dict[str, str]:
    """Row label → the name of its line along ``axis``. Runs are one line when their configs are
    equal apart from the axis field, seed and runtime keys (``line:<axis>`` of
    :func:`scarce.reports.tables.run_axes`) — read from the configs, not parsed from labels.
    Names that would collide keep their first member's full label."""
    col = f"line:{axis}"
    if col not in df.columns:
        return {r: r for r in df["row"]}
    groups = df.groupby(col, sort=True)["row"].agg(lambda r: sorted(set(r)))
    names = {sig: _common_label(rows) for sig, rows in groups.items()}
    seen: dict[str, int] = {}
    for n in names.values():
        seen[n] = seen.get(n, 0) + 1
    out: dict[str, str] = {}
    for sig, rows in groups.items():
        name = names[sig] if seen[names[sig]] == 1 else rows[0]
        for r in rows:
            out.setdefault(r, name)
    return out


def _axis_frame(df: "pd.DataFrame", metric: str, axis: str) -> "pd.DataFrame | None":
    """Seed-mean/std of ``metric`` per (line, budget, test set, axis value); None when the axis
    does not vary within at least one line (nothing to plot)."""
    col = f"{metric}_mean"
    if axis not in df.columns or col not in df.columns:
        return None
    d = df.drop_duplicates(subset=["row", "budget", "test_set", "seed"], keep="last").copy()
    names = line_names(d, axis)
    d["_line"] = [names[r] for r in d["row"]]
    if d["budget"].nunique(dropna=True) > 1:
        d["_line"] = d["_line"] + " @ " + d["budget"].astype(str)
    vals = d[d[axis].notna()]
    if vals[axis].nunique() < 2 or vals.groupby("_line")[axis].nunique().max() < 2:
        return None
    g = d.groupby(["_line", "test_set", axis], dropna=False)[col]
    stats = g.agg(["mean", "count"]).reset_index()
    stats["std"] = g.std(ddof=1).to_numpy()
    return stats


def axis_section(df: "pd.DataFrame", dataset: str, metric: str, axis: str, out: Path) -> list[str]:
    """Table + plot of ``metric`` against ``axis`` (a key of :func:`known_axes`) for one dataset:
    :func:`_axis_stats` (seed statistics per line and value, plus the validation pseudo test set
    for a tunable axis), :func:`_axis_table`, :func:`_axis_plot`, :func:`_axis_choice` and the
    section's prose."""
    info = known_axes()[axis]
    got = _axis_stats(df, dataset, metric, axis, info)
    if got is None:
        return []
    stats, sets = got
    values = sorted(float(v) for v in stats[axis].dropna().unique())
    lines_all = sorted(stats["_line"].unique().tolist())
    ref = [ln for ln in lines_all if stats[(stats["_line"] == ln)][axis].notna().sum() == 0]
    stem = f"{_slug(dataset)}_{metric}_by_{axis}"
    md = _axis_table(stats, sets, axis, info, values, lines_all, ref)
    atomic_write_text(out / f"{stem}.md", md[0])
    atomic_write_text(out / f"{stem}.csv", md[1])
    _axis_plot(stats, sets, axis, info, metric, values, lines_all, ref, out / f"{stem}.png")
    chosen = _axis_choice(stats, axis, info, lines_all, ref)
    pick = [f"Chosen by validation: {'; '.join(chosen)}.", ""] if chosen else []
    note = (f" `{VALIDATION}` is each run's best validation score (Dice for binary data): choose "
            f"{info.title} by it, never by a test column." if info.tunable else "")
    return [f"### {dataset} — {_pretty(metric)} by {info.title}", "",
            f"Mean ± std over seeds; a row is a line (runs whose configs differ only in {info.title}) "
            "at each value (bold: best at that value); rows without a value (e.g. full supervision) "
            f"are references, listed once.{note}", "", md[0].rstrip("\n"), "", *pick,
            f"![{dataset} by {info.title}]({stem}.png)", ""]


def _axis_stats(df: "pd.DataFrame", dataset: str, metric: str, axis: str, info: Any
                ) -> "tuple[pd.DataFrame, list[str]] | None":
    """:func:`_axis_frame` of one dataset and its test sets; a tunable axis (a hyperparameter)
    also gets each run's best validation score as one more test set, so the choice is visibly
    not made on a test set. None when the axis does not vary."""
    import pandas as pd

    sub = df[df["dataset"] == dataset]
    sets = ordered_test_sets(sub)
    if info.tunable and "best_val" in sub.columns and sub["best_val"].notna().any():
        val = sub.drop_duplicates(subset=["run"]).copy()
        val["test_set"] = VALIDATION
        val[f"{metric}_mean"] = val["best_val"]
        sub = pd.concat([sub, val], ignore_index=True)
        sets = sets + [VALIDATION]
    stats = _axis_frame(sub, metric, axis)
    return None if stats is None else (stats, sets)


def _axis_table(stats: "pd.DataFrame", sets: list[str], axis: str, info: Any, values: list[float],
                lines_all: list[str], ref: list[str]) -> tuple[str, str]:
    """(Markdown, CSV) of the axis table: rows = reference lines, then ``<line> @ <short>=<value>``
    by value (long, so many values stay readable); columns = test sets; bold = best line at a value."""
    import numpy as np
    import pandas as pd

    from scarce.reports.tables import format_cell

    keys = [(ln, None) for ln in ref] + [(ln, v) for v in values for ln in lines_all if ln not in ref]
    index = [ln if v is None else f"{ln} @ {info.short}={_fmt_value(v)}" for ln, v in keys]
    cells: dict[str, list[str]] = {}
    best: dict[str, set[str]] = {}
    for t in sets:
        column, by_value = [], {}
        for (ln, v), name in zip(keys, index):
            s = stats[(stats["_line"] == ln) & (stats["test_set"] == t)]
            s = s[s[axis].isna()] if v is None else s[np.isclose(s[axis].astype(float), v)]
            if s.empty:
                column.append("")
                continue
            mean, std = float(s["mean"].iloc[0]), float(s["std"].iloc[0])
            column.append(format_cell(mean, std))
            if v is not None and not math.isnan(mean):
                by_value.setdefault(v, {})[name] = round(mean, 3)
        cells[t] = column
        for rounded in by_value.values():
            if len(rounded) > 1:  # bold = best line at this value (one line: nothing to compare)
                top = max(rounded.values())
                best.setdefault(t, set()).update(k for k, x in rounded.items() if x == top)
    table = pd.DataFrame(cells, index=pd.Index(index, name="row"))
    return to_markdown(table, best), table.to_csv()


def _axis_plot(stats: "pd.DataFrame", sets: list[str], axis: str, info: Any, metric: str, values: list[float],
               lines_all: list[str], ref: list[str], png: Path) -> None:
    """One panel per test set: a line (± std band) per line over the axis values, references dashed;
    λ sweeps over decades on a log (or symlog, when 0 is a value) x axis."""
    from scarce.reports.plots import _figure

    fig, panels = _figure(len(sets))
    colors = _colors(lines_all)
    for ax, t in zip(panels, sets):
        for ln in lines_all:
            s = stats[(stats["_line"] == ln) & (stats["test_set"] == t)]
            if s.empty:
                continue
            if ln in ref:
                ax.axhline(float(s["mean"].iloc[0]), color=colors[ln], ls="--", lw=1, label=ln)
                continue
            s = s[s[axis].notna()].sort_values(axis)
            x = s[axis].to_numpy(dtype=float)
            m = s["mean"].to_numpy(dtype=float)
            sd = s["std"].fillna(0.0).to_numpy(dtype=float)
            ax.plot(x, m, marker="o", color=colors[ln], label=ln)
            ax.fill_between(x, m - sd, m + sd, color=colors[ln], alpha=0.2, linewidth=0)
        if axis == "method_lam" and values[0] >= 0 and max(values) / max(min(v for v in values if v > 0), 1e-12) >= 10:
            # log spacing for λ sweeps over decades; symlog only when λ = 0 is a point (else
            # the linear band around 0 would be empty space)
            if values[0] == 0:
                ax.set_xscale("symlog", linthresh=min(v for v in values if v > 0))
            else:
                ax.set_xscale("log")
            ax.margins(x=0.06)
        ax.set_xticks(values)
        ax.set_xticklabels([_fmt_value(v) for v in values])
        ax.minorticks_off()
        ax.set_title(t)
        ax.set_xlabel(info.title)
        ax.grid(True, alpha=0.3)
    if panels:
        panels[0].set_ylabel(_pretty(metric))
        panels[-1].legend(fontsize=7, loc="best")
    save_figure(fig, png)


def _axis_choice(stats: "pd.DataFrame", axis: str, info: Any, lines_all: list[str], ref: list[str]) -> list[str]:
    """Per line of a tunable axis: the value with the best mean VALIDATION score (what may choose)."""
    chosen = []
    for ln in lines_all:
        s = stats[(stats["_line"] == ln) & (stats["test_set"] == VALIDATION) & stats[axis].notna()]
        if ln not in ref and len(s) > 1:
            top = s.loc[s["mean"].idxmax()]
            chosen.append(f"`{ln}`: {info.title} = {_fmt_value(float(top[axis]))} "
                          f"(validation {float(top['mean']):.3f})")
    return chosen


# --------------------------------------------------------------------------- searched architecture

def load_architecture(run_dir: str | Path) -> dict[str, Any] | None:
    """``architecture.json`` of a run (E2EAug format: cells, ops, steps, weights, derived,
    derived_history), or None when absent or unreadable."""
    p = Path(run_dir) / ARCHITECTURE_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("cells"), list):
        return None
    return rec


def alpha_plot(record: Mapping[str, Any], out_png: str | Path, title: str = "") -> Path:
    """Softmax architecture weights over training steps, one panel per searchable cell, one line
    per candidate op (the op that ends on top is the derived choice)."""
    import numpy as np
    from matplotlib.figure import Figure

    cells = [str(c) for c in record.get("cells", [])]
    ops = record.get("ops", {}) or {}
    weights = np.asarray(record.get("weights") or [], dtype=np.float64)  # T × cells × K
    steps = list(record.get("steps") or range(len(weights)))
    n = max(1, len(cells))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows + (0.4 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for i, cell in enumerate(cells):
        ax = axes[i]
        names = [str(o) for o in ops.get(cell, [])]
        if weights.ndim == 3 and i < weights.shape[1] and len(steps) == weights.shape[0]:
            for k in range(weights.shape[2]):
                ax.plot(steps, weights[:, i, k], marker="o" if len(steps) < 30 else None, ms=2,
                        label=names[k] if k < len(names) else f"op{k}")
        derived = (record.get("derived") or {}).get(cell)
        ax.set_title(f"{cell.replace('.cell', '')}" + (f" → {derived}" if derived else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(fontsize=6)
        if i % ncols == 0:
            ax.set_ylabel("softmax α", fontsize=8)
        if i >= n - ncols:
            ax.set_xlabel("step", fontsize=8)
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    if not cells:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no searchable cells", ha="center", va="center", transform=axes[0].transAxes)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, out_png)


def small_png_copy(src: str | Path, dest: str | Path, max_bytes: int = GALLERY_MAX_BYTES,
                   max_side: int = GALLERY_MAX_SIDE) -> Path:
    """Copy a PNG downscaled (longest side ≤ ``max_side``, then shrunk until < ``max_bytes``),
    so pictures from run folders can be committed with the report."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    while True:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = img.resize(size, Image.LANCZOS) if size != img.size else img
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        if buf.tell() < max_bytes or max(size) <= 64:
            break
        scale *= 0.75
    atomic_write_bytes(dest, buf.getvalue())
    return Path(dest)


def architecture_section(df: "pd.DataFrame", runs_root: str | Path, dataset: str, out: Path) -> list[str]:
    """Per run label with ``architecture.json``: α plot + gallery of one run (smallest budget,
    then seed), and a table of every run's final derived architecture (op per cell)."""
    import pandas as pd

    root = Path(runs_root)
    runs = (df[df["dataset"] == dataset].drop_duplicates(subset=["run"])
            .sort_values(["row", "budget", "seed", "run"], kind="stable"))
    found: list[tuple[Any, dict[str, Any]]] = []
    for _, r in runs.iterrows():
        rec = load_architecture(root / r["run"])
        if rec is not None:
            found.append((r, rec))
    if not found:
        return []
    lines = [f"### {dataset} — searched generator architecture", "",
             "Softmax weights of the candidate operators of every searchable generator cell over "
             "training (one run per row label: smallest budget, first seed), and the final derived "
             "architecture (argmax per cell) of every run.", ""]
    shown: set[str] = set()
    for r, rec in found:
        if r["row"] in shown:
            continue
        shown.add(r["row"])
        stem = f"{_slug(dataset)}_{_slug(str(r['row']))}"
        who = f"{r['row']} @ {r['budget']}, seed {r['seed']}"
        alpha_plot(rec, out / f"{stem}_alpha.png", title=f"{dataset}: {who}")
        lines += [f"**{who}** (`{r['run']}`)", "", f"![α over training]({stem}_alpha.png)", ""]
        gallery = root / r["run"] / "gallery.png"
        if gallery.is_file():
            small_png_copy(gallery, out / f"{stem}_gallery.png")
            lines += ["Synthetic pairs (real image | mask | augmented mask | generated image):", "",
                      f"![gallery]({stem}_gallery.png)", ""]
    cells: list[str] = []
    for _, rec in found:
        cells += [str(c) for c in rec.get("cells", []) if str(c) not in cells]
    index = [f"{r['row']} @ {r['budget']} s{r['seed']}" for r, _ in found]
    table = pd.DataFrame({c.replace(".cell", ""): [str((rec.get("derived") or {}).get(c, "")) for _, rec in found]
                          for c in cells}, index=pd.Index(index, name="run"))
    md = to_markdown(table)
    atomic_write_text(out / f"{_slug(dataset)}_derived_architecture.md", md)
    lines += ["Final derived architecture per run:", "", md.rstrip("\n"), ""]
    return lines


__all__ = ["trimap_section", "trimap_table", "axis_section", "line_names", "architecture_section",
           "alpha_plot", "load_architecture", "small_png_copy", "known_axes"]
