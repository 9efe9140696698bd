"""Optimisers, learning-rate schedules and weight averaging: the engine's registries.

Why a registry of optimiser factories (not an if-chain): ``train.optim.name`` comes from a config
file, so a typo fails with one did-you-mean line before a run starts
(:func:`scarce.validate.validate_config`), and an optimiser a later method needs (e.g. SAM's
two-pass step) is one ``@OPTIMIZERS.register`` away, not a trainer fork.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from scarce.config import OptimConfig
from scarce.registry import Registry, look_up

ParamsLike = list  # parameters or torch param-group dicts, filtered to requires_grad

OPTIMIZERS: Registry[Callable[[ParamsLike, OptimConfig], torch.optim.Optimizer]] = Registry("optimizer")
"""``train.optim.name`` → factory(params, optim_config) (checked before a run by
:func:`scarce.validate.validate_config`)."""


@OPTIMIZERS.register("adam")
def _adam(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                            **({"fused": True} if getattr(o, "fused", False) else {}))


@OPTIMIZERS.register("adamw")
def _adamw(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                             **({"fused": True} if getattr(o, "fused", False) else {}))


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al., ICLR 2021) and its adaptive variant ASAM
    (Kwon et al., ICML 2021) around any base optimiser.

    One step needs two gradients, so it is driven by a closure (``ctx.step(closure, opt)``):
    with the gradient g at θ already computed (the first evaluation), ε = ρ·g/‖g‖ (ASAM:
    ε = ρ·T²g/‖Tg‖ with T = |θ|, elementwise), θ ← θ + ε, the closure is evaluated again (its
    gradient g′ at θ + ε; ``ctx.step`` keeps BatchNorm running statistics fixed during that pass),
    θ ← θ − ε, and the base optimiser steps at θ with g′. ``param_groups`` are the base's, so lr
    schedules act on it; state_dict holds the base's state.
    """

    needs_closure = True

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False) -> None:
        if rho <= 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}")
        self.base, self.rho, self.adaptive = base, float(rho), bool(adaptive)
        self.param_groups = base.param_groups  # shared: schedulers and the base see one lr
        self.defaults = base.defaults
        self.state = base.state
        self._e: dict[torch.nn.Parameter, torch.Tensor] = {}

    @torch.no_grad()
    def _perturb(self) -> None:
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        scaled = [(p.abs() * p.grad if self.adaptive else p.grad) for p in params]
        norm = torch.norm(torch.stack([s.norm(2) for s in scaled]), 2) if scaled else torch.tensor(0.0)
        scale = self.rho / (norm + 1e-12)
        self._e = {}
        for p, s in zip(params, scaled):
            e = (p.abs() * s if self.adaptive else s) * scale
            p.add_(e)
            self._e[p] = e

    @torch.no_grad()
    def _restore(self) -> None:
        for p, e in self._e.items():
            p.sub_(e)
        self._e = {}

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("SAM takes two gradient evaluations per step: call ctx.step(closure, optimizer) "
                               "with a closure that computes the loss")
        self._perturb()
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            self._restore()
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state


def _sam(params: ParamsLike, o: OptimConfig, adaptive: bool) -> torch.optim.Optimizer:
    base_name = look_up(str(o.base).lower(), tuple(n for n in OPTIMIZERS.names() if n not in ("sam", "asam")),
                        "base optimizer (train.optim.base)")
    return SAM(OPTIMIZERS.get(base_name)(params, o), rho=o.rho, adaptive=adaptive)


@OPTIMIZERS.register("sam")
def _sam_plain(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return _sam(params, o, adaptive=False)


@OPTIMIZERS.register("asam")
def _asam(params: ParamsLike, o: OptimConfig) -> torch.optim.Optimizer:
    return _sam(params, o, adaptive=True)


def make_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], optim: OptimConfig
                   ) -> torch.optim.Optimizer:
    """The ``optim.name`` optimiser (:data:`OPTIMIZERS`); ``params`` are parameters or torch
    param-group dicts (a group's own ``lr`` overrides ``optim.lr``); frozen parameters are dropped."""
    name = look_up(optim.name.lower(), tuple(OPTIMIZERS.names()), "optimizer")
    items = list(params)
    if items and isinstance(items[0], dict):  # param groups (e.g. a lower encoder lr)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in items]
        chosen: ParamsLike = [g for g in groups if g["params"]]
    else:
        chosen = [p for p in items if p.requires_grad]
    return OPTIMIZERS.get(name)(chosen, optim)


SCHEDULES = ("plateau", "cosine", "onecycle", "poly")
"""Values of ``train.schedule`` (checked before a run by :func:`scarce.validate.validate_config`)."""


def lr_factor(schedule: str, step: int, iterations: int, warmup: int = 0, power: float = 0.9) -> float:
    """Multiplier of every param group's base learning rate for training step ``step`` (0-based)
    of ``iterations`` under ``cosine`` / ``poly``; one factor for all groups, so a lower encoder
    lr keeps its ratio. Warmup: step k < ``warmup`` uses (k + 1) / warmup (the warmup-th step
    reaches the full lr). Then, with progress p = (step − warmup) / (iterations − warmup) in
    [0, 1): ``cosine`` ½(1 + cos πp) (CosineAnnealingLR's curve to 0), ``poly`` (1 − p)^power."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, iterations - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "poly":
        return (1.0 - p) ** power
    raise ValueError(f"lr_factor: no per-iteration curve for schedule {schedule!r}")


def make_lr_scheduler(optimizer: torch.optim.Optimizer, train: Any) -> Any:
    """The ``train.schedule`` scheduler of one optimizer (``train`` = :class:`~scarce.config.TrainConfig`).

    ``plateau``: ReduceLROnPlateau (mode max, ``plateau_factor``/``plateau_patience``), stepped with
    each validation score. ``cosine``/``poly``: LambdaLR with :func:`lr_factor`; ``onecycle``:
    torch's OneCycleLR (max_lr = each group's lr, cosine rise over ``warmup`` iterations or its
    default 30 %, then cosine fall to max_lr / 25 / 1e4; the optimizer's momentum/betas are left
    as configured). All three are stepped once after every training step; their state_dicts are
    checkpointed (the lambdas are rebuilt from the config)."""
    name = look_up(str(train.schedule).lower(), SCHEDULES, "learning-rate schedule (train.schedule)")
    sched = torch.optim.lr_scheduler
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="max", factor=train.plateau_factor,
                                       patience=train.plateau_patience)
    total, warmup = int(train.iterations), int(train.warmup)
    if name == "onecycle":
        pct = warmup / total if warmup else 0.3
        return sched.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
                                pct_start=float(pct), cycle_momentum=False)
    power = float(train.poly_power)

    def factor(step: int) -> float:
        return lr_factor(name, step, total, warmup, power)

    return sched.LambdaLR(optimizer, factor)


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model`` (a deep copy, same device and memory format):
    after each ``update_parameters(model)`` every floating parameter and buffer (BatchNorm running
    statistics included) becomes decay × average + (1 − decay) × current; the first update copies.
    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied: torch's EMA function would
    truncate their average and freeze them."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema_float = get_ema_multi_avg_fn(float(decay))

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            ema_float(averaged, current, n_averaged)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


