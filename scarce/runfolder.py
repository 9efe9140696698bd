"""A run folder: its files and what they say (:class:`RunFolder`), and whether the run it holds
is the run a config asks for.

The names, paths and file-level states (finished, started, failed) are
:class:`scarce.utils.runfolder.RunPaths`, in the base layer, so that the engine and the
evaluation use the same names. This module adds what needs the method registry and the planner:
the comparison of a folder's saved config with a new one. ``scarce train`` (:mod:`scarce.api`)
refuses to mix two configs in one folder with it, and a grid (:mod:`scarce.experiments`) refuses
a run made with another config, both naming the keys that differ and, when a method default
changed since the run started, the setting that goes on as it started.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scarce.config import ConfigError, RunConfig, from_dict, load_yaml, to_dict
from scarce.utils.runfolder import RunPaths

RUNTIME_KEYS = {"out", "label", "data.cache_dir", "train.progress", "train.threads", "train.device",
                "train.tensorboard", "train.log_every"}
"""Keys that do not change a run's result (where it runs, how it reports): ignored when deciding
whether a saved run folder holds "the same" run."""


def normalized_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.yaml`` with keys added to the dataclasses since it was written filled in
    with their defaults (e.g. ``eval.trimap_widths``), so runs made before a new option existed
    still count as the same config, and the method section with the method's own defaults filled
    in (so a grid row that spells out a default, e.g. ``lam: 1.0``, shares runs with one that does
    not); falls back to the raw dict when it no longer parses."""
    try:
        d = to_dict(from_dict(RunConfig, saved))
    except (ConfigError, TypeError, ValueError):
        return saved
    try:  # the method's own defaults too: {name: e2eaug} and {name: e2eaug, lam: 1.0} are one run
        from scarce.methods import method_spec  # lazy: importing scarce does no work

        d["method"] = method_spec(d["method"]).as_dict()
    except (ConfigError, KeyError, TypeError, ValueError):
        pass
    return d


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: dict[str, Any], cfg: RunConfig | dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between a saved ``config.yaml`` and ``cfg`` (runtime-only
    keys ignored; keys added since the run was made count with their defaults), method fields
    included (``method.lam``), so a refusal names what to change; ``method.name`` alone when the
    method itself differs."""
    from scarce.engine.planner import adopt_saved_plan
    from scarce.data.splits import adopt_saved_selection

    old = _flat(normalized_config(saved))
    # a budget planned as saved, training images chosen by the same data.selection: the same run
    new = _flat(normalized_config(adopt_saved_selection(adopt_saved_plan(to_dict(cfg), saved), saved)))
    diff = sorted(k for k in set(old) | set(new) if k not in RUNTIME_KEYS and old.get(k) != new.get(k))
    if "method.name" in diff:  # another method: its fields are not differences worth listing
        diff = [k for k in diff if k == "method.name" or not k.startswith("method.")]
    return diff


def default_change_hint(changed: dict[str, Any], how: str) -> str:
    """``"; the default of method.beta changed since this run started (then 0.1): <how>"`` with
    ``{sets}`` in ``how`` → the ``--set`` options that restore the values, ``{fields}`` → them as
    method fields (``beta: 0.1``, for a grid's method row); ``""`` when none."""
    if not changed:
        return ""
    then = ", ".join(f"{k}={v!r}" for k, v in changed.items())
    sets = " ".join(f"--set {k}={v}" for k, v in changed.items())
    fields = ", ".join(f"{k.removeprefix('method.')}: {v}" for k, v in changed.items())
    return (f"; the default of {', '.join(changed)} changed since this run started (then {then}): "
            f"{how.format(sets=sets, fields=fields)}")


class RunFolder(RunPaths):
    """A run folder's files (:class:`~scarce.utils.runfolder.RunPaths`) and its saved config
    compared with a new one."""

    def saved_config(self) -> dict[str, Any]:
        """The folder's ``config.yaml`` with its method section resolved as the run started (from
        ``method.json`` when the run has one): compared with a new config, a method default that
        changed since then shows as a difference instead of silently applying to the rest of the
        run. Folders written before the file existed fall back to ``config.yaml`` alone."""
        d = load_yaml(self.config_file)
        path = self.method_file
        written = d.get("method")
        if path.is_file() and isinstance(written, dict):
            try:
                started = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"{str(path)!r} is unreadable ({e}); it records the method's settings as the "
                                  "run started — restore it from a copy, or train into another folder") from e
            if isinstance(started, dict) and started.get("name") == written.get("name"):
                d = {**d, "method": {**started, **written}}
        return d

    def changed_defaults(self, saved: dict[str, Any], cfg: RunConfig | dict[str, Any],
                         diff: list[str]) -> dict[str, Any]:
        """``method.<field>`` → its value when the run started, for each differing method field
        that neither the run's ``config.yaml`` nor ``cfg`` writes out: that field's default changed
        since. ``saved`` is :meth:`saved_config`, ``diff`` its :func:`config_differences`."""
        written = load_yaml(self.config_file).get("method") or {}
        new = (cfg.method if isinstance(cfg, RunConfig) else cfg.get("method")) or {}
        started = saved.get("method") or {}
        out: dict[str, Any] = {}
        for k in diff:
            name = k.removeprefix("method.")
            if k != name and name != "name" and name not in written and name not in new and name in started:
                out[k] = started[name]
        return out

    def check_for(self, cfg: RunConfig, resume: bool) -> None:
        """Refuse to mix two different configs in one folder (a resume must use the same one), to
        redo a finished run without ``resume`` and to restart an unfinished one without it."""
        run_dir = self.path
        if not self.config_file.exists():
            return
        saved = self.saved_config()
        diff = config_differences(saved, cfg)
        if diff and not self.started():
            import warnings

            warnings.warn(f"run folder {str(run_dir)!r} holds the config of a run that stopped before its first "
                          f"checkpoint ({', '.join(diff[:5])} differ); starting it over with this config")
            return
        if diff:
            hint = default_change_hint(self.changed_defaults(saved, cfg, diff), "to go on as it started, add {sets}")
            raise ConfigError(
                f"run folder {str(run_dir)!r} already holds a run with a different config ({', '.join(diff[:5])} differ)"
                f"{hint}; {'otherwise ' if hint else ''}choose another output folder (--set out=...) or delete it"
            )
        if not resume and self.finished():
            raise ConfigError(
                f"run folder {str(run_dir)!r} holds a finished run; add --resume to get its results "
                "(nothing is retrained) or choose another output folder (--set out=...)"
            )
        if not resume and self.last_checkpoint.exists() and not self.finished():
            raise ConfigError(
                f"run folder {str(run_dir)!r} holds an unfinished run; add --resume to continue it "
                "or choose another output folder (--set out=...)"
            )


def check_run_dir(cfg: RunConfig, run_dir: str | os.PathLike[str], resume: bool) -> None:
    """:meth:`RunFolder.check_for` of ``run_dir``."""
    RunFolder(Path(run_dir)).check_for(cfg, resume)


__all__ = ["RUNTIME_KEYS", "RunFolder", "check_run_dir", "config_differences", "default_change_hint",
           "normalized_config"]
