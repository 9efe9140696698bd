"""Training / inference throughput of the segmentation models, and the Trainer's overhead.

Why: the CPU preset must train in minutes on 2 cores; this measures images/s for the default
nets (U-Net width 8, DeepLabV3 ResNet-18 width 16 OS16, channels-last as the trainer runs them) at 128 and 256 px so a regression in
a model or in the training loop shows up as a number. Fastest of the timed steps after warm-up
(as ``timeit``: on a shared machine the minimum is the least load-biased estimate).

    python benchmarks/train_throughput.py --threads 2          # < 3 minutes on 2 cores
    python benchmarks/train_throughput.py --sizes 128 --steps 5 --skip-ratio

Part 2 compares one step of :class:`scarce.engine.trainer.Trainer` (supervised method, no
augmentation) with a bare PyTorch loop doing the same work (same model, Adam, loss, batch
size): ratio = trainer s/step ÷ bare s/step (1.00 = no overhead).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

try:
    import scarce  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scarce.losses import get_loss
from scarce.models import count_parameters, create_model

MODELS: dict[str, dict[str, Any]] = {  # the nets the CPU preset / acceptance grids train
    "unet": {"width": 8, "depth": 4},
    "deeplabv3": {"width": 16, "backbone": "resnet18", "output_stride": 16},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], Any], warmup: int, steps: int, device: torch.device) -> float:
    """Fastest wall time (s) of ``fn`` over ``steps`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(name: str, size: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """images/s for one training step (batch ``train_batch``) and one inference pass (``infer_batch``)."""
    torch.manual_seed(0)
    model = create_model(name, args.in_channels, 2, **MODELS[name]).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = get_loss("bce_dice")
    cl = torch.channels_last
    x = torch.rand(args.train_batch, args.in_channels, size, size, device=device).contiguous(memory_format=cl)
    y = (torch.rand(args.train_batch, size, size, device=device) > 0.5).long()

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    xi = torch.rand(args.infer_batch, args.in_channels, size, size, device=device).contiguous(memory_format=cl)

    def infer_step() -> None:
        model.eval()
        with torch.inference_mode():
            model(xi)

    t_train = _best_time(train_step, args.warmup, args.steps, device)
    t_infer = _best_time(infer_step, args.warmup, args.steps, device)
    return {"model": name, "size": size, "params": count_parameters(model),
            "train_ips": args.train_batch / t_train, "train_s": t_train,
            "infer_ips": args.infer_batch / t_infer, "infer_s": t_infer}


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'model':<10}{'px':>5}{'params':>11}{'train img/s':>13}{'s/step':>8}{'infer img/s':>13}{'s/batch':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<10}{r['size']:>5}{r['params']:>11,}{r['train_ips']:>13.1f}{r['train_s']:>8.3f}"
              f"{r['infer_ips']:>13.1f}{r['infer_s']:>9.3f}")


# --------------------------------------------------------------------------- trainer overhead

def _bench_run_data(n: int, size: int, channels: int) -> Any:
    from scarce.data.types import DatasetInfo, RunData, SegData

    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, channels, size, size, generator=g)
    masks = (torch.rand(n, size, size, generator=g) > 0.5).long()

    def seg(name: str, k: int) -> SegData:
        return SegData(name, images[:k], masks[:k], [f"{name}{i}" for i in range(k)], 2)

    info = DatasetInfo(name="bench", task="synthetic", metric="dice", channels=channels, loss="bce_dice")
    return RunData(info=info, train=seg("train", n), val=seg("val", 2), tests={}, split=None)


def trainer_ratio(args: argparse.Namespace, device: torch.device) -> None:
    """Trainer s/step vs a bare loop (U-Net default, ``ratio_size`` px, batch ``train_batch``)."""
    try:
        from scarce.config import RunConfig
        from scarce.engine.trainer import Trainer
        from scarce.methods import method_spec
    except Exception as e:  # the trainer is developed in parallel
        print(f"\ntrainer not available yet ({type(e).__name__}: {e}); skipping the ratio")
        return
    size, bs, steps = args.ratio_size, args.train_batch, args.ratio_steps
    data = _bench_run_data(4 * bs, size, args.in_channels)
    cfg = RunConfig()
    cfg.model.name = "unet"
    cfg.train.batch_size = bs
    cfg.train.iterations = 10**9  # never reach the final validation inside the timed window
    cfg.train.val_every = 10**9
    cfg.train.log_every = 10**9
    cfg.train.progress = False
    cfg.train.loss = "bce_dice"
    cfg.train.device = str(device)
    if hasattr(cfg.train, "tensorboard"):
        cfg.train.tensorboard = False
    cfg.method = {"name": "supervised"}
    torch.manual_seed(0)
    model = create_model("unet", args.in_channels, 2, width=cfg.model.width, depth=cfg.model.depth).to(device)
    if cfg.train.channels_last:  # the trainer keeps model and batches channels-last: same work here
        model = model.to(memory_format=torch.channels_last)
    o = cfg.train.optim
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    loss_fn = get_loss("bce_dice")
    images, masks = data.train.images.to(device), data.train.masks.to(device)
    g = torch.Generator().manual_seed(0)

    def bare_step() -> None:
        """Bare loop: same model/optimizer/loss, random batches indexed from the same tensors."""
        idx = torch.randperm(len(images), generator=g)[:bs].to(device)
        model.train()
        opt.zero_grad(set_to_none=True)
        x = images[idx]
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss_fn(model(x), masks[idx]).backward()
        opt.step()

    def timed(fn: Callable[[], Any]) -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return (time.perf_counter() - t0) / steps

    # Interleave trainer and bare chunks and keep each one's fastest round, so load from other
    # processes on a shared machine biases neither side.
    t_trainer = t_bare = float("inf")
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(cfg, data, run_dir, method=method_spec(cfg))
            trainer.fit(max_steps=args.warmup)
            for _ in range(args.warmup):
                bare_step()
            for _ in range(args.ratio_rounds):
                t_trainer = min(t_trainer, timed(lambda: trainer.fit(max_steps=steps)))
                t_bare = min(t_bare, timed(lambda: [bare_step() for _ in range(steps)]))
    except Exception as e:  # API still moving: report, do not crash the throughput table
        print(f"\ntrainer ratio failed ({type(e).__name__}: {e}); skipping")
        return
    print(f"\nTrainer vs bare loop (unet w{cfg.model.width}, {size}px, batch {bs}, "
          f"{args.ratio_rounds} rounds × {steps} steps, fastest round):")
    print(f"  trainer {t_trainer:.3f} s/step   bare {t_bare:.3f} s/step   ratio {t_trainer / t_bare:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = PyTorch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--infer-batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (fastest reported)")
    p.add_argument("--ratio-size", type=int, default=128)
    p.add_argument("--ratio-steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--ratio-rounds", type=int, default=3)
    p.add_argument("--skip-ratio", action="store_true")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}  device {device}  threads {torch.get_num_threads()}  "
          f"train batch {args.train_batch}  infer batch {args.infer_batch}  "
          f"warmup {args.warmup}  timed steps {args.steps}\n")
    rows = [measure(m, s, args, device) for m in args.models for s in args.sizes]
    print_table(rows)
    if not args.skip_ratio:
        trainer_ratio(args, device)


if __name__ == "__main__":
    main()
