"""Experiment grids: datasets × methods × label budgets × seeds × backbones, run and reported.

* :mod:`.grid` — the grid YAML (:func:`load_grid`), its runs (:func:`expand_grid`, one
  :class:`RunSpec` each, in ``out/<dataset>/<label>-<model>/b<budget>/s<seed>``) and the checks of
  run folders made earlier;
* :mod:`.local` — the ``local`` backend (default): ``workers`` processes on this machine,
  ``threads`` torch threads each;
* :mod:`.ray` — the ``ray`` backend: one Ray task per run on a Ray cluster;
* :mod:`.status` — where a grid's runs stand (``scarce status GRID.yaml``);
* :mod:`.robustness` — the intensity-shift stress test of finished runs (``scarce robustness``).

A run whose ``metrics.json`` exists is skipped and an unfinished one resumes from its last
checkpoint, so re-running the same command continues an interrupted grid; both backends keep the
same skip/resume rules, folders and per-run failure reports. :func:`run_grids` (here) runs
several grids in one pool (``scarce experiment A.yaml B.yaml``): no core idles at a grid's tail
while the next grid waits, and each grid's report follows its own runs.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from scarce.config import ConfigError
from scarce.experiments.grid import (EXPERIMENT, GRID_KEYS, RunSpec, _adopt_finished, _check_unchanged, _expand_grid,
                                     expand_grid, grid_out, is_grid_folder, load_grid, write_grid_report)
from scarce.experiments.local import INTERRUPTED, NOT_STARTED, _run_one, _run_timed, _run_todo_local  # noqa: F401
from scarce.experiments.ray import (RAY_INSTALL_HINT, RAY_MAX_RETRIES, RAY_TIMEOUT, _check_ray_devices, _import_ray,
                                    _ray_cluster, _ray_request, _RayCluster, _run_todo_ray)
from scarce.experiments.status import grid_status
from scarce.runfolder import config_differences
from scarce.utils.runfolder import RunPaths

BACKENDS = ("local", "ray")


def run_grid(grid: str | os.PathLike[str] | Mapping[str, Any], sets: Sequence[str] | None = None,
             workers: int | None = None, report: bool = True, dry_run: bool = False,
             log=print, *, backend: str = "local", address: str | None = None,
             gpus_per_run: float | None = None, progress: bool = True,
             ray_timeout: float | None = None) -> dict[str, Any]:
    """Run (or resume) every unfinished run of a grid, then write the report. One process per
    grid: a second ``run_grid`` on the same ``out`` folder is refused while this one runs
    (:class:`scarce.utils.lock.FolderLockedError` naming it), and each run also holds its own
    run folder's lock while it trains.

    ``backend``: ``local`` (``workers`` processes here) or ``ray`` (one task per run on the Ray
    cluster at ``address`` — e.g. ``auto`` for the one this machine belongs to — or, without an
    address, an already initialised Ray or a local one started for this call). ``gpus_per_run``
    (Ray only) overrides the grid's ``gpus``; ``ray_timeout`` (Ray only): seconds to wait for the
    cluster at ``address`` to answer (default :data:`RAY_TIMEOUT`). ``progress``: the grid's progress
    line on stderr (:class:`scarce.utils.progress.GridProgress`). Several grids in one pool:
    :func:`run_grids`."""
    return run_grids([grid], sets, workers, report, dry_run, log, backend=backend, address=address,
                     gpus_per_run=gpus_per_run, progress=progress, ray_timeout=ray_timeout)[0]


@dataclass
class _Grid:
    """One grid of a :func:`run_grids` call: its keys, runs and Ray request per run."""
    g: dict[str, Any]
    specs: list[RunSpec]
    resources: tuple[int, float]
    dropped: int = 0
    """Runs the grid lists more than once (each trains once)."""

    @property
    def name(self) -> str:
        return str(self.g.get("name", ""))

    @property
    def out_root(self) -> Path:
        return grid_out(self.g)


@dataclass
class _Job:
    """One run to train, and the grids (indices) that list it: a run two grids share trains once."""
    spec: RunSpec
    threads: int
    resources: tuple[int, float]
    grids: list[int]


def run_grids(grids: Sequence[str | os.PathLike[str] | Mapping[str, Any]], sets: Sequence[str] | None = None,
              workers: int | None = None, report: bool = True, dry_run: bool = False,
              log=print, *, backend: str = "local", address: str | None = None,
              gpus_per_run: float | None = None, progress: bool = True,
              on_start: Callable[[], None] | None = None, ray_timeout: float | None = None) -> list[dict[str, Any]]:
    """Run several grids in **one** pool of workers, the first grid's runs first, and write each
    grid's report as soon as its own runs have ended. Why: grids run one after another leave
    cores idle at every grid's tail (its last, longest runs train while the next grid waits); in
    one pool the next grid's runs start on the cores that free up. ``sets`` apply to every grid;
    ``workers`` defaults to the largest ``workers`` of the grids; each run keeps its own grid's
    ``threads`` (and Ray request). Every grid's configs are checked, and every grid folder is
    locked, before anything trains; a run folder listed by two grids trains once when their
    configs agree and is refused when they differ. Returns one :func:`run_grid` result per grid,
    in order. A report that fails is raised after the pool has finished the other grids' runs.
    ``on_start``: called once every grid is checked and locked, before anything trains (the CLI
    says there how to watch the grids; an error before it stays the command's only line).
    ``ray_timeout``: as for :func:`run_grid`."""
    if not grids:
        raise ConfigError("no grid given")
    gs = [load_grid(grid, sets) for grid in grids]
    resources = [_check_backend(g, backend, address, gpus_per_run, ray_timeout) for g in gs]
    if backend == "ray" and not dry_run:
        _import_ray()  # one clear line at once when it is missing
    loaded = []
    for g, r in zip(gs, resources):
        specs, dropped = _expand_grid(g)  # validates every config first
        loaded.append(_Grid(g, specs, r, dropped))
    _check_shared_runs(loaded)
    for gr in loaded:
        _check_outputs(gr, report)
    if dry_run:
        return _run_grids(loaded, workers, report, dry_run, log, backend, None, progress)
    from scarce.utils.lock import GRID_LOCK_NAME, lock_folder

    hint = ("wait for it to finish (or stop it); re-running the same command afterwards resumes the grid, "
            "or give this grid another folder (--set out=DIR)")
    with contextlib.ExitStack() as stack:
        cluster = None
        if backend == "ray":
            for gr in loaded:
                _check_ray_devices(gr.specs, gr.resources)
            requests = [_ray_request(s.config, gr.resources) for gr in loaded for s in gr.specs
                        if not RunPaths(s.run_dir).finished()]
            if requests:  # else no Ray is needed
                # connected (and its capacity checked) before any grid folder is touched
                cluster = stack.enter_context(_ray_cluster(address, requests, log, _pool_name(loaded),
                                                           RAY_TIMEOUT if ray_timeout is None else ray_timeout))
        locked: set[Path] = set()
        for gr in loaded:
            if (key := gr.out_root.resolve()) not in locked:
                locked.add(key)
                stack.enter_context(lock_folder(gr.out_root, GRID_LOCK_NAME, what="grid folder", hint=hint))
                from scarce.utils.paths import write_marker

                write_marker(gr.out_root, EXPERIMENT)  # a container: its runs (and report) go inside
        if on_start is not None:
            on_start()
        return _run_grids(loaded, workers, report, dry_run, log, backend, cluster, progress)


def _check_outputs(gr: _Grid, report: bool = True) -> None:
    """Every folder the grid writes, before anything runs (:mod:`scarce.utils.paths`): its
    ``out`` (new, empty or a grid's), its report folder unless ``report`` is off (new, empty or a
    report; it may lie in ``out``) and its ``records`` folder if any (new, empty or an export,
    never inside or around ``out``: the report would count runs twice). Creates nothing."""
    from scarce.reports.report import check_report_folder
    from scarce.utils.paths import check_output_folder

    check_output_folder(gr.out_root, what=f"grid {gr.name!r} out folder", previous=is_grid_folder,
                        command=EXPERIMENT)
    if report:  # --no-report writes none: its folder may hold anything (e.g. a table script beside it)
        check_report_folder(gr.out_root, gr.g.get("report") or gr.out_root / "report")
    if gr.g.get("records"):
        from scarce.reports.records import EXPORT, is_records_folder

        check_output_folder(gr.g["records"], inputs=[gr.out_root], what=f"grid {gr.name!r} records folder",
                            previous=is_records_folder, command=EXPORT)


def _export_records(gr: _Grid, log: Any) -> None:
    """Mirror the grid's finished runs into its ``records`` folder (:mod:`scarce.reports.records`):
    new runs copied, unchanged records left alone, a run trained again replaces its record. Why
    at every run's end: a machine whose run folders are lost (a scratch disk, a cloud VM) keeps
    every result that finished. A failure is a warning: the runs go on."""
    if not gr.g.get("records"):
        return
    from scarce.reports.records import export_records, finished_runs

    if not gr.out_root.is_dir() or not finished_runs(gr.out_root)[0]:
        return
    try:
        export_records([gr.out_root], gr.g["records"], overwrite=True)
    except (ConfigError, OSError) as e:
        log(f"scarce: warning: grid {gr.name}: records not written to {gr.g['records']!r} ({e}); the runs go on")


def _pool_name(loaded: Sequence[_Grid]) -> str:
    """The progress line's name: the grid's, or the grids' joined with '+'."""
    return "+".join(dict.fromkeys(gr.name for gr in loaded))


def _check_shared_runs(loaded: Sequence[_Grid]) -> None:
    """A run folder listed twice (by two grids, or twice in one) is one run: its configs must
    agree, or one table cell would hold whichever trained first."""
    seen: dict[Path, tuple[str, RunSpec]] = {}
    for gr in loaded:
        for s in gr.specs:
            key = s.run_dir.resolve()
            if key not in seen:
                seen[key] = (gr.name, s)
                continue
            other_grid, other = seen[key]
            diff = config_differences(other.config, s.config)
            if diff:
                where = f"grid {gr.name!r}" if other_grid == gr.name else f"grids {other_grid!r} and {gr.name!r}"
                raise ConfigError(f"run folder {str(s.run_dir)!r} is listed by {where} with different configs "
                                  f"({', '.join(diff[:5])} differ): give one of the grids another 'out' folder "
                                  "or another method label")


def _run_grids(loaded: list[_Grid], workers: int | None, report: bool, dry_run: bool, log: Any,
               backend: str = "local", cluster: "_RayCluster | None" = None,
               progress: bool = True) -> list[dict[str, Any]]:
    """:func:`run_grids` once its configs are valid (and, unless ``dry_run``, the grids are locked)."""
    n_workers = int(workers or max(int(gr.g.get("workers", 1) or 1) for gr in loaded))
    jobs: dict[Path, _Job] = {}
    results: list[dict[str, Any]] = []
    for i, gr in enumerate(loaded):
        g, specs = gr.g, gr.specs
        _check_unchanged(specs)
        todo = [s for s in specs if not RunPaths(s.run_dir).finished()]
        if not dry_run and (adopted := _adopt_finished(specs)):
            log(f"grid {gr.name}: config.yaml of {adopted} finished runs rewritten in this grid's "
                "spelling (same runs; label, out, spelled-out defaults)")
        todo.sort(key=lambda s: (s.budget, s.seed))  # smallest budgets first: the main table fills first
        if gr.dropped:
            log(f"grid {gr.name}: {gr.dropped} duplicate run(s) dropped (the grid lists their run folders more "
                "than once with the same config; each trains once)")
        log(f"grid {gr.name}: {len(specs)} runs, {len(specs) - len(todo)} finished, {len(todo)} to do")
        if dry_run:
            for s in todo:
                log(f"  would run {s.run_dir}")
            results.append({"total": len(specs), "todo": len(todo)})
            continue
        threads = int(g.get("threads", 0) or max(1, (os.cpu_count() or 2) // max(1, n_workers)))
        for s in todo:
            key = s.run_dir.resolve()
            if key in jobs:
                jobs[key].grids.append(i)
            else:
                jobs[key] = _Job(s, threads, gr.resources, [i])
        results.append({"total": len(specs), "ran": len(todo), "failed": []})
    if dry_run:
        return results
    remaining = [sum(i in j.grids for j in jobs.values()) for i in range(len(loaded))]
    report_errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            results[i]["report"] = write_grid_report(loaded[i].g)
        except Exception as e:  # noqa: BLE001 — the other grids' runs go on; raised at the end
            log(f"scarce: warning: the report of grid {loaded[i].name} failed ({type(e).__name__}: {e}); "
                "the remaining runs go on")
            report_errors.append(e)

    for gr in loaded:
        _export_records(gr, log)  # runs finished before (e.g. in an earlier session) get theirs too
    if report:
        for i in range(len(loaded)):
            if remaining[i] == 0:
                write(i)
    todo = list(jobs.values())
    total = len({s.run_dir.resolve() for gr in loaded for s in gr.specs})
    t0 = time.time()
    slots = cluster.slots if cluster is not None else max(1, n_workers)
    bar = _grid_progress(_pool_name(loaded), total, total - len(todo), len(todo), slots, progress)
    count = [0]

    def ended(job: _Job, out: str, status: str, seconds: float) -> None:
        if status == NOT_STARTED:
            return
        count[0] += 1
        bar.log(log, f"[{count[0]}/{len(todo)}] {out}: {status} (run {seconds:.0f}s, grid {time.time() - t0:.0f}s)")
        if status.startswith(INTERRUPTED):  # resumes from its checkpoint: neither done nor failed
            return
        bar.run_ended(status == "ok", seconds)
        for i in job.grids:
            if status == "ok":
                _export_records(loaded[i], log)
            if status != "ok":
                results[i]["failed"].append((out, status))
            remaining[i] -= 1
            if report and remaining[i] == 0:
                write(i)

    bar.start()
    stopped: int | None = None
    try:
        if backend == "ray":
            _run_todo_ray(todo, cluster, ended)
        else:
            stopped = _run_todo_local(todo, n_workers, ended, _run_timed)
    finally:
        bar.close()
    if stopped is not None:
        from scarce.utils.interrupt import Interrupted

        raise Interrupted(stopped, "the runs in flight stopped at a checkpoint; the same command resumes the grid")
    if report_errors:
        raise report_errors[0]
    return results


def _grid_progress(name: str, total: int, done: int, todo: int, slots: int, enabled: bool) -> Any:
    from scarce.utils.progress import GridProgress

    return GridProgress(name, total, done, todo, slots, enabled=enabled)


def _check_backend(g: Mapping[str, Any], backend: str, address: str | None,
                   gpus_per_run: float | None, ray_timeout: float | None = None) -> tuple[int, float]:
    """The backend's options, checked before anything runs (the grid's own keys were checked by
    :func:`load_grid`); returns the Ray task's (threads, GPUs) request of a run that does not set
    its own ``train.threads``."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown grid backend {backend!r}: use {' | '.join(BACKENDS)}")
    if backend != "ray" and (address is not None or gpus_per_run is not None or ray_timeout is not None):
        raise ConfigError("--address, --gpus-per-run and --ray-timeout are options of the Ray backend: "
                          "add --backend ray")
    gpus = gpus_per_run if gpus_per_run is not None else g.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not 0 <= gpus < 1e6:
        raise ConfigError(f"grid key 'gpus' must be a number >= 0 (GPUs per run on the Ray backend, e.g. 1 or 0.5), "
                          f"got {gpus!r}")
    if ray_timeout is not None and (isinstance(ray_timeout, bool) or not isinstance(ray_timeout, (int, float))
                                    or not 0 < ray_timeout < float("inf")):
        raise ConfigError(f"--ray-timeout must be a number of seconds > 0 (how long to wait for the Ray cluster to "
                          f"answer, e.g. 30), got {ray_timeout!r}")
    return max(1, int(g.get("threads", 0) or 0)) if backend == "ray" else 1, float(gpus)


__all__ = ["BACKENDS", "EXPERIMENT", "GRID_KEYS", "INTERRUPTED", "NOT_STARTED", "RAY_INSTALL_HINT",
           "RAY_MAX_RETRIES", "RAY_TIMEOUT", "RunSpec", "expand_grid", "grid_status", "is_grid_folder", "load_grid",
           "run_grid", "run_grids", "write_grid_report"]
