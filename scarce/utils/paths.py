"""Output-destination safety shared by every command that writes into a user-named folder.

Why: a destination named by the user may hold their own files (ground-truth masks, a thesis,
the input images themselves). Commands therefore refuse — with one line naming the folder and
the fix — a destination that is not empty, or that is equal to, inside, or contains one of the
command's input folders. ``--overwrite`` lets a command write into a non-empty folder, but it
still never writes into (or above) an input folder, and it only replaces files the command
writes itself: nothing else is ever deleted.

Base layer: no torch, no data-layer imports.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from scarce.config import ConfigError

PathLike = str | os.PathLike[str]


def resolved(path: PathLike) -> Path:
    """Absolute path with ``~`` expanded and symlinks resolved (also for not-yet-existing parts)."""
    return Path(path).expanduser().resolve()


def set_folder(name: str) -> str:
    """Folder name of test set ``name`` under an evaluation folder: ``<name>:test`` (a dataset's
    test part, the multi-domain protocol) becomes ``<name>_test`` because ``:`` is not allowed in
    Windows paths and means ``host:`` to scp/rsync. Keys in metrics.json keep the set's name."""
    return str(name).replace(":", "_")


def is_within(path: PathLike, folder: PathLike) -> bool:
    """True when ``path`` equals ``folder`` or lies inside it (both resolved)."""
    p, f = resolved(path), resolved(folder)
    return p == f or f in p.parents


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in folder.iterdir())
    except OSError:
        return []


def _names(items: list[str], n: int = 3) -> str:
    more = f", ... ({len(items)} entries)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_overlap(out: PathLike, inputs: Iterable[PathLike | None] = (), what: str = "output folder",
                  containers: Iterable[PathLike | None] = ()) -> Path:
    """Refuse an ``out`` equal to / inside / containing any of ``inputs`` (``containers``: out may
    lie inside them but not be or contain them). Returns ``out`` resolved. ``--overwrite`` never
    lifts this: writing into an input folder is how user files get lost."""
    dest = resolved(out)
    for inp in inputs:
        if inp is None:
            continue
        src = resolved(inp)
        if dest == src:
            raise ConfigError(f"{what} {str(out)!r} is the input folder {str(inp)!r}; "
                              f"choose a new folder (nothing was written)")
        if src in dest.parents:
            raise ConfigError(f"{what} {str(out)!r} is inside the input folder {str(inp)!r}; "
                              f"choose a folder outside it (nothing was written)")
        if dest in src.parents:
            raise ConfigError(f"{what} {str(out)!r} contains the input folder {str(inp)!r}; "
                              f"choose a new folder that does not hold your inputs (nothing was written)")
    for inp in containers:
        if inp is None:
            continue
        src = resolved(inp)
        if dest == src or dest in src.parents:
            raise ConfigError(f"{what} {str(out)!r} {'is' if dest == src else 'contains'} the folder "
                              f"{str(inp)!r}, whose files it would overwrite; choose a new folder "
                              f"(nothing was written)")
    return dest


def check_output_folder(out: PathLike, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                        what: str = "output folder", previous: Callable[[Path], bool] | None = None,
                        containers: Iterable[PathLike | None] = ()) -> Path:
    """Check that ``out`` may receive this command's files; returns it resolved. Creates nothing.

    Refuses with a one-line :class:`ConfigError` when ``out`` is a file, overlaps an input folder
    (:func:`check_overlap`, even with ``overwrite``), or is a non-empty folder — unless
    ``overwrite`` is set or ``previous(out)`` says it holds an earlier output of the same command
    (e.g. an earlier report, which is rewritten in place).
    """
    dest = check_overlap(out, inputs, what, containers)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{what} {str(out)!r} is a file, not a folder; choose a folder path")
    for parent in dest.parents:  # `--out file.txt/sub`: say so instead of a NotADirectoryError later
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {str(out)!r} lies under {str(parent)!r}, which is a file; "
                                  f"choose a folder path")
            break
    if dest.is_dir() and not overwrite:
        entries = _entries(dest)
        if entries and not (previous is not None and previous(dest)):
            raise ConfigError(f"{what} {str(out)!r} is not empty ({_names(entries)}); choose a new folder, "
                              f"or pass --overwrite to write into it (only files this command writes "
                              f"are replaced; nothing is deleted)")
    return dest


def check_output_file(out: PathLike, overwrite: bool = False, what: str = "output file",
                      inputs: Iterable[PathLike | None] = ()) -> Path:
    """Refuse an existing ``out`` file unless ``overwrite`` (a folder, or a path under a file,
    always); returns it resolved."""
    dest = resolved(out)
    for inp in inputs:
        if inp is not None and resolved(inp) == dest:
            raise ConfigError(f"{what} {str(out)!r} is an input file; choose another path")
    if dest.is_dir():
        raise ConfigError(f"{what} {str(out)!r} is a folder; give a file path, e.g. {str(Path(out) / 'split.json')!r}")
    for parent in dest.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {str(out)!r} lies under {str(parent)!r}, which is a file")
            break
    if dest.exists() and not overwrite:
        raise ConfigError(f"{what} {str(out)!r} already exists; choose another path or pass --overwrite "
                          f"to replace it")
    return dest


def merge_folder(src: PathLike, dest: PathLike) -> list[Path]:
    """Move every file of the finished temporary folder ``src`` into ``dest`` (same file system),
    replacing same-named files one atomic rename at a time and keeping every other file of
    ``dest``; ``src`` is removed. Returns the destination paths.

    Why not rename the whole folder over ``dest``: that deletes what else ``dest`` holds, and
    renaming over the shell's current folder would leave the user in a deleted directory."""
    src, dest = Path(src), Path(dest)
    moved: list[Path] = []
    for path in sorted(p for p in src.rglob("*") if not p.is_dir()):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise ConfigError(f"{str(target)!r} is a folder where this command writes a file; "
                              f"choose a new output folder")
        os.replace(path, target)
        moved.append(target)
    shutil.rmtree(src, ignore_errors=True)
    return moved


@contextlib.contextmanager
def staged_output(dest: PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder on ``dest``'s file system; when the block succeeds its
    files become ``dest`` (a rename when ``dest`` does not exist yet, else :func:`merge_folder`,
    which keeps every file of ``dest`` that is not rewritten). A failure leaves nothing behind.
    Call :func:`check_output_folder` first: this only stages and publishes."""
    target = resolved(dest)
    if target.is_dir():  # stage inside: same file system, and the parent may not be writable
        tmp = Path(tempfile.mkdtemp(prefix=".scarce-", suffix=".tmp", dir=target))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.is_dir():
            merge_folder(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["check_output_folder", "check_output_file", "check_overlap", "is_within", "merge_folder", "resolved",
           "staged_output"]
