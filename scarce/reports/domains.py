"""Per-domain curves over training (the DiM / MiDSS papers' figure), drawn from ``log.csv``.

Runs trained with ``eval.monitor`` log, at every validation step, the validation metric of the
monitored test sets (``monitor/<set>`` columns beside ``val_<metric>``). The figure shows, per
report row (method label, and budget when several), the validation curve and each monitored
domain's curve over steps, mean ± std over seeds: does a method that looks flat on validation
keep improving (or collapse) on the other domains? These curves are for reading only: the
checkpoint is chosen on validation alone, never on a test domain (the trainer logs the
monitored scores after selection and never reads them back).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from scarce.reports.plots import _colors, _pretty, save_figure
from scarce.utils.runfolder import LOG_FILE

if TYPE_CHECKING:
    import pandas as pd

MONITOR_PREFIX = "monitor/"
"""log.csv column prefix of an ``eval.monitor`` test set (``monitor/cvc_clinicdb:test``)."""
VAL_COLUMN = re.compile(r"^val_(dice|jaccard|jaccard_t)$")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def read_monitor_log(log_csv: str | Path) -> tuple[str, "pd.DataFrame"] | None:
    """(validation metric, validation rows) of one run's ``log.csv``: a DataFrame indexed by
    ``step`` with column ``validation`` and one column per monitored set (names without the
    ``monitor/`` prefix); None when the log has no monitor column or no validation column."""
    import pandas as pd

    try:
        log = pd.read_csv(log_csv)
    except (OSError, ValueError):  # unreadable or empty log: no curve
        return None
    mon = [c for c in log.columns if str(c).startswith(MONITOR_PREFIX)]
    val = next((c for c in log.columns if VAL_COLUMN.match(str(c))), None)
    if not mon or val is None or "step" not in log.columns:
        return None
    rows = log[pd.to_numeric(log[val], errors="coerce").notna()]
    out = pd.DataFrame({"validation": pd.to_numeric(rows[val], errors="coerce"),
                        **{c[len(MONITOR_PREFIX):]: pd.to_numeric(rows[c], errors="coerce") for c in mon}})
    out.index = pd.Index(pd.to_numeric(rows["step"]).astype(int), name="step")
    return val[len("val_"):], out


def monitor_curves(df: "pd.DataFrame", runs_root: str | Path) -> tuple[str, dict[str, dict[str, "pd.DataFrame"]]]:
    """Curves of the runs in ``df`` (:func:`~scarce.reports.tables.collect_runs` rows of one
    dataset) that logged ``eval.monitor`` columns: (metric, ``{panel: {curve: steps × seeds}}``),
    ``panel`` the row label (``row @ budget`` when several budgets), ``curve`` ``validation`` or a
    monitored set. Duplicate runs of one seed keep the last by path, as the tables do."""
    import pandas as pd

    runs = df.drop_duplicates(subset=["row", "budget", "seed"], keep="last")
    several = runs["budget"].nunique(dropna=True) > 1
    metric, panels = "", {}
    for _, r in runs.sort_values(["row", "budget", "seed"], kind="stable").iterrows():
        got = read_monitor_log(Path(runs_root) / r["run"] / LOG_FILE)
        if got is None:
            continue
        metric, log = metric or got[0], got[1]
        panel = f"{r['row']} @ {r['budget']}" if several else str(r["row"])
        for curve in log.columns:
            panels.setdefault(panel, {}).setdefault(curve, {})[r["seed"]] = log[curve]
    return metric, {p: {c: pd.DataFrame(s).sort_index() for c, s in curves.items()} for p, curves in panels.items()}


def monitor_plot(panels: dict[str, dict[str, "pd.DataFrame"]], metric: str, out_png: str | Path,
                 title: str = "") -> Path:
    """One panel per report row: the validation curve and each monitored set's curve vs step,
    mean over seeds with a ± std band (sample std; none with one seed). Colours are per curve
    and the same in every panel."""
    from matplotlib.figure import Figure

    names = sorted({c for curves in panels.values() for c in curves if c != "validation"})
    colors = _colors(["validation", *names])
    n = max(1, len(panels))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * 4.4, nrows * 3.4))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel().tolist()
    for ax, (panel, curves) in zip(axes, sorted(panels.items())):
        for c in ["validation", *names]:
            if c not in curves:
                continue
            seeds = curves[c]
            m = seeds.mean(axis=1, skipna=True)
            sd = seeds.std(axis=1, ddof=1, skipna=True).fillna(0.0)
            x = m.index.to_numpy(dtype=float)
            ax.plot(x, m.to_numpy(), color=colors[c], marker="o", markersize=2.5,
                    linestyle="--" if c == "validation" else "-", label=c)
            ax.fill_between(x, (m - sd).to_numpy(), (m + sd).to_numpy(), color=colors[c], alpha=0.2, linewidth=0)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].set_ylabel(_pretty(metric))
    if panels:
        axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_png)


def monitor_section(df: "pd.DataFrame", runs_root: str | Path, dataset: str, out: Path) -> list[str]:
    """Markdown lines + ``<dataset>_monitor_curves.png`` for the runs of ``dataset`` that logged
    ``eval.monitor`` columns (nothing when none did, so other reports are unchanged)."""
    metric, panels = monitor_curves(df[df["dataset"] == dataset], runs_root)
    if not panels:
        return []
    png = f"{_slug(dataset)}_monitor_curves.png"
    monitor_plot(panels, metric, out / png, title=f"{dataset}: validation and monitored test sets")
    return [f"### {dataset} — per-domain curves over training", "",
            f"Validation {_pretty(metric)} (dashed) and each `eval.monitor` test set's, at every validation step; "
            "mean ± std over seeds. Logged only: checkpoints are chosen on validation, never on a test domain.", "",
            f"![{dataset} per-domain curves]({png})", ""]


__all__ = ["MONITOR_PREFIX", "read_monitor_log", "monitor_curves", "monitor_plot", "monitor_section"]
