"""Which images to label, measured: the selection grid's table from its committed records.

    python docs/results/suggest/make_table.py > docs/results/suggest/table.md

Rows of ``configs/suggest/select.yaml`` (random, coreset, uncertainty_diversity) at each seed
share their validation and test images and differ only in their training images, so every
comparison with random is paired, with the report's own tests (scarce.reports.stats): by seed
and by test image (Wilcoxon signed-rank over every (seed, image) pair).
The selection's cost comes from the grid's log (``selection.log`` beside this file: the lines
``scarce experiment`` printed for each round).
"""
import json
import math
import pathlib
import re
import statistics

from scarce.reports.report import primary_metric
from scarce.reports.stats import comparison_table
from scarce.reports.tables import collect_runs, format_cell, ordered_test_sets

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1] / "results" / "records" / "suggest" / "select"
ROWS = ["random-unet", "coreset-unet", "uncertainty_diversity-unet"]
DATASETS = ["kvasir_seg", "isic2017", "montgomery"]


def seeds_cell(vals: list[float]) -> str:
    return format_cell(statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan) + (
        "" if len(vals) == 3 else f" (n={len(vals)})")


def delta(comp, row: str, test: str, budget: int) -> str:
    """Δ vs random from :func:`scarce.reports.stats.comparison_table` (the report's own tests):
    the mean of the per-seed differences, the seed test's and the per-image Wilcoxon's p (Holm
    over the dataset's comparisons, as in the report)."""
    c = comp[(comp["row"] == row) & (comp["test_set"] == test) & (comp["budget"] == budget)]
    if c.empty or not c["n_pairs"].iloc[0]:
        return "—"
    c = c.iloc[0]
    return (f"{c['diff']:+.3f} (p seeds {c['p_seeds_holm']:.2f}, p images {c['p_images_holm']:.3f}, "
            f"{int(c['n_images'])} pairs)")


def selection_seconds() -> dict[tuple[str, str], list[float]]:
    """{(candidates, round kind): seconds} from ``selection.log``."""
    out: dict[tuple[str, str], list[float]] = {}
    log = HERE / "selection.log"
    if not log.is_file():
        return out
    pat = re.compile(r"data\.selection=suggest:(\w+): round (\d)/(\d): (.*?): \d+ of (\d+) candidates chosen \(([\d.]+) s\)")
    for line in log.read_text().splitlines():
        m = pat.search(line)
        if m:
            strategy, r, n, how, cands, sec = m.groups()
            kind = f"{strategy} round {r}/{n}" + (" (train a quarter-length model + choose)" if int(r) > 1 else " (choose)")
            out.setdefault((cands, kind), []).append(float(sec))
    return out


def dataset_of(candidates: str, df) -> str:
    """The dataset whose candidate pool has this many images (its pool less the validation share
    that no budget's training images come from)."""
    for run, ds in zip(df["run"], df["dataset"]):
        sp = json.loads((ROOT / run / "split.json").read_text())
        if round(sp["pool_size"] * (1 - sp["val_fraction"])) == int(candidates):
            return ds
    return "?"


def main() -> None:
    print("# Which images to label: random vs coreset vs uncertainty + diversity\n")
    print("The quality preset's supervised U-Net trained on training images chosen at random (the nested "
          "split's order), by cold-start diversity (`coreset`: k-center greedy on ImageNet Lite0 features) or "
          "by `uncertainty_diversity` (coreset for the first quarter, then two rounds of a quarter-length model's "
          "flip-TTA uncertainty within k-means clusters), `configs/suggest/select.yaml`, seeds 0-2. Validation "
          "and test images are the same in the three rows of a seed. Made by `make_table.py` beside this file "
          "from the committed records. Dice, except Jaccard for isic2017/ph2. Δ is the row minus random at the "
          "same seed (mean over the paired seeds); p seeds: the report's paired test over seeds; p images: "
          "Wilcoxon signed-rank over every (seed, test image) pair; both Holm-adjusted over the dataset's "
          "comparisons, as in the HTML report (`index.html` in `select/`).\n")
    df = collect_runs(ROOT)
    for ds in [d for d in DATASETS if d in set(df["dataset"])]:
        d = df[df["dataset"] == ds]
        metric, tests = primary_metric(ds, d), [t for t in ordered_test_sets(d) if t in set(d["test_set"])]
        comp = comparison_table(d, metric, "random-unet", ROOT, ds)
        for budget in sorted(set(d["budget"])):
            print(f"## {ds} ({budget} labels)\n")
            head = ["row", "best validation", "validation images", *(f"test {t} {metric}" for t in tests),
                    *(f"Δ {t} vs random" for t in tests)]
            print("| " + " | ".join(head) + " |")
            print("| --- " * len(head) + "|")
            for row in ROWS:
                runs = d[(d["row"] == row) & (d["budget"] == budget)]
                if runs.empty:
                    print(f"| {row.removesuffix('-unet')} | not run |" + " |" * (len(head) - 2))
                    continue
                val = runs.drop_duplicates("seed")["best_val"]
                n_val = len(json.loads((ROOT / runs["run"].iloc[0] / "split.json").read_text())["val"])
                cells = [row.removesuffix("-unet"), seeds_cell(val.tolist()), str(n_val)]
                for t in tests:
                    c = comp[(comp["row"] == row) & (comp["test_set"] == t) & (comp["budget"] == budget)].iloc[0]
                    cells.append(format_cell(c["mean"], c["std"]) + ("" if c["n_seeds"] == 3 else f" (n={c['n_seeds']})"))
                for t in tests:
                    cells.append("—" if row == "random-unet" else delta(comp, row, t, budget))
                print("| " + " | ".join(cells) + " |")
            print()
    secs = selection_seconds()
    if secs:
        print("## What choosing cost\n")
        print("Wall time of each selection round on the 2-core machine (two 1-thread runs side by side), "
              "mean ± std over the runs of a dataset, from `selection.log` (candidates: the images a run "
              "may choose from).\n")
        print("| dataset (candidates) | round | runs | seconds |")
        print("| --- | --- | --- | --- |")
        for (cands, kind), vals in sorted(secs.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            print(f"| {dataset_of(cands, df)} ({cands}) | {kind} | {len(vals)} | {statistics.mean(vals):.1f} ± {sd:.1f} |")
        print()


if __name__ == "__main__":
    main()
