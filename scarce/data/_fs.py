"""Atomic folder creation: build a whole dataset folder beside its target, then rename it.

Why: an import or generation that fails half-way must leave nothing partial behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from scarce.data.types import DataError


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], overwrite: bool = False, command: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success it becomes ``dest``, marked as
    ``command``'s (:func:`scarce.utils.paths.write_marker`).

    An existing non-empty ``dest`` raises DataError unless ``overwrite`` (then it is replaced
    only after the new folder is complete): callers check it with
    :func:`scarce.utils.paths.check_output_folder` first, so only a folder ``command`` made is
    ever replaced.
    """
    target = Path(dest).expanduser()
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"destination {target} already exists and is not empty; choose another "
                        f"folder or delete it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if command is not None:
            from scarce.utils.paths import write_marker

            write_marker(tmp, command)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
