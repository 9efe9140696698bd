"""Collect finished runs into a DataFrame and render paper-style results tables.

Why from files: every run folder is self-describing (``config.yaml`` + ``metrics.json``), so
a report can be rebuilt at any time from a folder of runs, without re-reading images or models.

Run folder layout read here (anything else is ignored):

* ``config.yaml`` — keys ``data.dataset``, ``data.budget``, ``train.seed``, ``model.name``,
  ``method.name``, optionally ``method.augment`` and a top-level display label ``row``
  (alias ``label``).
* ``metrics.json`` — either the run result written by ``scarce.api.train_run``
  (``{"best_val", "best_step", ..., "tests": {test_set: {...}}}``) or the plain
  ``{test_set: {dice_mean, dice_std, jaccard_mean, ..., n}}`` written by
  :func:`scarce.evaluation.evaluate.evaluate_sets`; looked up in the run folder, then in its
  ``eval/`` sub-folder. Runs without it (unfinished) are skipped. A run trained without test
  sets (``data.test_sets=[]``: ``"tests": {}``) is finished but has no table entry
  (:func:`runs_without_tests`), unless ``scarce evaluate`` wrote test scores to its ``eval/``.

Std conventions: a run's ``*_std`` is over test images; tables report mean ± **sample** std
(ddof 1) of the per-run means over seeds (the run-to-run variability the paper reports).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import yaml

from scarce.reports.cost import annotation_minutes, label_kind
from scarce.utils.io import atomic_write_text
from scarce.utils.runfolder import RESULT_FILES, SPLIT_FILE, config_files

if TYPE_CHECKING:  # pandas is imported inside the functions (optional heavy dependency)
    import pandas as pd

METRICS_FILES = RESULT_FILES
TRIMAP_PREFIX = "trimap_w"
"""collect_runs column of the trimap mIoU at one band width: ``trimap_w8`` (from metrics.json
``tests.<set>.trimap.8``)."""
SIZE_PREFIX = "size:"
"""collect_runs columns of the object-size table (metrics.json ``tests.<set>.by_size``):
``size:<bin>:n`` (images in the bin) and ``size:<bin>:<metric>`` (the run's mean of that metric
over them), e.g. ``size:<2%:dice``; no ``_mean`` suffix, so they are not report metrics."""
KEY_COLUMNS = ["run", "dataset", "budget", "seed", "model", "method", "augment", "row", "test_set", "test_index"]


def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def row_label(cfg: Mapping[str, Any]) -> str:
    """Display label of a run: its ``row``/``label`` key, else
    ``<method>[+<augment>]-<model>[-<encoder>]`` (the encoder only when ``model.encoder`` is set,
    ``efficientnet_`` left out).

    e.g. ``supervised-unet``, ``supervised+standard-unet``, ``combine-deeplabv3``,
    ``supervised+combine-unet-lite0`` (the pretrained EfficientNet-Lite0 U-Net).
    """
    explicit = cfg.get("row") or cfg.get("label")
    if explicit:
        return str(explicit)
    method = str(_get(cfg, "method.name", "unknown"))
    augment = _get(cfg, "method.augment")
    model = str(_get(cfg, "model.name", "unknown"))
    encoder = _get(cfg, "model.encoder")
    if augment not in (None, False, "", "none", "None"):
        method = f"{method}+{augment}"
    if encoder not in (None, False, "", "none", "None"):
        model = f"{model}-{str(encoder).removeprefix('efficientnet_')}"
    return f"{method}-{model}"


def run_budget(run_dir: Path, cfg: Mapping[str, Any]) -> int | None:
    """Labelled images of a run: ``data.budget``, or the number its ``split.json`` used where that
    differs (``data.budget=all`` or 0: the whole pool; an unregistered folder smaller than the
    default budget)."""
    budget = _int_or_none(_get(cfg, "data.budget"))
    try:
        used = json.loads((Path(run_dir) / SPLIT_FILE).read_text()).get("budget")
    except (OSError, ValueError, AttributeError):
        return budget
    return used if isinstance(used, int) and not isinstance(used, bool) and used > 0 else budget


def _find_metrics(run_dir: Path) -> Path | None:
    for name in METRICS_FILES:
        p = run_dir / name
        if p.is_file():
            return p
    return None


def hidden_path(path: Path, root: Path) -> bool:
    """True when ``path`` lies in a hidden folder under ``root`` (a name starting with "."): a
    grid's ``.cache``, or a half-written staging folder (``.scarce-*.tmp``) that a killed process
    left behind — never a run of the report."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _scan(root: Path) -> Iterable[tuple[Path, dict[str, Any], dict[str, Any], Mapping[str, Any], dict[str, float]]]:
    """Every finished run under ``root`` (``config.yaml`` + ``metrics.json``, outside hidden
    folders), sorted by path: ``(run_dir, cfg, base columns, {test set: metrics}, run-level
    fields)``. A run whose ``metrics.json`` names no test set (trained with ``data.test_sets=[]``)
    takes its test sets from ``eval/metrics.json`` when a later ``scarce evaluate`` wrote one."""
    for cfg_path in config_files(root):
        run_dir = cfg_path.parent
        if hidden_path(run_dir, root):
            continue
        metrics_path = _find_metrics(run_dir)
        if metrics_path is None:
            continue
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        metrics = json.loads(metrics_path.read_text())
        if not isinstance(cfg, dict) or not isinstance(metrics, dict):
            continue
        tests, run_level = _split_metrics(metrics)
        later = run_dir / METRICS_FILES[1]
        if not _test_sets(tests) and metrics_path != later and later.is_file():
            try:
                evaluated = json.loads(later.read_text())
            except (OSError, ValueError):
                evaluated = None
            if isinstance(evaluated, dict):
                tests = _split_metrics(evaluated)[0]
        base = {
            "run": run_dir.relative_to(root).as_posix() if run_dir != root else ".",
            "dataset": str(_get(cfg, "data.dataset", "unknown")),
            "budget": run_budget(run_dir, cfg),
            "seed": _int_or_none(_get(cfg, "train.seed")),
            "model": str(_get(cfg, "model.name", "unknown")),
            "method": str(_get(cfg, "method.name", "unknown")),
            "augment": _get(cfg, "method.augment"),
            "row": row_label(cfg),
            "annotation_minutes": annotation_minutes(run_dir, cfg),
            "label_kind": label_kind(_get(cfg, "method") if isinstance(_get(cfg, "method"), Mapping) else {}),
        }
        yield run_dir, cfg, base, tests, run_level


def size_columns(by_size: Mapping[str, Any]) -> dict[str, float]:
    """:data:`SIZE_PREFIX` columns of one test set's ``by_size`` entry (null → NaN)."""
    out: dict[str, float] = {}
    for b, cell in by_size.items():
        if not isinstance(cell, Mapping):
            continue
        for key, v in cell.items():
            name = key[: -len("_mean")] if key.endswith("_mean") else key
            out[f"{SIZE_PREFIX}{b}:{name}"] = _float_or_nan(v)
    return out


def _test_sets(tests: Mapping[str, Any]) -> list[str]:
    """The test sets of a run's metrics that hold scores."""
    return [str(t) for t, v in tests.items() if isinstance(v, Mapping)]


def collect_runs(runs_root: str | Path) -> "pd.DataFrame":
    """One row per (run, test set) found under ``runs_root`` (searched recursively).

    Columns: ``run`` (folder relative to ``runs_root``), ``dataset``, ``budget``, ``seed``,
    ``model``, ``method``, ``augment``, ``row`` (display label, :func:`row_label`),
    ``test_set``, ``test_index`` (position in ``metrics.json``: 0 = ID set) and every numeric
    field of the test set's metrics (``dice_mean``, ``dice_std``, ..., ``n``), plus numeric
    run-level fields of an api result (``best_val``, ``best_step``, ``steps``). Sorted by run path.
    ``annotation_minutes``: the minutes of annotation behind the run's labels (the cost model of
    :mod:`scarce.reports.cost`; NaN without ``split.json``), ``label_kind`` what its training
    images are labelled with (``mask``, ``scribble`` or ``click``:
    :func:`~scarce.reports.cost.label_kind`).
    Also one column per report axis declared on a method Config field (:func:`run_axes`:
    ``scribble_length``, ``method_lam``, ... — NaN where the run does not set it) with the run's
    line signature beside it (``line:<axis>``), and, when the run was evaluated with ``eval.trimap_widths``, one
    ``trimap_w<width>`` column per band width (:func:`trimap_results`), and the object-size columns
    ``size:<bin>:<metric>`` / ``size:<bin>:n`` when the evaluation wrote ``by_size`` (:func:`size_columns`). Finished runs without any
    test set (:func:`runs_without_tests`) have no row.
    """
    import pandas as pd

    root = Path(runs_root)
    records: list[dict[str, Any]] = []
    for _, cfg, base, tests, run_level in _scan(root):
        base.update(run_axes(cfg))
        base.update(run_level)
        for idx, (test_set, values) in enumerate(tests.items()):
            if not isinstance(values, Mapping):
                continue
            rec = dict(base, test_set=str(test_set), test_index=idx)
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rec[k] = float(v)
                elif v is None:
                    rec[k] = float("nan")
                elif k == "trimap" and isinstance(v, Mapping):
                    for w, miou in v.items():
                        if _int_or_none(w) is not None:
                            rec[f"{TRIMAP_PREFIX}{int(w)}"] = float("nan") if miou is None else float(miou)
                elif k == "by_size" and isinstance(v, Mapping):
                    rec.update(size_columns(v))
            records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return pd.DataFrame(columns=KEY_COLUMNS)
    return df.sort_values(["run", "test_index"], kind="stable").reset_index(drop=True)


UNTESTED_COLUMNS = ["run", "dataset", "budget", "seed", "row", "best_val", "best_step"]


def runs_without_tests(roots: str | Path | Sequence[str | Path]) -> "pd.DataFrame":
    """Finished runs (``metrics.json`` written) that hold no test-set score — trained with
    ``data.test_sets=[]`` and not evaluated since —, which :func:`collect_runs` cannot place in a
    table: :data:`UNTESTED_COLUMNS`, ``run`` named as :func:`collect_roots` names it (relative to
    the one folder, else ``<root>/<rel>``), ``best_val``/``best_step`` the best checkpoint's
    validation score and step (NaN when not recorded). Sorted by run."""
    import pandas as pd

    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    records = []
    for root in roots:
        for _, _, base, tests, run_level in _scan(Path(root)):
            if _test_sets(tests):
                continue
            run = base["run"]
            if len(roots) > 1:
                run = (Path(root) / run).as_posix() if run != "." else Path(root).as_posix()
            records.append({**{k: base[k] for k in ("dataset", "budget", "seed", "row")}, "run": run,
                            "best_val": run_level.get("best_val", float("nan")),
                            "best_step": run_level.get("best_step", float("nan"))})
    return pd.DataFrame.from_records(records, columns=UNTESTED_COLUMNS).sort_values("run").reset_index(drop=True)


def _split_metrics(metrics: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, float]]:
    """(per-test-set metrics, numeric run-level fields such as ``best_val``/``best_step``)."""
    if isinstance(metrics.get("tests"), Mapping):
        run_level = {k: float(v) for k, v in metrics.items()
                     if k != "tests" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return metrics["tests"], run_level
    return {k: v for k, v in metrics.items() if isinstance(v, Mapping)}, {}


def _float_or_nan(v: Any) -> float:
    if isinstance(v, bool):
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


SIGNATURE_IGNORED = ("out", "label", "row", "train.seed", "data.cache_dir", "train.progress", "train.threads",
                     "train.device", "train.tensorboard", "train.log_every")
"""Config keys that never make two runs different lines of an axis plot (seeds are averaged)."""


def run_axes(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Report-axis columns of one run: for every axis declared on a method Config field
    (:func:`scarce.methods.report_axes`), its value when the run's method sets it explicitly
    (else NaN), and ``line:<axis>`` = the run's config without that field, seed and runtime keys
    (canonical JSON): runs sharing it are one line of the axis plot, whatever their labels."""
    from scarce.methods import method_spec, report_axes

    method = _get(cfg, "method") if isinstance(_get(cfg, "method"), Mapping) else {}
    try:
        spec = method_spec(method)
        values, fields_ = spec.axes(explicit=method), spec.axis_fields()
    except (KeyError, TypeError, ValueError):  # a run of a method that no longer parses: no axes
        values, fields_ = {}, {}
    out: dict[str, Any] = {}
    for key in report_axes():
        out[key] = float(values.get(key, float("nan")))
        d = json.loads(json.dumps(cfg, default=str))
        for dotted in SIGNATURE_IGNORED + ((f"method.{fields_[key]}",) if key in fields_ else ()):
            *parents, last = dotted.split(".")
            node = d
            for part in parents:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(last, None)
        out[f"line:{key}"] = json.dumps(d, sort_keys=True, default=str)
    return out


def scribble_length(cfg: Mapping[str, Any]) -> float:
    """Scribble length L of a weak-supervision run (``method.scribbles: synthetic:L``; bare
    ``synthetic`` = 1), NaN for anything else: the ``scribble_length`` axis of :func:`run_axes`."""
    return float(run_axes(cfg).get("scribble_length", float("nan")))


def trimap_widths(df: "pd.DataFrame") -> list[int]:
    """Trimap band widths present in :func:`collect_runs` output (columns ``trimap_w<width>``)."""
    return sorted(int(c[len(TRIMAP_PREFIX):]) for c in df.columns
                  if c.startswith(TRIMAP_PREFIX) and c[len(TRIMAP_PREFIX):].isdigit())


def trimap_results(df: "pd.DataFrame", dataset: str, test_set: str) -> dict[str, dict[int, list[float]]]:
    """``{row: {width: [mIoU per seed]}}`` of one dataset/test set (input of
    :func:`scarce.reports.trimap_plot.plot_trimap`); rows without trimap data are left out.
    Duplicate runs of the same seed keep the last by run path, as :func:`summarize`."""
    widths = trimap_widths(df)
    sub = df[(df["dataset"] == dataset) & (df["test_set"] == test_set)]
    sub = sub.drop_duplicates(subset=["row", "budget", "seed"], keep="last")
    out: dict[str, dict[int, list[float]]] = {}
    for row in sorted(sub["row"].unique().tolist()):
        g = sub[sub["row"] == row]
        by_w = {w: [float(v) for v in g[f"{TRIMAP_PREFIX}{w}"].dropna()] for w in widths}
        by_w = {w: v for w, v in by_w.items() if v}
        if by_w:
            out[row] = by_w
    return out


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def metric_names(df: "pd.DataFrame") -> list[str]:
    """Metric names present in ``df`` (``dice`` for a ``dice_mean`` column), in column order."""
    return [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]


def ordered_test_sets(df: "pd.DataFrame") -> list[str]:
    """Test sets ordered ID first, then OOD (by their position in ``metrics.json``), then name."""
    if df.empty:
        return []
    order = df.groupby("test_set")["test_index"].min().reset_index()
    order = order.sort_values(["test_index", "test_set"], kind="stable")
    return order["test_set"].tolist()


CELL_KEYS = ["dataset", "row", "budget", "seed"]
"""A report cell: one finished run per (dataset, row, budget, seed) is expected."""


def duplicate_runs(df: "pd.DataFrame") -> list[tuple[tuple[Any, ...], list[str]]]:
    """Report cells (:data:`CELL_KEYS`) that several run folders fill, as ``[(cell, [run, ...])]``
    (runs sorted by path): e.g. a run copied next to its original, or two grids' outputs under
    one folder. Tables would silently keep only one of them, so the report refuses them
    (:func:`keep_newest` is the explicit way out)."""
    if df.empty:
        return []
    runs = df[[*CELL_KEYS, "run"]].drop_duplicates()
    out = []
    for key, g in runs.groupby(CELL_KEYS, sort=True, dropna=False):
        if g["run"].nunique() > 1:
            out.append((tuple(key), sorted(g["run"].unique().tolist())))
    return out


def keep_newest(df: "pd.DataFrame", runs_root: str | Path) -> tuple["pd.DataFrame", list[str]]:
    """``df`` with only the newest run of each duplicated cell (by the modification time of its
    ``metrics.json``, ties by path) and the list of dropped runs (paths relative to ``runs_root``)."""
    root = Path(runs_root)
    dropped: list[str] = []
    for _, runs in duplicate_runs(df):
        def mtime(run: str) -> float:
            p = _find_metrics(root / run)
            return p.stat().st_mtime if p is not None else float("-inf")

        newest = max(runs, key=lambda r: (mtime(r), r))
        dropped += [r for r in runs if r != newest]
    return df[~df["run"].isin(dropped)].reset_index(drop=True), sorted(dropped)


def collect_roots(roots: Sequence[str | Path]) -> tuple["pd.DataFrame", Path]:
    """:func:`collect_runs` over one or several folders, and the folder ``run`` is relative to.

    One folder: its runs, relative to it (exactly :func:`collect_runs`). Several (``scarce report
    RUNS... -o OUT``): their runs concatenated, ``run`` the path as typed (``<root>/<rel>``) and
    the base ``Path('.')``, so ``base / run`` is a run folder in both cases.
    """
    import pandas as pd

    roots = list(roots)
    if len(roots) == 1:
        return collect_runs(roots[0]), Path(roots[0])
    frames = []
    for root in roots:
        d = collect_runs(root)
        if not d.empty:
            d["run"] = [(Path(root) / r).as_posix() if r != "." else Path(root).as_posix() for r in d["run"]]
            frames.append(d)
    if not frames:
        return pd.DataFrame(columns=KEY_COLUMNS), Path(".")
    return pd.concat(frames, ignore_index=True), Path(".")


def summarize(df: "pd.DataFrame", metrics: Sequence[str] | None = None) -> "pd.DataFrame":
    """Seed statistics per (dataset, row, budget, test_set): ``n_seeds``, ``<m>_mean``, ``<m>_std``.

    ``<m>_mean`` is the mean over seeds of each run's mean; ``<m>_std`` their sample std
    (ddof 1; NaN with one seed). Duplicate runs of the same seed keep the last by run path.
    """
    import pandas as pd

    keys = ["dataset", "row", "budget", "test_set"]
    if df.empty:
        return pd.DataFrame(columns=[*keys, "n_seeds"])
    metrics = list(metrics) if metrics is not None else metric_names(df)
    d = df.drop_duplicates(subset=[*keys, "seed"], keep="last")
    order = {t: i for i, t in enumerate(ordered_test_sets(d))}
    out = []
    for key, g in d.groupby(keys, sort=True, dropna=False):
        rec: dict[str, Any] = dict(zip(keys, key))
        rec["n_seeds"] = int(len(g))
        for m in metrics:
            col = f"{m}_mean"
            vals = g[col].dropna() if col in g else pd.Series(dtype=float)
            rec[f"{m}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            rec[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        out.append(rec)
    res = pd.DataFrame.from_records(out)
    res["_t"] = res["test_set"].map(order)
    res = res.sort_values(["dataset", "row", "budget", "_t"], kind="stable").drop(columns="_t")
    return res.reset_index(drop=True)


def format_cell(mean: float, std: float, decimals: int = 3) -> str:
    """``0.812 ± 0.015`` (only the mean when std is NaN, i.e. one seed; empty when no data)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def column_label(test_set: str, budget: Any) -> str:
    """Flat column name of a results table: ``<test set> @ <budget>``."""
    return f"{test_set} @ {budget}"


MEAN_OVER_SETS = "mean over test sets"
"""Results-table column (``mean over test sets @ <budget>``) of :func:`mean_over_sets`."""


def mean_over_sets(df: "pd.DataFrame", metric: str, sets: Sequence[str]) -> "pd.DataFrame":
    """Per (dataset, row, budget): mean and sample std over seeds (``<metric>_mean``/``_std``,
    ``n_seeds``) of each run's mean of ``<metric>_mean`` over the test sets ``sets`` (ID test part
    + OOD sets / domains: the multi-domain protocol's "mean over domains"). A run without a score
    on one of ``sets`` is left out, so every mean covers the same domains. Duplicate runs of one
    seed keep the last by run path, as :func:`summarize`."""
    import pandas as pd

    keys = ["dataset", "row", "budget"]
    col = f"{metric}_mean"
    d = df[df["test_set"].isin(list(sets))].drop_duplicates(subset=[*keys, "test_set", "seed"], keep="last")
    out = []
    if col in d:
        per_run = d.groupby([*keys, "seed"], dropna=False)[col].agg(["mean", "count"]).reset_index()
        per_run = per_run[per_run["count"] == len(set(sets))]
        for key, g in per_run.groupby(keys, sort=True, dropna=False):
            vals = g["mean"]
            out.append({**dict(zip(keys, key)), "n_seeds": int(len(vals)), f"{metric}_mean": float(vals.mean()),
                        f"{metric}_std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")})
    return pd.DataFrame.from_records(out, columns=[*keys, "n_seeds", f"{metric}_mean", f"{metric}_std"])


def results_table(df: "pd.DataFrame", metric: str, out_md: str | Path | None = None,
                  out_csv: str | Path | None = None, decimals: int = 3,
                  rows: Sequence[str] | None = None, test_sets: Sequence[str] | None = None,
                  budgets: Iterable[int] | None = None, dataset: str | None = None,
                  mean_column: bool = False, mark: Callable[["pd.DataFrame"], str] | None = None) -> "pd.DataFrame":
    """Paper-style table of ``metric``: rows = method-backbone labels, columns = test sets per budget.

    ``df`` is :func:`collect_runs` output. Cells are ``mean ± std`` over seeds with ``decimals``
    places (string DataFrame, index ``row``, columns ``<test set> @ <budget>``, budgets
    ascending, ID test set first). ``out_md`` gets a Markdown table with the best mean of each
    column in **bold** (all ties at the shown precision); ``out_csv`` the same cells, unbolded.
    ``rows``/``test_sets``/``budgets``/``dataset`` select and order subsets. ``mean_column``:
    after the test sets of a budget that has several, a ``mean over test sets @ <budget>`` column
    (:func:`mean_over_sets`; ``scarce report`` turns it on). ``mark(runs)``: a suffix for a
    cell's Markdown (e.g. ``†``, or ``""``) given the ``df`` rows of the runs that make it (the
    returned table and ``out_csv`` stay unmarked).
    """
    import pandas as pd

    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if test_sets is not None:
        df = df[df["test_set"].isin(list(test_sets))]
    if budgets is not None:
        df = df[df["budget"].isin(list(budgets))]
    if rows is not None:
        df = df[df["row"].isin(list(rows))]
    summary = summarize(df, [metric])
    row_order = list(rows) if rows is not None else sorted(summary["row"].unique().tolist()) if len(summary) else []
    sets = list(test_sets) if test_sets is not None else ordered_test_sets(df)
    budget_order = sorted(b for b in summary["budget"].unique().tolist()) if len(summary) else []
    cells: dict[str, dict[str, str]] = {}
    best: dict[str, set[str]] = {}
    marks: dict[str, dict[str, str]] = {}
    for b in budget_order:
        present = [t for t in sets if ((summary["budget"] == b) & (summary["test_set"] == t)).any()]
        groups = [(t, summary[(summary["budget"] == b) & (summary["test_set"] == t)]) for t in present]
        if mean_column and len(present) > 1:
            means = mean_over_sets(df[df["budget"] == b], metric, present)
            groups.append((MEAN_OVER_SETS, means))
        for t, sub in groups:
            if sub.empty:
                continue
            col = column_label(t, b)
            cells[col] = {}
            rounded: dict[str, float] = {}
            for _, r in sub.iterrows():
                mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
                cells[col][r["row"]] = format_cell(mean, std, decimals)
                if mark is not None and cells[col][r["row"]]:
                    suffix = mark(cell_runs(df, r["row"], b, present if t == MEAN_OVER_SETS else [t]))
                    if suffix:
                        marks.setdefault(col, {})[r["row"]] = suffix
                if not math.isnan(mean):
                    rounded[r["row"]] = round(float(mean), decimals)
            if rounded:
                top = max(rounded.values())
                best[col] = {k for k, v in rounded.items() if v == top}
    table = pd.DataFrame({c: [cells[c].get(r, "") for r in row_order] for c in cells},
                         index=pd.Index(row_order, name="row"))
    if out_csv is not None:
        atomic_write_text(out_csv, table.to_csv())
    if out_md is not None:
        atomic_write_text(out_md, to_markdown(table, best, marks))
    return table


def cell_runs(df: "pd.DataFrame", row: str, budget: Any, sets: Sequence[str]) -> "pd.DataFrame":
    """The ``df`` rows of the runs behind one table cell: ``row`` at ``budget`` scored on every
    one of ``sets`` (one test set, or all of them for the mean over test sets)."""
    g = df[(df["row"] == row) & (df["budget"] == budget) & df["test_set"].isin(list(sets))]
    counts = g.groupby("run")["test_set"].nunique()
    return g[g["run"].isin(counts[counts == len(set(sets))].index)]


def to_markdown(table: "pd.DataFrame", bold: Mapping[str, set[str]] | None = None,
                marks: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """Markdown of a string table (index as first column); ``bold[col]`` = row labels to bold;
    ``marks[col][row]``: a suffix after the (bold) cell, e.g. a footnote mark."""
    bold = bold or {}
    marks = marks or {}
    header = [str(table.index.name or "")] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    for label, r in table.iterrows():
        cells = [str(label)]
        for c in table.columns:
            v = str(r[c])
            v = f"**{v}**" if v and label in bold.get(c, set()) else v
            cells.append(f"{v} {marks[c][label]}" if v and label in marks.get(c, {}) else v)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
