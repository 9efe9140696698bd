"""Command line: parses arguments and calls one library function per command.

Each command's parser is built next to its handler, in one module per group of commands
(``data``; ``run``: plan, train, evaluate, predict; ``label``: suggest, annotate; ``model``:
export-model, gan; ``results``: experiment, status, report, export, robustness, tsne; ``misc``:
methods, demo), and names the handler with ``set_defaults(func=...)``. A handler parses, calls a
library function (:mod:`scarce.api`, :mod:`scarce.experiments`, :mod:`scarce.reports`, ...) and
prints; this module turns the library's errors into one line and an exit code.

Every command that builds a run accepts ``--config FILE.yaml``, ``--preset NAME`` and repeated
``--set key=value`` (e.g. ``--set train.iterations=200 --set method.name=e2eaug``), plus
``--data-root`` (default: $SCARCE_DATA_ROOT).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from scarce.cli import data, label, misc, model, results, run

EPILOG = "Docs: README.md. Data root: --data-root or the SCARCE_DATA_ROOT environment variable."
"""Listed statically so ``scarce --help`` needs no torch import (a test keeps it in sync)."""

GROUPS = (data, run, label, model, results, misc)
"""The command modules, in the order ``scarce --help`` lists their commands."""

COMPLETION_SHELLS = ("bash", "zsh", "tcsh")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scarce", description="Medical image segmentation when annotations are scarce.",
                                epilog=EPILOG)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--print-completion", choices=COMPLETION_SHELLS, metavar="SHELL",
                   help="print a shell completion script (bash | zsh | tcsh; needs `pip install shtab`), e.g. "
                        "scarce --print-completion bash > ~/.local/share/bash-completion/completions/scarce")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return p


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
        if a.cmd is None:
            parser.print_help()
            return 0
        return a.func(a)
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
