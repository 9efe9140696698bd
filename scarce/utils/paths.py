"""The one output policy of every command that writes into a folder the user names.

Why: a destination named by the user may hold their own files (ground-truth masks, a thesis,
the input images themselves), and a dataset or another command's folder (a run, a report)
holds files whose loss goes unnoticed until a number is wrong. So every writing command checks
its destination here, before anything is computed, and writes only into

* a **new or empty** folder, or
* a folder **it made itself**: every output folder carries a small marker file
  (:data:`MARKER`, JSON ``{"command": "scarce predict", ...}``) written with its first file;
  a folder made by an older scarce without the marker is recognised by the command's own
  ``previous`` check (e.g. ``metrics.json`` + ``summary.txt`` of an evaluation).

``--overwrite`` then replaces only the files the command writes (nothing else is deleted); it
never lifts the other rules. Refused always, with one line naming the folder and the fix:
a destination that is, is inside or contains one of the command's inputs; one that is or lies
inside a **dataset** (a folder with ``images/`` + ``masks/``, or a ``split.csv``) unless the
command made that dataset (``data synthetic`` / ``data import`` rewriting their own output) or
it is the dataset's own annotation folder the command exists to write (``scribbles/``); one
inside another command's folder unless that folder is a container (a run, a grid's ``out``, a
demo: new sub-folders are fine there, existing ones are not another command's to touch). An
annotation editor (``scarce annotate``) edits a dataset's ``scribbles/`` file by file
(:func:`check_annotation_folder`).

Base layer: no torch, no data-layer imports.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from scarce.errors import ConfigError

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


MARKER = ".scarce"
"""Marker file of a folder a scarce command made (JSON: ``command``, ``format``)."""
CONTAINER_COMMANDS = frozenset({"scarce train", "scarce experiment", "scarce demo"})
"""Commands whose folders hold other commands' outputs in new sub-folders: a run (its
evaluation, shift tests, predictions), a grid's ``out`` (runs), a demo folder (grid + report)."""
_IGNORED = (".scarce.lock", ".scarce-grid.lock")
"""Entries that do not make a folder "not empty": run/grid lock files (a process that waits on
the lock is refused by the lock itself, with its holder named)."""


def read_marker(folder: PathLike) -> str | None:
    """The command that made ``folder`` (its :data:`MARKER`), ``"an unknown command"`` for an
    unreadable marker, or None when there is none."""
    import json

    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return str(data["command"]) if isinstance(data, dict) and data.get("command") else "an unknown command"
    except (OSError, ValueError):
        return "an unknown command"


def write_marker(folder: PathLike, command: str) -> Path:
    """Mark ``folder`` (created when missing) as made by ``command``; an existing marker is
    kept (a folder made by one command stays that command's). Atomic. Returns the folder."""
    import json

    from scarce.utils.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).exists():
        atomic_write_text(folder / MARKER, json.dumps({"command": command, "format": 1}) + "\n")
    return folder


def is_dataset_folder(folder: PathLike) -> bool:
    """A scarce dataset folder: ``images/`` + ``masks/`` (or + ``scribbles/``: one being
    annotated, whose masks may be few or none), or a ``split.csv``."""
    f = Path(folder)
    return (((f / "images").is_dir() and ((f / "masks").is_dir() or (f / "scribbles").is_dir()))
            or (f / "split.csv").is_file())


def dataset_around(path: PathLike) -> Path | None:
    """The dataset folder that ``path`` is or lies inside (nearest one), else None."""
    p = resolved(path)
    for d in (p, *p.parents):
        if d.is_dir() and is_dataset_folder(d):
            return d
    return None


def _check_policy(dest: Path, out: PathLike, what: str, command: str, dataset_child: str | None) -> None:
    """Refuse a destination inside a dataset or inside another command's (non-container) folder."""
    own = read_marker(dest) == command if dest.is_dir() else False
    ds = dataset_around(dest)
    annotation = ds is not None and dataset_child is not None and dest == ds / dataset_child
    if ds is not None and not own and not annotation:
        where = "is the dataset" if ds == dest else "lies inside the dataset"
        raise ConfigError(f"{what} {str(out)!r} {where} {str(ds)!r} (it holds images/ + masks/ or a split.csv); "
                          f"scarce never writes into a dataset: choose a folder outside it (nothing was written)")
    for parent in dest.parents:
        if annotation and parent == ds:  # a dataset scarce made still takes its annotation folder
            continue
        maker = read_marker(parent)
        if maker is not None and maker not in CONTAINER_COMMANDS:
            raise ConfigError(f"{what} {str(out)!r} lies inside {str(parent)!r}, which `{maker}` made; its files "
                              f"are that command's: choose a folder outside it (nothing was written)")


def check_output_folder(out: PathLike, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                        what: str = "output folder", previous: Callable[[Path], bool] | None = None,
                        containers: Iterable[PathLike | None] = (), *, command: str,
                        dataset_child: str | None = None) -> Path:
    """Check that ``out`` may receive ``command``'s files (the policy above); returns it resolved.
    Creates nothing: call it before any work, then :func:`write_marker` (or
    :func:`staged_output` with ``command``) when the first file is written.

    Refuses with a one-line :class:`ConfigError` when ``out`` is a file, overlaps an input folder
    (:func:`check_overlap`), is or lies in a dataset (except ``<dataset>/<dataset_child>``, e.g.
    ``scribbles``) or in another command's non-container folder, or is a non-empty folder that
    ``command`` did not make — ``overwrite`` lifts none of these. A folder ``command`` made
    (its marker, or ``previous(out)`` for one made before markers existed) is accepted when
    ``previous`` is given (outputs rewritten in place, e.g. a report) or with ``overwrite``.
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
    _check_policy(dest, out, what, command, dataset_child)
    entries = [e for e in _entries(dest) if e not in _IGNORED] if dest.is_dir() else []
    if not entries:
        return dest
    maker = read_marker(dest)
    legacy = maker is None and previous is not None and previous(dest)
    if maker == command or legacy:
        if overwrite or previous is not None:
            return dest
        raise ConfigError(f"{what} {str(out)!r} holds an earlier output of `{command}`; pass --overwrite to "
                          f"replace its files (others are kept), or choose a new folder")
    shown = [e for e in entries if e != MARKER] or entries
    who = f"was made by `{maker}`" if maker is not None else f"was not made by `{command}`"
    raise ConfigError(f"{what} {str(out)!r} is not empty ({_names(shown)}) and {who}; choose a new or empty "
                      f"folder (--overwrite only replaces files in a folder `{command}` made; nothing was written)")


def check_annotation_folder(dataset: PathLike, child: str, *, command: str, what: str = "annotation folder") -> Path:
    """``<dataset>/<child>`` (e.g. ``scribbles``) for an annotation editor (``scarce annotate``),
    which writes one ``<child>/<stem>.png`` at a time, when a person saves that image; returns it
    resolved. Creates nothing.

    Unlike :func:`check_output_folder` the folder may hold files another hand or command made
    (hand-drawn scribbles, ``scarce data scribbles``' synthesis): correcting them is the editor's
    purpose, and it replaces no file but the one being saved. Refused with one line: a ``child``
    that is a file or a link leading out of the dataset, a dataset under a file, and a dataset
    inside another command's (non-container) folder."""
    base = resolved(dataset)
    if not (base / "images").is_dir():
        raise ConfigError(f"{str(dataset)!r} has no images/ folder; annotate a dataset folder (images/ with an "
                          f"image per file; masks/ optional)")
    dest = resolved(base / child)
    if dest != base / child:  # a link: to another folder of the dataset (images/!) or out of it
        raise ConfigError(f"{what} {str(Path(dataset) / child)!r} is a link to {str(dest)!r}; scarce writes "
                          f"annotations into the dataset's own {child}/ folder only: replace the link by a folder")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{what} {str(dest)!r} is a file, not a folder; move it away")
    for parent in base.parents:
        maker = read_marker(parent)
        if maker is not None and maker not in CONTAINER_COMMANDS:
            raise ConfigError(f"{what} {str(dest)!r} lies inside {str(parent)!r}, which `{maker}` made; its files "
                              f"are that command's: copy the dataset out of it first (nothing was written)")
    return dest


def check_output_file(out: PathLike, overwrite: bool = False, what: str = "output file",
                      inputs: Iterable[PathLike | None] = (), *, command: str,
                      previous: Callable[[Path], bool] | None = None) -> Path:
    """Refuse an existing ``out`` file unless ``overwrite`` and ``previous(out)`` says ``command``
    wrote it (a folder, a path under a file, a file in a dataset or in another command's
    folder: always); returns it resolved."""
    dest = resolved(out)
    for inp in inputs:
        if inp is not None and resolved(inp) == dest:
            raise ConfigError(f"{what} {str(out)!r} is an input file; choose another path")
    ds = dataset_around(dest.parent)
    if ds is not None:
        raise ConfigError(f"{what} {str(out)!r} lies inside the dataset {str(ds)!r}; scarce never writes into a "
                          f"dataset (its split.csv is the official split): choose a path outside it")
    for parent in dest.parents:
        maker = read_marker(parent)
        if maker is not None and maker not in CONTAINER_COMMANDS:
            raise ConfigError(f"{what} {str(out)!r} lies inside {str(parent)!r}, which `{maker}` made; "
                              f"choose a path outside it")
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
    if dest.exists() and not (previous is not None and previous(dest)):
        raise ConfigError(f"{what} {str(out)!r} exists and was not written by `{command}`; --overwrite only "
                          f"replaces a file it wrote: choose another path")
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
def staged_output(dest: PathLike, command: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder on ``dest``'s file system; when the block succeeds its
    files become ``dest`` (a rename when ``dest`` does not exist yet, else :func:`merge_folder`,
    which keeps every file of ``dest`` that is not rewritten) and ``dest`` is marked as
    ``command``'s (:func:`write_marker`). A failure leaves nothing behind.
    Call :func:`check_output_folder` first: this only stages and publishes."""
    target = resolved(dest)
    if target.is_dir():  # stage inside: same file system, and the parent may not be writable
        tmp = Path(tempfile.mkdtemp(prefix=".scarce-", suffix=".tmp", dir=target))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if command is not None and not (target / MARKER).exists():
            write_marker(tmp, command)
        if target.is_dir():
            merge_folder(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def claimed_output(dest: PathLike, command: str) -> Iterator[Path]:
    """Mark ``dest`` as ``command``'s (created when missing) for the block; when the block fails
    and ``dest`` then holds nothing but what this call made, it is removed again (a folder that
    existed keeps everything it had). For commands that write file by file (predict, evaluate);
    call :func:`check_output_folder` first."""
    target = resolved(dest)
    created = [d for d in (target, *target.parents) if not d.exists()]  # deepest first
    had_marker = (target / MARKER).exists()
    write_marker(target, command)
    try:
        yield target
    except BaseException:
        if not had_marker and [e.name for e in target.iterdir()] == [MARKER]:
            (target / MARKER).unlink()
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


__all__ = ["CONTAINER_COMMANDS", "MARKER", "check_annotation_folder", "check_output_folder", "check_output_file", "check_overlap",
           "claimed_output", "dataset_around", "is_dataset_folder", "is_within", "merge_folder", "read_marker",
           "resolved", "staged_output", "write_marker"]
