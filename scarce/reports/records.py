"""Result records: the small files of finished runs, kept without their checkpoints and images.

Why: a run folder is mostly checkpoints, predictions and overlays (megabytes per run); the
tables, plots and significance tests of ``scarce report`` need only its configuration, metrics,
per-image scores and training log (tens of kilobytes). :func:`export_records` copies exactly
those files of every finished run into a folder that ``scarce report`` reads like the runs
themselves, so results can be kept in version control, shared with a colleague, gathered from
several machines, and a report extended later with new runs (``scarce report RECORDS NEW_RUNS``)
after the run folders are gone. Nothing in a record can be evaluated again (no checkpoint):
``scarce robustness``, ``evaluate`` and the HTML report's per-image pictures need the run.

A record keeps its run's folder path relative to the folder it was exported from, so a grid's
records sit at ``<records>/<dataset>/<row>/b<budget>/s<seed>/``. Exporting again is safe: a record
identical to its run is left as it is; one that differs (the run was retrained) is replaced only
with ``overwrite``; nothing is deleted.
"""
from __future__ import annotations

import filecmp
import shutil
from pathlib import Path
from typing import Any, Sequence

from scarce.config import ConfigError
from scarce.reports.tables import METRICS_FILES, _find_metrics, hidden_path
from scarce.utils.paths import PathLike, _names, check_output_folder, staged_output
from scarce.utils.runfolder import (ARCHITECTURE_FILE, CONFIG_FILE, ENVIRONMENT_FILE, EVAL_DIR, LOG_FILE, METHOD_FILE,
                                    PER_IMAGE_FILE, SPLIT_FILE, SUMMARY_FILE, config_files)

EXPORT = "scarce export"
"""Command name in a records folder's output marker (:mod:`scarce.utils.paths`)."""
RECORD_PATTERNS = (CONFIG_FILE, METHOD_FILE, SPLIT_FILE, LOG_FILE, ARCHITECTURE_FILE, ENVIRONMENT_FILE, *METRICS_FILES,
                   f"{EVAL_DIR}/{SUMMARY_FILE}", f"{EVAL_DIR}/*/{PER_IMAGE_FILE}")
"""Files of a run that make its record (globs relative to the run folder): everything
``scarce report`` reads (tables, curves, E2EAug architecture plots, per-image tests), nothing it
can recompute or that is large (checkpoints, predictions, overlays)."""

MARKER = "RECORDS.md"
MARKER_TEXT = """# Result records

Written by `scarce export`: each folder below is one finished run's record — its config.yaml,
method.json (the method's fields as the run started), split.json, log.csv, metrics.json and
per-image scores (eval/<test set>/per_image.csv), without checkpoints, predictions or overlays.
`scarce report` reads this folder like a runs folder:

    scarce report RECORDS [MORE_RUNS...] -o REPORT

Add runs with `scarce export RUNS -o RECORDS` (identical records are kept as they are; a record
that differs from its run is replaced only with --overwrite; nothing is deleted).
"""


def is_records_folder(folder: Path) -> bool:
    """True when ``folder`` holds an earlier export (its ``RECORDS.md`` starts with the marker)."""
    try:
        return (folder / MARKER).read_text(encoding="utf-8").startswith("# Result records")
    except (OSError, UnicodeDecodeError):
        return False


def record_files(run_dir: PathLike) -> list[str]:
    """Paths (relative to ``run_dir``, POSIX) of the record files the run holds, sorted."""
    run = Path(run_dir)
    found = {p.relative_to(run).as_posix() for pat in RECORD_PATTERNS for p in run.glob(pat) if p.is_file()}
    return sorted(found)


def finished_runs(root: PathLike) -> tuple[list[Path], int]:
    """(finished run folders under ``root``, sorted; number of unfinished ones): a finished run
    holds ``config.yaml`` and a metrics file (:data:`~scarce.reports.tables.METRICS_FILES`), as
    for the report; hidden folders are skipped (:func:`~scarce.reports.tables.hidden_path`)."""
    done, unfinished = [], 0
    for cfg in config_files(root):
        run = cfg.parent
        if hidden_path(run, Path(root)):
            continue  # .cache, or a staging folder a killed export left behind
        if _find_metrics(run) is None:
            unfinished += 1
        else:
            done.append(run)
    return done, unfinished


def _differs(src: Path, dest: Path, files: Sequence[str]) -> list[str]:
    """Record files of ``src`` whose copy in ``dest`` is missing or different, and files of an
    existing record that the run no longer has (a retrained run that logged differently)."""
    out = [f for f in files if not (dest / f).is_file() or not filecmp.cmp(src / f, dest / f, shallow=False)]
    if dest.is_dir():
        out += [f for f in record_files(dest) if f not in files]
    return out


def export_records(roots: Sequence[PathLike], out: PathLike, overwrite: bool = False) -> dict[str, Any]:
    """Copy the record (:data:`RECORD_PATTERNS`) of every finished run under ``roots`` into ``out``.

    ``out`` must be new, empty or an earlier export, and may not overlap a root (the report
    would count a record and its run twice). Each run keeps its path relative to its root; two
    roots holding the same relative path with different records are refused. A run whose record
    in ``out`` is identical is counted ``unchanged``; one whose record differs is refused — all
    such runs named in one error, before anything is written — unless ``overwrite``, which
    replaces the record's files (never deletes others). All new files appear at once
    (:func:`~scarce.utils.paths.staged_output`): an error leaves ``out`` as it was.

    Returns ``{"out", "copied", "replaced", "unchanged"}`` (lists of run paths relative to ``out``)
    and ``"unfinished"`` (runs skipped because they hold no metrics yet).
    """
    roots = [Path(r) for r in roots]
    for r in roots:
        if not r.is_dir():
            what = "is a file, not a folder" if r.exists() else "does not exist"
            raise ConfigError(f"runs folder {str(r)!r} {what}; pass the folder holding your run folders "
                              "(e.g. runs/ or a grid's out folder)")
    dest = check_output_folder(out, inputs=roots, overwrite=overwrite, what="records folder",
                               previous=is_records_folder, command=EXPORT)
    plan: dict[str, tuple[Path, list[str]]] = {}
    unfinished = 0
    for root in roots:
        runs, n = finished_runs(root)
        unfinished += n
        for run in runs:
            rel = run.relative_to(root).as_posix() if run != root else root.resolve().name
            files = record_files(run)
            if rel in plan and plan[rel][0] != run:
                other = plan[rel][0]
                if _differs(run, other, files):
                    raise ConfigError(f"{str(other)!r} and {str(run)!r} are different runs with the same path "
                                      f"{rel!r} in the records; export them into different folders")
                continue
            plan[rel] = (run, files)
    if not plan:
        where = ", ".join(repr(str(r)) for r in roots)
        raise ConfigError(f"no finished run under {where} (a finished run folder holds config.yaml and "
                          "metrics.json); nothing written")
    copied, replaced, unchanged = [], [], []
    for rel, (run, files) in sorted(plan.items()):
        target = dest / rel
        if not target.exists():
            copied.append(rel)
        elif _differs(run, target, files):
            replaced.append(rel)
        else:
            unchanged.append(rel)
    if replaced and not overwrite:
        raise ConfigError(f"{len(replaced)} record(s) in {str(out)!r} differ from their runs ({_names(replaced)}): "
                          "the runs were trained again or changed; pass --overwrite to replace those records "
                          "(nothing else is touched), or export into a new folder")
    todo = copied + replaced
    if todo or not is_records_folder(dest):
        with staged_output(dest, EXPORT) as tmp:
            if not is_records_folder(dest):
                (tmp / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
            for rel in todo:
                run, files = plan[rel]
                for f in files:
                    (tmp / rel / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / f, tmp / rel / f)  # keeps metrics.json's time (report --newest)
    return {"out": dest, "copied": copied, "replaced": replaced, "unchanged": unchanged, "unfinished": unfinished}


__all__ = ["RECORD_PATTERNS", "MARKER", "export_records", "finished_runs", "is_records_folder", "record_files"]
