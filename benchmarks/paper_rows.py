"""Our report tables with the E2EAug paper's Table 2–3 rows beside them (quality preset and semi-supervised grids).

Reads a ``scarce report`` folder's ``results.csv`` and writes one markdown table per dataset:
our rows (mean ± std over seeds of the dataset's primary metric, one column per test set) and,
below a separator, the paper's rows for the same labelled budget, as printed in the paper (mean of
3 runs, no std). Only comparable protocols get paper rows:

* isic2017 → ph2 (Jaccard; Table 2, "ISIC" / "PH2" columns; 40/100/200 ISIC training examples —
  the paper trains on all of them, we on 4/5 and validate on 1/5);
* montgomery: the paper trains on 9/35/175 JSRT images and tests on JSRT (ID) and MC = Montgomery
  (OOD); we train on 9 Montgomery images (7 + 2). Its MC column is shown as a reference for a lung
  model from 9 labels, not as the same protocol.

kvasir_seg is not in the paper.

    python benchmarks/paper_rows.py docs/results/quality/accept -o docs/results/quality/accept/with_paper.md
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

# Table 2 (Jaccard), U-Net rows: {budget: {row: (ISIC, PH2)}}
PAPER_ISIC = {
    40: {"U-Net": (0.567, 0.569), "Combine-UNet": (0.598, 0.615), "GAN-UNet": (0.612, 0.710),
         "CTBCT-UNet (+1000 unlabelled)": (0.661, 0.724), "DCT-UNet (+1000 unlabelled)": (0.662, 0.723),
         "Ours-UNet (E2EAug)": (0.673, 0.767)},
    100: {"U-Net": (0.567, 0.653), "Combine-UNet": (0.628, 0.728), "GAN-UNet": (0.633, 0.743),
          "CTBCT-UNet (+1000 unlabelled)": (0.604, 0.702), "DCT-UNet (+1000 unlabelled)": (0.641, 0.709),
          "Ours-UNet (E2EAug)": (0.651, 0.761)},
    200: {"U-Net": (0.649, 0.708), "Combine-UNet": (0.676, 0.736), "GAN-UNet": (0.681, 0.752),
          "CTBCT-UNet (+1000 unlabelled)": (0.665, 0.743), "DCT-UNet (+1000 unlabelled)": (0.685, 0.749),
          "Ours-UNet (E2EAug)": (0.699, 0.764)},
}
# Table 3 (Dice), U-Net rows trained on 9 JSRT images: (JSRT, MC)
PAPER_LUNG_9 = {"U-Net": (0.915, 0.758), "Combine-UNet": (0.915, 0.819), "GAN-UNet": (0.921, 0.816),
                "CTBCT-UNet (+unlabelled)": (0.926, 0.843), "DCT-UNet (+unlabelled)": (0.927, 0.799),
                "Ours-UNet (E2EAug)": (0.964, 0.859)}
METRIC = {"isic2017": "jaccard", "kvasir_seg": "dice", "montgomery": "dice"}


def tables(results_csv: Path) -> str:
    rows = list(csv.DictReader(results_csv.open()))
    out = [f"# Our results beside the E2EAug paper's rows\n\nFrom `{results_csv}` "
           "(mean ± std over seeds). Paper rows: means of 3 runs as printed (Tables 2–3).\n"]
    by = defaultdict(list)
    for r in rows:
        by[(r["dataset"], int(r["budget"]))].append(r)
    for (ds, budget), rs in sorted(by.items()):
        metric = METRIC.get(ds, "dice")
        sets = list(dict.fromkeys(r["test_set"] for r in rs))
        cells: dict[str, dict[str, str]] = defaultdict(dict)
        for r in rs:
            m, s = float(r[f"{metric}_mean"]), float(r[f"{metric}_std"] or 0)
            cells[r["row"]][r["test_set"]] = f"{m:.3f} ± {s:.3f}" if int(r["n_seeds"]) > 1 else f"{m:.3f}"
        out.append(f"## {ds} — {metric}, {budget} labels\n")
        out.append("| row | " + " | ".join(sets) + " |")
        out.append("|---|" + "|".join(":---:" for _ in sets) + "|")
        for row in sorted(cells):
            out.append(f"| {row} | " + " | ".join(cells[row].get(t, "") for t in sets) + " |")
        if ds == "isic2017" and budget in PAPER_ISIC:
            for name, (a, b) in PAPER_ISIC[budget].items():
                vals = {"isic2017": f"{a:.3f}", "ph2": f"{b:.3f}"}
                out.append(f"| *paper: {name}* | " + " | ".join(vals.get(t, "") for t in sets) + " |")
        if ds == "montgomery" and budget == 9:
            out.append("\nPaper (Table 3, trained on 9 **JSRT** images; MC = Montgomery is its OOD set), Dice:\n")
            out.append("| paper row | JSRT (ID) | MC (OOD) |\n|---|:---:|:---:|")
            for name, (a, b) in PAPER_LUNG_9.items():
                out.append(f"| {name} | {a:.3f} | {b:.3f} |")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path, help="a `scarce report` output folder (holds results.csv)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    text = tables(a.report / "results.csv")
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    print(text)


if __name__ == "__main__":
    main()
