"""One run: ``scarce plan``, ``scarce train``, ``scarce evaluate`` (also ``--shifts``) and
``scarce predict`` (:mod:`scarce.api`)."""
from __future__ import annotations

import argparse
import json
import sys

from scarce.cli.common import OVERWRITE_HELP, cfg_args, load_cfg, primary_metric, print_results, set_keys, sets_arg


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for add in (_plan_parser, _train_parser, _evaluate_parser, _predict_parser):
        add(sub)


def _plan_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("plan", help="choose data.size/aspect/patch, batch and iterations for a wall-clock budget "
                       "from the dataset's fingerprint and measured step times (prints each reason and the --set line)")
    cfg_args(x)
    x.add_argument("name", help="dataset (registered name or folder)")
    x.add_argument("--budget-minutes", type=float, metavar="M",
                   help="wall-clock budget of the run (default: train.budget_minutes, else 10)")
    x.add_argument("--json", action="store_true", help="print the plan as JSON (for scripts)")
    x.set_defaults(func=plan)


def plan(a: argparse.Namespace) -> int:
    """``scarce plan DS``: :func:`scarce.api.plan_config`, each choice with its reason."""
    from scarce.api import plan_config
    from scarce.config import ConfigError

    if a.budget_minutes is not None and not a.budget_minutes > 0:
        raise ConfigError(f"--budget-minutes must be > 0, got {a.budget_minutes:g}")
    cfg = load_cfg(a, [f"data.dataset={a.name}"])
    result = plan_config(cfg, a.budget_minutes, given=set_keys(a.sets),
                         log=None if a.json else lambda m: print(f"scarce: {m}", file=sys.stderr))
    if a.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"plan for {a.name} in {result.budget_minutes:g} min (preset {cfg.preset}, method {cfg.method['name']}):")
    for line in result.lines():
        print(f"  {line}")
    print(f"use it with: {' '.join(result.sets())}\n(or --set train.budget_minutes={result.budget_minutes:g} to plan "
          "inside `scarce train`)")
    return 0


def _train_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("train", help="train one method on one dataset and evaluate it (ID + OOD)")
    cfg_args(x)
    x.add_argument("--method", help="shortcut for --set method.name=... (a registered method: `scarce methods` lists them)")
    x.add_argument("--out", help="shortcut for --set out=...")
    x.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    x.add_argument("--json", action="store_true", help="print the run's result as JSON (for scripts) instead of a summary")
    x.set_defaults(func=train)


def train(a: argparse.Namespace) -> int:
    from scarce.api import train_run

    extra = []
    if a.method:
        extra.append(f"method.name={a.method}")
    if a.out:
        extra.append(f"out={a.out}")
    cfg = load_cfg(a, extra)
    plan_kw = {"given": set_keys(a.sets)} if cfg.train.budget_minutes else {}  # the planner keeps --set keys
    res = train_run(cfg, resume=a.resume, **plan_kw)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    best = f"best validation checkpoint: step {res.get('best_step')}" if res.get("best_step") is not None else ""
    print_results(res.get("tests", {}), primary_metric(cfg),
                  f"run folder: {res['run_dir']}  (eval/summary.txt, eval/metrics.json; --json for scripts)", best)
    if res.get("note"):  # e.g. a run without masks: how its checkpoint was chosen
        print(f"note: {res['note']}")
    return 0


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("evaluate", help="evaluate a finished run's best checkpoint on test sets")
    x.add_argument("run_dir")
    x.add_argument("--config", "-c", metavar="FILE", help="YAML merged over the run's config.yaml (e.g. eval: ...)")
    sets_arg(x, "override a key of the run's config, e.g. --set eval.save_predictions=false")
    x.add_argument("--test-sets", help="comma-separated dataset names/folders (default: the run's ID + OOD sets)")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--out", help="write the evaluation here instead of <run>/eval (a new, empty or earlier evaluation folder)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--json", action="store_true", help="print the metrics as JSON (for scripts) instead of a summary")
    x.add_argument("--shifts", metavar="NAMES",
                   help="intensity-shift stress test instead: 'all' or comma-separated shifts (brightness, contrast, "
                        "gamma, dark_gamma, blur, noise, lowres, xray_shift); writes <run>/eval_shifts/shifts.csv + "
                        "shifts.md (or into --out)")
    x.add_argument("--severities", nargs="+", type=int, metavar="S",
                   help="with --shifts: severities 1..3 (default 1 2 3; the unshifted images are always scored)")
    x.set_defaults(func=evaluate)


def evaluate(a: argparse.Namespace) -> int:
    from scarce.api import evaluate_run

    sets = [s for s in (a.test_sets or "").split(",") if s] or None
    if a.shifts is not None or a.severities:  # --shifts "" too: an error, not a plain evaluation
        return _evaluate_shifts(a, sets)
    res = evaluate_run(a.run_dir, sets, a.data_root, a.out, a.config, a.sets, overwrite=a.overwrite)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    from scarce.api import load_run_config
    from scarce.utils.runfolder import RunPaths

    out_dir = a.out or str(RunPaths(a.run_dir).eval_dir)
    print_results(res, primary_metric(load_run_config(a.run_dir, a.config, a.sets)),
                  f"written to {out_dir}  (summary.txt, metrics.json, per-set CSVs; --json for scripts)")
    return 0


def _evaluate_shifts(a: argparse.Namespace, test_sets: list[str] | None) -> int:
    """``scarce evaluate RUN --shifts ...``: the library call, then per test set a compact table
    (primary metric, mean over images; rows = shifts, columns = severities)."""
    from pathlib import Path

    from scarce.api import SHIFTS_DIR, evaluate_shifts, load_run_config
    from scarce.config import ConfigError

    if a.shifts is None:
        raise ConfigError("--severities needs --shifts (e.g. --shifts all --severities 1 2 3)")
    rows = evaluate_shifts(a.run_dir, a.shifts, a.severities or (1, 2, 3), test_sets, a.out, a.overwrite,
                           a.config, a.sets, data_root=a.data_root)
    if a.json:
        from scarce.evaluation.evaluate import _json_safe

        print(json.dumps(_json_safe(rows), indent=2))  # NaN (undefined metric) → null
        return 0
    metric = primary_metric(load_run_config(a.run_dir, a.config, a.sets))
    print(f"{metric} under intensity shifts (mean over images; severity 0 = unshifted):")
    sev = sorted({int(r["severity"]) for r in rows if r["severity"]})
    for t in dict.fromkeys(r["test_set"] for r in rows):
        sub = [r for r in rows if r["test_set"] == t]
        table: dict[str, dict[str, str]] = {}
        for r in sub:
            v = r.get(f"{metric}_mean")
            cell = "" if v is None or v != v else f"{v:.3f}"
            table.setdefault(r["shift"], {})[str(r["severity"])] = cell
        cols = ["0", *map(str, sev)]
        width = max(len("shift"), *(len(k) for k in table))
        print(f"  {t} (n={sub[0]['n']})")
        print(f"    {'shift':<{width}}  " + "  ".join(f"{c:>5}" for c in cols))
        for k, v in table.items():
            print(f"    {k:<{width}}  " + "  ".join(f"{v.get(c, ''):>5}" for c in cols))
    out_dir = a.out or str(Path(a.run_dir) / SHIFTS_DIR)
    print(f"written to {out_dir}  (shifts.csv, shifts.md; --json for scripts)")
    return 0


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("predict", help="segment a folder of images with a finished run")
    x.add_argument("run_dir")
    x.add_argument("--config", "-c", metavar="FILE", help="YAML merged over the run's config.yaml")
    sets_arg(x, "override a key of the run's config (e.g. data.size is fixed by the checkpoint)")
    x.add_argument("images", help="folder of images")
    x.add_argument("out", help="NEW or empty folder for the predicted masks (<stem>.png: binary 0/255, multi-class "
                   "palette PNG of label ids); never the images folder, a dataset or another command's folder")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--overlays", action="store_true",
                   help="also write OUT/overlays/<stem>.png: [image | image + predicted contour in red]")
    x.add_argument("--probabilities", action="store_true",
                   help="also write OUT/probabilities/<stem>.png: 8-bit p(foreground)*255 (multi-class: "
                   "<stem>_class<k>.png per class k >= 1)")
    x.add_argument("--dicom-seg", action="store_true",
                   help="DICOM inputs: also write OUT/<stem>_seg.dcm, a DICOM Segmentation (pip install highdicom)")
    x.set_defaults(func=predict)


def predict(a: argparse.Namespace) -> int:
    from scarce.api import predict_folder

    written = predict_folder(a.run_dir, a.images, a.out, a.config, a.sets, overwrite=a.overwrite,
                             overlays=a.overlays, probabilities=a.probabilities, dicom_seg=a.dicom_seg)
    extras = " + ".join(n for n, on in (("overlays/", a.overlays), ("probabilities/", a.probabilities)) if on)
    print(f"wrote {len(written)} masks to {a.out}" + (f" (and {extras})" if extras else ""))
    return 0
