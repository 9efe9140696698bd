"""Command line: parses arguments and calls one library function per command.

Every command that builds a run accepts ``--config FILE.yaml``, ``--preset NAME`` and repeated
``--set key=value`` (e.g. ``--set train.iterations=200 --set method.name=e2eaug``), plus
``--data-root`` (default: $SCARCE_DATA_ROOT).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

EPILOG = "Docs: README.md. Data root: --data-root or the SCARCE_DATA_ROOT environment variable."
"""Listed statically so ``scarce --help`` needs no torch import (a test keeps it in sync)."""


def _cfg_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (RunConfig keys; see README)")
    p.add_argument("--preset", metavar="NAME", help="config preset: quality (default: pretrained-encoder U-Net), cpu (fast, from scratch) "
                   "or paper; $SCARCE_PRESET changes the default")
    p.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.iterations=200 (repeatable)")
    p.add_argument("--data-root", metavar="DIR", help="folder holding the datasets (default $SCARCE_DATA_ROOT)")


def _load_cfg(a: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    from scarce.config import load_config

    sets = list(a.sets) + list(extra)
    if getattr(a, "data_root", None):
        sets.append(f"data.root={a.data_root}")
    return load_config(a.config, sets, preset=a.preset)


def _budget_arg(value: str) -> int | str:
    """``--budget``: an integer or ``all`` (as ``data.budget``)."""
    if value.strip().lower() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an integer or 'all', got {value!r}") from None


COMPLETION_SHELLS = ("bash", "zsh", "tcsh")


def _print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    """``scarce --print-completion SHELL``: shtab's completion script for ``parser`` (shtab is
    optional: without it, one error line naming the install)."""
    try:
        import shtab
    except ImportError:
        print("scarce: error: shell completion needs the shtab package: pip install shtab "
              "(or pip install 'scarce[completion]')", file=sys.stderr)
        return 2
    print(shtab.complete(parser, shell=shell))
    return 0


OVERWRITE_HELP = ("replace the files this command writes in a folder it made earlier (other files are kept; "
                  "a folder it did not make, a dataset or another command's folder is never written)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scarce", description="Medical image segmentation when annotations are scarce.",
                                epilog=EPILOG)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--print-completion", choices=COMPLETION_SHELLS, metavar="SHELL",
                   help="print a shell completion script (bash | zsh | tcsh; needs `pip install shtab`), e.g. "
                        "scarce --print-completion bash > ~/.local/share/bash-completion/completions/scarce")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    # ---- data
    d = sub.add_parser("data", help="list, inspect, import and split datasets")
    dsub = d.add_subparsers(dest="data_cmd", metavar="ACTION")
    x = dsub.add_parser("list", help="registered datasets and whether they are present under the data root")
    x.add_argument("--data-root", metavar="DIR")
    x = dsub.add_parser("show", help="metadata, counts and splits of one dataset (name or folder)")
    x.add_argument("name")
    x.add_argument("--data-root", metavar="DIR")
    x = dsub.add_parser("import", help="convert an official download layout into the scarce folder format")
    x.add_argument("name", help="dataset kind: a registered name (isic2017, busi, montgomery, kvasir_seg, ph2, "
                   "cvc_clinicdb, fundus_drishti, fundus_domain1, prostate_bidmc, ...), 'generic', 'nnunet', "
                   "'decathlon', or a multi-domain download: 'fundus_dofe', 'prostate_saml' (one folder per domain in DEST)")
    x.add_argument("src", help="the downloaded dataset folder (for 'decathlon': the datalist JSON)")
    x.add_argument("dest", help="output folder (images/, masks/, split.csv); must be new or empty")
    x.add_argument("--base-dir", help="decathlon only: folder the datalist paths are relative to")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--empty-fraction", type=float, metavar="F",
                   help="prostate_saml: share of each volume's slices without prostate to keep (default 0)")
    x.add_argument("--test-fraction", type=float, metavar="F",
                   help="prostate_saml: share of each site's cases in the test split (default 0.2)")
    x.add_argument("--seed", type=int, help="prostate_saml: seed of the case split and empty slices (default 0)")
    x = dsub.add_parser("export-nnunet", help="write a scarce folder as an nnU-Net raw dataset")
    x.add_argument("src")
    x.add_argument("dest", help="nnU-Net raw folder (Dataset<ID>_<NAME> is created inside)")
    x.add_argument("--id", type=int, default=501, help="nnU-Net dataset id (default 501)")
    x.add_argument("--name", default=None, help="nnU-Net dataset name (default: the source folder's name)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x = dsub.add_parser("split", help="make (and save) the few-label split of a dataset")
    _cfg_args(x)
    x.add_argument("name", nargs="?", help="dataset (default: data.dataset of the config)")
    x.add_argument("--budget", type=_budget_arg, metavar="N|all",
                   help="labelled images (default: data.budget, 40); all = every one outside the test part")
    x.add_argument("--seed", type=int)
    x.add_argument("--out", metavar="FILE", help="write the split JSON here (default: print it); an existing file is refused")
    x.add_argument("--overwrite", action="store_true",
                   help="replace a split file this command wrote earlier (no other file is ever replaced)")
    x = dsub.add_parser("scribbles", help="synthesise scribbles/clicks from full masks into <dataset>/scribbles/")
    x.add_argument("name", help="registered dataset or folder")
    x.add_argument("--length", type=float, required=True,
                   help="0 = a click per class, 1 = a full medial-axis scribble, in between = part of it")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x = dsub.add_parser("fingerprint", help="image sizes, object sizes (share of the image), objects per mask and "
                        "intensities of datasets (names or folders), one column each")
    x.add_argument("names", nargs="+", metavar="DATASET")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--json", action="store_true", help="print the fingerprints as JSON (for scripts)")
    x.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    x = dsub.add_parser("synthetic", help="write the built-in synthetic dataset (and its OOD variant)")
    x.add_argument("dest", help="new or empty folder (images/, masks/, split.csv); nothing in it is ever deleted")
    x.add_argument("--n", type=int, default=160)
    x.add_argument("--size", type=int, default=128)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--ood", action="store_true", help="write the out-of-distribution variant")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    # ---- train / evaluate / predict
    x = sub.add_parser("plan", help="choose data.size/aspect/patch, batch and iterations for a wall-clock budget "
                       "from the dataset's fingerprint and measured step times (prints each reason and the --set line)")
    _cfg_args(x)
    x.add_argument("name", help="dataset (registered name or folder)")
    x.add_argument("--budget-minutes", type=float, metavar="M",
                   help="wall-clock budget of the run (default: train.budget_minutes, else 10)")
    x.add_argument("--json", action="store_true", help="print the plan as JSON (for scripts)")
    x = sub.add_parser("train", help="train one method on one dataset and evaluate it (ID + OOD)")
    _cfg_args(x)
    x.add_argument("--method", help="shortcut for --set method.name=... (a registered method: `scarce methods` lists them)")
    x.add_argument("--out", help="shortcut for --set out=...")
    x.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    x.add_argument("--json", action="store_true", help="print the run's result as JSON (for scripts) instead of a summary")
    x = sub.add_parser("evaluate", help="evaluate a finished run's best checkpoint on test sets")
    x.add_argument("run_dir")
    x.add_argument("--config", "-c", metavar="FILE", help="YAML merged over the run's config.yaml (e.g. eval: ...)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the run's config, e.g. --set eval.save_predictions=false")
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
    x = sub.add_parser("predict", help="segment a folder of images with a finished run")
    x.add_argument("run_dir")
    x.add_argument("--config", "-c", metavar="FILE", help="YAML merged over the run's config.yaml")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the run's config (e.g. data.size is fixed by the checkpoint)")
    x.add_argument("images", help="folder of images")
    x.add_argument("out", help="NEW or empty folder for the predicted masks (<stem>.png: binary 0/255, multi-class "
                   "palette PNG of label ids); never the images folder, a dataset or another command's folder")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--overlays", action="store_true",
                   help="also write OUT/overlays/<stem>.png: [image | image + predicted contour in red]")
    x.add_argument("--probabilities", action="store_true",
                   help="also write OUT/probabilities/<stem>.png: 8-bit p(foreground)*255 (multi-class: "
                   "<stem>_class<k>.png per class k >= 1)")
    x = sub.add_parser("export-model", help="export a finished run's segmenter as ONNX or TorchScript, with its "
                       "preprocessing in the file's metadata, checked against scarce's own predictions")
    x.add_argument("run_dir", metavar="RUN")
    x.add_argument("--format", "-f", dest="fmt", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx (needs pip install \"scarce[onnx]\"; default) or torchscript")
    x.add_argument("-o", "--out", metavar="FILE",
                   help="export file (default RUN/export/model.onnx or model.torchscript.pt; a FILE.json record "
                        "is written beside it)")
    x.add_argument("--check-images", type=int, default=64, metavar="N",
                   help="test images of the run the export is checked on (default 64)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help="replace an export this command wrote earlier")
    x.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")

    # ---- GAN
    g = sub.add_parser("gan", help="mask→image GAN utilities (E2EAug / separate)")
    gsub = g.add_subparsers(dest="gan_cmd", metavar="ACTION")
    x = gsub.add_parser("pretrain", help="pretrain Pix2Pix on the split's training pairs (cached, reused by the methods)")
    _cfg_args(x)
    x.add_argument("--out", help="shortcut for --set out=... (gallery goes here; cache beside it)")
    x.add_argument("--vanilla", action="store_true", help="the non-searched 4-2-1 generator (as `separate` uses)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    # ---- experiments / reports / demo
    x = sub.add_parser("experiment", help="run (or resume) experiment grids and write their reports")
    x.add_argument("grids", nargs="+", metavar="GRID",
                   help="grid YAML (see configs/); several grids share one pool of workers (the first grid's runs "
                        "first, each grid's report as soon as its runs have ended)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid key (of every grid given), e.g. --set seeds=[0] --set base.train.iterations=50")
    x.add_argument("--workers", type=int,
                   help="parallel worker processes (default: the grids' largest 'workers'; local backend)")
    x.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: one Ray task per run, asking for "
                        "the grid's 'threads' CPUs and 'gpus' GPUs (needs pip install -e \".[ray]\" and, on a "
                        "cluster, a file system shared by every node at the same path)")
    x.add_argument("--address", help="Ray cluster to run on, e.g. auto (the one `ray start` joined this machine to) "
                                     "or HOST:6379 (default: $RAY_ADDRESS, else a local Ray started for this grid)")
    x.add_argument("--gpus-per-run", type=float, metavar="N",
                   help="GPUs each run asks Ray for, e.g. 1 or 0.5 (default: the grid's 'gpus', else 0)")
    x.add_argument("--ray-timeout", type=float, metavar="SECONDS",
                   help="how long to wait for the Ray cluster at --address to answer (default 30)")
    x.add_argument("--dry-run", action="store_true", help="list the runs that would run")
    x.add_argument("--no-report", action="store_true")
    x = sub.add_parser("status", help="what is done, training (how far, ETA), stopped, failed or left, per grid or "
                                      "run folder; reads the folders only")
    x.add_argument("targets", nargs="+", metavar="GRID_OR_RUNS",
                   help="grid YAML(s) (every run of the grid, started or not) or folder(s) holding run folders")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid key, as for `scarce experiment`")
    x.add_argument("--all", action="store_true", help="also list finished runs (with their test score) and new ones")
    x.add_argument("--workers", type=int, help="runs trained at a time, for the time left (default: the grid's "
                                               "'workers'; folders: no estimate unless given)")
    x = sub.add_parser("report", help="aggregate run folders into tables and plots")
    x.add_argument("runs", nargs="+", metavar="RUNS",
                   help="folder(s) holding run folders (searched recursively); without -o the last one is OUT "
                        "(scarce report RUNS OUT)")
    x.add_argument("--out", "-o", help="report folder: new, empty or an earlier report (e.g. RUNS/report); never RUNS itself")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--metric", help="dice | jaccard | jaccard_t (default: each dataset's primary metric)")
    x.add_argument("--newest", action="store_true",
                   help="when several runs fill one table cell (dataset, row, budget, seed), keep the newest "
                        "(by metrics.json time) instead of stopping with an error")
    x.add_argument("--html", action="store_true",
                   help="also write OUT/index.html: tables with 95%% intervals and significance tests, figures and a "
                        "per-image browser (static, works offline)")
    x.add_argument("--reference", metavar="ROW", help="--html: the row the tests compare every other row with "
                   "(default: the plain supervised row)")
    x.add_argument("--browser-images", type=int, default=48, metavar="N",
                   help="--html: at most N images per test set in the per-image browser (0: no browser; default 48)")
    x = sub.add_parser("export", help="copy finished runs' result records (config, metrics, per-image scores, "
                       "log; no checkpoints or images) into a small folder that `scarce report` reads like runs")
    x.add_argument("runs", nargs="+", metavar="RUNS", help="folder(s) holding run folders (searched recursively)")
    x.add_argument("--out", "-o", required=True,
                   help="records folder: new, empty or an earlier export; never inside or around RUNS")
    x.add_argument("--overwrite", action="store_true",
                   help="replace records that differ from their runs (runs trained again); " + OVERWRITE_HELP)
    x = sub.add_parser("robustness", help="intensity-shift stress test of every finished run under RUNS, then "
                       "tables + plots (mean ± std over seeds); resumes")
    x.add_argument("runs", nargs="+", help="folders holding run folders (searched recursively, e.g. a grid's out)")
    x.add_argument("--out", "-o", required=True,
                   help="report folder: new, empty or an earlier robustness report; never a RUNS folder itself")
    x.add_argument("--shifts", default="all", metavar="NAMES", help="'all' (default) or comma-separated shift names")
    x.add_argument("--severities", nargs="+", type=int, metavar="S", help="severities 1..3 (default 1 2 3)")
    x.add_argument("--metric", help="dice | jaccard | jaccard_t (default: each dataset's primary metric)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--runs-read-only", action="store_true",
                   help="leave the run folders untouched: write each run's evaluation under OUT/per_run/ "
                        "(default: <run>/eval_shifts/)")
    x.add_argument("--newest", action="store_true",
                   help="when several runs fill one cell (dataset, row, budget, seed), keep the newest")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x = sub.add_parser("tsne", help="t-SNE of finished runs' pooled deep features on their test sets, coloured by "
                       "domain (one panel per run, e.g. base vs dim)")
    x.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders (one panel each)")
    x.add_argument("--out", "-o", required=True,
                   help="output folder for tsne.png + tsne.csv: new, empty or an earlier t-SNE output; never a RUN")
    x.add_argument("--perplexity", type=float, default=30.0,
                   help="t-SNE perplexity (default 30; capped at (images - 1) / 3 for small test sets)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x = sub.add_parser("methods", help="registered training methods: family, what each does, its config keys")
    x.add_argument("name", nargs="?", help="one method: its config keys with defaults and help")
    x.add_argument("--markdown", action="store_true",
                   help="every method as Markdown: family, data streams, data.patch support, config keys "
                        "(the pages under docs/methods/)")
    x.add_argument("--family", metavar="F", help="with --markdown: one family's page (a sub-package of scarce/methods, e.g. weak)")
    x = sub.add_parser("demo", help="train and compare methods on built-in synthetic data (minutes on a CPU)")
    x.add_argument("--out", default="runs/demo", help="demo folder (runs + report)")
    x.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo grid, e.g. --set base.train.iterations=100")
    x.add_argument("--workers", type=int, help="parallel runs (default 2, one thread each)")
    x.add_argument("--quick", action="store_true", help="tiny version (for smoke tests, ~1 minute)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return p


def _print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def _primary_metric(cfg: Any) -> str:
    """The dataset's primary metric (jaccard for skin lesions, else dice), shown first."""
    try:
        from scarce.data.registry import get_info

        return str(get_info(cfg.data.dataset, num_classes=cfg.data.num_classes).metric)
    except Exception:  # a folder the registry cannot describe: dice
        return "dice"


def _print_results(tests: dict[str, Any], metric: str, footer: str, note: str = "") -> None:
    """Readable end-of-run summary (the lines of eval/summary.txt): one line per test set,
    mean ± std over its images, primary metric first; ``--json`` prints the raw result instead."""
    from scarce.evaluation.evaluate import format_summary

    head = "test sets (mean ± std over images; first = in-distribution)"
    print(f"{head}, {note}:" if note else f"{head}:")
    for line in format_summary(tests, metric):
        print(f"  {line}")
    print(footer)


def _methods(name: str | None, markdown: bool = False, family: str | None = None) -> int:
    """``scarce methods [NAME] [--markdown [--family F]]``: the method registry (the one list of
    method names); the descriptions come from :mod:`scarce.methods.docs`, as do docs/methods/."""
    from scarce.config import ConfigError
    from scarce.methods import load_builtin_methods
    from scarce.methods.docs import config_rows, method_family, method_summary, methods_markdown

    if family is not None and not markdown:
        raise ConfigError("--family goes with --markdown (scarce methods --markdown --family F)")
    if markdown:
        if name is not None:
            raise ConfigError("--markdown prints every method (or one --family); leave out NAME")
        print(methods_markdown(family), end="")
        return 0
    reg = load_builtin_methods()
    if name is None:
        rows = [{"method": n, "family": method_family(reg.get(n)), "what": method_summary(reg.get(n), 90)}
                for n in reg.names()]
        _print_table(rows, ["method", "family", "what"])
        print("\nscarce methods NAME shows a method's config keys; set them with --set method.KEY=VALUE")
        return 0
    cls = reg.get(name)
    print(f"{cls.name} ({cls.__module__}): {method_summary(cls, 400)}\n")
    rows = config_rows(cls)
    if rows:
        _print_table(rows, ["key", "default", "help"])
    else:
        print("(no config keys of its own)")
    return 0


def _dispatch(a: argparse.Namespace) -> int:
    if a.cmd == "data":
        return _data(a)
    if a.cmd == "train":
        from scarce.api import train_run

        extra = []
        if a.method:
            extra.append(f"method.name={a.method}")
        if a.out:
            extra.append(f"out={a.out}")
        cfg = _load_cfg(a, extra)
        plan_kw = {"given": _set_keys(a.sets)} if cfg.train.budget_minutes else {}  # the planner keeps --set keys
        res = train_run(cfg, resume=a.resume, **plan_kw)
        if a.json:
            print(json.dumps(res, indent=2))
            return 0
        best = f"best validation checkpoint: step {res.get('best_step')}" if res.get("best_step") is not None else ""
        _print_results(res.get("tests", {}), _primary_metric(cfg),
                       f"run folder: {res['run_dir']}  (eval/summary.txt, eval/metrics.json; --json for scripts)", best)
        return 0
    if a.cmd == "evaluate":
        from scarce.api import evaluate_run

        sets = [s for s in (a.test_sets or "").split(",") if s] or None
        if a.shifts is not None or a.severities:  # --shifts "" too: an error, not a plain evaluation
            return _evaluate_shifts(a, sets)
        res = evaluate_run(a.run_dir, sets, a.data_root, a.out, a.config, a.sets, overwrite=a.overwrite)
        if a.json:
            print(json.dumps(res, indent=2))
            return 0
        from pathlib import Path

        from scarce.api import load_run_config

        out_dir = a.out or str(Path(a.run_dir) / "eval")
        _print_results(res, _primary_metric(load_run_config(a.run_dir, a.config, a.sets)),
                       f"written to {out_dir}  (summary.txt, metrics.json, per-set CSVs; --json for scripts)")
        return 0
    if a.cmd == "predict":
        from scarce.api import predict_folder

        written = predict_folder(a.run_dir, a.images, a.out, a.config, a.sets, overwrite=a.overwrite,
                                 overlays=a.overlays, probabilities=a.probabilities)
        extras = " + ".join(n for n, on in (("overlays/", a.overlays), ("probabilities/", a.probabilities)) if on)
        print(f"wrote {len(written)} masks to {a.out}" + (f" (and {extras})" if extras else ""))
        return 0
    if a.cmd == "export-model":
        from scarce.model_export import export_model

        res = export_model(a.run_dir, a.fmt, a.out, overwrite=a.overwrite, sets=a.sets, data_root=a.data_root,
                           check_images=a.check_images)
        if a.json:
            print(json.dumps(res, indent=2))
            return 0
        print(f"exported {a.run_dir} ({res['format']}) to {res['path']}  (metadata and check: {res['record']})")
        print(f"check on {res['images']} test images ({', '.join(res['test_sets'])}): max |difference| of the "
              f"probabilities vs scarce's own {res['max_abs_diff']:.2g}; {res['labels_differing']} of "
              f"{res['pixels']} labels differ")
        return 0
    if a.cmd == "gan":
        if a.gan_cmd != "pretrain":
            build_parser().parse_args(["gan", "--help"])
            return 0
        from scarce.api import pretrain_gan_run

        cfg = _load_cfg(a, [f"out={a.out}"] if a.out else [])
        print(json.dumps(pretrain_gan_run(cfg, vanilla=a.vanilla, overwrite=a.overwrite), indent=2))
        return 0
    if a.cmd == "experiment":
        import shlex

        from scarce.experiments import run_grids

        watch = shlex.join(["scarce", "status", *a.grids, *[t for x in a.sets for t in ("--set", x)]])
        results = run_grids(a.grids, a.sets, workers=a.workers, report=not a.no_report, dry_run=a.dry_run,
                            backend=a.backend, address=a.address, gpus_per_run=a.gpus_per_run,
                            ray_timeout=a.ray_timeout,
                            # once the grids are checked and locked: an error stays the only line
                            on_start=lambda: print(f"scarce: see where the runs stand with: {watch}", file=sys.stderr))
        for res in results:
            if res.get("report") and not res.get("failed"):
                print(f"report: {res['report']}/results.md")
        # a run two grids share is listed once
        failed = list(dict.fromkeys(f for res in results for f in res.get("failed") or []))
        if failed:
            print(f"{len(failed)} run(s) failed (see FAILED.txt in their folders):", file=sys.stderr)
            for out, msg in failed:
                print(f"  {out}: {msg}", file=sys.stderr)
            return 1
        return 0
    if a.cmd == "status":
        return _status(a)
    if a.cmd == "plan":
        return _plan(a)
    if a.cmd == "report":
        from scarce.config import ConfigError
        from scarce.reports.report import check_report_folder, write_report

        runs, out = (a.runs, a.out) if a.out else (a.runs[:-1], a.runs[-1])
        if not runs:
            raise ConfigError("scarce report needs a report folder: scarce report RUNS... -o OUT (or RUNS OUT)")
        if a.reference and not a.html:
            raise ConfigError("--reference needs --html (the tests against a reference row are in the HTML report)")
        check_report_folder(runs, out, overwrite=a.overwrite)
        if a.html:
            from scarce.reports.html import write_html_report

            def predict(run_dir: Path, dest: Path) -> None:  # runs saved without predictions
                from scarce.api import evaluate_run

                if not (run_dir / "checkpoints").is_dir():
                    raise ConfigError("no checkpoints: a result record (scarce export) or a copied run without "
                                      "them; its pictures stay empty (report the run folder to see them)")
                evaluate_run(str(run_dir), out=str(dest), sets=["eval.save_predictions=true", "eval.overlays=0"])

            index = write_html_report(runs, out, metric=a.metric, reference=a.reference, newest=a.newest,
                                      browser_images=a.browser_images, predict=predict,
                                      log=lambda m: print(m, file=sys.stderr))
            print(f"report: {out}/results.md\nhtml report: {index}")
            return 0
        write_report(runs, out, metric=a.metric, newest=a.newest, require_runs=True)
        print(f"report: {out}/results.md")
        return 0
    if a.cmd == "export":
        from scarce.reports.records import export_records

        res = export_records(a.runs, a.out, overwrite=a.overwrite)
        parts = [f"{len(res['copied'])} new", f"{len(res['replaced'])} replaced", f"{len(res['unchanged'])} unchanged"]
        skipped = f"; {res['unfinished']} unfinished run(s) skipped" if res["unfinished"] else ""
        print(f"records: {a.out}  ({', '.join(parts)}{skipped}); report them with "
              f"`scarce report {a.out} -o REPORT`")
        return 0
    if a.cmd == "robustness":
        from scarce.robustness import run_robustness

        res = run_robustness(a.runs, a.out, a.shifts, a.severities or (1, 2, 3), metric=a.metric, sets=a.sets,
                             data_root=a.data_root, runs_read_only=a.runs_read_only, newest=a.newest,
                             overwrite=a.overwrite, log=lambda m: print(m, file=sys.stderr))
        print(f"robustness report: {res['report']}  ({res['runs']} runs: {len(res['evaluated'])} evaluated, "
              f"{len(res['reused'])} up to date, {len(res['unfinished'])} unfinished skipped)")
        if res["failed"]:
            print(f"{len(res['failed'])} run(s) failed and are left out of the report:", file=sys.stderr)
            for run, msg in res["failed"]:
                print(f"  {run}: {msg}", file=sys.stderr)
            return 1
        return 0
    if a.cmd == "tsne":
        from scarce.api import tsne_runs

        res = tsne_runs(a.runs, a.out, perplexity=a.perplexity, sets=a.sets, data_root=a.data_root,
                        overwrite=a.overwrite)
        print(f"t-SNE: {res['png']}  ({res['points']} points from {len(a.runs)} run(s); coordinates: {res['csv']})")
        return 0
    if a.cmd == "methods":
        return _methods(a.name, a.markdown, a.family)
    if a.cmd == "demo":
        from scarce.demo import run_demo

        run_demo(a.out, sets=a.sets, workers=a.workers, quick=a.quick, overwrite=a.overwrite)
        return 0
    build_parser().print_help()
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
    metric = _primary_metric(load_run_config(a.run_dir, a.config, a.sets))
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


def _data(a: argparse.Namespace) -> int:
    import scarce.data as D
    from scarce.config import ConfigError

    if a.data_cmd == "list":
        rows = D.list_datasets(a.data_root)
        _print_table(rows, ["name", "task", "metric", "present", "n_images", "splits", "ood"])
        return 0
    if a.data_cmd == "show":
        print(json.dumps(D.show_dataset(a.name, a.data_root), indent=2, default=str))
        return 0
    if a.data_cmd == "import":
        opts = {k: v for k, v in (("empty_fraction", a.empty_fraction), ("test_fraction", a.test_fraction),
                                  ("seed", a.seed)) if v is not None}
        if a.name in ("nnunet", "decathlon"):
            from scarce.data.multidomain import reject_options

            reject_options(opts, a.name)
        if a.name == "nnunet":
            out = D.import_nnunet(a.src, a.dest, overwrite=a.overwrite)
        elif a.name == "decathlon":
            out = D.import_decathlon_json(a.src, a.dest, base_dir=a.base_dir, overwrite=a.overwrite)
        elif D.is_multidomain(a.name):
            outs = D.import_multidomain(a.name, a.src, a.dest, overwrite=a.overwrite, **opts)
            print("imported into " + ", ".join(str(o) for o in outs))
            return 0
        else:
            out = D.import_dataset(a.name, a.src, a.dest, overwrite=a.overwrite, **opts)
        print(f"imported into {out}")
        return 0
    if a.data_cmd == "export-nnunet":
        print(f"exported to {D.export_nnunet(a.src, a.dest, a.id, a.name, overwrite=a.overwrite)}")
        return 0
    if a.data_cmd == "split":
        if a.out:  # before the (slow) split: an existing file is refused, not overwritten
            from scarce.utils.paths import check_output_file

            check_output_file(a.out, overwrite=a.overwrite, what="split file", command="scarce data split",
                              previous=D.is_split_file)
        extra = [f"data.dataset={a.name}"] if a.name else []
        if a.budget is not None:
            extra.append(f"data.budget={a.budget}")
        if a.seed is not None:
            extra.append(f"train.seed={a.seed}")
        cfg = _load_cfg(a, extra)
        split = D.split_for_config(cfg.data, seed=cfg.train.seed)
        if a.out:
            split.save(a.out)
            print(f"train {len(split.train)}, val {len(split.val)}, test {len(split.test)} → {a.out}")
        else:
            print(split.to_json())
        return 0
    if a.data_cmd == "scribbles":
        from scarce.data.load import resolve_dataset
        from scarce.data.scribbles import write_scribbles

        if not 0.0 <= a.length <= 1.0:
            raise ConfigError(f"--length must be in [0, 1], got {a.length}")
        info, folder = resolve_dataset(a.name, a.data_root)
        print(write_scribbles(folder, a.length, seed=a.seed, num_classes=info.num_classes, overwrite=a.overwrite))
        return 0
    if a.data_cmd == "fingerprint":
        from scarce.data.fingerprint import fingerprint, format_fingerprints

        fps = [fingerprint(n, a.data_root) for n in a.names]
        print(json.dumps(fps, indent=2) if a.json else format_fingerprints(fps, markdown=a.markdown))
        return 0
    if a.data_cmd == "synthetic":
        print(D.make_synthetic(a.dest, n=a.n, size=a.size, seed=a.seed, ood=a.ood, overwrite=a.overwrite))
        return 0
    build_parser().parse_args(["data", "--help"])
    return 0


def os_error_message(e: OSError) -> str:
    """One line for a file-system error: the path, the system's reason and what to do, e.g.
    ``/data/runs/x: Read-only file system (choose a writable output folder)``."""
    import errno
    import os
    from pathlib import Path

    path = e.filename if e.filename is not None else ""
    reason = e.strerror or str(e)
    fix = ""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        fix = "free some disk space or choose an output folder on another disk; no partial file was kept"
    elif e.errno == errno.EROFS:
        fix = "choose an output folder on a writable disk"
    elif e.errno in (errno.EACCES, errno.EPERM):
        fix = "choose a folder you may write to, or fix its permissions"
    elif e.errno == errno.ENOTDIR and path:
        parent = next((q for q in [os.fspath(path), *map(str, Path(path).parents)] if os.path.isfile(q)), None)
        fix = f"{parent} is a file, not a folder" if parent else "a part of the path is a file, not a folder"
        fix += ": choose another output folder"
    elif e.errno == errno.EEXIST and path and os.path.isfile(path):
        fix = "it is a file, not a folder: choose another output folder"
    head = f"{os.fspath(path)}: {reason}" if path else reason
    return f"{head} ({fix})" if fix else head


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.version:
        from scarce import __version__

        print(__version__)
        return 0
    if a.print_completion:
        return _print_completion(parser, a.print_completion)
    import warnings

    warnings.formatwarning = lambda msg, cat, *args, **kw: f"scarce: warning: {msg}\n"
    from scarce.config import ConfigError
    from scarce.data.types import DataError
    from scarce.utils.io import CheckpointError

    try:
        return _dispatch(a)
    except (DataError, ConfigError, KeyError, FileNotFoundError, FileExistsError, CheckpointError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and e.errno is not None:
            msg = os_error_message(e)
        print(f"scarce: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` etc.
        sys.stderr.close()
        return 0
    except OSError as e:  # read-only folder, disk full, a path under a file, permission denied
        print(f"scarce: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from scarce.utils.interrupt import Interrupted

        if isinstance(e, Interrupted):  # stopped at a checkpoint: say where and how to go on
            hint = "; the same command with --resume continues exactly from there" if e.run_dir else ""
            print(f"scarce: {e}{hint}", file=sys.stderr)
            return 128 + e.signum
        print("scarce: interrupted (a run resumes with --resume / re-running the grid)", file=sys.stderr)
        return 130


def _set_keys(sets: Sequence[str]) -> list[str]:
    """The dotted keys that ``--set`` options name (``train.iterations=5`` → ``train.iterations``)."""
    return [s.split("=", 1)[0].strip() for s in sets if "=" in s]


def _plan(a: argparse.Namespace) -> int:
    """``scarce plan DS``: :func:`scarce.engine.planner.plan_config`, each choice with its reason."""
    from scarce.config import ConfigError
    from scarce.engine.planner import plan_config

    if a.budget_minutes is not None and not a.budget_minutes > 0:
        raise ConfigError(f"--budget-minutes must be > 0, got {a.budget_minutes:g}")
    cfg = _load_cfg(a, [f"data.dataset={a.name}"])
    plan = plan_config(cfg, a.budget_minutes, given=_set_keys(a.sets),
                       log=None if a.json else lambda m: print(f"scarce: {m}", file=sys.stderr))
    if a.json:
        print(json.dumps(plan.as_dict(), indent=2))
        return 0
    print(f"plan for {a.name} in {plan.budget_minutes:g} min (preset {cfg.preset}, method {cfg.method['name']}):")
    for line in plan.lines():
        print(f"  {line}")
    print(f"use it with: {' '.join(plan.sets())}\n(or --set train.budget_minutes={plan.budget_minutes:g} to plan "
          "inside `scarce train`)")
    return 0


def _status(a: argparse.Namespace) -> int:
    """``scarce status``: one block per grid YAML or runs folder (see :mod:`scarce.status`)."""
    from scarce.config import ConfigError
    from pathlib import Path

    from scarce.status import find_runs, format_status, run_status

    show = ("running", "stopped", "failed") + (("done", "new") if a.all else ())
    for target in a.targets:
        path = Path(target)
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            from scarce.experiments import grid_status

            g, statuses, holder = grid_status(path, a.sets)
            out = Path(g.get("out", f"runs/{g.get('name', 'grid')}"))
            lines = format_status(f"grid {g.get('name', path.stem)} ({out})", statuses, show, root=out,
                                  workers=int(a.workers or g.get("workers", 1) or 1))
            lines.insert(1, f"  grid process: pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                            f"{holder.get('started', '?')}" if holder else "  grid process: none running")
        else:
            try:
                runs = find_runs(path)
            except ValueError as e:
                raise ConfigError(f"{e}; or give a grid YAML") from None
            lines = format_status(str(path), [run_status(r) for r in runs], show, root=path, workers=a.workers)
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
