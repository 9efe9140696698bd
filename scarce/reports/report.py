"""One-call results report of a folder of runs: ``results.md`` + ``results.csv`` + PNGs.

Why: experiments write one self-describing folder per run; the report is rebuilt from those
files alone (``config.yaml``, ``metrics.json``, optionally ``log.csv``) — no images or models
are read — and is deterministic (sorted inputs, no timestamps), so it can be committed and
diffed.

Output (``out_dir``):

* ``results.md`` — per dataset: the primary-metric table (mean ± std over seeds, best per
  column in bold; for Jaccard tasks also the ISIC thresholded Jaccard) and its figure.
* ``results.csv`` — long table: dataset, row, budget, test_set, n_seeds, ``<metric>_mean``,
  ``<metric>_std`` for every metric found.
* ``<dataset>_<metric>.md`` / ``.csv`` — each table on its own.
* ``<dataset>_<metric>_sample_efficiency.png`` (several budgets) or ``<dataset>_<metric>_bars.png``
  (one budget); with ``curves=True`` also ``curves/<run>.png`` from each run's ``log.csv``.
* Only when the runs hold the data (:mod:`scarce.reports.extras`): ``<dataset>_<metric>_by_<axis>``
  .md/.csv/.png (scribble length / λ axis), ``<dataset>_<test set>_trimap.md``/``.png``
  (``eval.trimap_widths``), ``<dataset>_<test set>_by_size.md``/``.csv`` (the metric by object
  size and the lesion detection rate, :mod:`scarce.reports.sizes`), ``<dataset>_<row>_alpha.png``,
  ``<dataset>_<row>_gallery.png`` and
  ``<dataset>_derived_architecture.md`` (run folders with ``architecture.json``, e.g. E2EAug),
  ``<dataset>_monitor_curves.png`` (runs trained with ``eval.monitor``: :mod:`scarce.reports.domains`),
  ``<dataset>_annotation_time.md``/``.csv`` and ``<dataset>_<metric>_by_minutes.png`` (runs learning
  from different label kinds, e.g. masks and scribbles: the metric against annotation minutes,
  :mod:`scarce.reports.annotation_time`).
* A dataset scored on several test sets (ID + OOD sets / domains) gets a ``mean over test sets``
  column per budget in its tables (:func:`~scarce.reports.tables.mean_over_sets`).
* A cell whose runs trained in different set-ups (CPU, threads, device, library versions) is
  marked ``†``, with a footnote under the table naming the runs and what differs
  (:class:`~scarce.reports.environments.EnvironmentMarks`).
* Finished runs trained without test sets (``data.test_sets=[]``) are in no table: a last section
  lists them with their best validation score, and a warning names them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from scarce.evaluation.metrics import METRICS
from scarce.reports.annotation_time import annotation_time_section
from scarce.reports.extras import architecture_section, axis_section, known_axes, trimap_section
from scarce.reports.domains import monitor_section
from scarce.reports.environments import EnvironmentMarks, environment_section
from scarce.reports.plots import bar_plot, curves_plot, sample_efficiency_plot
from scarce.reports.sizes import size_section
from scarce.reports.tables import (MEAN_OVER_SETS, collect_roots, duplicate_runs, keep_newest, metric_names,
                                   results_table, runs_without_tests, summarize, to_markdown)
from scarce.utils.io import atomic_write_text
from scarce.utils.runfolder import LOG_FILE

if TYPE_CHECKING:
    import pandas as pd


def primary_metric(dataset: str, df: "pd.DataFrame | None" = None) -> str:
    """The dataset's primary metric from the data registry (``jaccard`` for skin, else ``dice``).

    Falls back to ``dice`` for unregistered datasets, and to the first metric present in ``df``
    when the chosen one was not recorded.
    """
    metric = "dice"
    try:
        from scarce.data.registry import DATASETS  # type: ignore[import-not-found]

        metric = str(DATASETS.get(dataset).metric)
    except Exception:  # unregistered folder or data registry unavailable
        pass
    if df is not None and f"{metric}_mean" not in df.columns:
        present = metric_names(df)
        if present:
            metric = present[0]
    return metric


def _in(root: str | Path, run: str) -> str:
    """A run folder as the user would type it (``runs/isic/s0``)."""
    return (Path(root) / run).as_posix() if run != "." else Path(root).as_posix()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def is_report_folder(folder: Path) -> bool:
    """True when ``folder`` holds an earlier report (its ``results.md`` starts with ``# Results``)."""
    try:
        return (folder / "results.md").read_text(encoding="utf-8").startswith("# Results")
    except (OSError, UnicodeDecodeError):
        return False


REPORT = "scarce report"
"""Command name in a report folder's output marker (:mod:`scarce.utils.paths`)."""


def check_report_folder(runs_root: str | Path | Sequence[str | Path], out_dir: str | Path,
                        overwrite: bool = False) -> Path:
    """``scarce report`` destination check, before anything is read: ``out_dir`` may not be or
    contain ``runs_root`` (ever); it may lie inside it (a grid's own ``<out>/report`` layout: a
    report folder holds no run, so the scan never counts it), and must be new, empty or an earlier
    report unless ``overwrite`` (then only the report's own files are replaced)."""
    from scarce.utils.paths import check_output_folder

    return check_output_folder(out_dir, overwrite=overwrite, what="report folder", previous=is_report_folder,
                               containers=_roots(runs_root), command=REPORT)


def _roots(runs_root: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [runs_root] if isinstance(runs_root, (str, Path)) else list(runs_root)


def _recorded(df: "pd.DataFrame") -> list[str]:
    """Metrics with at least one score in ``df``, :data:`~scarce.evaluation.metrics.METRICS` first."""
    present = [m for m in metric_names(df) if df[f"{m}_mean"].notna().any()]
    return [m for m in METRICS if m in present] + [m for m in present if m not in METRICS]


def check_metric(metric: str, df: "pd.DataFrame", where: str) -> None:
    """Refuse (``ConfigError``, one line) a ``metric`` that no run in ``df`` recorded — a typo
    would otherwise give tables of empty cells —, or that some dataset's runs did not record.
    ``df``: :func:`~scarce.reports.tables.collect_runs` rows; empty: checked against the known metrics."""
    import difflib

    from scarce.config import ConfigError

    valid = _recorded(df) if not df.empty else list(METRICS)
    if metric not in valid:
        if metric in METRICS:
            what = f"metric {metric!r} was not recorded by any run under {where}"
        else:
            close = difflib.get_close_matches(metric, valid, n=3, cutoff=0.5)
            what = f"unknown metric {metric!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
        known = f"recorded by the runs under {where}" if not df.empty else "the known metrics"
        raise ConfigError(f"{what}; choose one of {', '.join(valid)} ({known}); nothing written")
    for ds in sorted(df["dataset"].unique().tolist()):
        own = _recorded(df[df["dataset"] == ds])
        if metric not in own:
            raise ConfigError(f"metric {metric!r} was not recorded by the runs of dataset {ds!r} under {where} "
                              f"(they recorded: {', '.join(own) or 'none'}); report that dataset separately or "
                              "leave --metric out (each dataset's primary metric); nothing written")


def _untested_section(untested: "pd.DataFrame", runs_root: str | Path) -> list[str]:
    """Markdown lines listing finished runs without test-set results (empty when there are none)."""
    if untested.empty:
        return []
    lines = ["## Runs without test-set results", "",
             "These runs finished (`metrics.json`) but were trained without test sets (`data.test_sets=[]`), so "
             "they are in no table above. Listed: the best validation score (on the validation part of the "
             "labelled budget, which also chose the checkpoint: optimistic, not comparable with test scores). "
             "`scarce evaluate RUN --test-sets NAME` scores a run on test sets; the report then reads them.", "",
             "| run | dataset | row | budget | seed | best validation score | at step |",
             "|---|---|---|:---:|:---:|:---:|:---:|"]

    def num(v: object, fmt: str) -> str:
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "—"
        return format(f, fmt) if math.isfinite(f) else "—"  # NaN: not recorded; -inf: never validated

    for _, r in untested.iterrows():
        score = num(r["best_val"], ".3f")
        score = f"{score} ({primary_metric(str(r['dataset']))})" if score != "—" else "not recorded"
        lines.append(f"| `{_in(runs_root, r['run'])}` | {r['dataset']} | {r['row']} | {num(r['budget'], 'g')} | "
                     f"{num(r['seed'], 'g')} | {score} | {num(r['best_step'], 'g')} |")
    return lines + [""]


def _warn_untested(untested: "pd.DataFrame", runs_root: str | Path) -> None:
    if untested.empty:
        return
    import warnings

    names = [_in(runs_root, r) for r in untested["run"]]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    warnings.warn(f"{len(names)} finished run(s) have no test-set results (trained with data.test_sets=[]) and are "
                  f"in no table: {', '.join(names[:5])}{more}; results.md lists them with their best validation "
                  "score", stacklevel=3)


def write_report(runs_root: str | Path | Sequence[str | Path], out_dir: str | Path, metric: str | None = None,
                 curves: bool = False, newest: bool = False, require_runs: bool = False) -> Path:
    """Build the report of every finished run under ``runs_root`` into ``out_dir``.

    ``metric`` forces one metric for every dataset (default: each dataset's primary metric,
    :func:`primary_metric`); one that some dataset's runs did not record raises ``ConfigError``
    before anything is written (:func:`check_metric`). Returns the path of ``results.md``.

    Several finished runs for one table cell (dataset, row, budget, seed) raise ``ConfigError``
    naming them all (a table would otherwise show one of them silently); ``newest=True`` keeps
    the newest of each (by ``metrics.json`` time) and warns with the ones left out.
    ``require_runs=True`` (``scarce report``) raises ``ConfigError`` when ``runs_root`` does not
    exist or holds no finished run, instead of writing an empty report (grids keep that).
    Several ``runs_root`` folders are read as one (:func:`~scarce.reports.tables.collect_roots`).
    """
    from scarce.config import ConfigError

    out = Path(out_dir)
    roots = _roots(runs_root)
    for root in roots if require_runs else []:
        if not Path(root).is_dir():
            what = "is a file, not a folder" if Path(root).exists() else "does not exist"
            raise ConfigError(f"runs folder {str(root)!r} {what}; pass the folder holding your run folders "
                              "(e.g. runs/ or a grid's out folder)")
    df, runs_root = collect_roots(roots)
    untested = runs_without_tests(roots)
    where = ", ".join(repr(str(r)) for r in roots)
    if require_runs and df.empty and untested.empty:
        raise ConfigError(f"no finished run under {where} (a finished run folder holds config.yaml and "
                          "metrics.json); nothing written")
    if metric is not None and not (df.empty and untested.empty):
        check_metric(metric, df, where)
    dups = duplicate_runs(df)
    if dups and newest:
        import warnings

        df, dropped = keep_newest(df, runs_root)
        warnings.warn(f"--newest: {len(dropped)} older run(s) left out of the report (same dataset, row, budget "
                      f"and seed as a newer one): {', '.join(_in(runs_root, r) for r in dropped)}", stacklevel=2)
    elif dups:
        cells = [f"{ds} / {row} / budget {b} / seed {s}: {', '.join(_in(runs_root, r) for r in runs)}"
                 for (ds, row, b, s), runs in dups]
        more = f"; and {len(cells) - 5} more cells" if len(cells) > 5 else ""
        raise ConfigError(f"several finished runs for the same table cell ({'; '.join(cells[:5])}{more}); keep one run "
                          f"per cell under {where} (move the others away) or pass --newest to use the "
                          "newest of each (by metrics.json time)")
    from scarce.utils.paths import write_marker

    write_marker(out, REPORT)  # checked by check_report_folder before any work
    lines = ["# Results", ""]
    if df.empty:
        if untested.empty:
            lines += [f"No finished runs (config.yaml + metrics.json) under `{', '.join(map(str, roots))}`.", ""]
        else:
            lines += [f"None of the finished runs under `{', '.join(map(str, roots))}` was scored on a test set, so "
                      "there is no results table.", ""]
            lines += _untested_section(untested, runs_root)
            _warn_untested(untested, runs_root)
        atomic_write_text(out / "results.csv", "dataset,row,budget,test_set,n_seeds\n")
        atomic_write_text(out / "results.md", "\n".join(lines))
        return out / "results.md"

    datasets = sorted(df["dataset"].unique().tolist())
    n_runs = df["run"].nunique()
    lines += [
        f"{n_runs} runs from {', '.join(f'`{Path(r).as_posix()}`' for r in roots)}; datasets: {', '.join(datasets)}.",
        "",
        "Cells: mean ± std over seeds (sample std; a single seed shows the mean only) of each "
        "run's mean per-image score at original mask resolution. Columns: `<test set> @ <labelled "
        "images>`; the first test set is in-distribution, the others out-of-distribution. Best "
        "per column in **bold**.",
        "",
    ]
    for ds in datasets:
        sub = df[df["dataset"] == ds]
        m = metric or primary_metric(ds, sub)
        shown = [m] + (["jaccard_t"] if m == "jaccard" and metric is None and "jaccard_t_mean" in sub else [])
        for k, mk in enumerate(shown):
            stem = f"{_slug(ds)}_{mk}"
            marks = EnvironmentMarks(runs_root)
            table = results_table(sub, mk, out_md=out / f"{stem}.md", out_csv=out / f"{stem}.csv", mean_column=True,
                                  mark=marks)
            footnote = marks.footnote()
            if footnote:  # the table's own .md explains its marks too
                text = (out / f"{stem}.md").read_text()
                atomic_write_text(out / f"{stem}.md", text + "\n" + "\n".join(footnote))
            title = {"dice": "Dice", "jaccard": "Jaccard", "jaccard_t": "thresholded Jaccard (ISIC 2018)"}.get(mk, mk)
            lines += [f"## {ds} — {title}" if k == 0 else f"### {ds} — {title}", ""]
            lines.append((out / f"{stem}.md").read_text().rstrip("\n"))
            lines.append("")
            if k == 0 and any(str(c).startswith(MEAN_OVER_SETS) for c in table.columns):
                lines += [f"`{MEAN_OVER_SETS}`: each run's mean over the test sets of its budget (ID test part and "
                          "OOD sets / domains), then mean ± std over seeds.", ""]
            if k == 0:
                if sub["budget"].nunique(dropna=True) > 1:
                    png = f"{stem}_sample_efficiency.png"
                    sample_efficiency_plot(sub, mk, out / png)
                    lines += [f"![{ds} sample efficiency]({png})", ""]
                else:
                    png = f"{stem}_bars.png"
                    bar_plot(sub, mk, "row", out / png)
                    lines += [f"![{ds} {mk}]({png})", ""]
        # optional sections: only when the runs recorded the data (see scarce.reports.extras)
        for axis in known_axes():
            lines += axis_section(sub, ds, m, axis, out)
        lines += trimap_section(sub, ds, out)
        lines += size_section(sub, ds, m, out)
        lines += annotation_time_section(sub, ds, m, out)
        lines += architecture_section(sub, runs_root, ds, out)
        lines += monitor_section(sub, runs_root, ds, out)
        lines += environment_section(sub, runs_root, ds)
    if curves:
        runs_with_logs = [r for r in sorted(df["run"].unique()) if (Path(runs_root) / r / LOG_FILE).is_file()]
        if runs_with_logs:
            lines += ["## Training curves", ""]
            for r in runs_with_logs:
                png = f"curves/{_slug(r)}.png"
                curves_plot(Path(runs_root) / r / LOG_FILE, out / png)
                lines.append(f"- `{r}`: ![curves]({png})")
            lines.append("")

    lines += _untested_section(untested, runs_root)
    _warn_untested(untested, runs_root)
    present = metric_names(df)
    ordered = [m for m in METRICS if m in present] + [m for m in present if m not in METRICS]
    summary = summarize(df, ordered)
    atomic_write_text(out / "results.csv", summary.to_csv(index=False, float_format="%.6f"))
    lines += ["All metrics per run group: [results.csv](results.csv).", ""]
    atomic_write_text(out / "results.md", "\n".join(lines))
    return out / "results.md"


__all__ = ["primary_metric", "write_report", "to_markdown", "check_report_folder", "is_report_folder", "check_metric"]
