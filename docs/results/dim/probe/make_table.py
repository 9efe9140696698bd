"""Table of the DiM β probes (kvasir_seg 40 labels + unlabelled kvasir_seg ∪ cvc_clinicdb, seed 0):
best validation Dice (what chooses), its step, the last validation, the test Dice on kvasir_seg and
on cvc_clinicdb's test part (shown, never used to choose). Reads the committed result records.
From the repository root:
    python docs/results/dim/probe/make_table.py > docs/results/dim/probe/table.md
"""
import csv, json
from pathlib import Path

REC = Path("docs/results/records")
RUNS = [
    ("FixMatch, kvasir_seg-only pool (semi-supervised grid; cvc_clinicdb scored on all 612 images, shown here on the test part)",
     "ssl/accept/kvasir_seg/fixmatch-unet"),
    ("supervised, Combine + intensity (acceptance grid `sup`)", "dim/accept/kvasir_seg/sup-unet"),
    ("base = FixMatch, mixed pool (acceptance grid `base`)", "dim/accept/kvasir_seg/base-unet"),
    ("base + D_f, β 0.1, first soft histogram (old default)", "dim/probe/kvasir_seg/df-b0.1-unet"),
    ("base + D_f, β 1, first soft histogram", "dim/probe/kvasir_seg/df-b1-unet"),
    ("base + D_f, β 5, first soft histogram", "dim/probe/kvasir_seg/df-b5-unet"),
    ("base + D_f, β 1, soft histogram with centres 0…1", "dim/probe/kvasir_seg/df2-b1-unet"),
    ("base + D_f, β 5, soft histogram with centres 0…1", "dim/probe/kvasir_seg/df2-b5-unet"),
]
PART = REC / "dim/accept/kvasir_seg/sup-unet/b40/s0/eval/cvc_clinicdb_test/per_image.csv"
print("| row | best val Dice (step) | val Dice at step 800 | kvasir_seg test Dice | cvc_clinicdb:test Dice |")
print("| --- | :---: | :---: | :---: | :---: |")
for name, r in RUNS:
    d = REC / r / "b40" / "s0"
    if not (d / "metrics.json").exists():
        continue
    m = json.loads((d / "metrics.json").read_text())
    rows = [x for x in csv.DictReader(open(d / "log.csv")) if x.get("val_dice")]
    t = {}
    for name_ in ("kvasir_seg", "cvc_clinicdb_test"):
        f = d / "eval" / name_ / "per_image.csv"
        keep = None
        if not f.exists():  # scored on the whole of cvc_clinicdb: keep its test part's images
            f = d / "eval" / "cvc_clinicdb" / "per_image.csv"
            keep = {x["stem"] for x in csv.DictReader(open(PART))}
        dice = [float(x["dice"]) for x in csv.DictReader(open(f)) if keep is None or x["stem"] in keep]
        t[name_] = sum(dice) / len(dice)
    print(f"| {name} | {m['best_val']:.3f} ({m['best_step']}) | {float(rows[-1]['val_dice']):.3f} | "
          f"{t['kvasir_seg']:.3f} | {t['cvc_clinicdb_test']:.3f} |")
