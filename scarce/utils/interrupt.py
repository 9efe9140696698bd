"""Stopping on SIGINT (Ctrl-C) / SIGTERM without losing work.

Why: by default Ctrl-C raises ``KeyboardInterrupt`` wherever Python happens to be — mid-step,
mid-write — and SIGTERM (a cluster's preemption notice, ``kill``) ends the process at once, so
everything since the last validation checkpoint is lost (for a slow semi-supervised run, many
minutes of CPU time), and a grid's worker processes, which catch what the run raises, went on to
start the grid's next runs after the user had pressed Ctrl-C.

Here a signal only *records a request*: :func:`requested` returns it and the code that owns a
safe point acts on it — the trainer finishes the step in flight, writes ``last.pt`` (exact
resume) and raises :class:`Interrupted`; a grid worker starts no further run. A second signal of
either kind while a request is pending stops at once (``KeyboardInterrupt``), for a process
that does not reach a safe point.

Handlers can be installed only in the main thread; elsewhere (a notebook's background thread,
a Ray actor thread) :func:`graceful` does nothing and the usual behaviour stays.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None
_quiet = False
"""A grid worker says nothing on a signal: its grid process tells the user once."""


class Interrupted(KeyboardInterrupt):
    """Stopped on signal ``signum`` at a safe point, nothing lost: a run's ``last.pt`` holds
    ``step`` (the trainer), or a grid's runs in flight did so (``step``/``run_dir`` None).

    A ``KeyboardInterrupt`` so that code which treats Ctrl-C as "stop everything" still does,
    and ``except Exception`` (a grid's per-run failure report) does not swallow it."""

    def __init__(self, signum: int, detail: str, step: int | None = None, run_dir: str | None = None) -> None:
        self.signum, self.detail, self.step, self.run_dir = int(signum), detail, step, run_dir
        super().__init__(f"stopped by {signal_name(signum)}: {detail}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return _requested


def check(detail: str) -> None:
    """Raise :class:`Interrupted` (``detail`` says what stops and what is lost) when a stop was
    requested: for long loops with no checkpoint of their own (a GAN's pretraining before the
    first training step), which would otherwise hold a Ctrl-C for many minutes."""
    if _requested is not None:
        raise Interrupted(_requested, detail)


def request(signum: int) -> None:
    """Ask for a stop as if ``signum`` had arrived, without the message or the escalation (a
    grid worker whose grid process is gone; see :func:`scarce.experiments.local._exit_with_parent`)."""
    global _requested
    if _requested is None:
        _requested = int(signum)


def clear() -> None:
    """Forget a pending request (tests; a process that handled it and goes on)."""
    global _requested
    _requested = None


def _handler(signum: int, frame: Any) -> None:
    global _requested
    if _requested is not None:  # the second signal: stop now, wherever we are
        raise KeyboardInterrupt
    _requested = signum
    if _quiet:
        return
    print(f"scarce: {signal_name(signum)} received: stopping at the next safe point (the step in flight "
          "finishes and is checkpointed); send it again to stop at once", file=sys.stderr, flush=True)


def _forwarded(signum: int, frame: Any) -> None:
    """A stop request passed on by a parent process (:data:`FORWARD`): it never escalates, since
    the process may also have received the original signal itself (Ctrl-C reaches the whole
    process group) and that must not count as a second one."""
    request(signum)


FORWARD = getattr(signal, "SIGUSR1", None)
"""The signal a grid process sends its workers to pass a stop request on (None on Windows)."""


def install(worker: bool = False) -> bool:
    """Record SIGINT/SIGTERM as stop requests for the rest of this process; ``worker``: also
    :data:`FORWARD` (a grid worker's initializer). A signal the process ignores stays ignored (a
    shell starts background jobs with SIGINT ignored so that Ctrl-C in the terminal does not
    reach them). Returns False (nothing installed) outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for s in SIGNALS:
        if signal.getsignal(s) not in (signal.SIG_IGN, _handler):
            signal.signal(s, _handler)
    if worker:
        global _quiet
        _quiet = True
        if FORWARD is not None:
            signal.signal(FORWARD, _forwarded)
    return True


@contextlib.contextmanager
def graceful(enabled: bool = True) -> Iterator[bool]:
    """Within the block SIGINT/SIGTERM are stop requests; the previous handlers come back after
    it. Yields whether the handlers are active (False when disabled or outside the main thread:
    the caller then never sees a request it did not get). The outermost block forgets a request
    when it ends (a notebook's next ``fit`` starts clean); a nested one (a run inside a grid)
    leaves it to the enclosing owner, which then starts no further run."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    outermost = _handler not in previous.values()
    try:
        install()
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if outermost:  # the request was this block's to handle; an enclosing owner keeps it
            clear()
