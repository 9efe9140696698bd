"""Plan a run from the dataset's fingerprint and a wall-clock budget (``scarce plan``,
``train.budget_minutes``).

nnU-Net's idea for 2D, on a CPU budget. :func:`plan` is a pure function of a fingerprint
(:mod:`scarce.data.fingerprint`), the budget and ``step_seconds(side, batch)`` (the seconds one
training step takes on ``batch`` crops of ``side`` × ``side`` pixels; tests pass a fake, runs
:func:`measure_step_seconds`). It decides, each with a reason:

* ``data.aspect``: ``pad`` when the images' aspect ratios vary (10th to 90th percentile of W/H
  more than :data:`ASPECT_SPREAD` apart) or their median is far from square (beyond
  :data:`ASPECT_FAR`), else ``squash``.
* ``data.size`` S: the small objects must keep ``min_pixels_across`` pixels across (the side of
  a square of the same area) at S. The small object is the 10th percentile of the per-image
  object share of the fingerprint (of the smallest class when there are several); an object
  covering a share f of the image is √f·S pixels across when squashed and √f·S·√(short/long)
  when padded, so S = min_pixels_across / (√f·k), rounded up to a multiple of 32 (the encoder
  stride), at least ``min_size`` and at most the images' median longer side (never upsampled).
* ``data.patch`` and ``train.batch_size``: the largest patch (S itself = whole images, written
  as 0) and then the largest batch (8, else 4) whose step time leaves at least
  ``min_iterations`` iterations in the budget; if none does, S comes down by 32 at a time; if
  nothing fits at ``min_size``, the cheapest setting and the iterations that fit.
* ``train.iterations`` = the budget's training share (1 − ``overhead``: validation, data
  decoding and the final evaluation take the rest) / the step time, rounded down to a multiple
  of 10 and capped at ``max_iterations``; ``train.val_every`` = iterations / 16 (the preset's
  number of validations).

A key in ``fixed`` (the user's own value) is kept and the others are planned around it.
:func:`scarce.api.plan_config` plans a resolved :class:`~scarce.config.RunConfig` (the fingerprint of
its labelled split only, never its test masks) and :func:`apply_plan` writes the plan into it,
recording the planned keys and their reasons in ``train.planned``; a config with
``train.planned`` set is never planned again (:func:`adopt_saved_plan`: a resumed run keeps the
values in its ``config.yaml``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from scarce.config import ConfigError, RunConfig, from_dict, resolve_dict, to_dict

PLANNED_KEYS = ("data.aspect", "data.size", "data.patch", "train.batch_size", "train.iterations", "train.val_every")
"""The keys the planner decides, in the order it decides them."""
ASPECT_SPREAD = 1.15
"""``pad`` when the 90th percentile of W/H exceeds the 10th by more than this factor."""
ASPECT_FAR = 1.25
"""``pad`` when the median W/H (or H/W) exceeds this."""
MULTIPLE = 32
VALIDATIONS = 16
DEFAULT_BUDGET_MINUTES = 10.0
StepSeconds = Callable[[int, int], float]


@dataclass
class Choice:
    key: str
    value: Any
    reason: str


@dataclass
class Plan:
    budget_minutes: float
    choices: list[Choice] = field(default_factory=list)
    step_seconds: float | None = None
    """Measured (or given) seconds of one step at the chosen patch and batch."""

    def values(self) -> dict[str, Any]:
        return {c.key: c.value for c in self.choices}

    def sets(self) -> list[str]:
        """The ``--set`` options that repeat this plan without planning."""
        return [f"--set {c.key}={c.value}" for c in self.choices]

    def as_dict(self) -> dict[str, Any]:
        return {"budget_minutes": self.budget_minutes, "step_seconds": self.step_seconds,
                "choices": [{"key": c.key, "value": c.value, "reason": c.reason} for c in self.choices],
                "sets": " ".join(self.sets())}

    def lines(self) -> list[str]:
        width = max((len(f"{c.key}={c.value}") for c in self.choices), default=0)
        return [f"{f'{c.key}={c.value}':<{width}}  {c.reason}" for c in self.choices]


def _round_up(x: float, m: int = MULTIPLE) -> int:
    return int(math.ceil(x / m - 1e-9)) * m


def _round_down(x: float, m: int = MULTIPLE) -> int:
    return int(math.floor(x / m + 1e-9)) * m


def small_object_share(fp: Mapping[str, Any]) -> tuple[float | None, str]:
    """(share, what): the 10th percentile of the per-image object share, of the smallest class
    when the fingerprint has several (None when no mask holds an object)."""
    classes = {n: c["p10"] for n, c in (fp.get("classes") or {}).items() if c.get("p10")}
    if len(classes) > 1:
        name = min(classes, key=classes.get)
        return float(classes[name]), f"{name} region"
    p10 = (fp.get("object_fraction") or {}).get("p10")
    return (float(p10) if p10 else None), "object"


def plan(fingerprint: Mapping[str, Any], budget_minutes: float, step_seconds: StepSeconds, *,
         fixed: Mapping[str, Any] | None = None, min_pixels_across: float = 32.0, min_size: int = 128,
         max_size: int = 512, batches: Sequence[int] = (8, 4), min_iterations: int = 400,
         max_iterations: int = 4000, overhead: float = 0.2, patches: bool = True,
         multiple: int = MULTIPLE) -> Plan:
    """Choose :data:`PLANNED_KEYS` for ``fingerprint`` within ``budget_minutes`` (see the module
    docstring); ``fixed`` maps keys the user set to their values (kept, reason "set by you");
    ``patches=False`` (a method that trains on whole images) keeps ``data.patch`` at 0."""
    fixed = dict(fixed or {})
    if not budget_minutes or budget_minutes <= 0:
        raise ConfigError(f"the planner needs a budget in minutes > 0, got {budget_minutes!r} "
                          f"(e.g. --set train.budget_minutes=10)")
    out = Plan(float(budget_minutes))
    mine = "set by you"

    # --- aspect
    a = fingerprint.get("aspect") or {}
    med, p10, p90 = a.get("median") or 1.0, a.get("p10") or 1.0, a.get("p90") or 1.0
    spread, far = p90 / p10, max(med, 1.0 / med)
    if "data.aspect" in fixed:
        aspect, why = fixed["data.aspect"], mine
    elif spread > ASPECT_SPREAD or far > ASPECT_FAR:
        aspect = "pad"
        why = (f"aspect ratios (W/H) vary, 10th-90th percentile {p10:.2f}-{p90:.2f} (> {ASPECT_SPREAD}x apart)"
               if spread > ASPECT_SPREAD else f"images are far from square (median W/H {med:.2f})")
        why += ": keep each image's shape (longer side -> S, the rest padded)"
    else:
        aspect = "squash"
        why = (f"images are close to square and alike (median W/H {med:.2f}, 10th-90th percentile "
               f"{p10:.2f}-{p90:.2f}): squashing to S x S distorts little and wastes no pixels on padding")
    out.choices.append(Choice("data.aspect", aspect, why))
    k = math.sqrt(min(med, 1.0 / med)) if aspect == "pad" else 1.0  # pad: the short side is S·short/long

    # --- working resolution
    h, w = fingerprint.get("height") or {}, fingerprint.get("width") or {}
    native = max(float(h.get("median") or 0), float(w.get("median") or 0)) or float(max_size)
    cap = max(multiple, min(_round_down(max_size, multiple), _round_down(native, multiple) or multiple))
    share, what = small_object_share(fingerprint)
    if "data.size" in fixed:
        size, why = int(fixed["data.size"]), mine
    elif share is None:
        size = max(multiple, min(_round_up(min_size, multiple), cap))
        why = f"no mask holds an object: the smallest working resolution, {size}"
    else:
        need = min_pixels_across / (math.sqrt(share) * k)
        size = max(_round_up(min_size, multiple), _round_up(need, multiple))
        across = math.sqrt(share) * k
        why = (f"the 10th-percentile {what} ({100 * share:.1f} % of the image) is {across * min_size:.0f} px across "
               f"at {min_size}; keeping {min_pixels_across:g} px needs S >= {need:.0f}"
               + (" (padded)" if aspect == "pad" else ""))
        if size > cap:
            why += f"; capped at the images' median longer side, {cap} (never upsampled)"
            size = cap
        else:
            why += f" -> {size} (a multiple of {multiple})"
    planned_size = size

    # --- patch, batch, iterations within the budget
    train_s = budget_minutes * 60.0 * (1.0 - overhead)
    fixed_its = fixed.get("train.iterations")
    need_its = int(fixed_its) if fixed_its is not None else min_iterations
    if "train.batch_size" in fixed:
        batches = (int(fixed["train.batch_size"]),)

    def sides(s: int) -> list[int]:
        if "data.patch" in fixed:
            return [int(fixed["data.patch"]) or s]
        if not patches:
            return [s]
        low = max(_round_up(max(96, s // 2), multiple), multiple)
        return list(range(s, min(low, s) - 1, -multiple))

    cache: dict[tuple[int, int], float] = {}

    def cost(p: int, b: int) -> float:
        if (p, b) not in cache:
            cache[(p, b)] = float(step_seconds(p, b))
        return cache[(p, b)]

    def fits(p: int, b: int) -> bool:
        return cost(p, b) * need_its <= train_s

    found: tuple[int, int, int] | None = None  # (S, patch side, batch)
    sizes = [size] if "data.size" in fixed else list(range(size, min(_round_up(min_size, multiple), size) - 1, -multiple))
    sizes = [x for x in sizes if x >= int(fixed.get("data.patch") or 0)] or [size]  # a fixed patch fits in S
    for s in sizes:
        cands = sides(s)
        for b in batches:
            if not fits(cands[-1], b):  # even the smallest patch is too slow at this batch
                continue
            lo, hi = 0, len(cands) - 1  # binary search: the largest side that fits (cost grows with the side)
            while lo < hi:
                mid = (lo + hi) // 2
                if fits(cands[mid], b):
                    hi = mid
                else:
                    lo = mid + 1
            found = (s, cands[lo], b)
            break
        if found:
            break
    squeezed = found is None
    if found is None:  # nothing reaches the iterations: the cheapest setting, and what fits
        found = (sizes[-1], sides(sizes[-1])[-1], min(batches))
    s, p, b = found
    t = cost(p, b)
    out.step_seconds = t
    if s != planned_size and "data.size" not in fixed:
        why += (f"; lowered to {s}: at {planned_size} no patch >= {sides(planned_size)[-1]} px leaves "
                f"{need_its} iterations in the budget")
    out.choices.insert(1, Choice("data.size", s, why))  # after data.aspect

    budget_txt = f"{budget_minutes:g} min x {1 - overhead:.0%} for training steps = {train_s:.0f} s"
    if "data.patch" in fixed:
        why = mine
    elif not patches:
        why = "the method trains on whole images (no patches)"
    elif squeezed:
        why = f"the smallest patch considered at S={s}: no setting leaves {need_its} iterations in {budget_txt}"
    elif p == s:
        why = f"whole {s} x {s} images fit the budget ({t:.2f} s/step x {need_its} iterations <= {train_s:.0f} s)"
    else:
        why = (f"the largest multiple of {multiple} whose step ({t:.2f} s at batch {b}) leaves {need_its} "
               f"iterations in {budget_txt}; {p + multiple} px does not"
               if p + multiple <= s else f"the smallest patch considered ({p} px): the budget allows no more")
    out.choices.append(Choice("data.patch", int(fixed["data.patch"]) if "data.patch" in fixed else 0 if p == s else p,
                              why))
    if "train.batch_size" in fixed:
        why = mine
    elif squeezed:
        why = f"the smallest batch considered ({t:.2f} s/step at {p} px)"
    elif b == max(batches):
        why = f"the largest batch considered; its step is {t:.2f} s at {p} px"
    else:
        why = f"batch {max(batches)} leaves fewer than {need_its} iterations at any patch; {b} does ({t:.2f} s/step)"
    out.choices.append(Choice("train.batch_size", b, why))
    if fixed_its is not None:
        its = int(fixed_its)
        over = ", more than the budget's share for training" if t * its > train_s else ""
        why = mine + f" (~{t * its / 60:.1f} min of steps{over})"
    else:
        fit = int(train_s / t) if t > 0 else max_iterations
        its = max(10, min(max_iterations, fit // 10 * 10)) if fit >= 10 else max(1, fit)
        why = f"{budget_txt} / {t:.2f} s per step = {fit}"
        if fit > max_iterations:
            why += f", capped at {max_iterations}"
        elif squeezed:
            why += f": fewer than {min_iterations}, even with the cheapest setting; a larger budget would help"
        else:
            why += " (rounded down to a multiple of 10)"
    out.choices.append(Choice("train.iterations", its, why))
    if "train.val_every" in fixed:
        out.choices.append(Choice("train.val_every", int(fixed["train.val_every"]), mine))
    else:
        ve = max(1, its // VALIDATIONS)
        out.choices.append(Choice("train.val_every", ve, f"{VALIDATIONS} validations over {its} iterations"))
    return out


# ----------------------------------------------------------------------------- configs

def _get(d: Mapping[str, Any], key: str) -> Any:
    node: Any = d
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = value


def fixed_keys(cfg: RunConfig, given: Sequence[str] = ()) -> dict[str, Any]:
    """The planned keys the user decided: those named in ``given`` (e.g. the ``--set`` keys of the
    command line) and those whose value differs from the preset's; key → the user's value."""
    mine = to_dict(cfg)
    preset = resolve_dict(preset=cfg.preset)
    return {k: _get(mine, k) for k in PLANNED_KEYS if k in set(given) or _get(mine, k) != _get(preset, k)}


def labelled_stems(cfg: RunConfig) -> list[str]:
    """The run's labelled images (training + validation split): what the planner may look at."""
    from scarce.data.load import split_for_config

    split = split_for_config(cfg.data, seed=cfg.train.seed)
    return sorted({*split.train, *split.val})


def apply_plan(cfg: RunConfig, p: Plan) -> RunConfig:
    """``cfg`` with the plan's values, ``train.budget_minutes`` = the plan's budget and
    ``train.planned`` = {key: reason} (so it is not planned again)."""
    d = to_dict(cfg)
    for c in p.choices:
        _set(d, c.key, c.value)
    d["train"]["budget_minutes"] = p.budget_minutes
    d["train"]["planned"] = {c.key: c.reason for c in p.choices}
    return from_dict(RunConfig, d)


def needs_plan(cfg: RunConfig | Mapping[str, Any]) -> bool:
    """True when ``train.budget_minutes`` > 0 and the config was not planned yet."""
    t = to_dict(cfg)["train"] if isinstance(cfg, RunConfig) else (cfg.get("train") or {})
    budget = t.get("budget_minutes") or 0
    return isinstance(budget, (int, float)) and budget > 0 and t.get("planned") is None


def adopt_saved_plan(new: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` (a config dict) with the planned values of ``saved`` (a run's ``config.yaml``)
    when ``new`` still needs planning with the same budget and ``saved`` holds that plan: a
    resumed or re-checked run keeps its plan instead of measuring again. Else ``new`` unchanged."""
    out = dict(new)
    planned = (saved.get("train") or {}).get("planned")
    if not needs_plan(new) or not isinstance(planned, Mapping):
        return out
    if (saved.get("train") or {}).get("budget_minutes") != (new.get("train") or {}).get("budget_minutes"):
        return out
    import copy

    out = copy.deepcopy(out)
    for key in planned:
        if key in PLANNED_KEYS:
            _set(out, key, _get(saved, key))
    out["train"]["planned"] = dict(planned)
    return out


# ----------------------------------------------------------------------------- step time

def measure_step_seconds(cfg: RunConfig, in_channels: int, num_classes: int, *, steps: int = 3,
                         threads: int = 1) -> StepSeconds:
    """``step_seconds(side, batch)`` of ``cfg``'s segmenter: one warm-up and ``steps`` timed
    training steps (forward, BCE + soft Dice, backward, Adam) on random side × side inputs on
    ``train.device`` (on a CPU with ``threads`` torch threads), channels-last as
    ``train.channels_last``, in float32 (``train.precision=auto`` on a CPU); the fastest step
    (the least disturbed by other work on the machine, so plans repeat better), memoised per
    (side, batch). A supervised step: methods with more forward passes per step
    (semi-supervised, GAN) take longer. The global RNG state is left as it was."""
    memo: dict[tuple[int, int], float] = {}

    def step_seconds(side: int, batch: int) -> float:
        if (side, batch) in memo:
            return memo[(side, batch)]
        import time

        import torch
        import torch.nn.functional as F

        from scarce.models import model_from_config
        from scarce.utils.seed import resolve_device

        device = resolve_device(cfg.train.device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        old = torch.get_num_threads()
        torch.set_num_threads(max(1, threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = model_from_config(cfg.model, in_channels=in_channels, num_classes=num_classes,
                                          pretrained=False)
                model.to(device).train()
                cl = bool(getattr(cfg.train, "channels_last", False))
                if cl:
                    model = model.to(memory_format=torch.channels_last)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                x = torch.rand(batch, in_channels, side, side, device=device)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                outs = 1 if num_classes == 2 else num_classes
                y = (torch.rand(batch, outs, side, side, device=device) > 0.5).float()
                times = []
                for i in range(steps + 1):
                    t0 = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    logits = model(x)
                    logits = logits[:, :outs] if logits.shape[1] != outs else logits
                    prob = torch.sigmoid(logits)
                    dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
                    loss = F.binary_cross_entropy_with_logits(logits, y) + dice
                    loss.backward()
                    opt.step()
                    sync()
                    if i:
                        times.append(time.perf_counter() - t0)
        finally:
            torch.set_num_threads(old)
        memo[(side, batch)] = min(times)
        return memo[(side, batch)]

    return step_seconds
