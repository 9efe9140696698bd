"""How good are Grid-TR's Stage-A proposals? (an analysis, not a speed benchmark)

For every finished ``grid_tr`` run under a folder, compares the last Stage-A proposals (saved in
``checkpoints/last.pt``) with the training images' full masks, which the method never sees
(its scribbles were synthesised from them): Dice of the proposals' foreground, and the
proposals' foreground fraction against the masks'. Prints one line per run and the mean per
(dataset, row, λ). Binary datasets only.

Run: ``SCARCE_DATA_ROOT=../shared/data python benchmarks/weak_proposals.py runs/weak runs/weak_lambda``
"""
from __future__ import annotations

import argparse
import collections
import json
import warnings
from pathlib import Path

import numpy as np
import torch


def proposal_stats(run_dir: Path) -> dict[str, float] | None:
    """Dice of the final proposals vs the training masks, and foreground fractions."""
    from scarce.api import load_run_config
    from scarce.data.load import prepare_run_data
    from scarce.methods import method_spec
    from scarce.utils.io import torch_load

    last = run_dir / "checkpoints" / "last.pt"
    if not (run_dir / "metrics.json").exists() or not last.exists():
        return None
    cfg = load_run_config(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = prepare_run_data(cfg.data, seed=cfg.train.seed)
    masks = data.train.masks.cpu().numpy()
    if data.train.num_classes != 2:
        return None
    props = torch_load(last)["method"]["extra"]["proposals"].numpy()
    if props.size == 0:
        return None
    p, m = props == 1, masks == 1
    inter = (p & m).reshape(len(m), -1).sum(1)
    denom = p.reshape(len(m), -1).sum(1) + m.reshape(len(m), -1).sum(1)
    dice = np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 1.0)
    lam = method_spec(cfg).config.lam
    return {"lam": float(lam), "dice": float(dice.mean()), "fg": float(p.mean()), "fg_true": float(m.mean()),
            "val": float(json.loads((run_dir / "metrics.json").read_text())["best_val"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        ap.error(f"no such run folder: {', '.join(missing)} (pass grid output folders such as runs/weak)")
    groups: dict[tuple[str, str, float], list[dict[str, float]]] = collections.defaultdict(list)
    for folder in args.folders:
        for cfg in sorted(folder.rglob("config.yaml")):
            run = cfg.parent
            if "grid_tr" not in run.as_posix():
                continue
            s = proposal_stats(run)
            if s is None:
                continue
            rel = run.relative_to(folder).parts
            print(f"{run}: λ={s['lam']:g} proposal Dice {s['dice']:.3f}, foreground {s['fg']:.3f} "
                  f"(masks {s['fg_true']:.3f}), best val Dice {s['val']:.3f}")
            groups[(rel[0], rel[1], s["lam"])].append(s)
    print("\nmean over seeds: dataset | row | λ | proposal Dice | proposal fg | mask fg | n")
    for (ds, row, lam), v in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        mean = {k: float(np.mean([x[k] for x in v])) for k in ("dice", "fg", "fg_true")}
        print(f"{ds} | {row} | {lam:g} | {mean['dice']:.3f} | {mean['fg']:.3f} | {mean['fg_true']:.3f} | {len(v)}")


if __name__ == "__main__":
    main()
