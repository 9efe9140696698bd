"""Experiment grids: datasets × methods × label budgets × seeds × backbones.

A grid YAML::

    name: foundation
    out: runs/foundation            # raw run folders (keep out of git)
    report: docs/results/foundation # tables + plots (small files, commit them)
    records: docs/results/records/foundation  # optional: each finished run's record (scarce export)
    workers: 2                      # parallel worker processes
    threads: 1                      # torch threads per worker (Ray: CPUs each run asks for)
    gpus: 0                         # GPUs each run asks Ray for (--gpus-per-run overrides)
    base: {preset: cpu, train: {iterations: 600}}   # any RunConfig keys
    datasets: [isic2017, kvasir_seg, {name: montgomery, budgets: [40, 100]}]
    methods:
      - {label: supervised, method: {name: supervised}}
      - {label: combine, method: {name: supervised, augment: combine}}
    models: [unet, deeplabv3]       # names, or mappings of model.* keys with a `label`
    budgets: [40, 100, 200]
    seeds: [0, 1, 2]

Each run lives in ``out/<dataset>/<label>-<model>/b<budget>/s<seed>`` with its resolved
config; a run whose ``metrics.json`` exists is skipped and an unfinished one resumes from its
last checkpoint, so re-running the same command continues an interrupted grid. A finished run
copied in from another grid counts when its config is the same up to runtime keys and spelled-out
defaults; its config.yaml is then rewritten in this grid's spelling (label, out, defaults) so the
report names it like the grid's other rows.

Two backends run the unfinished runs, with the same skip/resume rules, folders and per-run
failure reports: ``local`` (default) — ``workers`` processes on this machine, ``threads`` torch
threads each; ``ray`` — one Ray task per run on a Ray cluster (started here, or an existing one
by address), each asking for ``threads`` CPUs (a run's own ``train.threads`` when set) and
``gpus`` GPUs (grid key or ``gpus_per_run``; default 0). Ray workers run in this process's
working folder at the same absolute path, so a cluster needs a file system shared by every node
(data, grid ``out``, caches) and scarce installed in the same environment on every node.

:func:`run_grids` runs several grids in one pool (``scarce experiment A.yaml B.yaml``): no core
idles at a grid's tail while the next grid waits, and each grid's report follows its own runs.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from scarce.config import (ConfigError, deep_merge, from_dict, load_yaml, parse_overrides, resolve_dict, RunConfig,
                           save_config, to_dict)
from scarce.utils.io import atomic_write_text

GRID_KEYS = {"name", "out", "report", "records", "workers", "threads", "gpus", "base", "datasets", "methods", "models",
             "budgets", "seeds", "metric", "plots"}
BACKENDS = ("local", "ray")
RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
_IN_RUN = threading.Event()
"""Set while this process trains a run (a pool worker's watcher waits for it before exiting)."""
INTERRUPTED = "interrupted"
"""Status prefix of a run stopped on SIGINT/SIGTERM at a checkpoint (it resumes; not a failure)."""
NOT_STARTED = "not started (the grid was asked to stop)"
RAY_TIMEOUT = 30.0
"""Seconds to wait for an existing Ray cluster to answer (``--ray-timeout``)."""
RAY_MAX_RETRIES = 3
"""Ray re-runs a run whose worker process died (node lost, killed for memory) up to this many
times; a rerun resumes from the run's last checkpoint, so nothing is trained twice."""


@dataclass
class RunSpec:
    run_dir: Path
    config: dict[str, Any]
    dataset: str
    label: str
    model: str
    budget: int
    seed: int


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def load_grid(grid: str | os.PathLike[str] | Mapping[str, Any], sets: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a grid YAML (or mapping) and apply ``--set`` overrides (e.g. ``seeds=[0]``,
    ``base.train.iterations=50``)."""
    g = dict(grid) if isinstance(grid, Mapping) else load_yaml(grid)
    g = deep_merge(g, parse_overrides(sets))
    unknown = set(g) - GRID_KEYS
    if unknown:
        import difflib

        k = sorted(unknown)[0]
        close = difflib.get_close_matches(k, GRID_KEYS, n=1)
        raise ConfigError(f"unknown grid key {k!r}." + (f" Did you mean {close[0]!r}?" if close else "")
                          + f" Valid: {', '.join(sorted(GRID_KEYS))}")
    for key in ("datasets", "methods"):
        if not g.get(key):
            raise ConfigError(f"grid needs a non-empty {key!r} list")
    _check_grid_values(g, _grid_where(grid))
    return g


def _grid_where(grid: str | os.PathLike[str] | Mapping[str, Any]) -> str:
    """How an error names a grid: its file, or for a mapping its name."""
    if not isinstance(grid, Mapping):
        return os.fspath(grid)
    return f"grid {grid['name']!r}" if grid.get("name") else "the grid"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_INT_KEYS = {  # grid key: (lowest value, what it is)
    "workers": (1, "an integer >= 1 (parallel worker processes)"),
    "threads": (0, "an integer >= 0 (torch threads per run; 0: the cores shared among the workers)"),
}
_INT_LISTS = {
    "budgets": "integers >= 0 (labelled images per run, 0 = the whole pool; e.g. budgets: [40, 100])",
    "seeds": "integers >= 0 (training seeds; e.g. seeds: [0, 1, 2])",
}


def _method_label(m: Mapping[str, Any]) -> str:
    method = m.get("method")
    return str(m.get("label", method.get("name", "method") if isinstance(method, Mapping) else "method"))


def _model_label(model: Any) -> str:
    if not isinstance(model, Mapping):
        return str(model)
    return str(model.get("label", model.get("name", "unet")))


def _folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one folder of a run's path (None: it can)."""
    if name in ("", ".", ".."):
        return "it is empty" if not name else f"it is {name!r}"
    for c, shown in (("/", "'/'"), ("\\", "'\\'"), ("\0", "a NUL character")):
        if c in name:
            return f"it holds {shown}"
    return None


def _check_grid_values(g: Mapping[str, Any], where: str) -> None:
    """The grid's numbers and the names its run folders are made of, checked as the grid is
    loaded, before anything is written. Why: ``int()`` of a value such as ``zero`` is a
    traceback, and a label holding ``/`` or ``..`` would put its runs outside the grid's ``out``."""
    for key, (low, what) in _INT_KEYS.items():
        v = g.get(key)
        if v is not None and (not _is_int(v) or v < low):
            raise ConfigError(f"{where}: grid key {key!r} must be {what}, got {v!r}")
    gpus = g.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not 0 <= gpus < 1e6):
        raise ConfigError(f"{where}: grid key 'gpus' must be a number >= 0 (GPUs per run on the Ray backend, "
                          f"e.g. 1 or 0.5), got {gpus!r}")

    def int_list(key: str, value: Any) -> None:
        for v in _as_list(value):
            if not _is_int(v) or v < 0:
                raise ConfigError(f"{where}: grid key {key!r} must hold {_INT_LISTS[key.rsplit('.', 1)[-1]]}, "
                                  f"got {v!r}")

    for key in _INT_LISTS:
        if key in g:
            int_list(key, g[key])
    fix_label = "give the row a label that is one folder name (no '/', '\\' or NUL; not '.' or '..')"
    for i, ds in enumerate(_as_list(g["datasets"])):
        row = f"datasets[{i}]"
        if isinstance(ds, Mapping):
            if "name" not in ds:
                raise ConfigError(f"{where}: {row} needs a 'name' (a registered dataset or a dataset folder)")
            for key in _INT_LISTS:
                if key in ds:
                    int_list(f"{row}.{key}", ds[key])
        name = str(ds["name"] if isinstance(ds, Mapping) else ds)
        why = ("it holds a NUL character" if "\0" in name else _folder_name_problem(_dataset_folder(name)))
        if why:
            raise ConfigError(f"{where}: {row} {name!r} cannot name the folder of its runs ({why}): give a "
                              "registered dataset name, or the dataset folder's absolute path (its own folder name "
                              "then names the runs' folder)")
    for i, m in enumerate(_as_list(g["methods"])):
        if not isinstance(m, Mapping):
            raise ConfigError(f"{where}: methods[{i}] must be a mapping such as "
                              f"{{label: supervised, method: {{name: supervised}}}}, got {m!r}")
        if why := _folder_name_problem(label := _method_label(m)):
            raise ConfigError(f"{where}: methods[{i}] label {label!r} cannot name a run folder ({why}): {fix_label}")
    for i, model in enumerate(_as_list(g.get("models", ["unet"]))):
        if why := _folder_name_problem(label := _model_label(model)):
            raise ConfigError(f"{where}: models[{i}] label {label!r} cannot name a run folder ({why}): {fix_label}")


def _dataset_folder(ds_name: str) -> str:
    """The grid sub-folder of a dataset entry: its name, or for an absolute path or one that
    climbs out (``..``) the folder's own name — ``out / "/data/x"`` would otherwise put the runs
    inside the user's dataset folder, outside the grid."""
    p = Path(ds_name).expanduser()
    if p.is_absolute() or ".." in p.parts or str(ds_name).startswith("~"):
        return p.resolve().name or "dataset"
    return ds_name


def expand_grid(g: Mapping[str, Any]) -> list[RunSpec]:
    """All runs of a grid, each with its fully resolved config dict (validated by
    :func:`scarce.validate.validate_config`: a bad value fails before any folder is created).
    A run folder the grid lists more than once (``seeds: [0, 0]``, two equal rows) is one run,
    listed once; listed with different configs, the grid is refused."""
    return _expand_grid(g)[0]


def _expand_grid(g: Mapping[str, Any]) -> tuple[list[RunSpec], int]:
    """:func:`expand_grid` and how many duplicate runs it dropped."""
    from scarce.validate import validate_config

    out_root = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
    base = dict(g.get("base") or {})
    specs: list[RunSpec] = []
    for ds in _as_list(g["datasets"]):
        ds_over = dict(ds) if isinstance(ds, Mapping) else {"name": ds}
        ds_name = str(ds_over.pop("name"))
        budgets = _as_list(ds_over.pop("budgets", g.get("budgets", [40])))
        seeds = _as_list(ds_over.pop("seeds", g.get("seeds", [0])))
        ds_base = ds_over.pop("base", {})
        if ds_over:
            raise ConfigError(f"unknown keys {sorted(ds_over)} for dataset {ds_name!r} (use name/budgets/seeds/base)")
        for m in _as_list(g["methods"]):
            label = _method_label(m)
            m = dict(m)
            m.pop("label", None)
            for model in _as_list(g.get("models", ["unet"])):
                model_label = _model_label(model)
                model_over = dict(model) if isinstance(model, Mapping) else {"name": model}
                model_over.pop("label", None)
                for b in budgets:
                    for s in seeds:
                        run_dir = out_root / _dataset_folder(ds_name) / f"{label}-{model_label}" / f"b{b}" / f"s{s}"
                        d = deep_merge(base, ds_base)
                        d = deep_merge(d, m)
                        d = deep_merge(d, {"model": model_over, "data": {"dataset": ds_name, "budget": int(b)},
                                           "train": {"seed": int(s), "progress": False},
                                           "out": str(run_dir), "label": f"{label}-{model_label}"})
                        if not d.get("data", {}).get("cache_dir"):
                            d["data"]["cache_dir"] = str(out_root / ".cache")
                        resolved = resolve_dict(d)
                        validate_config(from_dict(RunConfig, resolved))  # keys and values now, not hours later
                        specs.append(RunSpec(run_dir, resolved, ds_name, label, model_label, int(b), int(s)))
    return _unique_runs(g, specs)


def _unique_runs(g: Mapping[str, Any], specs: list[RunSpec]) -> tuple[list[RunSpec], int]:
    """The grid's runs with each run folder once (the first listing kept), and how many were
    dropped; a folder listed with different configs would hold whichever trained first: refused."""
    seen: dict[Path, RunSpec] = {}
    for s in specs:
        key = s.run_dir.resolve()
        first = seen.setdefault(key, s)
        if first is not s and first.config != s.config:
            from scarce.api import config_differences

            if diff := config_differences(first.config, s.config):
                raise ConfigError(f"run folder {str(s.run_dir)!r} is listed twice by grid {g.get('name', '')!r} "
                                  f"with different configs ({', '.join(diff[:5])} differ): give one of the rows "
                                  "another label")
    return list(seen.values()), len(specs) - len(seen)


def _check_unchanged(specs: list[RunSpec]) -> None:
    """A finished or started run whose saved config differs from the grid's would silently mix
    two experiments in one table: refuse, naming the run and the differing keys."""
    from scarce.api import changed_defaults, config_differences, default_change_hint, run_started, saved_config

    for s in specs:
        if (s.run_dir / "config.yaml").exists() and run_started(s.run_dir):  # no checkpoint yet: it restarts
            saved = saved_config(s.run_dir)  # method defaults as the run started
            diff = config_differences(saved, s.config)
            if diff:
                changed = changed_defaults(s.run_dir, saved, s.config, diff)
                hint = default_change_hint(changed, "write {fields} into the grid's method row to keep the run")
                raise ConfigError(
                    f"run {str(s.run_dir)!r} was made with a different config ({', '.join(diff[:5])} differ){hint}; "
                    f"{'otherwise ' if hint else ''}use a new grid 'out' folder or delete the old runs"
                )


def _adopt_finished(specs: list[RunSpec]) -> int:
    """Rewrite the saved ``config.yaml`` of finished runs that are this grid's run (same config
    by :func:`scarce.api.config_differences`) but spelled differently: a run copied in from
    another grid keeps that grid's ``label``/``out`` and omits method defaults the grid spells
    out (e.g. ``lam: 1.0``), and the report reads labels and axis values (λ) from config.yaml.
    Unfinished runs need nothing: resuming rewrites their config. Returns how many were rewritten."""
    n = 0
    for s in specs:
        saved = s.run_dir / "config.yaml"
        if (s.run_dir / "metrics.json").exists() and saved.exists():
            from scarce.engine.planner import adopt_saved_plan

            old = load_yaml(saved)
            want = to_dict(from_dict(RunConfig, adopt_saved_plan(to_dict(from_dict(RunConfig, s.config)), old)))
            if old != want:  # (a grid row with train.budget_minutes keeps the plan its run was trained with)
                save_config(want, saved)
                n += 1
    return n


def _run_one(config: dict[str, Any], threads: int) -> tuple[str, str]:
    """Worker: train + evaluate one run (resuming it if interrupted)."""
    import warnings

    import torch

    warnings.formatwarning = lambda msg, cat, *args, **kw: f"scarce: warning: {msg}\n"
    torch.set_num_threads(max(1, threads))
    from scarce.api import train_run
    from scarce.utils.interrupt import Interrupted
    from scarce.utils.lock import FolderLockedError

    cfg = from_dict(RunConfig, config)
    try:
        train_run(cfg, resume=True)
        (Path(cfg.out) / "FAILED.txt").unlink(missing_ok=True)  # an earlier failure is stale now
        return cfg.out, "ok"
    except Interrupted as e:  # stopped on a signal at a checkpoint: not a failure, it resumes
        return cfg.out, f"{INTERRUPTED} {e.detail}"
    except FolderLockedError as e:  # another process trains this run: leave its folder alone
        return cfg.out, str(e)
    except Exception as e:  # one failed run must not stop the grid
        msg = f"{type(e).__name__}: {e}"
        atomic_write_text(Path(cfg.out) / "FAILED.txt", msg + "\n\n" + traceback.format_exc())
        return cfg.out, msg


def _run_timed(config: dict[str, Any], threads: int) -> tuple[str, str, float]:
    """:func:`_run_one` and its wall time in seconds (the grid's ETA is made of these); no run
    starts once this process was asked to stop (a queued run a worker already holds)."""
    from scarce.utils import interrupt

    if interrupt.requested() is not None:
        return str(config.get("out")), NOT_STARTED, 0.0
    t = time.time()
    _IN_RUN.set()
    try:
        out, status = _run_one(config, threads)
    finally:
        _IN_RUN.clear()
    return out, status, time.time() - t


def _run_ray_task(config: dict[str, Any], threads: int, cwd: str) -> tuple[str, str, float]:
    """Body of one run's Ray task: train it in the driver's working folder ``cwd`` (absolute), so
    the grid's relative paths (``out``, dataset folders, caches) mean on the worker what they
    mean where the grid was started — the same folders when the file system is shared."""
    if not os.path.isdir(cwd):
        import socket

        return (str(config.get("out")), f"working folder {cwd!r} does not exist on node {socket.gethostname()!r}: "
                "the Ray backend needs a file system shared by every node at the same path", 0.0)
    os.chdir(cwd)
    return _run_timed(config, threads)


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
        return Path(self.g.get("out", f"runs/{self.g.get('name', 'grid')}"))


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
        _check_outputs(gr)
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
                        if not (s.run_dir / "metrics.json").exists()]
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


EXPERIMENT = "scarce experiment"
"""Command name in a grid ``out`` folder's output marker (:mod:`scarce.utils.paths`)."""


def is_grid_folder(folder: Path) -> bool:
    """True when ``folder`` holds an earlier grid's runs (``<dataset>/<row>/b<N>/s<seed>/config.yaml``)
    or only its caches, also one made before grid folders carried their marker."""
    names = {e.name for e in folder.iterdir()}
    if names <= {".cache", ".gan_cache", ".scarce-grid.lock", "report"}:
        return True
    return next(folder.glob("*/*/*/*/config.yaml"), None) is not None


def _check_outputs(gr: _Grid) -> None:
    """Every folder the grid writes, before anything runs (:mod:`scarce.utils.paths`): its
    ``out`` (new, empty or a grid's), its report folder (new, empty or a report; it may lie in
    ``out``) and its ``records`` folder if any (new, empty or an export, never inside or around
    ``out``: the report would count runs twice). Creates nothing."""
    from scarce.reports.report import check_report_folder
    from scarce.utils.paths import check_output_folder

    check_output_folder(gr.out_root, what=f"grid {gr.name!r} out folder", previous=is_grid_folder,
                        command=EXPERIMENT)
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
    from scarce.api import config_differences

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
        todo = [s for s in specs if not (s.run_dir / "metrics.json").exists()]
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
            stopped = _run_todo_local(todo, n_workers, ended)
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


def _run_todo_local(todo: list[_Job], n_workers: int, ended: Any) -> int | None:
    """The local backend: ``n_workers`` processes on this machine (in this process when 1);
    ``ended(job, out, status, seconds)`` as each run ends. SIGINT/SIGTERM: no further run
    starts, the runs in flight stop at a checkpoint (the workers get the request too), and the
    signal's number is returned (None: every run ended)."""
    from scarce.utils import interrupt

    with interrupt.graceful():
        if n_workers <= 1:
            for job in todo:
                if interrupt.requested() is not None:
                    break
                ended(job, *_run_timed(job.spec.config, job.threads))
            return interrupt.requested()
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(os.getpid(),)) as ex:
            futs = {ex.submit(_run_timed, job.spec.config, job.threads): job for job in todo}
            pending, forwarded = set(futs), False
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        if not f.cancelled():
                            ended(futs[f], *f.result())
                    if not forwarded and interrupt.requested() is not None:
                        forwarded = True
                        for f in pending:
                            f.cancel()  # the queued runs; a worker's run in flight stops at its next step
                        _forward_stop(ex)
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)  # a second signal: nothing new starts
                raise
        return interrupt.requested()


def _forward_stop(ex: cf.ProcessPoolExecutor) -> None:
    """Pass a stop request on to the pool's workers (a SIGTERM sent to this process alone does
    not reach them; Ctrl-C does, and :data:`scarce.utils.interrupt.FORWARD` never counts as a
    second signal there)."""
    from scarce.utils.interrupt import FORWARD

    if FORWARD is None:
        return
    for pid in list((getattr(ex, "_processes", None) or {}).keys()):
        try:
            os.kill(pid, FORWARD)
        except OSError:
            pass  # already gone


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


def _ray_request(config: Mapping[str, Any], resources: tuple[int, float]) -> tuple[int, float]:
    """A run's Ray resource request: its torch threads as CPUs (``train.threads`` when set, else
    the grid's ``threads``, default 1) and the grid's GPUs per run."""
    own = int((config.get("train") or {}).get("threads") or 0)
    return (own if own > 0 else resources[0]), resources[1]


def _check_ray_devices(specs: list[RunSpec], resources: tuple[int, float]) -> None:
    """A run that must train on CUDA but gets no GPU from Ray would either fail on a CPU-only
    node or share an unreserved GPU with every other run: refuse before starting."""
    if resources[1] > 0:
        return
    for s in specs:
        device = str((s.config.get("train") or {}).get("device", "auto"))
        if device.startswith("cuda"):
            raise ConfigError(f"run {str(s.run_dir)!r} trains on train.device={device} but the Ray backend gives each "
                              "run 0 GPUs: pass --gpus-per-run 1 (or set the grid key gpus: 1)")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"the Ray backend needs the ray package, which is not installed: {RAY_INSTALL_HINT}") from e
    return ray


def _worker_init(parent: int) -> None:
    """Pool-worker initializer: end with the grid process (:func:`_exit_with_parent`) and take
    SIGINT/SIGTERM (and a request the grid process forwards) as "stop at a checkpoint"."""
    from scarce.utils import interrupt

    _exit_with_parent(parent)
    interrupt.install(worker=True)


def _exit_with_parent(parent: int, poll: float = 1.0, grace: float = 120.0) -> None:
    """Pool-worker initializer: a daemon thread ends this worker once the grid process that
    spawned it is gone. Why: a ``scarce experiment`` killed with SIGTERM/SIGKILL (not Ctrl-C,
    which reaches the whole process group) left its spawned workers alive, still training and
    taking the queued runs — a second, invisible grid. The run being trained is first asked to
    stop (:mod:`scarce.utils.interrupt`: it checkpoints the step in flight, so even ``kill -9``
    of the grid process loses no step), and the worker exits once that run has returned, or
    after ``grace`` seconds (a run still evaluating resumes its evaluation)."""
    import signal

    from scarce.utils import interrupt

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        interrupt.request(signal.SIGTERM)
        end = time.time() + grace
        while _IN_RUN.is_set() and time.time() < end:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="scarce-exit-with-parent", daemon=True).start()


@dataclass
class _RayCluster:
    ray: Any
    slots: int
    """How many runs the cluster trains at once (the progress line's "running", its ETA)."""


@contextlib.contextmanager
def _ray_cluster(address: str | None, requests: list[tuple[int, float]], log: Any,
                 name: str, timeout: float = RAY_TIMEOUT) -> Iterator[_RayCluster]:
    """Ray for one grid: an initialised Ray (a notebook, a test) is used and left as is; else
    ``ray.init(address)`` (None: $RAY_ADDRESS, the cluster this machine runs, else a new local
    one; an existing cluster must answer within ``timeout`` seconds: :func:`_ray_connect`), shut
    down (or disconnected) at the end. Refuses a run request no node can hold."""
    ray = _import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        _ray_connect(ray, address, timeout)
    try:
        yield _RayCluster(ray, _ray_slots(ray, requests, log, name))
    finally:
        if connected_here:
            ray.shutdown()  # stops a cluster started here; only disconnects from an existing one


_RAY_FIX = ("check the address (and, where the cluster uses token authentication, RAY_AUTH_MODE=token with its "
            "token), start one with `ray start --head`, or drop --address to start a local one")


def _ray_connect(ray: Any, address: str | None, timeout: float) -> None:
    """``ray.init(address)`` that gives up after ``timeout`` seconds when it joins an existing
    cluster. Why: Ray retries an address nothing answers at for ever. The cluster's address is
    first tried with a plain TCP connection (refused or unreachable: refused at once);
    ``ray.init`` then runs in a daemon thread, and a cluster that has not answered by the
    deadline is refused (that thread is left behind, blocked in Ray). Starting a new local Ray
    (no address found) is not timed."""
    import logging
    import socket

    shown = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        target = _ray_target(address)
    except (ConnectionError, ValueError) as e:  # "auto" with no cluster running; not HOST:PORT
        raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({e}): {_RAY_FIX}") from e

    def init() -> None:
        ray.init(address=address, logging_level=logging.WARNING)

    if target is None:  # a new local Ray
        try:
            return init()
        except ConnectionError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({e}): {_RAY_FIX}") from e
    deadline = time.monotonic() + timeout
    if target:
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except (OSError, ValueError) as e:
            why = "no answer" if isinstance(e, TimeoutError) else getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({target}: {why}): {_RAY_FIX}") from None
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            init()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 — raised again in the calling thread
            outcome.append(e)

    # ray.init warns that it sets no SIGTERM handler outside the main thread; it is set below
    quiet = lambda record: "SIGTERM handler is not set" not in record.getMessage()
    ray_log = logging.getLogger("ray._private.worker")
    ray_log.addFilter(quiet)
    try:
        thread = threading.Thread(target=connect, name="scarce-ray-connect", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
    finally:
        ray_log.removeFilter(quiet)
    if not outcome:
        raise ConfigError(f"the Ray cluster at {shown!r}{f' ({target})' if target and target != shown else ''} did "
                          f"not answer within {timeout:g}s: check that it runs and its address (and, where it uses "
                          "token authentication, RAY_AUTH_MODE=token with its token), raise --ray-timeout for a slow "
                          "cluster, or drop --address to start a local one")
    if isinstance(outcome[0], ConnectionError):
        why = " ".join(str(outcome[0]).split())
        raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({why}): {_RAY_FIX}") from outcome[0]
    if outcome[0] is not None:
        raise outcome[0]
    if threading.current_thread() is threading.main_thread():  # as ray.init does in the main thread
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


def _ray_target(address: str | None) -> str | None:
    """The ``HOST:PORT`` ``ray.init(address)`` connects to (as Ray resolves ``auto``,
    ``$RAY_ADDRESS`` and this machine's own address); None: it starts a new local Ray; "": an
    existing cluster whose address Ray's internals did not tell."""
    addr = address
    if os.environ.get("RAY_ADDRESS") and addr in (None, "auto"):
        addr = os.environ["RAY_ADDRESS"]
    if addr is not None and addr.startswith("ray://"):  # Ray Client: its server's own port
        return addr[len("ray://"):]
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # Ray moved it: no TCP check, the timeout still holds
        return None if addr is None else ""
    return canonicalize_bootstrap_address(addr)


def _run_todo_ray(todo: list[_Job], cluster: _RayCluster | None, ended: Any) -> None:
    """The Ray backend: one task per run, each with its CPU/GPU request; ``ended(job, out,
    status, seconds)`` as each run ends, as the local backend reports them (a task whose worker
    died is reported like a run that raised)."""
    if not todo:
        return
    assert cluster is not None, "run_grids connects to Ray when a run is left to do"
    ray = cluster.ray
    env = {k: v for k, v in os.environ.items() if k.startswith("SCARCE_")}
    cwd = os.path.abspath(os.getcwd())
    task = ray.remote(_run_ray_task)
    refs: dict[Any, _Job] = {}
    for job in todo:
        cpus, gpus = _ray_request(job.spec.config, job.resources)
        # 0 GPUs: hide the node's GPUs so `train.device=auto` trains on the CPU it reserved
        run_env = dict(env, **({"CUDA_VISIBLE_DEVICES": ""} if gpus == 0 else {}))
        ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_MAX_RETRIES,
                           runtime_env={"env_vars": run_env} if run_env else None,
                           name=f"scarce:{job.spec.run_dir}").remote(job.spec.config, cpus, cwd)
        refs[ref] = job
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                ended(refs[ref], *_ray_result(ray, ref, refs[ref].spec))
    finally:
        for ref in pending:  # interrupted: stop the runs still queued or training (they resume later)
            ray.cancel(ref)


def _ray_result(ray: Any, ref: Any, spec: RunSpec) -> tuple[str, str, float]:
    """A finished task's ``(out, status, seconds)``; a task that raised outside the run (its
    worker died, the node was lost, it could not be unpickled) becomes a failed run with its
    ``FAILED.txt``, as a run that raised in the local backend."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        msg = f"{type(e).__name__}: {first}"
        out = str(spec.config.get("out", spec.run_dir))
        try:
            atomic_write_text(Path(out) / "FAILED.txt", msg + "\n\n" + str(e))
        except OSError:
            pass  # the report line still names the run
        return out, msg, 0.0


def _ray_slots(ray: Any, requests: list[tuple[int, float]], log: Any, name: str) -> int:
    """How many runs the cluster trains at once: per alive node, how many run requests fit its
    CPUs and GPUs. A request no node can hold never starts: refused when this process started
    the cluster (no other node can join it), a warning on an existing cluster (an autoscaler
    may add such a node)."""
    # the largest request of each kind: a pool of grids that ask for different CPUs/GPUs is not overcounted
    cpus = max((r[0] for r in requests), default=1)
    gpus = max((r[1] for r in requests), default=0.0)
    local_only = bool(getattr(getattr(ray._private.worker, "_global_node", None), "head", False))
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fit = lambda r: min(int(r.get("CPU", 0) // cpus), int(r.get("GPU", 0) // gpus) if gpus else 1 << 30)
    slots = sum(fit(r) for r in nodes)
    total_cpu = sum(r.get("CPU", 0) for r in nodes)
    total_gpu = sum(r.get("GPU", 0) for r in nodes)
    log(f"grid {name}: Ray cluster of {len(nodes)} node(s), {total_cpu:g} CPUs, {total_gpu:g} GPUs; "
        f"each run asks for {cpus} CPU(s) and {gpus:g} GPU(s): {slots} at a time")
    if slots == 0:
        msg = (f"no node of the Ray cluster has {cpus} CPU(s) and {gpus:g} GPU(s) for one run: lower the grid's "
               "threads / --gpus-per-run, or add a node that has them")
        if local_only:
            raise ConfigError(msg)
        log(f"scarce: warning: {msg}; the runs wait until one joins")
    return max(1, slots)


def grid_status(grid: str | os.PathLike[str] | Mapping[str, Any], sets: Sequence[str] | None = None) -> tuple[
        dict[str, Any], list[Any], dict[str, Any] | None]:
    """(grid keys, one :class:`scarce.status.RunStatus` per run of the grid in grid order, the
    live grid process's lock details or None): ``scarce status GRID.yaml``. Reads the run
    folders only (no lock taken, nothing written)."""
    from scarce.status import live_holder, run_status
    from scarce.utils.lock import GRID_LOCK_NAME

    g = load_grid(grid, sets)
    specs = expand_grid(g)
    out_root = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
    statuses = [run_status(s.run_dir, int(s.config["train"]["iterations"])) for s in specs]
    return g, statuses, live_holder(out_root, GRID_LOCK_NAME)


def write_grid_report(g: Mapping[str, Any]) -> str:
    """The grid's report; from its ``records`` folder when it has one (the records mirror every
    finished run, also those whose folders are gone, e.g. trained on another machine), else from
    the run folders."""
    from scarce.reports.records import is_records_folder
    from scarce.reports.report import write_report

    out_root = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
    report_dir = Path(g.get("report") or out_root / "report")
    source = Path(g["records"]) if g.get("records") and is_records_folder(Path(g["records"])) else out_root
    write_report(source, report_dir, metric=g.get("metric"))
    return str(report_dir)
