"""Check a whole resolved :class:`~scarce.config.RunConfig` before anything is created.

Why: a value that only fails inside the training loop (``train.batch_size=0`` → a ``torch.cat``
error, ``train.val_every=0`` → ZeroDivisionError, ``data.size`` not a multiple of the model's
stride, ``train.device=cuda`` without CUDA) used to crash after the run folder already held
``config.yaml``/``split.json``/``tb/`` — a traceback, and a corrected rerun refused as "a
different config". Every check here raises a :class:`~scarce.config.ConfigError` naming the key
and the fix (the CLI prints it as one line, exit 2), and none of them writes anything.

Layer: beside :mod:`scarce.methods` (it builds the model once to read its stride and resolves the
method's own config); imported by :mod:`scarce.api` and :mod:`scarce.experiments`.
"""
from __future__ import annotations

import math
from typing import Any

from scarce.config import ConfigError, RunConfig, to_dict

_STRIDES: dict[str, int] = {}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _need_int(key: str, v: Any, low: int, example: Any) -> None:
    if not _is_int(v) or v < low:
        raise ConfigError(f"config key {key!r} must be an integer >= {low}, got {v!r} (e.g. --set {key}={example})")


def _need_num(key: str, v: Any, low: float, high: float | None, example: Any, *, low_open: bool = False,
              high_open: bool = True) -> None:
    ok = _is_num(v)
    if ok:
        f = float(v)
        ok = (f > low if low_open else f >= low) and (high is None or (f < high if high_open else f <= high))
    if not ok:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open else ']'}" if high is not None else "∞)"
        raise ConfigError(f"config key {key!r} must be a number in {lo}, {hi}, got {v!r} (e.g. --set {key}={example})")


def model_stride(model_cfg: Any) -> int:
    """The stride of the network ``model_cfg`` (a :class:`~scarce.config.ModelConfig`) builds:
    inputs must be multiples of it. The network is built once (3-channel, binary: the stride does
    not depend on either) with the global RNG state preserved, and the answer cached per config;
    a key the model rejects (e.g. ``model.depth=0``) becomes a ConfigError."""
    key = repr(sorted(to_dict(model_cfg).items()))
    if key not in _STRIDES:
        import inspect

        import torch

        from scarce.models import model_from_config

        # no pretrained weights are needed for the stride (and loading them would cost seconds)
        kw = {"pretrained": False} if "pretrained" in inspect.signature(model_from_config).parameters else {}
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                model = model_from_config(model_cfg, in_channels=3, num_classes=2, **kw)
        except (ValueError, TypeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"config section 'model' does not build a {model_cfg.name!r} network: {e}") from None
        _STRIDES[key] = int(getattr(model, "stride", 1) or 1)
    return _STRIDES[key]


def _check_schedule(t: Any) -> None:
    """``train.schedule`` / ``warmup`` / ``poly_power`` / ``ema`` of a :class:`~scarce.config.TrainConfig`
    (``train.iterations`` already checked)."""
    from scarce.engine.optim import SCHEDULES
    from scarce.registry import look_up

    name = look_up(str(t.schedule).lower(), SCHEDULES, "learning-rate schedule (train.schedule)")
    _need_int("train.warmup", t.warmup, 0, max(1, t.iterations // 10))
    if t.warmup >= t.iterations:
        raise ConfigError(f"config key 'train.warmup' is {t.warmup}, not below train.iterations={t.iterations}; "
                          f"use fewer warmup iterations (e.g. --set train.warmup={t.iterations // 10})")
    if t.warmup and name == "plateau":
        raise ConfigError("config key 'train.warmup' needs a per-iteration schedule, but train.schedule is "
                          "'plateau'; use e.g. --set train.schedule=cosine, or --set train.warmup=0")
    if t.warmup == 1 and name == "onecycle":
        raise ConfigError("config key 'train.warmup' is 1, too short for train.schedule=onecycle (its rise needs "
                          "at least 2 iterations); use 0 (its default: 30 % of train.iterations) or >= 2")
    _need_num("train.poly_power", t.poly_power, 0.0, None, 0.9, low_open=True)
    _need_num("train.ema", t.ema, 0.0, 1.0, 0.99)


def _unlabelled_picks_tests(cfg: RunConfig) -> bool:
    """True when ``data.unlabelled`` matters to a run of any method: it names another registered
    dataset that is one of the run's test or ``eval.monitor`` sets (by default, its OOD sets),
    whose test part alone is then scored (:func:`scarce.data.load.unlabelled_datasets`), so a
    supervised row of a multi-domain grid is scored on the same images as its semi-supervised
    rows. A count, the run's own dataset or a folder of images changes nothing for it."""
    from pathlib import Path

    from scarce.data.registry import DATASETS

    d = cfg.data
    spec = d.unlabelled
    entries = [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, (list, tuple)) else []
    own = str(d.dataset)
    registered = own in DATASETS and not Path(own).is_dir()
    tests = list(d.test_sets) if d.test_sets is not None else list(DATASETS.get(own).ood) if registered else []
    wanted = {str(t) for t in [*tests, *(cfg.eval.monitor or [])]}
    bases = {e.strip().partition(":")[0] for e in entries if isinstance(e, str)}
    return any(b != own and b in DATASETS and not Path(b).is_dir() and b in wanted for b in bases)


def validate_config(cfg: RunConfig, training: bool = True) -> None:
    """Raise a ConfigError for the first value of ``cfg`` that cannot work (ranges, the data size
    vs the model stride, the device, the method's own keys, the optimizer and loss names).
    ``training=False`` checks only what inference uses (data.size, model, eval.*)."""
    d, t, e = cfg.data, cfg.train, cfg.eval
    # --- data
    _need_int("data.size", d.size, 1, 128)
    if not (_is_int(d.budget) or d.budget == "all"):
        raise ConfigError(f"config key 'data.budget' must be an integer (labelled images) or 'all' (every labelled "
                          f"image outside the test part; 0 means the same), got {d.budget!r}")
    if training:
        _need_num("data.val_fraction", d.val_fraction, 0.0, 1.0, 0.2)
        _need_int("data.synthetic_n", d.synthetic_n, 1, 160)
    if d.num_classes is not None:
        _need_int("data.num_classes", d.num_classes, 2, 2)
    from scarce.data.intensity import check_intensity

    check_intensity(d.intensity)  # a typo fails before a grid starts, not after loading data
    from scarce.data.volumes import volume_options

    volume_options(d)  # data.slice_axis, window, normalise, empty_slices (NIfTI/DICOM volumes)
    from scarce.data.cache import ASPECTS

    if d.aspect not in ASPECTS:
        raise ConfigError(f"config key 'data.aspect' must be one of {', '.join(ASPECTS)} (squash: resize to "
                          f"data.size × data.size; pad: keep the aspect ratio and pad), got {d.aspect!r}")
    if training:
        _need_int("data.patch", d.patch, 0, 96)
        if d.patch > d.size:
            raise ConfigError(f"config key 'data.patch' is {d.patch}, larger than data.size={d.size}: patches are cut "
                              f"from the data.size × data.size images; use at most {d.size} (0 = whole images)")
        _need_num("data.patch_foreground", d.patch_foreground, 0.0, 1.0, 0.33)
        from scarce.suggest import check_selection

        check_selection(d.selection)  # random | suggest:<strategy>, did-you-mean
        if d.selected is not None and (not isinstance(d.selected, (list, tuple)) or not d.selected
                                       or not all(isinstance(s, str) and s for s in d.selected)):
            raise ConfigError(f"config key 'data.selected' is a list of training image stems (written by "
                              f"data.selection), got {d.selected!r}; remove it to choose again")
    # --- eval
    _need_num("eval.threshold", e.threshold, 0.0, 1.0, 0.5, low_open=True)
    _need_num("eval.iou_threshold", e.iou_threshold, 0.0, 1.0, 0.65, high_open=False)
    _need_int("eval.overlays", e.overlays, 0, 6)
    if not isinstance(e.surface_metrics, bool):
        raise ConfigError(f"config key 'eval.surface_metrics' expects true or false, got {e.surface_metrics!r}")
    _need_num("eval.surface_tolerance", e.surface_tolerance, 0.0, None, 2)
    from scarce.evaluation.evaluate import check_tta

    check_tta(e.tta)  # none | flip, did-you-mean
    if not isinstance(e.monitor, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in e.monitor):
        raise ConfigError(f"config key 'eval.monitor' expects a list of test sets (as data.test_sets), e.g. "
                          f"--set eval.monitor=[cvc_clinicdb,ph2:test], got {e.monitor!r}")
    # --- train
    if training:
        _need_int("train.iterations", t.iterations, 1, 400)
        _need_int("train.batch_size", t.batch_size, 1, 8)
        _need_int("train.val_every", t.val_every, 1, 50)
        _need_int("train.log_every", t.log_every, 1, 20)
        _need_int("train.early_stop", t.early_stop, 0, 5)
        _need_int("train.plateau_patience", t.plateau_patience, 0, 3)
        _need_int("train.threads", t.threads, 0, 1)
        _need_num("train.budget_minutes", t.budget_minutes, 0.0, None, 10)  # 0 = off (scarce.engine.planner)
        if t.planned is not None and not isinstance(t.planned, dict):
            raise ConfigError(f"config key 'train.planned' is written by the planner ({{key: reason}}), got "
                              f"{t.planned!r}; remove it to plan again")
        _need_num("train.plateau_factor", t.plateau_factor, 0.0, 1.0, 0.5, low_open=True)
        _check_schedule(t)
        o = t.optim
        _need_num("train.optim.lr", o.lr, 0.0, None, 0.001, low_open=True)
        _need_num("train.optim.momentum", o.momentum, 0.0, 1.0, 0.9)
        _need_num("train.optim.weight_decay", o.weight_decay, 0.0, None, 0.0001)
        betas = tuple(o.betas) if isinstance(o.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(_is_num(b) and 0.0 <= float(b) < 1.0 for b in betas):
            raise ConfigError(f"config key 'train.optim.betas' must be two numbers in [0, 1), got {o.betas!r} "
                              "(e.g. --set train.optim.betas=[0.9,0.999])")
        from scarce.engine.optim import OPTIMIZERS
        from scarce.registry import look_up

        look_up(str(o.name).lower(), tuple(OPTIMIZERS.names()), "optimizer (train.optim.name)")
        two_pass = str(o.name).lower() in ("sam", "asam")
        if two_pass:
            look_up(str(o.base).lower(), tuple(n for n in OPTIMIZERS.names() if n not in ("sam", "asam")),
                    "base optimizer (train.optim.base)")
            _need_num("train.optim.rho", o.rho, 0.0, None, 0.05, low_open=True)
        if t.loss != "auto":
            from scarce.losses import LOSSES

            if t.loss not in LOSSES:
                look_up(str(t.loss), ("auto", *LOSSES.names()), "loss (train.loss)")
        from scarce.utils.seed import resolve_device

        from scarce.engine.precision import resolve_precision

        device = resolve_device(t.device)
        if cfg.preset == "gpu" and t.device == "auto" and device.type == "cpu":
            raise ConfigError("preset 'gpu' spends a GPU's budget (512 px, 4000 iterations) and no GPU was found; "
                              "use --preset quality on a CPU, or --set train.device=cpu to run it here anyway")
        precision = resolve_precision(t.precision, device)  # name, then what the device runs
        if precision == "fp16" and two_pass:
            raise ConfigError(f"train.precision=fp16 scales the loss with a GradScaler, which cannot drive "
                              f"train.optim.name={o.name!r}'s two-pass step; use train.precision=bf16 (or fp32)")
        from scarce.methods import method_spec

        spec = method_spec(cfg)  # unknown method / method key / type → did-you-mean
        if two_pass and not spec.cls.closure_step:
            from scarce.methods import load_builtin_methods

            ok = [n for n in load_builtin_methods().names() if load_builtin_methods().get(n).closure_step]
            raise ConfigError(f"train.optim.name={o.name!r} evaluates the loss twice per step; method {spec.name!r} "
                              f"computes it once. Methods that support it: {', '.join(ok)}")
        pool = d.unlabelled
        unset = pool is None or (isinstance(pool, str) and pool.strip().lower() in ("", "auto", "default"))
        if not unset and "unlabelled" not in spec.cls.streams and not _unlabelled_picks_tests(cfg):
            from scarce.methods import load_builtin_methods

            reg = load_builtin_methods()
            users = [n for n in reg.names() if "unlabelled" in reg.get(n).streams]
            example = "fixmatch" if "fixmatch" in users else users[0]
            raise ConfigError(f"config key 'data.unlabelled' is set ({d.unlabelled!r}), but method {spec.name!r} "
                              f"trains on labelled images only and would ignore it; methods that use unlabelled "
                              f"images: {', '.join(users)} (e.g. --set method.name={example}), "
                              f"or remove data.unlabelled")
        if d.patch and not getattr(spec.cls, "patches", True):
            raise ConfigError(f"method {spec.name!r} trains on whole images (its per-image data, e.g. scribbles or a "
                              f"generator's size, is not cut with the patch); remove data.patch (or set it to 0)")
        check_run = getattr(spec.cls, "check_run_config", None)  # a method's own rules (ctbct: data.size)
        if check_run is not None:
            check_run(cfg, spec.config)
    # --- model vs size (builds the network once; cached)
    stride = model_stride(cfg.model)
    if d.size % stride:
        lo = max(stride, d.size // stride * stride)
        hi = lo + stride
        raise ConfigError(f"config key 'data.size' is {d.size}, not a multiple of the stride {stride} of the "
                          f"{cfg.model.name!r} network; use a multiple of {stride}, "
                          f"e.g. --set data.size={lo} or {hi}")
    _need_int("eval.window", cfg.eval.window, 0, 0)
    if cfg.eval.window and cfg.eval.window % stride:
        lo = max(stride, cfg.eval.window // stride * stride)
        raise ConfigError(f"config key 'eval.window' is {cfg.eval.window}, not a multiple of the stride {stride} of the "
                          f"{cfg.model.name!r} network; use a multiple of {stride}, e.g. --set eval.window={lo}")
    if training and d.patch and d.patch % stride:
        lo = max(stride, d.patch // stride * stride)
        raise ConfigError(f"config key 'data.patch' is {d.patch}, not a multiple of the stride {stride} of the "
                          f"{cfg.model.name!r} network; use a multiple of {stride}, e.g. --set data.patch={lo}")
