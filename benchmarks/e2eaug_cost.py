"""Cost of an E2EAug iteration vs a supervised one (same segmenter, batch and image size).

Measures seconds per training iteration and peak memory of: ``supervised``; ``e2eaug`` with
each hypergradient mode, A updated every iteration and every k iterations; ``separate`` — for
each mask→image generator family of ``--generators`` (pix2pix, SPADE, ASAPNet; rows of the
non-pix2pix families carry a ``[name]`` suffix).
Timing: each configuration runs in a subprocess that alternates one supervised and one
``e2eaug`` iteration (same segmenter, batch, image size), so load from other processes hits both
alike; the ratio is mean(method) / mean(supervised) over the timed iterations (a multiple of k,
starting on an A-update step, so A updates are amortised as in a run). Memory: a separate
subprocess per configuration; on CPU the growth of the peak resident set (``ru_maxrss``) over
the state right after the networks were built, on GPU ``torch.cuda.max_memory_allocated``.
GAN pretraining is skipped (it is a one-off cost, cached per split).

    python benchmarks/e2eaug_cost.py                      # 128 px, U-Net width 16, batch 4
    python benchmarks/e2eaug_cost.py --size 64 --iters 8 --every 4 --device cuda
    python benchmarks/e2eaug_cost.py --generators spade,asapnet --only default,separate
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


GENERATORS = ("pix2pix", "spade", "asapnet")


def _configs(every: int, generators: tuple[str, ...] | list[str] = ("pix2pix",)) -> list[tuple[str, dict]]:
    """(row name, method dict) of every measured configuration; pix2pix rows keep their historic
    names, the other generator families get a `` [name]`` suffix."""
    out = [("supervised", {"name": "supervised"})]
    from scarce.methods.gan.e2eaug import E2EAugConfig

    d = E2EAugConfig()
    for gen in generators:
        sfx = "" if gen == "pix2pix" else f" [{gen}]"
        g = {} if gen == "pix2pix" else {"generator": gen}
        out.append((f"e2eaug default ({d.hypergradient}, A every {d.arch_every}){sfx}", {"name": "e2eaug", **g}))
        for mode in ("exact", "finite_difference"):
            for k in (1, every):
                out.append((f"e2eaug {mode}, A every {k}{sfx}",
                            {"name": "e2eaug", "hypergradient": mode, "arch_every": k, **g}))
        out.append((f"e2eaug, no A update (GAN+seg only){sfx}", {"name": "e2eaug", "arch_every": 0, **g}))
        out.append((f"e2eaug paper schedule (A, GAN every it., f=1){sfx}",
                    {"name": "e2eaug", "arch_every": 1, "gan_every": 1, "aug_fraction": 1.0, **g}))
        out.append((f"separate{sfx}", {"name": "separate", **g}))
    return out


def _synthetic_run_data(n: int, size: int, channels: int = 3):
    """In-memory image/mask pairs (ellipse masks; images a noisy function of the mask)."""
    import torch

    from scarce.data.types import DatasetInfo, RunData, SegData

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=g)
        r = int(torch.randint(size // 8, size // 4, (1,), generator=g))
        masks[i][((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r] = 1
    images = (0.2 + 0.6 * masks.float().unsqueeze(1) + 0.2 * torch.rand(n, channels, size, size, generator=g))
    images = images.clamp(0, 1).contiguous()

    def seg(name):
        return SegData(name=name, images=images, masks=masks, stems=[f"s{i}" for i in range(n)], num_classes=2)

    info = DatasetInfo(name="bench", task="synthetic", metric="dice", channels=channels)
    return RunData(info=info, train=seg("bench"), val=seg("bench"), tests={}, split=None)


def _trainer(args: argparse.Namespace, method: dict, tmp: str):
    from scarce.config import load_config
    from scarce.engine.trainer import Trainer
    from scarce.methods import method_spec

    method = {**method}
    if method["name"] != "supervised":
        method.setdefault("pretrain_iters", 0)
    sets = [f"data.size={args.size}", f"model.name={args.model}", f"model.width={args.width}",
            f"train.batch_size={args.batch}", "train.progress=false", "train.tensorboard=false",
            f"train.device={args.device}", f"train.iterations={10**6}"]
    cfg = load_config(sets=sets, preset="cpu")   # the measured recipe (not the product default)
    cfg.method = method
    trainer = Trainer(cfg, _synthetic_run_data(max(8, args.batch * 2), args.size), tmp, method=method_spec(cfg))
    trainer.method.setup()
    return trainer


def _one_step(trainer, i: int) -> float:
    import torch

    batch = trainer.next_batch()
    trainer.method.train()
    t0 = time.perf_counter()
    trainer.method.training_step(batch, i)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def child(args: argparse.Namespace, method: dict, mode: str) -> dict:
    """``time``: alternate one supervised and one ``method`` iteration (so CPU load changes hit
    both alike) and return both series; ``mem``: peak memory of ``method`` alone."""
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "time":
            sup = _trainer(args, {"name": "supervised"}, tmp + "/s")
            tgt = _trainer(args, method, tmp + "/t")
            ts, tt = [], []
            for i in range(-args.warmup, args.iters):  # timed steps start on an A-update step (0)
                a, b = _one_step(sup, i), _one_step(tgt, i)
                if i >= 0:
                    ts.append(a)
                    tt.append(b)
            return {"sup": ts, "times": tt}
        trainer = _trainer(args, method, tmp)
        cuda = trainer.device.type == "cuda"
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_cuda = torch.cuda.memory_allocated()
        for i in range(2):  # step 0 updates A (when the method does)
            _one_step(trainer, i)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # KiB → MiB (Linux)
        if cuda:
            peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
        return {"peak_mib": peak}


def _run_child(argv: list[str], method: dict, mode: str) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", json.dumps(method), "--mode", mode]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not line:
        print(f"{method} ({mode}): FAILED\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[-1][7:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--model", default="unet")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=8, help="timed iterations (use a multiple of --every)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--every", type=int, default=4, help="k of 'A every k iterations'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default="", help="comma-separated substrings of config names to run")
    p.add_argument("--generators", default=",".join(GENERATORS),
                   help="comma-separated mask→image generator families (pix2pix,spade,asapnet)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args, json.loads(args.child), args.mode)))
        return 0
    gens = [g.strip() for g in args.generators.split(",") if g.strip()]
    unknown = sorted(set(gens) - set(GENERATORS))
    if unknown:
        p.error(f"unknown generator(s) {unknown}; choose from {', '.join(GENERATORS)}")
    configs = _configs(args.every, gens)
    if args.only:
        keys = [s.strip() for s in args.only.split(",")]
        configs = [c for c in configs if c[0] == "supervised" or any(k in c[0] for k in keys)]
    base_argv = list(argv if argv is not None else sys.argv[1:])
    results: dict[str, dict] = {}
    for name, method in configs:
        mem = _run_child(base_argv, method, "mem")
        tim = _run_child(base_argv, method, "time") if name != "supervised" else None
        if mem is None or (name != "supervised" and tim is None):
            continue
        r: dict = {"peak_mib": mem["peak_mib"]}
        if tim is not None:
            r.update(mean_s=statistics.fmean(tim["times"]), sup_mean_s=statistics.fmean(tim["sup"]),
                     times=tim["times"], sup_times=tim["sup"])
            r["ratio"] = r["mean_s"] / r["sup_mean_s"]
            print(f"  measured {name}: {r['mean_s']:.3f} s/it vs supervised {r['sup_mean_s']:.3f}",
                  file=sys.stderr, flush=True)
        results[name] = r
    sup_mem = results.get("supervised", {}).get("peak_mib", float("nan"))
    print(f"\n{args.model} width {args.width}, {args.size} px, batch {args.batch}, device {args.device}, "
          f"threads {args.threads}; mean of {args.iters} timed iterations, each interleaved with a "
          f"supervised iteration; peak memory = {'cuda max_memory_allocated' if args.device.startswith('cuda') else 'ru_maxrss growth'}")
    print(f"{'configuration':<54} {'s/iter':>8} {'sup s/it':>9} {'× sup':>7} {'peak MiB':>9} {'× sup':>7}")
    for name, r in results.items():
        rm = r["peak_mib"] / sup_mem if sup_mem > 0 else float("nan")
        if "mean_s" in r:
            print(f"{name:<54} {r['mean_s']:8.3f} {r['sup_mean_s']:9.3f} {r['ratio']:7.2f} {r['peak_mib']:9.1f} {rm:7.2f}")
        else:
            print(f"{name:<54} {'':>8} {'':>9} {'1.00':>7} {r['peak_mib']:9.1f} {rm:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
