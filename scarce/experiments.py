"""Experiment grids: datasets × methods × label budgets × seeds × backbones.

A grid YAML::

    name: foundation
    out: runs/foundation            # raw run folders (keep out of git)
    report: docs/results/foundation # tables + plots (small files, commit them)
    workers: 2                      # parallel worker processes
    threads: 1                      # torch threads per worker
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
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scarce.config import (ConfigError, deep_merge, from_dict, load_yaml, parse_overrides, resolve_dict, RunConfig,
                           save_config, to_dict)
from scarce.utils.io import atomic_write_text

GRID_KEYS = {"name", "out", "report", "workers", "threads", "base", "datasets", "methods", "models",
             "budgets", "seeds", "metric", "plots"}


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
    return g


def expand_grid(g: Mapping[str, Any]) -> list[RunSpec]:
    """All runs of a grid, each with its fully resolved config dict (validated by
    :func:`scarce.validate.validate_config`: a bad value fails before any folder is created)."""
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
            m = dict(m)
            label = str(m.pop("label", m.get("method", {}).get("name", "method")))
            for model in _as_list(g.get("models", ["unet"])):
                model_over = dict(model) if isinstance(model, Mapping) else {"name": model}
                model_label = str(model_over.pop("label", model_over.get("name", "unet")))
                for b in budgets:
                    for s in seeds:
                        run_dir = out_root / ds_name / f"{label}-{model_label}" / f"b{b}" / f"s{s}"
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
    return specs


def _check_unchanged(specs: list[RunSpec]) -> None:
    """A finished or started run whose saved config differs from the grid's would silently mix
    two experiments in one table: refuse, naming the run and the differing keys."""
    from scarce.api import config_differences, run_started

    for s in specs:
        saved = s.run_dir / "config.yaml"
        if saved.exists() and run_started(s.run_dir):  # no checkpoint yet: nothing to mix, it restarts
            diff = config_differences(load_yaml(saved), s.config)
            if diff:
                raise ConfigError(
                    f"run {str(s.run_dir)!r} was made with a different config ({', '.join(diff[:5])} differ); "
                    "use a new grid 'out' folder or delete the old runs"
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
            want = to_dict(from_dict(RunConfig, s.config))
            if load_yaml(saved) != want:
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
    from scarce.utils.lock import FolderLockedError

    cfg = from_dict(RunConfig, config)
    try:
        train_run(cfg, resume=True)
        (Path(cfg.out) / "FAILED.txt").unlink(missing_ok=True)  # an earlier failure is stale now
        return cfg.out, "ok"
    except FolderLockedError as e:  # another process trains this run: leave its folder alone
        return cfg.out, str(e)
    except Exception as e:  # one failed run must not stop the grid
        msg = f"{type(e).__name__}: {e}"
        atomic_write_text(Path(cfg.out) / "FAILED.txt", msg + "\n\n" + traceback.format_exc())
        return cfg.out, msg


def run_grid(grid: str | os.PathLike[str] | Mapping[str, Any], sets: Sequence[str] | None = None,
             workers: int | None = None, report: bool = True, dry_run: bool = False,
             log=print) -> dict[str, Any]:
    """Run (or resume) every unfinished run of a grid, then write the report. One process per
    grid: a second ``run_grid`` on the same ``out`` folder is refused while this one runs
    (:class:`scarce.utils.lock.FolderLockedError` naming it), and each run also holds its own
    run folder's lock while it trains."""
    g = load_grid(grid, sets)
    specs = expand_grid(g)  # validates every run's config before anything is created
    if dry_run:
        return _run_grid(g, specs, workers, report, dry_run, log)
    from scarce.utils.lock import GRID_LOCK_NAME, lock_folder

    out_root = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
    hint = ("wait for it to finish (or stop it); re-running the same command afterwards resumes the grid, "
            "or give this grid another folder (--set out=DIR)")
    with lock_folder(out_root, GRID_LOCK_NAME, what="grid folder", hint=hint):
        return _run_grid(g, specs, workers, report, dry_run, log)


def _run_grid(g: dict[str, Any], specs: list[RunSpec], workers: int | None, report: bool, dry_run: bool,
              log: Any) -> dict[str, Any]:
    """:func:`run_grid` once its configs are valid (and, unless ``dry_run``, the grid is locked)."""
    _check_unchanged(specs)
    todo = [s for s in specs if not (s.run_dir / "metrics.json").exists()]
    if not dry_run and (adopted := _adopt_finished(specs)):
        log(f"grid {g.get('name', '')}: config.yaml of {adopted} finished runs rewritten in this grid's "
            "spelling (same runs; label, out, spelled-out defaults)")
    todo.sort(key=lambda s: (s.budget, s.seed))  # smallest budgets first: the main table fills first
    log(f"grid {g.get('name', '')}: {len(specs)} runs, {len(specs) - len(todo)} finished, {len(todo)} to do")
    if dry_run:
        for s in todo:
            log(f"  would run {s.run_dir}")
        return {"total": len(specs), "todo": len(todo)}
    n_workers = int(workers or g.get("workers", 1))
    threads = int(g.get("threads", 0) or max(1, (os.cpu_count() or 2) // max(1, n_workers)))
    failed: list[tuple[str, str]] = []
    t0 = time.time()
    if n_workers <= 1:
        for i, s in enumerate(todo, 1):
            out, status = _run_one(s.config, threads)
            log(f"[{i}/{len(todo)}] {out}: {status} ({time.time() - t0:.0f}s)")
            if status != "ok":
                failed.append((out, status))
    else:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as ex:
            futs = [ex.submit(_run_one, s.config, threads) for s in todo]
            for i, f in enumerate(cf.as_completed(futs), 1):
                out, status = f.result()
                log(f"[{i}/{len(todo)}] {out}: {status} ({time.time() - t0:.0f}s)")
                if status != "ok":
                    failed.append((out, status))
    result: dict[str, Any] = {"total": len(specs), "ran": len(todo), "failed": failed}
    if report:
        result["report"] = write_grid_report(g)
    return result


def write_grid_report(g: Mapping[str, Any]) -> str:
    from scarce.reports.report import write_report

    out_root = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
    report_dir = Path(g.get("report") or out_root / "report")
    write_report(out_root, report_dir, metric=g.get("metric"))
    return str(report_dir)
