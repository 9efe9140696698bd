"""The semi-supervised grid's best row (FixMatch with the run's own dataset as the unlabelled pool)
scored like the DiM acceptance grid: the ID test set, and the OOD domain on its *test part* only
(the semi-supervised grid scored all images of cvc_clinicdb / ph2; the DiM grid puts the other images into the
unlabelled pool, so only the test part is comparable). Per-image scores come from the committed
records, restricted to the stems of the DiM grid's `<domain>_test` evaluation. From the repository
root:
    python docs/results/dim/previous_fixmatch.py
"""
import csv
import statistics as st
from pathlib import Path

REC = Path("docs/results/records")
TASKS = [("kvasir_seg", "cvc_clinicdb", "dice"), ("isic2017", "ph2", "jaccard")]


def scores(path: Path, metric: str, keep: set[str] | None = None) -> float:
    vals = [float(r[metric]) for r in csv.DictReader(open(path)) if keep is None or r["stem"] in keep]
    return sum(vals) / len(vals)


def cell(v: list[float]) -> str:
    return f"{st.mean(v):.3f} ± {st.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


print("| dataset | metric | seeds | ID test | OOD domain, test part | mean over the two |")
print("| --- | --- | :---: | :---: | :---: | :---: |")
for ds, ood, metric in TASKS:
    part = REC / f"dim/accept/{ds}/sup-unet/b40/s0/eval/{ood}_test/per_image.csv"
    keep = {r["stem"] for r in csv.DictReader(open(part))}
    idv, oodv = [], []
    for s in range(3):
        ev = REC / f"ssl/accept/{ds}/fixmatch-unet/b40/s{s}/eval"
        if not ev.exists():
            continue
        idv.append(scores(ev / ds / "per_image.csv", metric))
        oodv.append(scores(ev / ood / "per_image.csv", metric, keep))
    means = [(a + b) / 2 for a, b in zip(idv, oodv)]
    print(f"| {ds} → {ood}:test | {metric} | {len(idv)} | {cell(idv)} | {cell(oodv)} | {cell(means)} |")
