"""Library entry points behind the CLI: one function per command (nnU-Net style thin CLI).

``train_run`` = prepare data (validated before anything is written) → save resolved config and
split → Trainer.fit → best-validation checkpoint → evaluation on the ID + OOD test sets. What a
run folder holds and whether a folder holds the run a config asks for: :mod:`scarce.runfolder`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scarce.config import ConfigError, RunConfig, from_dict, load_yaml, save_config, to_dict
from scarce.data.types import DataError
from scarce.runfolder import RunFolder, config_differences
from scarce.utils.io import atomic_write_json
from scarce.utils.runfolder import (CONFIG_FILE, EVAL_DIR, SHIFTS_DIR, RunPaths, is_eval_output,  # noqa: F401
                                    is_run_folder)

TRAIN, EVALUATE, EVALUATE_SHIFTS, PREDICT = ("scarce train", "scarce evaluate", "scarce evaluate --shifts",
                                             "scarce predict")
"""Command names in the output markers (:mod:`scarce.utils.paths`) of the folders these write."""


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_run(cfg: RunConfig, resume: bool = False, given: Any = ()) -> dict[str, Any]:
    """Train ``cfg.method`` on ``cfg.data`` and evaluate the best-validation checkpoint.

    Returns ``{"run_dir", "best_val", "best_step", "tests": {set: metrics}}``; writes into
    ``cfg.out``: config.yaml, split.json, log.csv, checkpoints/, eval/<set>/..., metrics.json.
    With ``train.budget_minutes`` > 0 the run is planned first (:func:`_resolve_budget`); the
    planned keys named in ``given`` (the command line's ``--set`` keys) are the user's, kept.
    The method is resolved once here and passed to the plan, the trainer and ``method.json``.
    """
    from scarce.methods import method_spec
    from scarce.validate import validate_config

    run_dir = Path(cfg.out)
    validate_config(cfg)  # the whole config (ranges, size vs stride, device, method) before anything exists
    trimap_widths(cfg)
    spec = method_spec(cfg)  # the run's method (a plan changes no method key)
    from scarce.engine.planner import needs_plan

    if needs_plan(cfg) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train.budget_minutes plans from step times measured per process, which could differ "
                          "between torchrun ranks; run `scarce plan` once and pass its --set line instead")
    if not _is_main():  # torchrun: rank 0 holds the folder's lock and does all file I/O
        return _train_locked(cfg, run_dir, resume, spec)
    from scarce.utils.lock import lock_folder
    from scarce.utils.paths import check_output_folder

    check_output_folder(run_dir, what="run folder", previous=is_run_folder, command=TRAIN)

    hint = ("wait for it to finish (or stop it), or train into another folder (--out DIR); "
            "one run folder takes one process")
    with lock_folder(run_dir, what="run folder", hint=hint):  # created here; removed again if left empty
        return _train_locked(_resolve_budget(cfg, run_dir, given, spec), run_dir, resume, spec)


def plan_config(cfg: RunConfig, budget_minutes: float | None = None, *, given: Any = (),
                step_seconds: Any = None, log: Any = None, method: Any = None) -> Any:
    """The plan (:class:`scarce.engine.planner.Plan`) of a resolved config: the fingerprint of its
    labelled split, the step time of its segmenter (:func:`~scarce.engine.planner.measure_step_seconds`
    unless given), its ``train.budget_minutes`` (or ``budget_minutes``, or
    :data:`~scarce.engine.planner.DEFAULT_BUDGET_MINUTES`), the keys the user set kept. ``method``:
    the run's :class:`~scarce.methods.MethodSpec` when the caller has it (whole-image methods are
    planned without patches), else resolved from ``cfg``."""
    from scarce.data.fingerprint import fingerprint
    from scarce.data.load import resolve_dataset
    from scarce.engine.planner import (DEFAULT_BUDGET_MINUTES, MULTIPLE, fixed_keys, labelled_stems,
                                       measure_step_seconds, plan)
    from scarce.methods import method_spec
    from scarce.validate import model_stride

    budget = budget_minutes or getattr(cfg.train, "budget_minutes", 0) or DEFAULT_BUDGET_MINUTES
    info, _ = resolve_dataset(cfg.data.dataset, cfg.data.root, cfg.data.num_classes, cfg.data.synthetic_n,
                              cfg.data.cache_dir)
    fp = fingerprint(cfg.data.dataset, cfg.data.root, num_classes=cfg.data.num_classes, stems=labelled_stems(cfg),
                     intensity_images=0)
    if log:
        log(f"planning {info.name} for {budget:g} min: fingerprint of {fp['images']} labelled images; "
            "measuring training steps (1 thread, a few seconds each)")
    if step_seconds is None:
        step_seconds = measure_step_seconds(cfg, info.channels, info.num_classes)
    multiple = max(MULTIPLE, model_stride(cfg.model))
    patches = bool(getattr((method or method_spec(cfg)).cls, "patches", True))
    return plan(fp, budget, step_seconds, fixed=fixed_keys(cfg, given), patches=patches, multiple=multiple)


def _resolve_budget(cfg: RunConfig, run_dir: Path, given: Any = (), method: Any = None) -> RunConfig:
    """``cfg`` planned for its ``train.budget_minutes`` (:mod:`scarce.engine.planner`) when it
    asks for a plan and has none yet: the plan in ``run_dir/config.yaml`` when that run was
    planned for the same budget (a resume keeps its values), else a new plan, printed (stderr)
    and checked. A planned config (``train.planned`` set) or no budget: ``cfg`` itself."""
    import sys

    from scarce.engine.planner import adopt_saved_plan, apply_plan, needs_plan
    from scarce.validate import validate_config

    if not needs_plan(cfg):
        return cfg
    saved = RunPaths(run_dir).config_file
    if saved.is_file():
        try:
            adopted = adopt_saved_plan(to_dict(cfg), load_yaml(saved))
        except ConfigError:
            adopted = to_dict(cfg)
        if adopted["train"].get("planned") is not None:
            print(f"scarce: using the plan saved in {saved} (train.budget_minutes="
                  f"{cfg.train.budget_minutes:g})", file=sys.stderr)
            return from_dict(RunConfig, adopted)
    plan = plan_config(cfg, given=given, log=lambda m: print(f"scarce: {m}", file=sys.stderr), method=method)
    print("scarce: plan (saved in config.yaml as train.planned; override any key with --set):", file=sys.stderr)
    for line in plan.lines():
        print(f"  {line}", file=sys.stderr)
    planned = apply_plan(cfg, plan)
    validate_config(planned)
    return planned


def _train_locked(cfg: RunConfig, run_dir: Path, resume: bool, spec: Any) -> dict[str, Any]:
    """:func:`train_run` once the config is valid and this process holds the run folder;
    ``spec``: the run's method (:func:`scarce.methods.method_spec`)."""
    from scarce.data.load import prepare_run_data
    from scarce.engine.trainer import Trainer
    from scarce.utils.environment import environment_info, record_environment

    folder = RunFolder(run_dir)
    folder.check_for(cfg, resume)
    cfg = _choose_labelled(cfg, run_dir)  # data.selection: the training images, before any file is written
    needs_pool = "unlabelled" in spec.cls.streams
    data = prepare_run_data(cfg.data, seed=cfg.train.seed, with_unlabelled=needs_pool,  # validates all inputs first
                            monitor=cfg.eval.monitor, scribbles=spec.cls.scribble_files(spec.config))
    if folder.finished() and resume:
        import json

        return json.loads(folder.result_file.read_text())
    try:
        trainer = Trainer(cfg, data, run_dir, method=spec)  # builds the networks: a bad model/optim key fails here
    except ValueError as e:
        if isinstance(e, (ConfigError, DataError)):
            raise
        raise ConfigError(f"cannot build the run from this config: {e}") from e
    # files this call creates before the first checkpoint: removed again if the run fails before
    # it, so the corrected command starts in a clean folder (never touches files that were there)
    from scarce.utils.paths import write_marker

    fresh = [p for p in folder.fresh_files() if not p.exists()]
    try:
        if _is_main():  # ... before anything is written, so a corrected command can reuse the folder
            write_marker(run_dir, TRAIN)
            save_config(cfg, folder.config_file)
            if not folder.started():  # the method as it starts; a resume keeps the first record
                atomic_write_json(folder.method_file, spec.as_dict())
            data.split.save(folder.split_file)
            # after Trainer set train.threads; a resume in another environment appends an entry
            record_environment(run_dir, environment_info(trainer.device, trainer.world_size, precision=trainer.precision,
                                                         channels_last=bool(cfg.train.channels_last)),
                               restart=not folder.started())
        fit = trainer.fit(resume=resume)
    except BaseException:
        trainer.close_logs()
        if _is_main() and not folder.started():
            import shutil

            for p in fresh:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
        raise
    result: dict[str, Any] = {"run_dir": str(run_dir), "best_val": fit.best_score, "best_step": fit.best_step,
                              "steps": fit.steps, "stopped_early": fit.stopped_early}
    if _is_main():
        from scarce.models import count_parameters

        model = trainer.load_best()
        result["params"] = count_parameters(model)
        result["tests"] = _evaluate(cfg, model, data.tests, data.train.num_classes, folder.eval_dir)
        if data.val.partial:  # no validation masks: say how the checkpoint was chosen, in the summary too
            _note_pixel_validation(cfg, data, result, folder.eval_dir)
        atomic_write_json(folder.result_file, result)
    return result


def _note_pixel_validation(cfg: RunConfig, data: Any, result: dict[str, Any], eval_dir: Path) -> None:
    """Record that a run without validation masks chose its checkpoint on held-out scribbled
    pixels (and, without test masks, that no score on masks exists): ``result["note"]`` and the
    last line of ``eval/summary.txt``."""
    from scarce.data.scribble_data import pixel_validation_note
    from scarce.utils.io import atomic_write_text
    from scarce.utils.runfolder import SUMMARY_FILE

    note = pixel_validation_note(cfg.data.val_fraction, data.info.metric, bool(result["tests"]))
    result["validation"], result["note"] = "scribble_pixels", note
    summary = eval_dir / SUMMARY_FILE
    head = summary.read_text() if summary.is_file() else ""
    atomic_write_text(summary, (head if head.strip() else "") + note + "\n")


def _choose_labelled(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """``cfg`` with ``data.selected`` filled in by its ``data.selection`` strategy
    (:func:`scarce.suggest.select_labelled`; saved in config.yaml, so the run repeats on the same
    images): the images the same run in ``run_dir`` chose before (a resume), else chosen now.
    ``random`` or a ``data.selected`` already set: ``cfg`` itself."""
    import dataclasses

    from scarce.data.splits import adopt_saved_selection
    from scarce.suggest import check_selection, select_labelled, selection_log

    if check_selection(cfg.data.selection) is None or cfg.data.selected is not None:
        return cfg
    if RunPaths(run_dir).config_file.is_file():
        saved = RunFolder(run_dir).saved_config()
        adopted = from_dict(RunConfig, adopt_saved_selection(to_dict(cfg), saved))
        if adopted.data.selected is not None and not config_differences(saved, adopted):
            return adopted
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"data.selection={cfg.data.selection} trains its own models to choose the images, once per "
                          "process; run it without torchrun first (or set data.selected to the chosen stems)")
    chosen = select_labelled(cfg, log=selection_log)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, selected=chosen.stems))


def _evaluate(cfg: RunConfig, model: Any, tests: dict[str, Any], num_classes: int, eval_dir: Path) -> dict[str, Any]:
    from scarce.evaluation.evaluate import evaluate_sets

    e = cfg.eval
    extra: dict[str, Any] = {}
    widths = trimap_widths(cfg)
    if widths:  # only passed when on, so the call is unchanged for configs without trimap
        extra["trimap_widths"] = widths
    if e.tta != "none":  # likewise
        extra["tta"] = e.tta
    if e.surface_metrics:  # MONAI's HD95 / ASD / NSD per image (scarce.evaluation.surface)
        extra["surface_tolerance"] = float(e.surface_tolerance)
    return evaluate_sets(
        model, tests, num_classes=num_classes, out_dir=eval_dir,
        threshold=e.threshold, save_predictions=e.save_predictions, overlays=e.overlays,
        iou_threshold=e.iou_threshold, **extra,
    )


def trimap_widths(cfg: RunConfig) -> list[int]:
    """``eval.trimap_widths`` as sorted unique positive ints; checked before training so a typo
    fails in seconds, not after hours of training (ConfigError names the key)."""
    raw = cfg.eval.trimap_widths or []
    out: set[int] = set()
    for w in raw:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or float(w) != int(w) or int(w) < 1:
            raise ConfigError(f"config key 'eval.trimap_widths' expects positive integer pixel widths "
                              f"(e.g. [2, 4, 8, 16]), got {raw!r}")
        out.add(int(w))
    return sorted(out)


def load_run_config(run_dir: str | os.PathLike[str], config: str | os.PathLike[str] | None = None,
                    sets: list[str] | None = None) -> RunConfig:
    """A run folder's saved config, optionally with a YAML file and ``--set`` overrides on top
    (e.g. ``eval.save_predictions=false`` or ``data.root=...`` for evaluate/predict)."""
    from scarce.config import deep_merge, parse_overrides

    path = RunPaths(run_dir).config_file
    if not path.exists():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder (no config.yaml); pass the folder a `scarce train` run wrote")
    d = load_yaml(path)
    if config:
        d = deep_merge(d, load_yaml(config))
    d = deep_merge(d, parse_overrides(sets))
    cfg = from_dict(RunConfig, d)
    from scarce.evaluation.evaluate import check_tta

    check_tta(cfg.eval.tta)  # even a hand-edited config.yaml fails before any folder is made
    if config or sets:  # overrides (e.g. eval.threshold, data.size) checked before any work
        from scarce.validate import validate_config

        validate_config(cfg, training=False)
    return cfg


def uses_scribble_files(cfg: RunConfig) -> bool:
    """True when the run's method trains on the dataset's ``scribbles/`` files (its images are then
    chosen by their scribbles in a folder being annotated: :mod:`scarce.data.scribble_data`)."""
    from scarce.methods import method_spec

    try:
        spec = method_spec(cfg)
    except (ConfigError, KeyError):
        return False
    return bool(spec.cls.scribble_files(spec.config))


def uses_pool(cfg: RunConfig) -> bool:
    """True when the run's method trains on an unlabelled pool (its OOD test sets then leave out
    the pool's images, in training and in every later evaluation alike)."""
    from scarce.methods import method_spec

    try:
        return "unlabelled" in method_spec(cfg).cls.streams
    except (ConfigError, KeyError):
        return False


def load_segmenter(run_dir: str | os.PathLike[str], cfg: RunConfig | None = None, in_channels: int | None = None,
                   num_classes: int | None = None) -> Any:
    """Rebuild the segmenter of a finished run and load its best-validation weights."""
    from scarce.data.registry import get_info
    from scarce.models import model_from_config
    from scarce.utils.io import torch_load

    cfg = cfg or load_run_config(run_dir)
    best = RunPaths(run_dir).best_checkpoint
    if not best.exists():
        raise ConfigError(f"no best checkpoint in {str(run_dir)!r}: the run has not validated yet (train it first)")
    fix = "retrain the run, or, if it is unfinished, continue it from checkpoints/last.pt with `scarce train ... --resume`"
    state = torch_load(best, fix=fix)
    if not isinstance(state, dict) or "model" not in state:
        from scarce.utils.io import CheckpointError

        raise CheckpointError(f"checkpoint {best} holds no model weights (not a best.pt written by scarce); {fix}")
    if in_channels is None or num_classes is None:
        info = get_info(cfg.data.dataset, num_classes=cfg.data.num_classes)
        in_channels = in_channels or info.channels
        num_classes = num_classes or info.num_classes
    # pretrained=False: the checkpoint holds every weight, so no encoder weights package is needed
    model = model_from_config(cfg.model, in_channels=in_channels, num_classes=num_classes, pretrained=False)
    from scarce.utils.io import load_weights

    m = cfg.model
    arch = (f"encoder {m.encoder}" if m.encoder else f"backbone {m.backbone}, width {m.width}" if "deeplab" in m.name
            else f"width {m.width}, depth {m.depth}")
    load_weights(model, state["model"], best,
                 f"the {m.name!r} network of the run's config ({arch}, {in_channels} input channels, "
                 f"{num_classes} classes)",
                 "it was written by another network: use the config the run was trained with (check its "
                 "config.yaml and any --set/--config overrides of model.* or data.*), or retrain the run")
    model.inference_window = int(cfg.eval.window)  # eval.window: read by predict_probs
    if cfg.train.channels_last:  # as trained; inference ≈1.3× faster on CPU (state dicts are layout-free)
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def check_test_sets(cfg: RunConfig, run_dir: str | os.PathLike[str], fix: str) -> None:
    """A ConfigError naming ``run_dir`` and ``fix`` when its (overridden) config evaluates no
    test set (``data.test_sets: []``, e.g. a run trained for its validation curve only), before
    any data or checkpoint is loaded."""
    if cfg.data.test_sets is not None and not list(cfg.data.test_sets):
        raise ConfigError(f"run {Path(run_dir).as_posix()!r} has no test sets (its config sets data.test_sets: []); "
                          f"{fix}")


def _evaluation_target(run_dir: str | os.PathLike[str], config: str | None, sets: list[str] | None,
                       data_root: str | None, test_sets: list[str] | None, out: str | None, default_sub: str,
                       what: str) -> tuple[RunConfig, Path]:
    """The run's config with the evaluation overrides, and the folder the evaluation writes
    (``out`` or ``<run>/<default_sub>``), checked writable before any data is loaded: a
    read-only run folder fails in a second with one line."""
    from scarce.utils.io import ensure_writable

    cfg = load_run_config(run_dir, config, sets)
    if data_root:
        cfg.data.root = data_root
    if test_sets:
        cfg.data.test_sets = list(test_sets)
    check_test_sets(cfg, run_dir, f"pass the sets to evaluate with --test-sets NAME[,NAME...] "
                                  f"(e.g. --test-sets {cfg.data.dataset})")
    out_dir = Path(out) if out else Path(run_dir) / default_sub
    try:
        ensure_writable(out_dir)
    except OSError as e:
        fix = "choose another --out DIR" if out else "use --out DIR to write it elsewhere"
        raise ConfigError(f"cannot write {what} into {str(out_dir)!r} ({e.strerror}); {fix}") from None
    return cfg, out_dir


def evaluate_run(run_dir: str | os.PathLike[str], test_sets: list[str] | None = None,
                 data_root: str | None = None, out: str | None = None,
                 config: str | None = None, sets: list[str] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Re-evaluate a finished run's best checkpoint on its test sets (or on ``test_sets``);
    results go to ``out`` (default ``<run_dir>/eval``). An explicit ``out`` must be new, empty or
    an earlier evaluation output unless ``overwrite``, and may not be (or contain) the run folder,
    whose ``metrics.json`` it would replace."""
    from scarce.data.load import load_test_sets
    from scarce.utils.paths import check_output_folder

    if out:
        check_output_folder(out, containers=[run_dir], overwrite=overwrite, what="evaluation folder",
                            previous=is_eval_output, command=EVALUATE)

    cfg, out_dir = _evaluation_target(run_dir, config, sets, data_root, test_sets, out, EVAL_DIR, "the evaluation")
    tests = load_test_sets(cfg.data, seed=cfg.train.seed, with_unlabelled=uses_pool(cfg),
                           scribbles=uses_scribble_files(cfg))
    num_classes = next(iter(tests.values())).num_classes
    channels = int(next(iter(tests.values())).images.shape[1])
    model = load_segmenter(run_dir, cfg, in_channels=channels, num_classes=num_classes)
    if not out:  # the run's own eval/: part of the run folder
        return _evaluate(cfg, model, tests, num_classes, out_dir)
    from scarce.utils.paths import claimed_output

    with claimed_output(out_dir, EVALUATE):
        return _evaluate(cfg, model, tests, num_classes, out_dir)


def is_shift_output(folder: Path) -> bool:
    """True when ``folder`` holds an earlier shift evaluation (``shifts.csv`` + ``shifts.json``)
    and is not a run folder: :func:`evaluate_shifts` may rewrite it without ``overwrite``."""
    return ((folder / "shifts.csv").is_file() and (folder / "shifts.json").is_file()
            and not (folder / CONFIG_FILE).exists())


def _shift_meta(run_dir: str | os.PathLike[str], cfg: RunConfig, shifts: list[str],
                severities: tuple[int, ...]) -> dict[str, Any]:
    """What a shift evaluation depends on (stored as ``shifts.json``; compared by
    :func:`shift_evaluation_current`): the best checkpoint's SHA-1, the shifts, severities and
    their parameters, the noise seed and the evaluation settings. A missing ``best.pt`` is a
    ConfigError (before any data is loaded)."""
    import hashlib
    import json

    from scarce.evaluation.shifts import SHIFT_PARAMS, SHIFT_SEED

    best = RunPaths(run_dir).best_checkpoint
    if not best.is_file():
        raise ConfigError(f"no best checkpoint in {str(run_dir)!r}: the run has not validated yet (train it first)")
    h = hashlib.sha1()
    with open(best, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return json.loads(json.dumps({  # tuples → lists: equal to what shifts.json reads back
        "format": 1, "checkpoint_sha1": h.hexdigest(), "shifts": shifts, "severities": list(severities),
        "params": {n: SHIFT_PARAMS[n] for n in shifts}, "seed": SHIFT_SEED,
        "test_sets": cfg.data.test_sets,
        "eval": {"threshold": cfg.eval.threshold, "iou_threshold": cfg.eval.iou_threshold, "tta": cfg.eval.tta},
        "data": {"size": cfg.data.size, "intensity": cfg.data.intensity},
    }))


def shift_evaluation_current(run_dir: str | os.PathLike[str], folder: str | os.PathLike[str],
                             shifts: str | list[str] | None = None, severities: Any = (1, 2, 3),
                             config: str | None = None, sets: list[str] | None = None) -> bool:
    """True when ``folder`` holds a complete shift evaluation of the run's *current*
    ``best.pt`` (same SHA-1) that covers ``shifts`` × ``severities`` with today's parameters
    and the same evaluation settings (threshold, TTA, test sets, size, ``data.intensity``):
    then it need not be recomputed (``scarce robustness`` resumes this way)."""
    import json

    from scarce.evaluation.shifts import check_severities, resolve_shifts

    folder = Path(folder)
    try:
        saved = json.loads((folder / "shifts.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or not (folder / "shifts.csv").is_file():
        return False
    names, sev = resolve_shifts(shifts), check_severities(severities)
    want = _shift_meta(run_dir, load_run_config(run_dir, config, sets), names, sev)
    same = ("format", "checkpoint_sha1", "seed", "test_sets", "eval", "data")
    return (all(saved.get(k) == want[k] for k in same)
            and set(names) <= set(saved.get("shifts") or []) and set(sev) <= set(saved.get("severities") or [])
            and all((saved.get("params") or {}).get(n) == want["params"][n] for n in names))


def evaluate_shifts(run_dir: str | os.PathLike[str], shifts: str | list[str] | None = None,
                    severities: Any = (1, 2, 3), test_sets: list[str] | None = None,
                    out: str | os.PathLike[str] | None = None, overwrite: bool = False,
                    config: str | None = None, sets: list[str] | None = None,
                    data_root: str | None = None, log: Any = None) -> list[dict[str, Any]]:
    """Stress-test a finished run under deterministic intensity shifts of its own test images.

    Loads the best checkpoint and the test sets once, scores the unshifted images (``shift``
    ``none``, severity 0) and every shift × severity (:mod:`scarce.evaluation.shifts`; ``None``
    or ``"all"`` = every registered shift) on every test set (the run's ID + OOD sets, or
    ``test_sets``), with the run's ``eval.threshold`` and ``eval.tta``; shifts act before the
    run's ``data.intensity`` preprocessing. Returns one dict per (test set, shift, severity):
    ``{test_set, shift, severity, n, dice_mean, dice_std, jaccard_mean, ...}`` (over images).

    Writes ``shifts.csv``, ``shifts.md`` and ``shifts.json`` (what was evaluated) atomically into
    ``out`` (default ``<run_dir>/eval_shifts``); no prediction images. An explicit ``out`` must be
    new, empty or an earlier shift evaluation unless ``overwrite``, and may never be or contain
    the run folder (so a read-only grid is stress-tested into another folder). Unknown shift
    names (KeyError, did-you-mean) and bad severities (ConfigError) fail before anything loads.
    ``train.threads`` (e.g. ``sets=["train.threads=1"]``) limits torch's CPU threads.
    """
    import dataclasses

    from scarce.data.load import load_test_sets
    from scarce.evaluation.shifts import check_severities, evaluate_shifted_sets, resolve_shifts, write_shift_outputs
    from scarce.utils.paths import check_output_folder

    names = resolve_shifts(shifts)
    sev = check_severities(severities)
    if out:
        check_output_folder(out, containers=[run_dir], overwrite=overwrite, what="shift evaluation folder",
                            previous=is_shift_output, command=EVALUATE_SHIFTS)
    cfg, out_dir = _evaluation_target(run_dir, config, sets, data_root, test_sets, out, SHIFTS_DIR,
                                      "the shift evaluation")
    meta = _shift_meta(run_dir, cfg, names, sev)
    if cfg.train.threads > 0:
        import torch

        torch.set_num_threads(int(cfg.train.threads))
    # decoded without data.intensity: the shift comes first, then the run's preprocessing
    tests = load_test_sets(dataclasses.replace(cfg.data, intensity="none"), seed=cfg.train.seed,
                           with_unlabelled=uses_pool(cfg), scribbles=uses_scribble_files(cfg))
    first = next(iter(tests.values()))
    num_classes, channels = first.num_classes, int(first.images.shape[1])
    model = load_segmenter(run_dir, cfg, in_channels=channels, num_classes=num_classes)
    rows = evaluate_shifted_sets(model, tests, num_classes, names, sev, threshold=cfg.eval.threshold,
                                 iou_threshold=cfg.eval.iou_threshold, tta=cfg.eval.tta,
                                 intensity=cfg.data.intensity, log=log)
    meta["evaluated_test_sets"] = list(tests)
    import contextlib

    from scarce.utils.paths import claimed_output

    with claimed_output(out_dir, EVALUATE_SHIFTS) if out else contextlib.nullcontext():
        write_shift_outputs(out_dir, rows, meta, metric=_dataset_metric(cfg),
                            title=f"Run `{Path(run_dir).as_posix()}` (best checkpoint; eval.tta={cfg.eval.tta}, "
                                  f"threshold {cfg.eval.threshold:g}).")
    return rows


def tsne_runs(runs: list[str | os.PathLike[str]], out: str | os.PathLike[str], perplexity: float = 30.0,
              seed: int = 0, sets: list[str] | None = None, data_root: str | None = None,
              overwrite: bool = False) -> dict[str, Any]:
    """``scarce tsne``: t-SNE of each finished run's pooled deepest encoder features over every
    image of its test sets (ID test part + OOD sets / domains), one panel per run, coloured by
    test set (:mod:`scarce.reports.tsne`). Writes ``tsne.csv`` (run, test_set, stem, x, y) and
    ``tsne.png`` into ``out`` (new, empty or an earlier t-SNE output unless ``overwrite``; never
    a run folder), all at once (nothing partial). ``sets`` override keys of every run's config
    (``train.threads=1`` limits torch's CPU threads); runs are read-only. Panels are titled by
    run label, or by run folder when labels repeat. Returns ``{csv, png, points}``."""
    from scarce.data.load import load_test_sets
    from scarce.reports.tables import row_label
    from scarce.reports.tsne import is_tsne_output, tsne_panel, write_tsne
    from scarce.utils.paths import check_output_folder, staged_output

    if not runs:
        raise ConfigError("scarce tsne needs at least one run folder")
    if not perplexity > 0:
        raise ConfigError(f"--perplexity must be > 0 (t-SNE's neighbourhood size, e.g. 30), got {perplexity}")
    check_output_folder(out, containers=runs, overwrite=overwrite, what="t-SNE folder", previous=is_tsne_output,
                        command="scarce tsne")
    cfgs = [load_run_config(r, sets=sets) for r in runs]  # every run's config and overrides before any work
    labels = [row_label(to_dict(c)) for c in cfgs]
    titles = labels if len(set(labels)) == len(labels) else [Path(r).as_posix() for r in runs]
    for run, cfg in zip(runs, cfgs):  # every run's test sets and checkpoint before any data is loaded
        if data_root:
            cfg.data.root = data_root
        check_test_sets(cfg, run, f"add --set data.test_sets=[{cfg.data.dataset}] (the sets to embed)")
    models = [load_segmenter(run, cfg) for run, cfg in zip(runs, cfgs)]  # = the data's channels and classes
    panels = []
    for run, cfg, title, model in zip(runs, cfgs, titles, models):
        if cfg.train.threads > 0:
            import torch

            torch.set_num_threads(int(cfg.train.threads))
        tests = load_test_sets(cfg.data, seed=cfg.train.seed, with_unlabelled=uses_pool(cfg),
                           scribbles=uses_scribble_files(cfg))
        try:
            panels.append((title, tsne_panel(model, tests, seed=seed, perplexity=perplexity)))
        except ValueError as e:  # too few test images, or a network without a known feature hook
            raise ConfigError(f"t-SNE of {Path(run).as_posix()!r}: {e}") from None
    with staged_output(out, "scarce tsne") as tmp:
        write_tsne(panels, tmp)
    return {"csv": str(Path(out) / "tsne.csv"), "png": str(Path(out) / "tsne.png"),
            "points": sum(len(p["x"]) for _, p in panels)}


def _dataset_metric(cfg: RunConfig) -> str:
    """The dataset's primary metric (``jaccard`` for skin lesions, else ``dice``)."""
    from scarce.data.registry import primary_metric

    return primary_metric(cfg.data.dataset, cfg.data.num_classes)


def predict_folder(run_dir: str | os.PathLike[str], images: str | os.PathLike[str], out: str | os.PathLike[str],
                   config: str | None = None, sets: list[str] | None = None, overwrite: bool = False,
                   overlays: bool = False, probabilities: bool = False, dicom_seg: bool = False) -> list[str]:
    """Segment every image in a folder with a finished run's best checkpoint.

    Writes into ``out`` (one atomic file each, named like the inputs, at each input's size):

    * ``<stem>.png`` — the mask: binary 0/255 gray; multi-class a palette PNG whose pixel values
      are the label ids 0..K-1 (tools reading ids get ids, a viewer shows colours);
    * ``overlays/<stem>.png`` (``overlays``) — [image | image with the predicted contour in red],
      as the evaluation overlays, longest side ≤ 512 px;
    * ``probabilities/<stem>.png`` (``probabilities``) — binary: 8-bit gray p(foreground)·255;
      multi-class: ``<stem>_class<k>.png`` per class k = 1..K-1, p(k)·255. 8-bit PNG rather than
      .npy: viewable, small, and 1/255 steps are finer than any threshold one would pick.

    NIfTI and DICOM volumes (files, DICOM series sub-folders) are segmented slice by slice along
    the run's ``data.slice_axis`` and written back as volumes (docs/formats.md): NIfTI in →
    ``<name>.nii[.gz]`` with the input's affine and header; DICOM in → ``<stem>.nii.gz`` on the
    series' grid, and with ``dicom_seg`` also ``<stem>_seg.dcm``, a DICOM Segmentation
    referencing the series (needs highdicom). Other files are named and counted in one warning.

    ``out`` must be new, empty or an earlier prediction folder (with ``overwrite``: same-named
    files are replaced, nothing else is touched); it may never be, lie inside or contain
    ``images`` (or the run folder), nor lie in a dataset or another command's folder
    (:mod:`scarce.utils.paths`; ConfigError before anything is read or written).

    An unreadable image does not stop the batch: it is skipped with a warning naming it, every
    other mask is written, and then a :class:`DataError` lists the skipped files (attributes
    ``written`` and ``skipped``), so neither a script nor a user mistakes the folder for complete.
    Returns the mask paths.
    """
    from scarce.data.folder import list_inputs
    from scarce.data.registry import get_info
    from scarce.data.volumes import label_volume_name
    from scarce.utils.paths import check_output_folder, claimed_output

    cfg = load_run_config(run_dir, config, sets)
    if dicom_seg:
        from scarce.data.volumes import check_highdicom

        check_highdicom()  # before anything is read or written
    paths, volumes = list_inputs(Path(images))
    stems = [p.stem for p in paths] + [label_volume_name(v) for v in volumes]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ConfigError(f"{images}: several images share the stem(s) {', '.join(dupes[:5])}; "
                          "their predicted masks would overwrite each other — rename them")
    check_output_folder(out, inputs=[images], containers=[run_dir], overwrite=overwrite, what="prediction folder",
                        command=PREDICT)
    model = load_segmenter(run_dir, cfg)
    info = get_info(cfg.data.dataset, num_classes=cfg.data.num_classes)
    k = info.num_classes
    written: list[str] = []
    skipped: list[tuple[Path, str]] = []
    out_dir = Path(out)
    with claimed_output(out_dir, PREDICT):  # nothing written at all: the folder is removed again
        _predict_into(out_dir, paths, model, cfg, info.channels, k, overlays, probabilities, written, skipped)
        if volumes:
            _predict_volumes(out_dir, volumes, model, cfg, info.channels, k, overlays, probabilities, written, skipped,
                             info.classes if dicom_seg else None)
        if skipped:
            names = ", ".join(p.name for p, _ in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
            err = DataError(f"{len(skipped)} of {len(paths) + len(volumes)} images could not be read and were skipped ({names}); "
                            f"the other {len(written)} mask{'' if len(written) == 1 else 's'} "
                            f"{'is' if len(written) == 1 else 'are'} in {out_dir}: re-export or remove the skipped "
                            f"files and predict them into a new folder")
            err.written, err.skipped = written, [str(p) for p, _ in skipped]  # type: ignore[attr-defined]
            raise err
    return written


def _predict_volumes(out_dir: Path, volumes: list[Path], model: Any, cfg: RunConfig, channels: int, k: int,
                     overlays: bool, probabilities: bool, written: list[str], skipped: list[tuple[Path, str]],
                     seg_classes: list[str] | tuple[str, ...] | None = None) -> None:
    """:func:`predict_folder` for NIfTI/DICOM volumes: each slice along the run's ``data.slice_axis``
    is fed to the model exactly as training fed it (the run's window / normalisation, resize and
    ``data.intensity``), the labels are stacked back into a volume on the input's voxel grid and
    written as NIfTI (:func:`scarce.data.volumes.write_label_volume`: a NIfTI input's affine and
    header, a DICOM input's position and orientation). ``probabilities``: p·255 as uint8 volumes in
    ``probabilities/``; overlays are drawn for 2D images only. ``seg_classes`` (class names): a DICOM
    input also gets ``<stem>_seg.dcm`` (DICOM-SEG, :func:`scarce.data.volumes.dicom_seg_bytes`)."""
    import warnings

    import numpy as np
    import torch
    from PIL import Image

    from scarce.data.folder import pil_8bit
    from scarce.data.load import image_input
    from scarce.data.types import content_size
    from scarce.data.volumes import (label_volume_name, read_header, resolve_axis, take_slice, volume_options,
                                     volume_uint8, write_label_volume)
    from scarce.evaluation.evaluate import predict_probs, upsampled_labels, upsampled_probs

    if overlays:
        warnings.warn(f"overlays are drawn for 2D images only; the {len(volumes)} volume(s) get masks "
                      f"{'and probabilities ' if probabilities else ''}only")
    opts = volume_options(cfg.data)
    for v in volumes:
        try:
            header = read_header(v)
            axis = resolve_axis(header, opts.slice_axis)
            vol = volume_uint8(v, opts.window, opts.normalise)  # decoded once, as for training
        except DataError as e:
            warnings.warn(f"skipped {v}: not a readable volume ({e}); the others go on")
            skipped.append((v, str(e)))
            continue
        labels = np.zeros(header.shape, np.uint8)
        planes = (1 if k == 2 else k - 1) if probabilities else 0
        prob_vols = [np.zeros(header.shape, np.uint8) for _ in range(planes)]
        n = header.shape[axis]
        for start in range(0, n, 16):  # 16 slices per forward pass
            idx = list(range(start, min(n, start + 16)))
            slices = [take_slice(vol, axis, i) for i in idx]
            x = torch.cat([image_input(pil_8bit(Image.fromarray(sl, "L"), channels), cfg.data.size,
                                       cfg.data.intensity, cfg.data.aspect) for sl in slices])
            probs = predict_probs(model, x, tta=cfg.eval.tta)  # B×K×S×S
            for j, (i, sl) in enumerate(zip(idx, slices)):
                h, w = sl.shape
                ch, cw = content_size(h, w, cfg.data.size, cfg.data.aspect)
                p = probs[j][:, :ch, :cw]
                where: list[Any] = [slice(None)] * 3
                where[axis] = i
                labels[tuple(where)] = upsampled_labels(p, (h, w), cfg.eval.threshold)
                if planes:
                    up = upsampled_probs(p, (h, w)).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
                    for c in range(planes):
                        prob_vols[c][tuple(where)] = up[c + 1]
        dest = out_dir / label_volume_name(v)
        write_label_volume(v, labels, dest)
        written.append(str(dest))
        for c, pv in enumerate(prob_vols):
            name = label_volume_name(v, "" if k == 2 else f"_class{c + 1}")
            write_label_volume(v, pv, out_dir / "probabilities" / name)
        if seg_classes is not None and header.kind == "dicom":
            from scarce.data.volumes import dicom_seg_bytes, volume_stem
            from scarce.utils.io import atomic_write_bytes

            seg = out_dir / f"{volume_stem(v)}_seg.dcm"
            atomic_write_bytes(seg, dicom_seg_bytes(v, labels, list(seg_classes), _version()))
            written.append(str(seg))


def _version() -> str:
    """scarce's installed version (DICOM-SEG's software version), ``0`` when not installed."""
    from importlib import metadata

    try:
        return metadata.version("scarce")
    except metadata.PackageNotFoundError:
        return "0"


def _predict_into(out_dir: Path, paths: list[Path], model: Any, cfg: RunConfig, channels: int, k: int,
                  overlays: bool, probabilities: bool, written: list[str], skipped: list[tuple[Path, str]]) -> None:
    """:func:`predict_folder`'s loop: one mask (+ overlay, probabilities) per readable image."""
    import warnings

    import numpy as np
    import torch

    from scarce.data.folder import read_image_pil
    from scarce.data.load import image_input
    from scarce.data.types import content_size
    from scarce.evaluation.evaluate import (overlay_image, predict_probs, save_mask_png, upsampled_labels,
                                            upsampled_probs)
    from scarce.utils.io import atomic_save_png

    for p in paths:
        try:
            img = read_image_pil(p, channels=channels)
        except DataError as e:  # the data layer's text speaks of pairs; here there is only an image
            cause = e.__context__ or e
            reason = f"{type(cause).__name__}: {cause}" if cause is not e else str(e)
            warnings.warn(f"skipped {p}: not a readable image ({reason}); the other images go on")
            skipped.append((p, reason))
            continue
        w, h = img.size
        x = image_input(img, cfg.data.size, cfg.data.intensity, cfg.data.aspect)  # = training's input for this file
        ch, cw = content_size(h, w, cfg.data.size, cfg.data.aspect)  # data.aspect=pad: cut the padding off
        probs = predict_probs(model, x, tta=cfg.eval.tta)[0][:, :ch, :cw]  # K×S×S, flip TTA when eval.tta=flip
        lab = upsampled_labels(probs, (h, w), cfg.eval.threshold)  # H×W uint8 ids
        dest_png = out_dir / f"{p.stem}.png"
        save_mask_png(dest_png, lab, k)
        written.append(str(dest_png))
        if overlays:
            arr = np.array(img, dtype=np.uint8)  # a writable copy for torch
            full = torch.from_numpy(arr[..., None] if arr.ndim == 2 else arr).permute(2, 0, 1).float().div(255)
            atomic_save_png(out_dir / "overlays" / f"{p.stem}.png",
                            overlay_image(full, np.zeros_like(lab), lab))  # no ground truth: red contour only
        if probabilities:
            up = upsampled_probs(probs, (h, w)).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
            if k == 2:
                atomic_save_png(out_dir / "probabilities" / f"{p.stem}.png", up[1])
            else:
                for c in range(1, k):
                    atomic_save_png(out_dir / "probabilities" / f"{p.stem}_class{c}.png", up[c])


GAN_GALLERY = "gan_gallery.png"


def pretrain_gan_run(cfg: RunConfig, vanilla: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """``scarce gan pretrain``: pretrain the mask→image GAN of ``cfg.method`` (e2eaug/separate
    settings) on the training pairs of the current split, into the GAN cache that the methods
    reuse (``method.gan_cache``, default ``<out>/../.gan_cache``), plus a gallery in ``cfg.out``
    (which must be new, empty or hold only an earlier gallery unless ``overwrite``). The gallery is
    the method's own (:func:`~scarce.methods.gan.pretrain.mask_gallery`: its mask augmentation
    options and seed; ``method.gallery`` rows, 8 when that is 0)."""
    from scarce.data.load import prepare_run_data
    from scarce.methods.gan.pretrain import _gan_config, build_generator, gan_cache_dir, mask_gallery, pretrain_gan
    from scarce.utils.paths import check_output_folder

    check_output_folder(cfg.out, overwrite=overwrite, what="GAN output folder", command="scarce gan pretrain",
                        previous=lambda d: all(e.name in (GAN_GALLERY, ".scarce") for e in d.iterdir()))

    if cfg.method.get("name") not in ("e2eaug", "separate"):
        cfg.method = {"name": "e2eaug", **{k: v for k, v in cfg.method.items() if k != "name"}}
    from scarce.validate import validate_config

    validate_config(cfg)  # ranges, size vs stride, device, method keys: before any work or file
    gc, searchable = _gan_config(cfg)
    searchable = searchable and not vanilla
    data = prepare_run_data(cfg.data, seed=cfg.train.seed)
    out = Path(cfg.out)
    res = pretrain_gan(cfg, data, out=gan_cache_dir(gc.gan_cache, out), searchable=searchable,
                       progress=cfg.train.progress)
    gen = build_generator(gc, data.train.num_classes, int(data.train.images.shape[1]), cfg.data.size, searchable)
    gen.load_state_dict(res.generator)
    from scarce.utils.paths import write_marker

    write_marker(out, "scarce gan pretrain")
    mask_gallery(out / GAN_GALLERY, gc, gen, data.train, cfg.train.seed, rows=gc.gallery or 8)
    return {"checkpoint": str(res.path) if res.path else None, "cached": res.cached, "losses": res.losses,
            "gallery": str(out / GAN_GALLERY)}


SUGGEST = "scarce suggest"


def suggest_images(dataset: str | os.PathLike[str], n: int, out: str | os.PathLike[str], *,
                   run: str | os.PathLike[str] | None = None, strategy: str = "coreset",
                   exclude_labelled: bool = False, labelled: str | os.PathLike[str] | None = None,
                   seed: int | None = None, size: int | None = None, data_root: str | None = None,
                   overwrite: bool = False, threads: int = 0) -> dict[str, Any]:
    """``scarce suggest``: rank the images of ``dataset`` worth annotating next and write the ``n``
    best as a CSV (``stem, score, why``; :mod:`scarce.suggest`) to the file ``out``.

    ``run`` (a finished run folder): its segmenter for the model strategies, and its ``data.size``
    / ``aspect`` / ``intensity`` and split seed; on the run's own dataset, ``exclude_labelled``
    drops its training and validation images (matched by content on another dataset).
    ``labelled``: a file of stems already annotated (split.json, a CSV with a ``stem`` column, or
    one stem per line), always dropped; ``coreset`` measures coverage from them. ``seed``: the
    nested split whose validation and test images are never suggested, and the strategy's ties
    (default: the run's split seed, else 0). ``threads`` > 0 sets torch's threads. The
    destination is checked before any work; the dataset is never written."""
    import time

    import torch

    from scarce import suggest as S
    from scarce.data.identity import file_digest, same_folder
    from scarce.data.load import resolve_dataset
    from scarce.utils.io import atomic_write_text
    from scarce.utils.paths import check_output_file

    dest = check_output_file(out, overwrite, what="suggestion file", command=SUGGEST,
                             previous=S.is_suggestions_file)
    spec = S.STRATEGIES.get(strategy)  # unknown: did-you-mean, before any work
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"-n must be an integer >= 1 (images to suggest), got {n!r}")
    if spec.needs_model and run is None:
        raise S.needs_model_error(spec.name)
    if exclude_labelled and run is None and labelled is None:
        raise ConfigError("--exclude-labelled drops the labelled images of a run: pass --run RUN (or --labelled FILE)")
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    cfg = load_run_config(run, sets=[f"data.root={data_root}"] if data_root else None) if run is not None else None
    if cfg is not None and size is not None and int(size) != int(cfg.data.size):
        raise ConfigError(f"--size {size} differs from the run's data.size={cfg.data.size}, the size its model "
                          f"was trained at; leave --size out with --run")
    root = data_root or (cfg.data.root if cfg is not None else None)
    _, folder = resolve_dataset(str(dataset), root)
    run_folder, missing = None, None
    if cfg is not None:
        try:
            run_folder = resolve_dataset(cfg.data.dataset, cfg.data.root or root, cfg.data.num_classes,
                                         cfg.data.synthetic_n, cfg.data.cache_dir)[1]
        except DataError as e:  # only needed to match the run's labelled images
            missing = e
    if exclude_labelled and missing is not None:
        raise missing
    same = run_folder is not None and same_folder(folder, run_folder)
    split_seed = int(seed) if seed is not None else (
        (cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed) if same and cfg else 0)
    held = S.read_stems(labelled) if labelled is not None else []
    run_held: list[str] = []
    if exclude_labelled and run is not None:
        from scarce.data.splits import Split

        split = Split.load(RunPaths(run).split_file)
        run_held = [*split.train, *split.val]
    cands = S.dataset_candidates(dataset, split_seed, root, cfg.data.val_fraction if cfg else 0.2,
                                 labelled=[*held, *(run_held if same else [])])
    if run_held and not same:  # the run trained on another folder: its images, matched by content
        from scarce.data.folder import scan_folder

        r_index = scan_folder(run_folder)
        digests = {file_digest(r_index.images[s]) for s in run_held if s in r_index.images}
        cands.drop(lambda _s, p: file_digest(p) not in digests, "already labelled (same content)")
    info, index = cands.info, cands.index
    d = cfg.data if cfg is not None else None
    px, aspect, intensity = (d.size, d.aspect, d.intensity) if d is not None else (int(size or 128), "squash", "none")
    cache_dir = d.cache_dir if d is not None else None
    model = None
    if cfg is not None and spec.needs_model:
        model = load_segmenter(run, cfg)
        if int(model.in_channels) != int(info.channels):
            raise ConfigError(f"the run's model takes {model.in_channels}-channel images, {str(dataset)!r} has "
                              f"{info.channels}-channel ones; suggest with a run trained on such images")
    centre_files = [f for s in dict.fromkeys([*held, *(run_held if same else [])])
                    if (f := index.images.get(s) or index.unlabelled.get(s)) is not None]
    centres = (S.decode_images(centre_files, px, info.channels, info.num_classes, intensity, aspect, cache_dir)
               if centre_files and spec.name == "coreset" else None)
    paths = list(cands.paths)
    pool = S.Pool(cands.stems, lambda: S.decode_images(paths, px, info.channels, info.num_classes, intensity,
                                                       aspect, cache_dir), split_seed, model=model, labelled=centres)
    start = time.perf_counter()
    rows = S.suggest(pool, n, spec.name)
    seconds = dict(pool.seconds)
    seconds["rank"] = time.perf_counter() - start - sum(seconds.values())  # the strategy itself
    atomic_write_text(dest, S.suggestions_csv(rows))
    return {"out": str(dest), "strategy": spec.name, "suggested": len(rows), "candidates": len(pool),
            "left_out": cands.left_out, "seed": split_seed, "size": px,
            "seconds": {k: round(v, 3) for k, v in seconds.items()}}

