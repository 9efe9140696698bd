"""What the command modules share: the run-config options, argument types, the help of
``--overwrite`` and ``--set``, and the printing of tables and end-of-run summaries."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

OVERWRITE_HELP = ("replace the files this command writes in a folder it made earlier (other files are kept; "
                  "a folder it did not make, a dataset or another command's folder is never written)")


def cfg_args(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--preset``, ``--set`` and ``--data-root`` of a command that builds a run config."""
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config (RunConfig keys; see README)")
    p.add_argument("--preset", metavar="NAME", help="config preset: quality (default: pretrained-encoder U-Net), cpu (fast, from scratch) "
                   "or paper; $SCARCE_PRESET changes the default")
    p.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.iterations=200 (repeatable)")
    p.add_argument("--data-root", metavar="DIR", help="folder holding the datasets (default $SCARCE_DATA_ROOT)")


def sets_arg(p: argparse.ArgumentParser, help: str) -> None:
    """A repeatable ``--set KEY=VALUE`` (into ``sets``) of a command that reads a run's or a grid's config."""
    p.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=help)


def load_cfg(a: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    """The RunConfig of :func:`cfg_args`' options, ``extra`` ``--set`` items after the user's."""
    from scarce.config import load_config

    sets = list(a.sets) + list(extra)
    if getattr(a, "data_root", None):
        sets.append(f"data.root={a.data_root}")
    return load_config(a.config, sets, preset=a.preset)


def set_keys(sets: Sequence[str]) -> list[str]:
    """The dotted keys that ``--set`` options name (``train.iterations=5`` → ``train.iterations``)."""
    return [s.split("=", 1)[0].strip() for s in sets if "=" in s]


def budget_arg(value: str) -> int | str:
    """``--budget``: an integer or ``all`` (as ``data.budget``)."""
    if value.strip().lower() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an integer or 'all', got {value!r}") from None


def group_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The handler of a command group (``scarce data``, ``scarce gan``) given no action: its
    ``--help``, exiting 0 as ``--help`` does."""

    def show_help(a: argparse.Namespace) -> int:
        parser.print_help()
        parser.exit()

    return show_help


def to_stderr(message: str) -> None:
    """A library function's progress line (``log=``), on stderr."""
    print(message, file=sys.stderr)


def print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def primary_metric(cfg: Any) -> str:
    """The dataset's primary metric (jaccard for skin lesions, else dice), shown first."""
    try:
        from scarce.data.registry import get_info

        return str(get_info(cfg.data.dataset, num_classes=cfg.data.num_classes).metric)
    except Exception:  # a folder the registry cannot describe: dice
        return "dice"


def print_results(tests: dict[str, Any], metric: str, footer: str, note: str = "") -> None:
    """Readable end-of-run summary (the lines of eval/summary.txt): one line per test set,
    mean ± std over its images, primary metric first; ``--json`` prints the raw result instead."""
    from scarce.evaluation.evaluate import format_summary

    head = "test sets (mean ± std over images; first = in-distribution)"
    print(f"{head}, {note}:" if note else f"{head}:")
    for line in format_summary(tests, metric):
        print(f"  {line}")
    print(footer)
