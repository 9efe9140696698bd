"""Atomic file writes: a crash never leaves a half-written checkpoint, CSV or JSON behind.

Everything is written to a temporary file in the same folder, flushed, fsynced and then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    except OSError as e:  # read-only folder, permission denied: name the file the user asked for
        raise _named(e, target) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp_path, target)
    except OSError as e:
        if e.errno is not None and (e.filename is None or str(e.filename) == str(tmp_path)):
            raise _named(e, target) from e  # e.g. ENOSPC from write(): name the real file
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _named(e: OSError, target: Path) -> OSError:
    """``e`` re-raised as the same OSError subclass naming ``target`` instead of a temp file."""
    if e.errno is None:
        return e
    return OSError(e.errno, e.strerror, os.fspath(target))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded: truncated/corrupt, or holding pickled Python
    objects that ``weights_only=True`` refuses. The message is one line naming the file and the
    fix (the CLI prints it as ``scarce: error: ...``, exit 2)."""


def torch_load(path: str | os.PathLike[str], map_location: Any = "cpu", fix: str = "") -> Any:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only).

    A truncated or corrupt file (e.g. a copy cut short, a disk error) raises
    :class:`CheckpointError` naming the file and ``fix`` (what the user should do, e.g.
    "resume with --resume"), instead of a zip/unpickling traceback; so does a file that holds
    pickled objects (it is refused, never executed). Missing or unreadable files (``OSError``
    with a file name: not found, permission denied) propagate unchanged.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower() or "allowed global" in str(e).lower():  # a pickled object
            raise CheckpointError(
                f"refusing to load {os.fspath(path)}: it holds pickled Python objects, not only tensors "
                "(weights_only=True loading never runs code); use a checkpoint written by scarce"
                + (f": {fix}" if fix else "")) from None
        raise CheckpointError(_corrupt_message(path, fix)) from None
    except OSError as e:
        if e.filename is not None:  # not found / permission denied on the file itself
            raise
        raise CheckpointError(_corrupt_message(path, fix)) from None  # torch: truncated → EINVAL
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, AttributeError, TypeError):
        raise CheckpointError(_corrupt_message(path, fix)) from None


def weights_mismatch(module: Any, weights: Any) -> str:
    """What keeps ``weights`` (a state dict) from loading into ``module``, in words: how many of
    the network's weights are missing and how many are not the network's (an example of each),
    else the first weight whose shape differs; ``""`` when every name and shape fits."""
    if not isinstance(weights, dict):
        return f"it holds a {type(weights).__name__} where the weights belong"
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the network's {len(own)} weights are missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} of the checkpoint's {len(weights)} weights are not the network's "
                         f"(e.g. {unexpected[0]!r})")
        return " and ".join(parts)
    for k, v in own.items():
        w = weights[k]
        if tuple(getattr(w, "shape", ())) != tuple(v.shape):
            return (f"weight {k!r} has shape {list(getattr(w, 'shape', []))} in the checkpoint but "
                    f"{list(v.shape)} in the network")
    return ""


def load_weights(module: Any, weights: Any, path: str | os.PathLike[str], network: str, fix: str) -> None:
    """``module.load_state_dict(weights)`` (strict), or a one-line :class:`CheckpointError`:
    ``checkpoint PATH does not fit NETWORK: <what differs>; FIX`` instead of torch's
    multi-line RuntimeError (weights of another architecture, encoder or class count)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as e:
        what = weights_mismatch(module, weights) or " ".join(str(e).split())[:300]
        raise CheckpointError(f"checkpoint {os.fspath(path)} does not fit {network}: {what}; {fix}") from None


def _corrupt_message(path: str | os.PathLike[str], fix: str) -> str:
    return (f"checkpoint {os.fspath(path)} is corrupt or truncated and cannot be loaded"
            + (f"; {fix}" if fix else "; recreate it"))


def ensure_writable(folder: str | os.PathLike[str]) -> None:
    """Fail fast, before any work, when files cannot be created in ``folder`` (or, if it does
    not exist yet, in its nearest existing parent): probes by creating and deleting a
    temporary file, which is the only check that holds for read-only mounts and for root.
    Raises ``OSError`` (errno and strerror of the failed probe, ``filename`` = ``folder``);
    creates nothing that stays."""
    target = Path(folder)
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        import errno

        raise NotADirectoryError(errno.ENOTDIR, f"{probe} is a file, not a folder", os.fspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".scarce-write-test.", dir=probe)
    except OSError as e:
        raise OSError(e.errno, e.strerror, os.fspath(target)) from None
    os.close(fd)
    os.unlink(tmp)


def atomic_save_png(path: str | os.PathLike[str], array: Any) -> None:
    """Save a uint8 H×W or H×W×3 array as PNG atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
