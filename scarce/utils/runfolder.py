"""A run folder's files by name: the one module that spells them (docs/files-and-folders.md).

A run folder (``scarce train --out DIR``, one cell of a grid) holds:

* ``config.yaml`` — the resolved config, the first file a run writes (it makes the folder a run's);
* ``method.json`` — the method's fields with its defaults spelled out, as the run started;
* ``split.json`` — the stems of the run's split;
* ``environment.json`` — the software and hardware it trained in (:mod:`scarce.utils.environment`);
* ``log.csv`` and ``tb/`` — the training log (one row per log window) and TensorBoard events;
* ``checkpoints/last.pt`` (the resume state, written at every validation) and
  ``checkpoints/best.pt`` (the best-validation weights);
* ``eval/`` — the evaluation: ``metrics.json``, ``summary.txt``, ``<set>/per_image.csv``,
  ``<set>/predictions/``;
* ``metrics.json`` — the run's result, written last and atomically: its presence marks a finished run;
* ``FAILED.txt`` — the error of a grid run that raised;
* ``.scarce.lock`` — the lock of the process that trains it (:mod:`scarce.utils.lock`);
* ``eval_shifts/`` — the intensity-shift evaluation (``scarce evaluate --shifts``).

Why one module: the API, the trainer, the evaluation, the grid runner, the status reader and
the reports all read or write these files; with the names spelled in each of them, the layout
had to be learnt from five places and a rename had to find every copy. It sits in the base
layer so that the engine and the evaluation may use it too; comparing a folder's saved config
with a new one needs the method registry and lives above it (:mod:`scarce.runfolder`).
"""
from __future__ import annotations

import os
from pathlib import Path

from scarce.config import ConfigError, load_yaml
from scarce.utils.io import atomic_write_text
from scarce.utils.lock import LOCK_NAME
from scarce.utils.paths import MARKER

CONFIG_FILE = "config.yaml"
METHOD_FILE = "method.json"
"""The method's fields (defaults spelled out) as the run started. ``config.yaml`` keeps the
method section as written — reports tell a λ-sweep point from a reference row by whether λ was
written — so without this file a default changed between a run's start and its resume would be
invisible: the resume would go on under the new default."""
SPLIT_FILE = "split.json"
ENVIRONMENT_FILE = "environment.json"
LOG_FILE = "log.csv"
TB_DIR = "tb"
CKPT_DIR = "checkpoints"
LAST_CKPT = "last.pt"
BEST_CKPT = "best.pt"
EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
"""An evaluation's scores (``eval/metrics.json``, or ``--out`` of ``scarce evaluate``)."""
RESULT_FILE = METRICS_FILE
"""The run's result (best validation, steps, the test scores) in the run folder itself, written
last and atomically: its presence marks a finished run (grids skip such runs)."""
SUMMARY_FILE = "summary.txt"
PER_IMAGE_FILE = "per_image.csv"
PREDICTIONS_DIR = "predictions"
FAILED_FILE = "FAILED.txt"
SHIFTS_DIR = "eval_shifts"
"""A run's intensity-shift evaluation without ``--out``: ``<run>/eval_shifts``."""
ARCHITECTURE_FILE = "architecture.json"
"""The searched generator's architecture (written by methods that search one, read by reports)."""
GALLERY_FILE = "gallery.png"
"""Generated pairs of the synthetic-pair methods, written at the end of training."""
RESULT_FILES = (RESULT_FILE, f"{EVAL_DIR}/{METRICS_FILE}")
"""Where a run's test scores are, in order: its result, else a later ``scarce evaluate`` of it."""


class RunPaths:
    """The files of the run folder ``path`` (nothing is created or read on construction) and
    what their presence says about the run."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunPaths({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    # ------------------------------------------------------------------ files
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def method_file(self) -> Path:
        return self.path / METHOD_FILE

    @property
    def split_file(self) -> Path:
        return self.path / SPLIT_FILE

    @property
    def environment_file(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def tb_dir(self) -> Path:
        return self.path / TB_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CKPT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.path / CKPT_DIR / LAST_CKPT

    @property
    def best_checkpoint(self) -> Path:
        return self.path / CKPT_DIR / BEST_CKPT

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def result_file(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def failed_file(self) -> Path:
        return self.path / FAILED_FILE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def shifts_dir(self) -> Path:
        return self.path / SHIFTS_DIR

    def eval_set_dir(self, set_folder: str) -> Path:
        """``eval/<set_folder>`` (the folder name of a test set:
        :func:`scarce.evaluation.evaluate.set_folder`)."""
        return self.path / EVAL_DIR / set_folder

    def fresh_files(self) -> list[Path]:
        """What ``scarce train`` writes into the folder before its first checkpoint (config,
        method record, split, log, TensorBoard events, checkpoints folder, environment, output
        marker): removed again when the run fails before that checkpoint."""
        return [self.config_file, self.method_file, self.split_file, self.log_file, self.tb_dir, self.checkpoints,
                self.environment_file, self.path / MARKER]

    # ------------------------------------------------------------------ what the files say
    def finished(self) -> bool:
        """The run's result is written (:data:`RESULT_FILE`): nothing is left to train."""
        return self.result_file.exists()

    def started(self) -> bool:
        """The folder holds training state (a checkpoint or the result); one with only
        ``config.yaml``/``split.json``/logs (a run killed before its first validation) holds
        nothing to resume or lose, so it may be started over with another config."""
        return self.finished() or self.last_checkpoint.exists() or self.best_checkpoint.exists()

    def is_run_folder(self) -> bool:
        """True when the folder holds a run's ``config.yaml`` (the first file a run writes), also
        one made before run folders carried their output marker; a folder holding only the
        ``FAILED.txt`` a grid wrote for a run that failed before its first file is one too."""
        if {e.name for e in self.path.iterdir()} <= {FAILED_FILE, LOCK_NAME}:
            return True
        try:
            saved = load_yaml(self.config_file) if self.config_file.is_file() else None
        except (ConfigError, OSError, ValueError):
            return False
        return isinstance(saved, dict) and isinstance(saved.get("data"), dict) and "method" in saved

    def record_failure(self, text: str) -> None:
        """Write ``FAILED.txt`` (atomically): the run raised; ``scarce status`` shows its first line."""
        atomic_write_text(self.failed_file, text)

    def clear_failure(self) -> None:
        """Remove a ``FAILED.txt`` an earlier attempt left (the run has just succeeded)."""
        self.failed_file.unlink(missing_ok=True)


def config_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every run's ``config.yaml`` under ``root`` (recursively; ``root`` may be a run folder), sorted."""
    return sorted(Path(root).rglob(CONFIG_FILE))


def is_run_folder(folder: str | os.PathLike[str]) -> bool:
    """:meth:`RunPaths.is_run_folder` of ``folder`` (a ``previous=`` check of :mod:`scarce.utils.paths`)."""
    return RunPaths(folder).is_run_folder()


def is_eval_output(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds an earlier evaluation (``metrics.json`` + ``summary.txt``) and is
    not itself a run folder: ``evaluate --out`` may rewrite it."""
    folder = Path(folder)
    return ((folder / METRICS_FILE).is_file() and (folder / SUMMARY_FILE).is_file()
            and not (folder / CONFIG_FILE).exists())


__all__ = ["ARCHITECTURE_FILE", "BEST_CKPT", "CKPT_DIR", "CONFIG_FILE", "ENVIRONMENT_FILE", "EVAL_DIR", "FAILED_FILE",
           "GALLERY_FILE", "LAST_CKPT", "LOG_FILE", "METHOD_FILE", "METRICS_FILE", "PER_IMAGE_FILE", "PREDICTIONS_DIR", "RESULT_FILE",
           "RESULT_FILES", "RunPaths", "SHIFTS_DIR", "SPLIT_FILE", "SUMMARY_FILE", "TB_DIR", "config_files",
           "is_eval_output", "is_run_folder"]
