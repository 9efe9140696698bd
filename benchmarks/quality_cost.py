"""What a better segmenter costs: the ``cpu`` preset's U-Net vs the EfficientNet-Lite0 U-Net
per training iteration, per run, and at inference with and without flip TTA.

Why: the quality preset must fit ≤ 10 minutes of wall time per supervised run on 2 cores, and
flip TTA (``eval.tta=flip``) triples every forward pass of evaluation, validation and
``scarce predict``. This measures, side by side in one process:

* seconds per training iteration (forward + backward + optimizer step; batch ``--batch``,
  channels-last, the config's optimizer, BCE + soft Dice) of
  (a) the ``cpu`` preset's from-scratch U-Net (width 8, depth 4) at 128 px,
  (b–d) the U-Net on an ImageNet-pretrained EfficientNet-Lite0 encoder at 128 / 192 / 256 px,
  and the projected training time of a run of ``--iterations`` iterations (training steps
  only: validation, evaluation, data loading and augmentation are not included — the trainer's
  own overhead over a bare loop is ``benchmarks/train_throughput.py``'s ratio);
* inference images/s of :func:`scarce.evaluation.evaluate.predict_probs` (the function
  evaluation, validation and ``scarce predict`` call) with ``tta=none`` and ``tta=flip``.

Timing: after ``--warmup`` untimed steps, ``--rounds`` rounds each run one step of every
configuration in turn, so load from other processes on a shared machine hits all of them alike;
the table gives the median per configuration and the median over rounds of each step's ratio
to configuration (a) in the same round. Ratios are the robust numbers; absolute seconds move
with the machine's load (the 1-minute load average is printed before and after). Run it on an
otherwise idle machine: with ``--threads`` more than the idle cores, PyTorch's OpenMP threads
wait on each other while preempted, and a training step became ~9× slower (2 threads beside two
busy 1-core processes on 2 cores: 3.7 s vs 0.42 s with 1 thread) while inference barely
changed; the report then carries a warning line.

    python benchmarks/quality_cost.py --threads 2 --out docs/results/benchmarks/quality_cost.md
    python benchmarks/quality_cost.py --rounds 2 --sizes 128      # a quick look (< 1 minute)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _configs(sizes: list[int]) -> list[tuple[str, int, list[str]]]:
    """(row name, image size, ``--set`` overrides on the ``cpu`` preset) of every measured net."""
    rows = [("cpu preset U-Net w8 (scratch)", 128, [])]
    for s in sizes:
        rows.append((f"EffNet-Lite0 U-Net {s} px", s, ["model.encoder=efficientnet_lite0"]))
    return rows


class Bench:
    """One configuration: its network, optimizer, loss and fixed random batches."""

    def __init__(self, name: str, size: int, sets: list[str], args: argparse.Namespace, device: torch.device):
        from scarce.config import load_config
        from scarce.losses import get_loss
        from scarce.engine.optim import make_optimizer
        from scarce.models import count_parameters, model_from_config, segmenter_param_groups

        self.name, self.size = name, size
        cfg = load_config(preset="cpu", sets=[*sets, f"data.size={size}", f"train.batch_size={args.batch}"])
        torch.manual_seed(0)
        self.model = model_from_config(cfg.model, in_channels=3, num_classes=2).to(device)
        cl = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=cl)
        self.params = count_parameters(self.model)
        o = cfg.train.optim
        self.opt = make_optimizer(segmenter_param_groups(self.model, o.lr, o.encoder_lr_mult), o)
        self.loss = get_loss("bce_dice")
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(args.batch, 3, size, size, generator=g).to(device).contiguous(memory_format=cl)
        self.y = (torch.rand(args.batch, size, size, generator=g) > 0.5).long().to(device)
        self.xi = torch.rand(args.infer_images, 3, size, size, generator=g)
        self.infer_batch = args.infer_batch
        self.device = device

    def train_step(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()

    def infer(self, tta: str) -> None:
        from scarce.evaluation.evaluate import predict_probs

        predict_probs(self.model, self.xi, batch_size=self.infer_batch, device=self.device, tta=tta)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _interleaved(benches: list[Bench], fns: list[Callable[[Bench], None]], warmup: int, rounds: int,
                 device: torch.device) -> list[list[list[float]]]:
    """times[b][f][r]: seconds of ``fns[f](benches[b])`` in round r, all (b, f) run in turn each round."""
    for _ in range(warmup):
        for b in benches:
            for f in fns:
                f(b)
    times = [[[] for _ in fns] for _ in benches]
    for _ in range(rounds):
        for i, b in enumerate(benches):
            for j, f in enumerate(fns):
                times[i][j].append(_timed(lambda: f(b), device))
    return times


def _ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of the per-round ratio (same round = same load)."""
    return statistics.median(a / b for a, b in zip(num, den))


def _fmt_min(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def run(args: argparse.Namespace) -> str:
    """Measure and return the markdown report (also printed)."""
    device = torch.device(args.device)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    benches = [Bench(n, s, sets, args, device) for n, s, sets in _configs(args.sizes)]
    t0 = time.perf_counter()
    train = _interleaved(benches, [Bench.train_step], args.warmup, args.rounds, device)
    infer = _interleaved(benches, [lambda b: b.infer("none"), lambda b: b.infer("flip")],
                         1, args.infer_rounds, device)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    base = train[0][0]
    its = args.iterations
    lines = [
        "# Quality vs cost: cpu-preset U-Net vs EfficientNet-Lite0 U-Net, flip TTA",
        "",
        "`" + " ".join(["python benchmarks/quality_cost.py", *args.argv]) + "`",
        "",
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs; 1-min load average {load0:.2f} before, {load1:.2f} after "
        f"({wall:.0f} s of timing). Training: batch {args.batch}, {args.warmup} warm-up steps, "
        f"median of {args.rounds} interleaved rounds; ratios = median per-round ratio to row (a).",
        "Projected run time = s/iteration × iterations: training steps only (no validation, "
        "evaluation, data loading or augmentation).",
        *([f"**Warning**: other processes were busy (load average {load0:.2f} on {os.cpu_count()} CPUs, "
           f"{torch.get_num_threads()} thread(s) here): absolute times are inflated; ratios measured side by "
           f"side still hold."]
          if load0 > (os.cpu_count() or 1) - torch.get_num_threads() + 0.5 else []),
        "",
        "| net | px | params | s / iteration | × (a) | " + " | ".join(f"{n} its" for n in its) + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in its) + " |",
    ]
    for k, (b, t) in enumerate(zip(benches, train)):
        s = statistics.median(t[0])
        tag = "(" + "abcdefgh"[k] + ") " if k < 8 else ""
        lines.append(f"| {tag}{b.name} | {b.size} | {b.params:,} | {s:.3f} | {_ratio(t[0], base):.2f} | "
                     + " | ".join(_fmt_min(s * n) for n in its) + " |")
    lines += [
        "",
        f"Inference (`predict_probs`, {args.infer_images} images in batches of {args.infer_batch}, "
        f"median of {args.infer_rounds} interleaved rounds):",
        "",
        "| net | px | images/s, tta=none | images/s, tta=flip | flip ÷ none time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for b, t in zip(benches, infer):
        none_s, flip_s = statistics.median(t[0]), statistics.median(t[1])
        lines.append(f"| {b.name} | {b.size} | {args.infer_images / none_s:.1f} | {args.infer_images / flip_s:.1f} | "
                     f"{_ratio(t[1], t[0]):.2f} |")
    return emit(lines, args.out)


def emit(lines: list[str], out: str | None) -> str:
    """Print the table and, with ``out``, write it atomically (the benchmarks' one output path)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        from scarce.utils.io import atomic_write_text

        atomic_write_text(out, text)
        print(f"written: {out}")
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0 = PyTorch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 256],
                   help="image sizes of the EfficientNet-Lite0 U-Net rows")
    p.add_argument("--batch", type=int, default=8, help="training batch size (the cpu preset's)")
    p.add_argument("--iterations", nargs="+", type=int, default=[400, 800],
                   help="run lengths to project (400 = the cpu preset)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6, help="timed training steps per configuration")
    p.add_argument("--infer-images", type=int, default=16)
    p.add_argument("--infer-batch", type=int, default=16, help="predict_probs batch size (evaluation's default)")
    p.add_argument("--infer-rounds", type=int, default=3)
    p.add_argument("--out", help="also write the markdown report here (e.g. docs/results/benchmarks/quality_cost.md)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
