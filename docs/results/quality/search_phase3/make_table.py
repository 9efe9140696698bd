"""Validation table of the quality-preset search, phase 3: training resolution and
encoder size, beside the 128 px EfficientNet-Lite0 runs of the acceptance grid (same recipe:
supervised, Combine + nnU-Net intensity augmentation). Best validation score (kvasir_seg: Dice,
isic2017: Jaccard; what chooses) and its step per seed, its mean, the difference to the 128 px
row on the seeds both have, and the test scores (reported, never used to choose). From the
repository root:
    python docs/results/quality/search_phase3/make_table.py > docs/results/quality/search_phase3/validation.md
"""
import csv
import json
import statistics
from pathlib import Path

ROWS = [
    ("Lite0, 128 px (the acceptance grid's combine-int)", "runs/quality/accept/{ds}/combine-int-unet/b40/s{s}"),
    ("Lite0, 192 px", "runs/quality/search_phase3/{ds}/combine-int-192-unet/b40/s{s}"),
    ("Lite2, 128 px", "runs/quality/search_phase3/{ds}/combine-int-lite2-unet/b40/s{s}"),
]
SETS = {"kvasir_seg": ("dice", ["kvasir_seg", "cvc_clinicdb"]), "isic2017": ("jaccard", ["isic2017", "ph2"])}
SEEDS = [0, 1, 2]


HALF = 400


def best_within(pattern: str, ds: str, s: int, steps: int):
    """(best validation score, step) over the first ``steps`` steps of the run's log.csv: what a
    run of ``steps`` iterations would have chosen (the plateau schedule only looks back)."""
    p = Path(pattern.format(ds=ds, s=s)) / "log.csv"
    if not p.is_file():
        return None
    rows = list(csv.DictReader(p.open()))
    col = next(c for c in rows[0] if c.startswith("val_"))  # val_dice / val_jaccard: the run's metric
    rows = [r for r in rows if r.get(col) and int(r["step"]) <= steps]
    return max(((float(r[col]), int(r["step"])) for r in rows), default=None, key=lambda t: t[0])


def load(pattern: str, ds: str, s: int):
    p = Path(pattern.format(ds=ds, s=s)) / "metrics.json"
    return json.loads(p.read_text()) if p.is_file() else None


print("# Quality-preset search, phase 3 — validation (what chooses)\n")
print("`SCARCE_DATA_ROOT=../shared/data scarce experiment configs/quality/search_phase3.yaml --no-report`, then")
print("`python docs/results/quality/search_phase3/make_table.py > docs/results/quality/search_phase3/validation.md`.")
print("Validation is scored at the training resolution (8 labelled validation images per seed); test")
print("scores are at each image's original resolution and never chose anything. \"First 400 steps\" = the")
print("best validation score within steps ≤ 400 of the same runs: what a 400-iteration run would have")
print("chosen (ReduceLROnPlateau only looks back, so its first 400 steps are these).\n")
for ds, (metric, tests) in SETS.items():
    print(f"## {ds} (validation {metric.capitalize()})\n")
    print("| row | " + " | ".join(f"seed {s}: best val (step)" for s in SEEDS) + f" | mean best val | Δ vs 128 px, same seeds | mean best val, first {HALF} steps | " +
          " | ".join(f"{t} test {metric}" for t in tests) + " |")
    print("| --- |" + " :---: |" * (len(SEEDS) + 3 + len(tests)))
    ref = {s: load(ROWS[0][1], ds, s) for s in SEEDS}
    for name, pat in ROWS:
        runs = {s: load(pat, ds, s) for s in SEEDS}
        if not any(runs.values()):
            continue
        cells = [f"{m['best_val']:.3f} ({m['best_step']})" if m else "—" for m in runs.values()]
        done = [m for m in runs.values() if m]
        mean_val = f"{statistics.mean(m['best_val'] for m in done):.3f} (n={len(done)})"
        shared = [s for s, m in runs.items() if m and ref[s]]
        delta = "—" if pat == ROWS[0][1] else (f"{statistics.mean(runs[s]['best_val'] - ref[s]['best_val'] for s in shared):+.3f} "
                                                f"(seeds {', '.join(map(str, shared))})")
        half = [best_within(pat, ds, s, HALF) for s, m in runs.items() if m]
        mean_half = f"{statistics.mean(h[0] for h in half if h):.3f}" if all(half) else "—"
        tcells = []
        for t in tests:
            v = [m["tests"][t][f"{metric}_mean"] for m in done]
            tcells.append(f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
                          + f" (n={len(v)})")
        print(f"| {name} | " + " | ".join(cells) + f" | {mean_val} | {delta} | {mean_half} | " + " | ".join(tcells) + " |")
    print()
