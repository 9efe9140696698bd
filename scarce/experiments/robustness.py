"""``scarce robustness``: the intensity-shift stress test of every finished run of one or more
grids, then a report (mean ± std over seeds per run label).

Why a command of its own rather than ``scarce report --shifts``: the results report only reads
files (no model, no image: seconds, deterministic, run after every grid), while this one runs
every model on its test images 25 times (minutes per run) and stores the results in the run
folders. It resumes: a run whose ``eval_shifts/`` already holds an up-to-date evaluation (same
``best.pt``, shifts, severities and settings, :func:`scarce.api.shift_evaluation_current`) is
not evaluated again, so an interrupted or extended call only does what is missing.

Layer: the experiments package, beside :mod:`scarce.api` (it calls
:func:`scarce.api.evaluate_shifts`, then :mod:`scarce.reports.shifts`).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from scarce.config import ConfigError
from scarce.utils.runfolder import SHIFTS_DIR, RunPaths, config_files

PER_RUN_DIR = "per_run"
"""``--runs-read-only``: each run's shift evaluation goes to ``OUT/per_run/<run path as a name>/``."""


def _discover(roots: Sequence[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Finished runs (``metrics.json`` + ``checkpoints/best.pt``) under ``roots`` as dicts
    (``run`` = path as typed, ``run_dir``, dataset, row, budget, seed; labels as the results
    report's :func:`~scarce.reports.tables.collect_runs`), and the unfinished run folders."""
    import yaml

    from scarce.reports.tables import _get, _int_or_none, row_label, run_budget

    finished: list[dict[str, Any]] = []
    unfinished: list[str] = []
    for root in roots:
        base = Path(root)
        for cfg_path in config_files(base):
            run_dir = cfg_path.parent
            shown = run_dir.as_posix()
            files = RunPaths(run_dir)
            if not (files.result_file.is_file() and files.best_checkpoint.is_file()):
                unfinished.append(shown)
                continue
            try:
                cfg = yaml.safe_load(cfg_path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                unfinished.append(shown)
                continue
            if not isinstance(cfg, dict):
                continue
            finished.append({"run": shown, "run_dir": run_dir, "dataset": str(_get(cfg, "data.dataset", "unknown")),
                             "row": row_label(cfg), "budget": run_budget(run_dir, cfg),
                             "seed": _int_or_none(_get(cfg, "train.seed"))})
    return finished, unfinished


def _one_per_cell(runs: list[dict[str, Any]], newest: bool) -> list[dict[str, Any]]:
    """Several finished runs for one (dataset, row, budget, seed) would silently mix in a mean:
    refuse as the results report does, or keep the newest (``newest``) with a warning."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault((r["dataset"], r["row"], r["budget"], r["seed"]), []).append(r)
    dups = {k: v for k, v in cells.items() if len(v) > 1}
    if not dups:
        return runs
    if not newest:
        text = [f"{ds} / {row} / budget {b} / seed {s}: {', '.join(r['run'] for r in v)}"
                for (ds, row, b, s), v in sorted(dups.items(), key=lambda kv: str(kv[0]))]
        more = f"; and {len(text) - 5} more cells" if len(text) > 5 else ""
        raise ConfigError(f"several finished runs for the same table cell ({'; '.join(text[:5])}{more}); keep one run "
                          "per cell under the runs folders or pass --newest to use the newest of each "
                          "(by metrics.json time)")
    dropped = []
    for v in dups.values():
        keep = max(v, key=lambda r: (RunPaths(r["run_dir"]).result_file.stat().st_mtime, r["run"]))
        dropped += [r["run"] for r in v if r is not keep]
    warnings.warn(f"--newest: {len(dropped)} older run(s) left out (same dataset, row, budget and seed as a newer "
                  f"one): {', '.join(sorted(dropped))}", stacklevel=3)
    return [r for r in runs if r["run"] not in set(dropped)]


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _check_runs(runs: list[dict[str, Any]], names: list[str], sev: tuple[int, ...], sets: list[str] | None,
                data_root: str | None, out_dir: Path, runs_read_only: bool) -> None:
    """Before any evaluation: every run still to evaluate has test sets, a ``best.pt`` that fits
    the network of its config and (without ``runs_read_only``) a writable run folder; else one
    ConfigError naming them, so nothing is evaluated or written. Other problems of a run (e.g. its
    dataset is missing) are left to the evaluation, which skips that run with a warning."""
    from scarce.api import check_test_sets, load_run_config, load_segmenter, shift_evaluation_current
    from scarce.data.types import DataError
    from scarce.utils.io import CheckpointError, ensure_writable

    problems: list[str] = []
    for r in runs:
        run_dir, own = r["run_dir"], r["run_dir"] / SHIFTS_DIR
        candidates = [out_dir / PER_RUN_DIR / _slug(r["run"]), own] if runs_read_only else [own]
        try:
            if any(shift_evaluation_current(run_dir, f, names, sev, sets=sets) for f in candidates):
                continue  # reused, not evaluated
            cfg = load_run_config(run_dir, sets=sets)
        except (DataError, ConfigError, CheckpointError, KeyError, OSError):
            continue  # the evaluation loop skips it, naming why
        if data_root:
            cfg.data.root = data_root
        try:
            check_test_sets(cfg, run_dir, f"add --set data.test_sets=[{cfg.data.dataset}] (the sets to stress-test)")
            if not runs_read_only:
                try:
                    ensure_writable(own)
                except OSError as e:
                    raise ConfigError(f"cannot write the shift evaluation into {own.as_posix()!r} ({e.strerror}); "
                                      "pass --runs-read-only to write it under OUT/per_run/ instead") from None
            load_segmenter(run_dir, cfg)
        except (ConfigError, CheckpointError) as e:
            problems.append(str(e))
        except (DataError, KeyError, OSError):
            continue
    if len(problems) == 1:
        raise ConfigError(f"{problems[0]} (nothing was evaluated)")
    if problems:
        more = f" | and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ConfigError(f"{len(problems)} runs cannot be evaluated (nothing was): {' | '.join(problems[:3])}{more}")


def run_robustness(runs_roots: Sequence[str | Path], out: str | Path, shifts: str | list[str] | None = None,
                   severities: Any = (1, 2, 3), metric: str | None = None, sets: list[str] | None = None,
                   data_root: str | None = None, runs_read_only: bool = False, newest: bool = False,
                   overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Stress-test every finished run under ``runs_roots`` (grid layout
    ``<dataset>/<label>/b<budget>/s<seed>``, searched recursively) and write the robustness
    report into ``out`` (:mod:`scarce.reports.shifts`).

    Per run: reuse ``<run>/eval_shifts/`` when it is up to date, else run
    :func:`scarce.api.evaluate_shifts` into it. ``runs_read_only`` leaves run folders untouched:
    evaluations go to ``out/per_run/<run>/`` (an up-to-date ``<run>/eval_shifts/`` is still
    reused). ``sets`` override keys of every run's config (e.g. ``train.threads=1``,
    ``data.cache_dir=...``). Unfinished runs are skipped with a warning naming them; a run whose
    evaluation fails (e.g. its dataset is missing) is skipped with a warning and listed in the
    result's ``failed``. An unwritable ``out``, or a run to evaluate without test sets, with a
    ``best.pt`` of another network or (without ``runs_read_only``) a read-only folder, stops the
    call with one ConfigError before anything is evaluated or written.
    Returns ``{report, runs, evaluated, reused, unfinished, failed}``.
    """
    from scarce.api import evaluate_shifts, shift_evaluation_current
    from scarce.data.types import DataError
    from scarce.evaluation.shifts import SHIFTS_CSV, check_severities, resolve_shifts
    from scarce.reports.shifts import check_robustness_folder, read_shift_results, write_robustness_report
    from scarce.utils.io import CheckpointError

    names = resolve_shifts(shifts)  # bad names / severities: one line before anything is read
    sev = check_severities(severities)
    if metric is not None and metric not in ("dice", "jaccard", "jaccard_t"):
        raise ConfigError(f"--metric must be dice, jaccard or jaccard_t, got {metric!r}")
    for root in runs_roots:
        if not Path(root).is_dir():
            what = "is a file, not a folder" if Path(root).exists() else "does not exist"
            raise ConfigError(f"runs folder {str(root)!r} {what}; pass folders holding run folders (e.g. a grid's out)")
    check_robustness_folder(runs_roots, out, overwrite=overwrite)
    from scarce.utils.io import ensure_writable

    try:  # before any run is evaluated (and its eval_shifts/ written)
        ensure_writable(out)
    except OSError as e:
        raise ConfigError(f"cannot write the robustness report into {str(out)!r} ({e.strerror}); choose another "
                          "-o/--out folder") from None
    found, unfinished = _discover(runs_roots)
    if not found:
        raise ConfigError(f"no finished run under {', '.join(repr(str(r)) for r in runs_roots)} (a finished run "
                          "folder holds config.yaml, metrics.json and checkpoints/best.pt); nothing written")
    runs = _one_per_cell(found, newest)
    notes = []
    if unfinished:
        more = f", ... ({len(unfinished)} in all)" if len(unfinished) > 5 else ""
        warnings.warn(f"skipped {len(unfinished)} unfinished run(s) (no metrics.json or best.pt): "
                      f"{', '.join(unfinished[:5])}{more}", stacklevel=2)
        notes.append(f"{len(unfinished)} unfinished run(s) skipped: " + ", ".join(f"`{u}`" for u in unfinished))
    out_dir = Path(out)
    _check_runs(runs, names, sev, sets, data_root, out_dir, runs_read_only)
    evaluated, reused, failed, ready = [], [], [], []
    t0 = time.time()
    for i, r in enumerate(runs, 1):
        own = r["run_dir"] / SHIFTS_DIR
        dest = out_dir / PER_RUN_DIR / _slug(r["run"]) if runs_read_only else own
        try:
            folder = next((f for f in ([dest, own] if runs_read_only else [own])
                           if shift_evaluation_current(r["run_dir"], f, names, sev, sets=sets)), None)
            if folder is None:
                evaluate_shifts(r["run_dir"], names, sev, out=dest if runs_read_only else None, overwrite=True,
                                sets=sets, data_root=data_root)
                folder = dest
                evaluated.append(r["run"])
                status = "evaluated"
            else:
                reused.append(r["run"])
                status = f"up to date ({(folder / SHIFTS_CSV).as_posix()})"
        except (DataError, ConfigError, CheckpointError, KeyError, OSError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            warnings.warn(f"skipped {r['run']}: {msg}", stacklevel=2)
            failed.append((r["run"], msg))
            log(f"[{i}/{len(runs)}] {r['run']}: failed ({time.time() - t0:.0f}s)")
            continue
        ready.append({**r, "csv": folder / SHIFTS_CSV})
        log(f"[{i}/{len(runs)}] {r['run']}: {status} ({time.time() - t0:.0f}s)")
    if failed:
        notes.append(f"{len(failed)} run(s) failed and are left out: " + ", ".join(f"`{r}`" for r, _ in failed))
    df = read_shift_results(ready)
    if len(df):  # a reused evaluation may hold more shifts/severities than asked for now
        df = df[(df["shift"] == "none") | (df["shift"].isin(names) & df["severity"].isin(sev))]
    report = write_robustness_report(df, out_dir, names, metric=metric, sources=[str(r) for r in runs_roots],
                                     notes=notes)
    return {"report": str(report), "runs": len(runs), "evaluated": evaluated, "reused": reused,
            "unfinished": unfinished, "failed": failed}


__all__ = ["run_robustness", "PER_RUN_DIR"]
