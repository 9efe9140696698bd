"""Grids and results: ``scarce experiment`` and ``scarce status`` (:mod:`scarce.experiments`,
:mod:`scarce.status`), ``scarce report`` and ``scarce export`` (:mod:`scarce.reports`),
``scarce robustness`` (:mod:`scarce.robustness`) and ``scarce tsne`` (:func:`scarce.api.tsne_runs`)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from scarce.cli.common import OVERWRITE_HELP, sets_arg, to_stderr


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for add in (_experiment_parser, _status_parser, _report_parser, _export_parser, _robustness_parser,
                _tsne_parser):
        add(sub)


def _experiment_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("experiment", help="run (or resume) experiment grids and write their reports")
    x.add_argument("grids", nargs="+", metavar="GRID",
                   help="grid YAML (see configs/); several grids share one pool of workers (the first grid's runs "
                        "first, each grid's report as soon as its runs have ended)")
    sets_arg(x, "override a grid key (of every grid given), e.g. --set seeds=[0] --set base.train.iterations=50")
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
    x.add_argument("--no-report", action="store_true",
                   help="run the grids without writing their reports (the report folders are then neither "
                   "checked nor touched); `scarce report` makes one later")
    x.set_defaults(func=experiment)


def experiment(a: argparse.Namespace) -> int:
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
    return _failed(failed, "(see FAILED.txt in their folders)")


def _failed(failed: list[tuple[str, str]], why: str) -> int:
    """Print the failed runs (``[(run, message)]``) to stderr; the command's exit status."""
    if not failed:
        return 0
    print(f"{len(failed)} run(s) failed {why}:", file=sys.stderr)
    for run, msg in failed:
        print(f"  {run}: {msg}", file=sys.stderr)
    return 1


def _status_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("status", help="what is done, training (how far, ETA), stopped, failed or left, per grid or "
                                      "run folder; reads the folders only")
    x.add_argument("targets", nargs="+", metavar="GRID_OR_RUNS",
                   help="grid YAML(s) (every run of the grid, started or not) or folder(s) holding run folders")
    sets_arg(x, "override a grid key, as for `scarce experiment`")
    x.add_argument("--all", action="store_true", help="also list finished runs (with their test score) and new ones")
    x.add_argument("--workers", type=int, help="runs trained at a time, for the time left (default: the grid's "
                                               "'workers'; folders: no estimate unless given)")
    x.set_defaults(func=status)


def status(a: argparse.Namespace) -> int:
    """``scarce status``: one block per grid YAML or runs folder (see :mod:`scarce.status`)."""
    from scarce.experiments.status import status_lines

    for target in a.targets:
        print("\n".join(status_lines(target, a.sets, show_all=a.all, workers=a.workers)))
    return 0


def _report_parser(sub: argparse._SubParsersAction) -> None:
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
    x.set_defaults(func=report)


def report(a: argparse.Namespace) -> int:
    from scarce.config import ConfigError
    from scarce.reports.make import make_report

    runs, out = (a.runs, a.out) if a.out else (a.runs[:-1], a.runs[-1])
    if not runs:
        raise ConfigError("scarce report needs a report folder: scarce report RUNS... -o OUT (or RUNS OUT)")
    index = make_report(runs, out, metric=a.metric, newest=a.newest, overwrite=a.overwrite, html=a.html,
                        reference=a.reference, browser_images=a.browser_images, evaluate=_evaluate_run, log=to_stderr)
    print(f"report: {out}/results.md" + (f"\nhtml report: {index}" if index is not None else ""))
    return 0


def _evaluate_run(run_dir: str, **kw: Any) -> Any:
    """:func:`scarce.api.evaluate_run`, imported only when the HTML report re-predicts a run (most
    reports need nothing of the api)."""
    from scarce.api import evaluate_run

    return evaluate_run(run_dir, **kw)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="copy finished runs' result records (config, metrics, per-image scores, "
                       "log; no checkpoints or images) into a small folder that `scarce report` reads like runs")
    x.add_argument("runs", nargs="+", metavar="RUNS", help="folder(s) holding run folders (searched recursively)")
    x.add_argument("--out", "-o", required=True,
                   help="records folder: new, empty or an earlier export; never inside or around RUNS")
    x.add_argument("--overwrite", action="store_true",
                   help="replace records that differ from their runs (runs trained again); " + OVERWRITE_HELP)
    x.set_defaults(func=export)


def export(a: argparse.Namespace) -> int:
    from scarce.reports.records import export_records

    res = export_records(a.runs, a.out, overwrite=a.overwrite)
    parts = [f"{len(res['copied'])} new", f"{len(res['replaced'])} replaced", f"{len(res['unchanged'])} unchanged"]
    skipped = f"; {res['unfinished']} unfinished run(s) skipped" if res["unfinished"] else ""
    print(f"records: {a.out}  ({', '.join(parts)}{skipped}); report them with "
          f"`scarce report {a.out} -o REPORT`")
    return 0


def _robustness_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("robustness", help="intensity-shift stress test of every finished run under RUNS, then "
                       "tables + plots (mean ± std over seeds); resumes")
    x.add_argument("runs", nargs="+", help="folders holding run folders (searched recursively, e.g. a grid's out)")
    x.add_argument("--out", "-o", required=True,
                   help="report folder: new, empty or an earlier robustness report; never a RUNS folder itself")
    x.add_argument("--shifts", default="all", metavar="NAMES", help="'all' (default) or comma-separated shift names")
    x.add_argument("--severities", nargs="+", type=int, metavar="S", help="severities 1..3 (default 1 2 3)")
    x.add_argument("--metric", help="dice | jaccard | jaccard_t (default: each dataset's primary metric)")
    sets_arg(x, "override a key of every run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--runs-read-only", action="store_true",
                   help="leave the run folders untouched: write each run's evaluation under OUT/per_run/ "
                        "(default: <run>/eval_shifts/)")
    x.add_argument("--newest", action="store_true",
                   help="when several runs fill one cell (dataset, row, budget, seed), keep the newest")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=robustness)


def robustness(a: argparse.Namespace) -> int:
    from scarce.robustness import run_robustness

    res = run_robustness(a.runs, a.out, a.shifts, a.severities or (1, 2, 3), metric=a.metric, sets=a.sets,
                         data_root=a.data_root, runs_read_only=a.runs_read_only, newest=a.newest,
                         overwrite=a.overwrite, log=to_stderr)
    print(f"robustness report: {res['report']}  ({res['runs']} runs: {len(res['evaluated'])} evaluated, "
          f"{len(res['reused'])} up to date, {len(res['unfinished'])} unfinished skipped)")
    return _failed(res["failed"], "and are left out of the report")


def _tsne_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("tsne", help="t-SNE of finished runs' pooled deep features on their test sets, coloured by "
                       "domain (one panel per run, e.g. base vs dim)")
    x.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders (one panel each)")
    x.add_argument("--out", "-o", required=True,
                   help="output folder for tsne.png + tsne.csv: new, empty or an earlier t-SNE output; never a RUN")
    x.add_argument("--perplexity", type=float, default=30.0,
                   help="t-SNE perplexity (default 30; capped at (images - 1) / 3 for small test sets)")
    sets_arg(x, "override a key of every run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=tsne)


def tsne(a: argparse.Namespace) -> int:
    from scarce.api import tsne_runs

    res = tsne_runs(a.runs, a.out, perplexity=a.perplexity, sets=a.sets, data_root=a.data_root,
                    overwrite=a.overwrite)
    print(f"t-SNE: {res['png']}  ({res['points']} points from {len(a.runs)} run(s); coordinates: {res['csv']})")
    return 0
