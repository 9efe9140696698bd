"""Table of the semi-supervised probes (kvasir_seg, 40 labels, seed 0): best validation Dice (what
chooses), its step, the last validation and the test Dice. From the repository root:
    python docs/results/ssl/probe/make_table.py > docs/results/ssl/probe/table.md
"""
import csv, json, sys
from pathlib import Path
ROOT = Path('.')  # run from the repository root
RUNS = [
    ("supervised, no augmentation (quality grid)", "runs/quality/accept/kvasir_seg/sup-unet/b40/s0"),
    ("supervised, Combine + intensity (quality grid)", "runs/quality/accept/kvasir_seg/combine-int-unet/b40/s0"),
    ("mean_teacher, flip (old default)", "runs/ssl/accept_flip_ce/kvasir_seg/mean_teacher-unet/b40/s0"),
    ("mean_teacher, Combine + intensity (new default)", "runs/ssl/probe_grid/kvasir_seg/mean_teacher-combine-int-unet/b40/s0"),
    ("fixmatch, flip, unsup_loss=ce (old default)", "runs/ssl/accept_flip_ce/kvasir_seg/fixmatch-unet/b40/s0"),
    ("fixmatch + UniMatch dual strong views and FP, Combine + intensity, unsup_loss=dice", "runs/ssl/probe/kvasir_seg/fixmatch-dice-combine-int/s0"),
    ("fixmatch + UniMatch additions, dice, Combine + intensity, λ_u ramp-up over 40 %", "runs/ssl/probe/kvasir_seg/fixmatch-dice-combine-int-ramp/s0"),
    ("fixmatch plain (1 strong view, no FP), Combine + intensity, dice (new default)", "runs/ssl/probe_grid/kvasir_seg/fixmatch-plain-dice-combine-int-unet/b40/s0"),
]
print("| row | best val Dice (step) | val Dice at step 800 | kvasir_seg test Dice | cvc_clinicdb Dice |")
print("| --- | :---: | :---: | :---: | :---: |")
for name, r in RUNS:
    d = ROOT / r
    if not (d / "metrics.json").exists():
        continue
    m = json.loads((d / "metrics.json").read_text())
    rows = [x for x in csv.DictReader(open(d / "log.csv")) if x.get("val_dice")]
    last = float(rows[-1]["val_dice"])
    t = m["tests"]
    print(f"| {name} | {m['best_val']:.3f} ({m['best_step']}) | {last:.3f} | {t['kvasir_seg']['dice_mean']:.3f} | {t['cvc_clinicdb']['dice_mean']:.3f} |")
