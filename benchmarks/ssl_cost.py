"""Cost of the semi-supervised methods: seconds and peak memory per
training iteration of every method with an unlabelled stream, against ``supervised``, measured
side by side in one process (these machines are noisy: read the ratios).

Each method trains on the same tiny in-memory data (tests/tiny.py style: ``--n`` labelled +
``--n`` unlabelled images at ``--size`` px) with the chosen segmenter, batch ``--batch`` (+ the
same number of unlabelled images); after ``--warmup`` iterations, ``--iters`` iterations are timed
through the real Trainer step (no validation). Rounds interleave the methods so that a load
change hits them alike; the table reports the median per-round ratio to supervised. Peak memory
is measured apart, one fresh subprocess per method (a process's max RSS only grows, so methods
measured in one process would hide each other's peaks): the growth of the max resident set from
the built trainer to the end of ``--warmup`` + 1 iterations, i.e. what training adds on top of
the model and data (activations, gradients, optimiser state, the method's extra networks' work).

    python benchmarks/ssl_cost.py --threads 1 --encoder efficientnet_lite0 --size 128
    python benchmarks/ssl_cost.py --methods supervised fixmatch dim --optim sam   # SAM's 2× pass
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _trainer(name: str, args: argparse.Namespace, root: Path):
    from scarce.config import load_config
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec
    from tests.tiny import tiny_run_data

    sets = [f"out={root / name}", f"data.size={args.size}", f"train.batch_size={args.batch}",
            f"train.threads={args.threads}", "train.progress=false", "train.tensorboard=false",
            f"train.iterations={10 ** 6}", f"train.val_every={10 ** 6}", f"train.optim.name={args.optim}",
            f"method.name={name}"]
    if args.encoder != "none":
        sets += [f"model.encoder={args.encoder}", "model.encoder_weights=none"]
    else:
        sets += [f"model.width={args.width}"]
    cfg = load_config(sets=sets, preset="cpu")   # the measured recipe (not the product default)
    data = tiny_run_data(n_train=args.n, n_val=2, n_test=2, size=args.size, n_unlabelled=args.n)
    t = Trainer(cfg, data, root / name, method=method_spec(cfg))
    t.method.setup()
    return t


def _peak_child(name: str, args: argparse.Namespace) -> float:
    """Max-RSS growth (MiB) of training ``name`` for ``--warmup`` + 1 iterations in this fresh
    process, from the moment its trainer is built (Linux: ``ru_maxrss`` is in KiB)."""
    with tempfile.TemporaryDirectory(prefix="ssl_cost_mem_") as root:
        t = _trainer(name, args, Path(root))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(args.warmup + 1):
            t._train_step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def _peak(name: str, argv: list[str]) -> float:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--memory-of", name]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("PEAK_MIB ")]
    if out.returncode or not line:
        print(f"{name}: memory measurement FAILED\n{out.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return float(line[-1].split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["supervised", "mean_teacher", "fixmatch", "ctbct", "dct", "dim"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--optim", default="adam")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # internal: one method's peak
    argv = sys.argv[1:]
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(f"PEAK_MIB {_peak_child(args.memory_of, args):.1f}")
        return
    peak = {name: _peak(name, argv) for name in args.methods}   # one fresh process each, first
    root = Path(tempfile.mkdtemp(prefix="ssl_cost_"))
    trainers = {}
    for name in args.methods:
        t = trainers[name] = _trainer(name, args, root)
        for _ in range(args.warmup):
            t._train_step()
    per_round: dict[str, list[float]] = {n: [] for n in args.methods}
    for _ in range(args.rounds):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            for _ in range(args.iters):
                t._train_step()
            per_round[name].append((time.perf_counter() - t0) / args.iters)
    ref = per_round.get("supervised")
    print(f"# torch {torch.__version__}, threads {args.threads}, {args.size} px, batch {args.batch} (+{args.batch} "
          f"unlabelled), encoder {args.encoder}, optim {args.optim}; median of {args.rounds} interleaved rounds of "
          f"{args.iters} iterations")
    print("# peak MiB: growth of the max resident set over the first iterations, one fresh process per method")
    print(f"{'method':<14}{'s/iter':>9}{'× sup':>8}{'peak MiB':>10}{'× sup':>8}")
    for name in args.methods:
        s = statistics.median(per_round[name])
        ratio = statistics.median([a / b for a, b in zip(per_round[name], ref)]) if ref else float("nan")
        mem_ratio = peak[name] / peak["supervised"] if peak.get("supervised", 0) > 0 else float("nan")
        print(f"{name:<14}{s:>9.3f}{ratio:>8.2f}{peak[name]:>10.0f}{mem_ratio:>8.2f}")


if __name__ == "__main__":
    main()
