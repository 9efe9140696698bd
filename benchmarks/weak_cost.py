"""Cost of the weak-supervision methods.

1. Stage-A seconds per image (α-expansion, GCO v3, ≤ 5 cycles, 8-grid) at 128 and 256 px.
2. Wall time of one training epoch of ``grid_tr`` (Stage A amortised over its M epochs) relative
   to ``dense_gd`` and ``pce_gd`` on the same data and model (the paper: Grid-TR 1.3× Dense-GD).

Run: ``python benchmarks/weak_cost.py [--n 16] [--size 128] [--workers 1] [--threads 1]``.
Synthetic data (scarce.data.synthetic), synthetic scribbles at length 0.5, U-Net of the CPU preset.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def _segdata(n: int, size: int, seed: int, k: int = 2):
    from scarce.data.synthetic import synth_pair
    from scarce.data.types import SegData

    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for _ in range(n):
        im, m = synth_pair(rng, size, num_classes=k)
        imgs.append(torch.from_numpy(im).permute(2, 0, 1).float() / 255)
        masks.append(torch.from_numpy(m.astype(np.int64)))
    return SegData("syn", torch.stack(imgs), torch.stack(masks), [f"b{seed}_{i}" for i in range(n)], k)


def stage_a_seconds(size: int, k: int, reps: int, lam: float = 1.0) -> float:
    """Mean seconds of one Stage A (one image) with network-like probabilities."""
    from scipy import ndimage

    from scarce.data.scribbles import stem_rng, synthesize_scribbles
    from scarce.losses.weak import grid_affinities
    from scarce.methods.weak.stage_a import StageAJob, solve_stage_a

    data = _segdata(reps, size, 5, k)
    w = grid_affinities(data.images).numpy()
    rng = np.random.default_rng(0)
    times = []
    for i in range(reps):
        m = data.masks[i].numpy()
        onehot = np.eye(k)[m].transpose(2, 0, 1)
        noisy = ndimage.gaussian_filter(onehot * 3 + rng.normal(0, 1.5, onehot.shape), (0, 2, 2))
        probs = np.exp(noisy) / np.exp(noisy).sum(0)  # a plausible, imperfect network output
        seeds = synthesize_scribbles(m, 0.5, stem_rng(0, str(i)), k)
        job = StageAJob(probs, seeds, w[i], lam=lam, potts_weight=1.0, max_iter=5)
        t0 = time.perf_counter()
        solve_stage_a(job)
        times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def epoch_seconds(name: str, n: int, size: int, batch: int, epochs: int, workers: int) -> float:
    """Seconds per epoch of ``name`` after its one-off setup (model, bilateral grids), with the
    regulariser active (no PCE pretraining phase). grid_tr runs exactly one Stage A per
    ``epochs`` (= M) epochs, so its figure includes the amortised Stage A."""
    from scarce.config import load_config
    from scarce.data.types import DatasetInfo, RunData
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec

    info = DatasetInfo("syn", "synthetic", "dice")
    data = RunData(info, _segdata(n, size, 0), _segdata(2, size, 1), {}, None)
    spe = -(-n // batch)
    method = {"name": name, "scribbles": "synthetic:0.5"}
    if name != "pce_gd":
        method["pretrain_iters"] = 0
    if name == "grid_tr":
        method.update(epochs_per_stage=epochs, workers=workers)
    cfg = load_config({
        "train": {"iterations": 10 * spe * epochs, "batch_size": batch, "val_every": 10 ** 6, "progress": False,
                  "tensorboard": False},
        "data": {"size": size},
        "method": method,
    }, preset="cpu")
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, data, d, method=method_spec(cfg))
        tr.method.setup()
        # warm-up: one-off caches (dense_gd builds one bilateral grid per image on first use)
        for _ in range(spe):
            tr.method.training_step(tr.next_batch(), 0)
        if name == "grid_tr":
            tr.method.proposals = None  # force the next stage to start with a Stage A
        t0 = time.perf_counter()
        for s in range(spe * epochs):
            tr.method.train()
            tr.method.training_step(tr.next_batch(), s)
        return (time.perf_counter() - t0) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="training images")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5, help="M (grid_tr epochs per Stage A) = epochs timed")
    ap.add_argument("--workers", type=int, default=1, help="grid_tr Stage-A worker processes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="images timed per Stage-A size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    print("Stage A (alpha-expansion, <=5 cycles, 8-grid), seconds per image:")
    for size in (128, 256):
        for k in (2, 3):
            print(f"  {size:4d} px, K={k}: {stage_a_seconds(size, k, args.reps):.3f} s")

    print(f"\nEpoch wall time ({args.n} images, {args.size} px, batch {args.batch}, U-Net cpu preset, "
          f"M={args.epochs}, {args.threads} thread(s), stage-A workers={args.workers}):")
    secs = {}
    for name in ("pce_gd", "dense_gd", "grid_gd", "grid_tr"):
        secs[name] = epoch_seconds(name, args.n, args.size, args.batch, args.epochs, args.workers)
        print(f"  {name:9s} {secs[name]:.2f} s/epoch")
    print(f"\nratios: grid_tr/dense_gd = {secs['grid_tr'] / secs['dense_gd']:.2f}x, "
          f"grid_tr/pce_gd = {secs['grid_tr'] / secs['pce_gd']:.2f}x, "
          f"dense_gd/pce_gd = {secs['dense_gd'] / secs['pce_gd']:.2f}x, "
          f"grid_gd/pce_gd = {secs['grid_gd'] / secs['pce_gd']:.2f}x")


if __name__ == "__main__":
    main()
