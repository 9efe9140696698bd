"""The grid format and its expansion into runs: datasets × methods × label budgets × seeds × backbones.

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

A method row may name its own ``budgets`` (``{label: sup, method: {...}, budgets: [7, 15]}``):
they replace the grid's for that row, so rows can be compared at budgets of their own (e.g. at
equal annotation time, where a minute buys more scribbles than masks); a dataset entry with
``budgets`` of its own cannot be combined with such a row (which should win is not clear).

Each run lives in ``out/<dataset>/<label>-<model>/b<budget>/s<seed>`` with its resolved
config; a run whose ``metrics.json`` exists is skipped and an unfinished one resumes from its
last checkpoint, so re-running the same command continues an interrupted grid. A finished run
copied in from another grid counts when its config is the same up to runtime keys and spelled-out
defaults; its config.yaml is then rewritten in this grid's spelling (label, out, defaults) so the
report names it like the grid's other rows.

:func:`load_grid` reads and checks a grid (every number and every folder name its runs are made
of), :func:`expand_grid` lists its runs with their resolved, validated configs; the checks of
run folders made earlier (:func:`_check_unchanged`, :func:`_adopt_finished`) compare their saved
configs with the grid's (:mod:`scarce.runfolder`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scarce.config import (ConfigError, deep_merge, from_dict, load_yaml, parse_overrides, resolve_dict, RunConfig,
                           save_config, to_dict)
from scarce.runfolder import RunFolder, config_differences, default_change_hint
from scarce.utils.runfolder import CONFIG_FILE

GRID_KEYS = {"name", "out", "report", "records", "workers", "threads", "gpus", "base", "datasets", "methods", "models",
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


def grid_out(g: Mapping[str, Any]) -> Path:
    """The grid's ``out`` folder (default ``runs/<name>``): its runs, caches and default report."""
    return Path(g.get("out", f"runs/{g.get('name', 'grid')}"))


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
        if "budgets" in m:
            int_list(f"methods[{i}].budgets", m["budgets"])
            own = [str(ds["name"]) for ds in _as_list(g["datasets"]) if isinstance(ds, Mapping) and "budgets" in ds]
            if own:
                raise ConfigError(f"{where}: methods[{i}] ({label!r}) and dataset {own[0]!r} both set 'budgets'; "
                                  "set a row's budgets or a dataset's, not both (put the dataset in a grid of its own)")
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

    out_root = grid_out(g)
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
            row_budgets = _as_list(m.pop("budgets")) if "budgets" in m else budgets  # a row's own budgets
            for model in _as_list(g.get("models", ["unet"])):
                model_label = _model_label(model)
                model_over = dict(model) if isinstance(model, Mapping) else {"name": model}
                model_over.pop("label", None)
                for b in row_budgets:
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
            if diff := config_differences(first.config, s.config):
                raise ConfigError(f"run folder {str(s.run_dir)!r} is listed twice by grid {g.get('name', '')!r} "
                                  f"with different configs ({', '.join(diff[:5])} differ): give one of the rows "
                                  "another label")
    return list(seen.values()), len(specs) - len(seen)


def _check_unchanged(specs: list[RunSpec]) -> None:
    """A finished or started run whose saved config differs from the grid's would silently mix
    two experiments in one table: refuse, naming the run and the differing keys."""
    for s in specs:
        folder = RunFolder(s.run_dir)
        if folder.config_file.exists() and folder.started():  # no checkpoint yet: it restarts
            saved = folder.saved_config()  # method defaults as the run started
            diff = config_differences(saved, s.config)
            if diff:
                changed = folder.changed_defaults(saved, s.config, diff)
                hint = default_change_hint(changed, "write {fields} into the grid's method row to keep the run")
                raise ConfigError(
                    f"run {str(s.run_dir)!r} was made with a different config ({', '.join(diff[:5])} differ){hint}; "
                    f"{'otherwise ' if hint else ''}use a new grid 'out' folder or delete the old runs"
                )


def _adopt_finished(specs: list[RunSpec]) -> int:
    """Rewrite the saved ``config.yaml`` of finished runs that are this grid's run (same config
    by :func:`scarce.runfolder.config_differences`) but spelled differently: a run copied in from
    another grid keeps that grid's ``label``/``out`` and omits method defaults the grid spells
    out (e.g. ``lam: 1.0``), and the report reads labels and axis values (λ) from config.yaml.
    Unfinished runs need nothing: resuming rewrites their config. Returns how many were rewritten."""
    n = 0
    for s in specs:
        folder = RunFolder(s.run_dir)
        saved = folder.config_file
        if folder.finished() and saved.exists():
            from scarce.engine.planner import adopt_saved_plan
            from scarce.data.splits import adopt_saved_selection

            old = load_yaml(saved)
            want = adopt_saved_selection(adopt_saved_plan(to_dict(from_dict(RunConfig, s.config)), old), old)
            want = to_dict(from_dict(RunConfig, want))
            # (a grid row with train.budget_minutes keeps the plan its run was trained with, one with
            # data.selection the images its run chose)
            if old != want:
                save_config(want, saved)
                n += 1
    return n


EXPERIMENT = "scarce experiment"
"""Command name in a grid ``out`` folder's output marker (:mod:`scarce.utils.paths`)."""


def is_grid_folder(folder: Path) -> bool:
    """True when ``folder`` holds an earlier grid's runs (``<dataset>/<row>/b<N>/s<seed>/config.yaml``)
    or only its caches, also one made before grid folders carried their marker."""
    from scarce.utils.lock import GRID_LOCK_NAME

    names = {e.name for e in folder.iterdir()}
    if names <= {".cache", ".gan_cache", GRID_LOCK_NAME, "report"}:
        return True
    return next(folder.glob(f"*/*/*/*/{CONFIG_FILE}"), None) is not None


def write_grid_report(g: Mapping[str, Any]) -> str:
    """The grid's report; from its ``records`` folder when it has one (the records mirror every
    finished run, also those whose folders are gone, e.g. trained on another machine), else from
    the run folders."""
    from scarce.reports.records import is_records_folder
    from scarce.reports.report import write_report

    out_root = grid_out(g)
    report_dir = Path(g.get("report") or out_root / "report")
    source = Path(g["records"]) if g.get("records") and is_records_folder(Path(g["records"])) else out_root
    write_report(source, report_dir, metric=g.get("metric"))
    return str(report_dir)
