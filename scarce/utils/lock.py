"""One process per run folder: an OS-level lock file inside the folder.

Why: two ``scarce train`` (or two grids) writing into one folder interleave checkpoints, configs
and ``metrics.json``, and one of them reports the other's score. The lock is ``fcntl.flock`` on a
file inside the folder: the kernel drops it when the holder exits for any reason (also
``kill -9``), so a crashed run never blocks its ``--resume``. The holder writes who it is (pid,
host, start time, command) into the file, so a refused process can name it in one line; a lock
file that still holds a holder's details but is not locked was left by a killed process and is
taken over with a warning. On file systems without ``flock`` the holder's pid is checked instead
(same host only).

Usage::

    with lock_folder(run_dir, what="run folder", hint="choose another output folder (--out ...)"):
        ...  # only this process writes into run_dir

The folder (and missing parents) is created when missing; folders created here that hold nothing
but the lock when it is released (e.g. the run was refused for bad data) are removed again, so a
failed command leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from scarce.errors import ConfigError

LOCK_NAME = ".scarce.lock"
"""Lock file of a run folder (a grid's ``out`` folder uses :data:`GRID_LOCK_NAME`)."""
GRID_LOCK_NAME = ".scarce-grid.lock"

try:  # POSIX; elsewhere only the pid check below is used
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


class FolderLockedError(ConfigError):
    """Another live process holds the folder's lock (a ConfigError: the CLI prints one line, exit 2)."""


def _holder_info() -> dict[str, Any]:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog == "__main__.py":  # python -m scarce(.cli)
        prog = "scarce"
    argv = [prog, *sys.argv[1:]]
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(argv)}


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder details in the open lock file, None when empty or unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (it has not written its details yet)"
    cmd = " ".join(str(info.get("command", "?")).split())  # one line, whatever the command held
    if len(cmd) > 160:
        cmd = cmd[:157] + "..."
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: {cmd}"


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, TypeError, ValueError):
        return True  # exists but not ours, or unknown: assume alive
    return True


def _remove_empty(folders: list[Path]) -> None:
    """rmdir ``folders`` (deepest first) while they are empty: never removes anything else."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


class FolderLock:
    """An acquired lock on ``folder`` (see the module docstring); release with :meth:`release`."""

    def __init__(self, folder: Path, name: str, fd: int, created: list[Path]) -> None:
        self.folder, self.path, self._fd = folder, folder / name, fd
        self.created = created
        """Folders the lock created (``folder`` and missing parents, deepest first)."""

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no other process can be holding a
        lock on the removed file), unlock, and remove the folders the lock created (the folder
        and missing parents) when they are empty again."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = -1
        _remove_empty(self.created)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def acquire(folder: str | os.PathLike[str], name: str = LOCK_NAME, what: str = "run folder",
            hint: str = "wait for it to finish (or stop it), or choose another output folder") -> FolderLock:
    """Lock ``folder`` for this process or raise :class:`FolderLockedError` naming the holder.

    ``what``/``hint`` word the one-line message: "<what> 'X' is in use by pid ... ; <hint>".
    A stale lock (file left by a killed holder) is taken over with a warning.
    """
    folder = Path(folder)
    created = [d for d in (folder, *folder.parents) if not d.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    for _ in range(100):  # retried only when the file was replaced between open and lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            use_flock = fcntl is not None
            if use_flock:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    info = _read_holder(fd)
                    raise FolderLockedError(f"{what} {str(folder)!r} is in use by {_describe(info)}; {hint}") from None
                except OSError as e:
                    if e.errno not in _NO_FLOCK:
                        raise
                    use_flock = False
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed this file while we opened it: start over
                os.close(fd)
                continue
            old = _read_holder(fd)
            if old and old.get("pid") != os.getpid():
                same_host = old.get("host") == socket.gethostname()
                if not use_flock and (not same_host or pid_alive(old.get("pid"))):
                    raise FolderLockedError(
                        f"{what} {str(folder)!r} is in use by {_describe(old)}; {hint} "
                        f"(if that process is gone, delete {str(path)!r})")
                gone = "which is no longer running" if same_host and not pid_alive(old.get("pid")) \
                    else "which no longer holds it"
                warnings.warn(f"{what} {str(folder)!r}: taking over the stale lock of {_describe(old)} "
                              f"({gone}; it was probably killed)", stacklevel=2)
            data = json.dumps(_holder_info()).encode("utf-8")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            return FolderLock(folder, name, fd, created)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            _remove_empty(created)
            raise
    raise OSError(f"could not lock {str(path)!r}: the lock file keeps being replaced")


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike[str], name: str = LOCK_NAME, what: str = "run folder",
                hint: str = "wait for it to finish (or stop it), or choose another output folder") -> Iterator[FolderLock]:
    """Context manager around :func:`acquire` / :meth:`FolderLock.release`."""
    lock = acquire(folder, name, what, hint)
    try:
        yield lock
    finally:
        lock.release()
