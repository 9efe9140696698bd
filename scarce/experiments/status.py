"""Where a grid's runs stand (``scarce status GRID.yaml``), read from their folders
(:mod:`scarce.status`) without taking any lock; :func:`status_lines` is the block ``scarce
status`` prints for a grid YAML or a folder of runs.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from scarce.experiments.grid import expand_grid, grid_out, load_grid


def grid_status(grid: str | os.PathLike[str] | Mapping[str, Any], sets: Sequence[str] | None = None) -> tuple[
        dict[str, Any], list[Any], dict[str, Any] | None]:
    """(grid keys, one :class:`scarce.status.RunStatus` per run of the grid in grid order, the
    live grid process's lock details or None): ``scarce status GRID.yaml``. Reads the run
    folders only (no lock taken, nothing written)."""
    from scarce.status import live_holder, run_status
    from scarce.utils.lock import GRID_LOCK_NAME

    g = load_grid(grid, sets)
    specs = expand_grid(g)
    out_root = grid_out(g)
    statuses = [run_status(s.run_dir, int(s.config["train"]["iterations"])) for s in specs]
    return g, statuses, live_holder(out_root, GRID_LOCK_NAME)


def status_lines(target: str | os.PathLike[str], sets: Sequence[str] | None = None, show_all: bool = False,
                 workers: int | None = None) -> list[str]:
    """``scarce status TARGET``'s block (:func:`scarce.status.format_status`) for a grid YAML
    (every run of the grid, started or not, and the grid process holding it) or a folder holding
    run folders. Runs running, stopped or failed are listed, with ``show_all`` also the done and
    new ones; ``workers`` (default: the grid's ``workers``; a folder has none) sizes the time
    left. A folder holding no run is a ``ConfigError``."""
    from pathlib import Path

    from scarce.config import ConfigError
    from scarce.status import find_runs, format_status, run_status

    show = ("running", "stopped", "failed") + (("done", "new") if show_all else ())
    path = Path(target)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        g, statuses, holder = grid_status(path, sets)
        out = grid_out(g)
        lines = format_status(f"grid {g.get('name', path.stem)} ({out})", statuses, show, root=out,
                              workers=int(workers or g.get("workers", 1) or 1))
        lines.insert(1, f"  grid process: pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                        f"{holder.get('started', '?')}" if holder else "  grid process: none running")
        return lines
    try:
        runs = find_runs(path)
    except ValueError as e:
        raise ConfigError(f"{e}; or give a grid YAML") from None
    return format_status(str(path), [run_status(r) for r in runs], show, root=path, workers=workers)
