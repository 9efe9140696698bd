"""Where runs stand, read from their folders without touching them: ``scarce status``.

Why: grids run for hours in the background (``nohup scarce experiment ... &``), often several
at once; the question "what is done, what is training and how far, what failed, what is left"
was answered by hand with ``find``/``tail``. This reads only what the runs already write —
``metrics.json`` (done), ``FAILED.txt`` (failed), the folder lock's holder (training: its pid
is alive), ``log.csv`` (the step of the last validation and the time per step), the config
(iterations, the dataset's metric) — and never takes a lock, so it cannot disturb a run
(a lock taken even for a moment could make a starting run refuse its own folder). It imports no
torch and reads no checkpoint: fast on a laptop, over hundreds of runs.

States: ``done`` (metrics.json), ``failed`` (FAILED.txt, not done), ``running`` (a live lock
holder), ``stopped`` (training state but no live holder: it resumes where it stopped), ``new``
(nothing trained yet; a grid's runs without a folder, or a folder holding only its config).
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from scarce.utils.lock import LOCK_NAME, pid_alive
from scarce.utils.progress import format_duration
from scarce.utils.runfolder import CONFIG_FILE, RunPaths

STATES = ("done", "running", "stopped", "failed", "new")


@dataclass
class RunStatus:
    """One run folder's state (see the module docstring)."""

    run_dir: Path
    state: str
    step: int | None = None
    """Last step in ``log.csv`` (written at each validation: the run is at least this far)."""
    iterations: int | None = None
    sec_per_step: float | None = None
    """Mean seconds per step of the last logged window (the run's own measure)."""
    score: str = ""
    """Done runs: the primary metric on the first (in-distribution) test set, e.g. ``kvasir_seg dice 0.705``."""
    detail: str = ""
    """Running: the lock holder (pid, host, start); failed: the first line of FAILED.txt."""
    train_seconds: float | None = None
    """Training time the log accounts for (Σ steps × s/step over its rows): what a run of this
    kind takes, for a grid's ETA."""

    @property
    def eta(self) -> float | None:
        """Seconds of training left for a running run (from its own time per step), else None."""
        if self.state != "running" or None in (self.step, self.iterations, self.sec_per_step):
            return None
        return max(0, int(self.iterations) - int(self.step)) * float(self.sec_per_step)  # type: ignore[arg-type]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return d if isinstance(d, dict) else {}


def _log_rows(path: Path) -> list[dict[str, str]]:
    try:
        return list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _train_seconds(rows: list[dict[str, str]]) -> float | None:
    """Σ (step − previous step) × sec_per_step over the log rows; None when a row lacks either."""
    total, prev = 0.0, 0
    for r in rows:
        step, sec = _number(r.get("step")), _number(r.get("sec_per_step"))
        if step is None or sec is None:
            return None
        total += max(0.0, step - prev) * sec
        prev = int(step)
    return total if rows else None


def logged_train_seconds(log_csv: Path) -> float | None:
    """A run's training wall time as its ``log.csv`` records it (:func:`_train_seconds`), e.g. for
    result tables comparing rows; None when the log is missing or a row lacks a number."""
    return _train_seconds(_log_rows(Path(log_csv)))


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN: none


def live_holder(folder: str | os.PathLike[str], name: str = LOCK_NAME) -> dict[str, Any] | None:
    """The details of the process holding ``folder``'s lock (``name``: a run's, or a grid's
    ``.scarce-grid.lock``) when it is alive (same host: pid check; another host: assumed alive,
    as the lock itself does), else None. Reads the lock file only."""
    try:
        info = json.loads((Path(folder) / name).read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("host") == socket.gethostname() and not pid_alive(info.get("pid")):
        return None
    return info


def _score(metrics: dict[str, Any], cfg: dict[str, Any]) -> str:
    tests = metrics.get("tests")
    if not isinstance(tests, dict) or not tests:
        return ""
    name, values = next(iter(tests.items()))
    if not isinstance(values, dict):
        return ""
    from scarce.data.registry import primary_metric

    data = cfg.get("data") or {}
    metric = primary_metric(str(data.get("dataset")), data.get("num_classes"))
    value = _number(values.get(f"{metric}_mean"))
    return f"{name} {metric} {value:.3f}" if value is not None else ""


def run_status(run_dir: str | os.PathLike[str], iterations: int | None = None) -> RunStatus:
    """The state of the run in ``run_dir`` (which need not exist: ``new``). ``iterations``: the
    run's length when the folder has no config yet (a grid's run)."""
    run_dir = Path(run_dir)
    files = RunPaths(run_dir)
    cfg = _read_yaml(files.config_file)
    iters = _number((cfg.get("train") or {}).get("iterations")) if cfg else None
    st = RunStatus(run_dir, "new", iterations=int(iters) if iters is not None else iterations)
    rows = _log_rows(files.log_file)
    if rows:
        step = _number(rows[-1].get("step"))
        st.step = int(step) if step is not None else None
        st.sec_per_step = _number(rows[-1].get("sec_per_step"))
    metrics_path = files.result_file
    if metrics_path.is_file():
        st.state = "done"
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, ValueError):
            metrics = {}
        st.score = _score(metrics, cfg) if isinstance(metrics, dict) else ""
        st.train_seconds = _train_seconds(rows)
        return st
    holder = live_holder(run_dir)
    if holder is not None:
        st.state = "running"
        st.detail = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
        return st
    failed = files.failed_file
    if failed.is_file():
        st.state = "failed"
        try:
            st.detail = (failed.read_text().strip().splitlines() or [""])[0][:300]
        except OSError:
            st.detail = "FAILED.txt unreadable"
        return st
    if files.last_checkpoint.is_file() or files.best_checkpoint.is_file():
        st.state = "stopped"
    return st


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Run folders under ``root`` (searched recursively; ``root`` itself may be one): folders
    holding a ``config.yaml``. Missing root: ValueError naming it."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder of runs (a grid's 'out' folder, or a run folder)")
    return sorted(p.parent for p in root.rglob(CONFIG_FILE))


def summarize(statuses: Sequence[RunStatus]) -> dict[str, int]:
    """Counts per state (every state present, in :data:`STATES` order)."""
    return {s: sum(st.state == s for st in statuses) for s in STATES}


def remaining_eta(statuses: Sequence[RunStatus], workers: int) -> tuple[float | None, int]:
    """(seconds until the runs not done are trained with ``workers`` at a time, how many of
    them could not be estimated; seconds None when nothing is left or none could be). A run left to do is estimated by the median training time of
    the finished runs of its kind (its folder's parent: same dataset, row and budget, another
    seed) and a running one by its own ETA; a stopped run counts in full (no checkpoint is read);
    the total is shared among ``workers`` but never below the longest single run.
    Training only: evaluation is not in the logs."""
    import statistics

    kinds: dict[Path, list[float]] = {}
    for st in statuses:
        if st.state == "done" and st.train_seconds is not None:
            kinds.setdefault(st.run_dir.parent, []).append(st.train_seconds)
    times: list[float] = []
    unknown, left = 0, 0
    for st in statuses:
        if st.state in ("done", "failed"):
            continue
        left += 1
        if st.state == "running" and st.eta is not None:
            times.append(st.eta)
        elif st.run_dir.parent in kinds:
            times.append(statistics.median(kinds[st.run_dir.parent]))
        else:
            unknown += 1
    if not times:  # nothing left, or nothing to estimate it from
        return None, unknown
    # shared among the workers, but never less than the longest single run left
    return max(sum(times) / max(1, workers), max(times)), unknown


def format_status(title: str, statuses: Sequence[RunStatus], show: Iterable[str] = ("running", "stopped", "failed"),
                  root: Path | None = None, workers: int | None = None) -> list[str]:
    """Lines for one grid or folder: a header with the counts (and, given ``workers``, the time
    left, :func:`remaining_eta`) and, for each run in a ``show`` state, one line (state, folder,
    progress / score / reason)."""
    counts = summarize(statuses)
    head = f"{title}: {len(statuses)} runs — " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if workers:
        eta, unknown = remaining_eta(statuses, workers)
        if eta is not None:
            head += (f"; ≈ {format_duration(eta)} of training left at {workers} at a time"
                     + (f" (+ {unknown} run(s) of kinds not finished yet)" if unknown else ""))
    lines = [head if statuses else f"{title}: no runs"]
    show = set(show)
    for st in statuses:
        if st.state not in show:
            continue
        name = str(st.run_dir.relative_to(root)) if root is not None and st.run_dir.is_relative_to(root) else str(st.run_dir)
        lines.append(f"  {st.state:<8} {name}  {describe(st)}".rstrip())
    return lines


def describe(st: RunStatus) -> str:
    """The tail of a run's status line: progress, ETA, score or reason."""
    at = f"step {st.step}/{st.iterations}" if st.step is not None and st.iterations else (
        f"step {st.step}" if st.step is not None else "")
    if st.state == "done":
        return st.score
    if st.state == "running":
        parts = [f"at ≥ {at} (last validation)" if at else "starting"]
        if st.sec_per_step is not None:
            parts.append(f"{st.sec_per_step:.2f} s/step")
        if st.eta is not None:
            parts.append(f"ETA {format_duration(st.eta)}")
        return ", ".join(parts) + f"  [{st.detail}]"
    if st.state == "stopped":
        return f"stopped after {at} (resumes from its last checkpoint)" if at else "stopped (resumes from its last checkpoint)"
    if st.state == "failed":
        return st.detail
    return ""
