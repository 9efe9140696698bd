"""Images and datasets identified by content, not by how a path is spelled.

Why: the same dataset reaches a run under several spellings — a registered name, its folder
under the data root, a symlink to it, ``name:test`` — and the same image can sit in two
folders (a copy of a test set given as "unlabelled images"). A test image that was trained on,
or a training image scored as a test image, inflates the numbers silently. So the loader
compares folders by their resolved path and images by the SHA-1 of their bytes.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Iterable

from scarce.data.volumes import slice_ref, volume_digest

_MEMO: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-1 hex digest of a file's bytes, memoised per (resolved path, size, mtime): an edited
    file is hashed again. A volume slice (:mod:`scarce.data.volumes`) is identified by its
    volume's bytes, its axis and its index (not by windowing: the same slice under another window
    is the same image)."""
    ref = slice_ref(path) if "#z" in os.fspath(path) else None
    if ref is not None:
        base = volume_digest(ref.volume, file_digest)
        key = f"{base}#z{ref.index}@{ref.axis}" + (f";o={ref.orient}" if ref.orient else "")
        return hashlib.sha1(key.encode()).hexdigest()
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _MEMO.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha1()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _LOCK:
        _MEMO[key] = digest
    return digest


def digests(paths: Iterable[str | os.PathLike[str]]) -> set[str]:
    """The set of :func:`file_digest` of ``paths``."""
    return {file_digest(p) for p in paths}


def same_folder(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` are one folder (symlinks, ``..`` and ``~`` resolved)."""
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


__all__ = ["digests", "file_digest", "same_folder"]
