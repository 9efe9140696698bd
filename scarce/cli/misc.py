"""``scarce methods`` (the method registry, :mod:`scarce.methods.docs`) and ``scarce demo``
(:mod:`scarce.demo`)."""
from __future__ import annotations

import argparse

from scarce.cli.common import OVERWRITE_HELP, print_table, sets_arg


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for add in (_methods_parser, _demo_parser):
        add(sub)


def _methods_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("methods", help="registered training methods: family, what each does, its config keys")
    x.add_argument("name", nargs="?", help="one method: its config keys with defaults and help")
    x.add_argument("--markdown", action="store_true",
                   help="every method as Markdown: family, data streams, data.patch support, config keys "
                        "(the pages under docs/methods/)")
    x.add_argument("--family", metavar="F", help="with --markdown: one family's page (a sub-package of scarce/methods, e.g. weak)")
    x.set_defaults(func=methods)


def methods(a: argparse.Namespace) -> int:
    """``scarce methods [NAME] [--markdown [--family F]]``: the method registry (the one list of
    method names); the descriptions come from :mod:`scarce.methods.docs`, as do docs/methods/."""
    from scarce.config import ConfigError
    from scarce.methods import load_builtin_methods
    from scarce.methods.docs import config_rows, method_family, method_summary, methods_markdown

    if a.family is not None and not a.markdown:
        raise ConfigError("--family goes with --markdown (scarce methods --markdown --family F)")
    if a.markdown:
        if a.name is not None:
            raise ConfigError("--markdown prints every method (or one --family); leave out NAME")
        print(methods_markdown(a.family), end="")
        return 0
    reg = load_builtin_methods()
    if a.name is None:
        rows = [{"method": n, "family": method_family(reg.get(n)), "what": method_summary(reg.get(n), 90)}
                for n in reg.names()]
        print_table(rows, ["method", "family", "what"])
        print("\nscarce methods NAME shows a method's config keys; set them with --set method.KEY=VALUE")
        return 0
    cls = reg.get(a.name)
    print(f"{cls.name} ({cls.__module__}): {method_summary(cls, 400)}\n")
    rows = config_rows(cls)
    if rows:
        print_table(rows, ["key", "default", "help"])
    else:
        print("(no config keys of its own)")
    return 0


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("demo", help="train and compare methods on built-in synthetic data (minutes on a CPU)")
    x.add_argument("--out", default="runs/demo", help="demo folder (runs + report)")
    sets_arg(x, "override a key of the demo grid, e.g. --set base.train.iterations=100")
    x.add_argument("--workers", type=int, help="parallel runs (default 2, one thread each)")
    x.add_argument("--quick", action="store_true", help="tiny version (for smoke tests, ~1 minute)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=demo)


def demo(a: argparse.Namespace) -> int:
    from scarce.demo import run_demo

    run_demo(a.out, sets=a.sets, workers=a.workers, quick=a.quick, overwrite=a.overwrite)
    return 0
