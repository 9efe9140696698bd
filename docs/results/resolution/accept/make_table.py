"""The acceptance rows on today's quality preset, from the committed records:

    python docs/results/resolution/accept/make_table.py > docs/results/resolution/accept/table.md

Rows of ``configs/resolution/accept.yaml``: the preset's supervised row (``s128``), FixMatch and
gan_aug (Combine + intensity on its real half) at seeds 0-2, sharing their splits, so every
comparison with ``s128`` is paired, with the report's own tests (scarce.reports.stats). Beside
them, each row's test score in the earlier acceptance grids (``records/quality/accept``,
``records/ssl/accept``: same recipe and seeds, trained before every segmenter ran channels-last
and the intensity augmentation was drawn per sample).
"""
import math
import pathlib
import statistics

from scarce.reports.report import primary_metric
from scarce.reports.stats import comparison_table
from scarce.reports.tables import collect_runs, format_cell, ordered_test_sets
from scarce.status import logged_train_seconds

HERE = pathlib.Path(__file__).resolve().parent
RECORDS = HERE.parents[1] / "records"
ROOT = RECORDS / "resolution" / "accept"
ROWS = {  # row: (its earlier records, the row's name there)
    "s128-unet": (RECORDS / "quality" / "accept", "combine-int-unet"),
    "fixmatch-unet": (RECORDS / "ssl" / "accept", "fixmatch-unet"),
    "gan_aug-comb-int-unet": (RECORDS / "quality" / "accept", "gan_aug-comb-int-unet"),
}
DATASETS = ["kvasir_seg", "isic2017", "montgomery"]
REF = "s128-unet"


def cell(vals: list[float]) -> str:
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return "—"
    return format_cell(statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan) + (
        "" if len(vals) == 3 else f" (n={len(vals)})")


def minutes(run: pathlib.Path) -> float:
    """Training wall time from log.csv (seconds per step × steps), two 1-thread runs side by side:
    for comparing rows, not a budget."""
    return logged_train_seconds(run / "log.csv") / 60


def main() -> None:
    print("# Acceptance rows on today's quality preset\n")
    print("The quality preset's supervised row (`s128`: Combine + nnU-Net intensity, ImageNet Lite0 U-Net, "
          "128 px, 800 iterations), FixMatch (the rest of each training set unlabelled) and gan_aug (Combine + "
          "intensity on its real half), retrained with every segmenter channels-last "
          "(`configs/resolution/accept.yaml`), seeds 0-2, 40 labels (montgomery 9). Made by `make_table.py` beside "
          "this file from the committed records. Dice, except Jaccard for isic2017/ph2. Δ: the row minus `s128` "
          "at the same seed (mean over seeds); p seeds: the report's paired test over seeds; p images: Wilcoxon "
          "signed-rank over every (seed, test image) pair; both Holm-adjusted over the dataset's comparisons, as in "
          "the HTML report (`index.html` beside this file). *Earlier*: the same row and seeds in the acceptance "
          "grids before (`records/quality/accept`, `records/ssl/accept`). Train min: from each run's log.csv, two "
          "1-thread runs side by side (gan_aug's GAN pretraining is in its first logged step).\n")
    df = collect_runs(ROOT)
    for ds in [d for d in DATASETS if d in set(df["dataset"])]:
        d = df[df["dataset"] == ds]
        metric, tests = primary_metric(ds, d), [t for t in ordered_test_sets(d) if t in set(d["test_set"])]
        comp = comparison_table(d, metric, REF, ROOT, ds)
        earlier_df = {root: collect_runs(root) for root, _ in ROWS.values()}
        small = [t for t in tests if d[d["test_set"] == t]["size:<2%:n"].fillna(0).max() > 0] if ds == "kvasir_seg" else []
        for budget in sorted(set(d["budget"])):
            print(f"## {ds} ({budget} labels)\n")
            head = ["row", "best validation", *(f"test {t} {metric}" for t in tests),
                    *(f"test {t} < 2 % of the frame" for t in small), *(f"Δ {t} vs s128 (p seeds, p images)" for t in tests),
                    *(f"earlier {t}" for t in tests), "train min"]
            print("| " + " | ".join(head) + " |")
            print("| --- " * len(head) + "|")
            for row, (old_root, old_row) in ROWS.items():
                runs = d[(d["row"] == row) & (d["budget"] == budget)]
                if runs.empty:
                    print(f"| {row.removesuffix('-unet')} | not run |" + " |" * (len(head) - 2))
                    continue
                cells = [row.removesuffix("-unet"), cell(runs.drop_duplicates("seed")["best_val"].tolist())]
                for t in tests:
                    cells.append(cell(runs[runs["test_set"] == t][f"{metric}_mean"].tolist()))
                for t in small:
                    cells.append(cell(runs[runs["test_set"] == t]["size:<2%:dice"].tolist()))
                for t in tests:
                    c = comp[(comp["row"] == row) & (comp["test_set"] == t) & (comp["budget"] == budget)]
                    if row == REF or c.empty or not c["n_pairs"].iloc[0]:
                        cells.append("—")
                        continue
                    c = c.iloc[0]
                    p_img = "<0.001" if c["p_images_holm"] < 0.001 else f"{c['p_images_holm']:.3f}"
                    cells.append(f"{c['diff']:+.3f} ({c['p_seeds_holm']:.2f}, {p_img})")
                old = earlier_df[old_root]
                old = old[(old["dataset"] == ds) & (old["row"] == old_row) & (old["budget"] == budget)]
                for t in tests:
                    cells.append(cell(old[old["test_set"] == t][f"{metric}_mean"].tolist()))
                cells.append(f"{statistics.mean(minutes(ROOT / r) for r in runs['run'].unique()):.1f}")
                print("| " + " | ".join(cells) + " |")
            print()
    print(READING)


READING = """Reading (test, after the runs; validation chose only each run's checkpoint). On today's preset the
supervised row scores higher than it did in the earlier acceptance grid (kvasir_seg 0.694 → 0.723,
isic2017 0.657 → 0.670) while FixMatch and gan_aug score about what they did (0.735 → 0.743 and
0.733 → 0.731 on kvasir_seg; 0.688 → 0.686 for gan_aug on isic2017), so their gains over it shrink:
FixMatch +0.020 on kvasir_seg (ahead at seeds 0 and 2, behind at seed 1) with the clearest gain on
polyps < 2 % of the frame (0.33 → 0.44), +0.010 on cvc_clinicdb, and a loss on skin (isic2017
−0.013, ph2 −0.024, significant over ph2's images); gan_aug +0.016 on isic2017 and +0.024 on ph2
(significant over ph2's images; behind at seed 0 on isic2017), +0.008 on kvasir_seg, +0.000 on
cvc_clinicdb. Over 3 seeds none of these is significant (2 degrees of freedom). Both cost about
twice the supervised row's time. Lungs tie, as in the earlier grids: montgomery 0.961 (FixMatch)
and 0.963 (gan_aug) against 0.962."""


if __name__ == "__main__":
    main()
