"""Choose intensity handling per task on VALIDATION: ``data.intensity`` × ``method.intensity``.

Why: CLAHE, percentile clipping and nnU-Net intensity augmentation help some modalities and hurt
others, so defaults must be picked per task — and on the validation split only (the 20 % of the
label budget the trainer already selects checkpoints on), never on test scores. This trains one
supervised run per (dataset, preprocessing, augmentation, seed) with the ``cpu`` preset (or any
``--set`` overrides), then reports, per dataset, the mean best-validation score of every
combination and marks the one validation picks. Test (ID + OOD) scores are printed beside it for
information; they play no part in the choice.

    # a tiny slice (≈ 6 runs × 1–2 min on 2 cores)
    python benchmarks/intensity_validation.py --datasets montgomery --budget 9 --seeds 0 \\
        --preprocess none clahe --aug none nnunet --threads 1
    # the full comparison (resumable: finished runs are read back, not retrained)
    python benchmarks/intensity_validation.py --datasets isic2017 kvasir_seg montgomery \\
        --budget 40 --seeds 0 1 2

Writes ``<out>/runs/<dataset>/<preprocess>-<aug>/seed<k>/`` (ordinary run folders) and
``<out>/results.csv`` + ``<out>/results.md``.
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from pathlib import Path
from typing import Any

try:
    import scarce  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _metric_of(dataset: str, root: str | None) -> str:
    from scarce.data.load import resolve_dataset

    info, _ = resolve_dataset(dataset, root)
    return info.metric if info.metric in ("dice", "jaccard", "jaccard_t") else "dice"


def run_one(dataset: str, preprocess: str, aug: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or read back) one run; returns its row: validation and test scores."""
    from scarce.api import train_run
    from scarce.config import load_config

    out = Path(args.out) / "runs" / Path(dataset).name / f"{preprocess}-{aug}" / f"seed{seed}"
    sets = [f"out={out}", f"data.dataset={dataset}", f"data.intensity={preprocess}",
            f"method.name={args.method}", f"method.intensity={aug}", f"train.seed={seed}",
            f"train.threads={args.threads}", "train.progress=false", "train.tensorboard=false",
            "eval.overlays=0", "eval.save_predictions=false", *args.set]
    if args.budget is not None:
        sets.append(f"data.budget={args.budget}")
    if args.root:
        sets.append(f"data.root={args.root}")
    cfg = load_config(sets=sets, preset=args.preset)
    res = train_run(cfg, resume=True)
    metric = _metric_of(dataset, args.root)
    row: dict[str, Any] = {"dataset": Path(dataset).name, "preprocess": preprocess, "aug": aug, "seed": seed,
                           "metric": metric, "val": float(res["best_val"]), "best_step": res.get("best_step")}
    for name, m in sorted(res.get("tests", {}).items()):
        row[f"test:{name}"] = float(m.get(f"{metric}_mean", float("nan")))
    return row


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown: per dataset, mean ± std over seeds of validation and test scores per
    combination; ``◀ chosen`` marks the best mean validation score (ties: the first listed)."""
    lines: list[str] = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == dataset]
        tests = sorted({k for r in rs for k in r if k.startswith("test:")})
        combos = list(dict.fromkeys((r["preprocess"], r["aug"]) for r in rs))

        def ms(vals: list[float]) -> str:
            vals = [v for v in vals if v == v]
            if not vals:
                return "—"
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.fmean(vals):.3f} ± {sd:.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"

        means = {c: statistics.fmean(r["val"] for r in rs if (r["preprocess"], r["aug"]) == c) for c in combos}
        best = max(combos, key=lambda c: means[c])
        n = len({r["seed"] for r in rs})
        lines += [f"### {dataset} ({rs[0]['metric']}, {n} seed{'s' if n > 1 else ''}; chosen on validation)", "",
                  "| data.intensity | method.intensity | validation | " + " | ".join(t[5:] for t in tests) + " | |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in tests) + " | --- |"]
        for c in combos:
            sel = [r for r in rs if (r["preprocess"], r["aug"]) == c]
            cells = [ms([r["val"] for r in sel])] + [ms([r.get(t, float("nan")) for r in sel]) for t in tests]
            lines.append(f"| {c[0]} | {c[1]} | " + " | ".join(cells) + f" | {'◀ chosen' if c == best else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["montgomery"])
    ap.add_argument("--budget", type=int, default=None, help="data.budget (default: the preset's, 40)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--preprocess", nargs="+", default=["none", "percentile", "clahe"],
                    help="data.intensity values to compare")
    ap.add_argument("--aug", nargs="+", default=["none", "nnunet"], help="method.intensity values to compare")
    ap.add_argument("--method", default="supervised")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--root", default=None, help="data root (default: $SCARCE_DATA_ROOT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/intensity_validation")
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides (repeatable)")
    args = ap.parse_args(argv)

    rows = []
    for dataset in args.datasets:
        for pre in args.preprocess:
            for aug in args.aug:
                for seed in args.seeds:
                    row = run_one(dataset, pre, aug, seed, args)
                    rows.append(row)
                    tests = ", ".join(f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("test:"))
                    print(f"{row['dataset']} {pre:>16} {aug:>6} seed {seed}: val {row['val']:.3f} | {tests}",
                          flush=True)
    from scarce.utils.io import atomic_write_text

    out = Path(args.out)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    text = summarise(rows)
    atomic_write_text(out / "results.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
