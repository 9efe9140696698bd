"""Progress a person watching a grid sees, on stderr (stdout stays for results).

One line per grid: ``grid foundation: 5/12 done, 2 running, 1 failed, ETA 3m20s``. On a
terminal it is a live tqdm bar; where no live bar can go (stderr is a pipe, a log file, nohup,
a cluster job's output) it is printed as a plain line at the start and each time a run ends, as
the trainer does for its per-run line. The ETA comes from the durations of the runs that
finished in this call (runs finished earlier are not timed), so it reads ``?`` until one has.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Sequence, TextIO


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``; ``?`` when there is no estimate (None)."""
    if seconds is None or seconds != seconds:  # None or NaN
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def grid_eta(durations: Sequence[float], remaining: int, slots: int) -> float | None:
    """Seconds until ``remaining`` runs (queued or running) are done, ``slots`` at a time:
    the mean duration of the finished runs × remaining / min(slots, remaining). None while no
    run has finished (nothing to estimate from); 0 when nothing remains."""
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    return mean * remaining / max(1, min(slots, remaining))


def format_grid_progress(name: str, total: int, done: int, running: int, failed: int,
                         eta_s: float | None) -> str:
    """``grid NAME: DONE/TOTAL done, R running, F failed, ETA 3m20s`` (done counts runs
    finished before this call too, so ``TOTAL/TOTAL done`` means the grid is complete)."""
    head = f"grid {name}: " if name else "grid: "
    return f"{head}{done}/{total} done, {running} running, {failed} failed, ETA {format_duration(eta_s)}"


class GridProgress:
    """The grid's progress line: a live tqdm bar on a terminal, plain lines otherwise.

    ``total`` runs in the grid, ``done`` of them finished before this call, ``todo`` to run
    here, at most ``slots`` at a time (worker processes, or what the Ray cluster fits)."""

    def __init__(self, name: str, total: int, done: int, todo: int, slots: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.name, self.total, self.done, self.todo = name, total, done, todo
        self.slots, self.failed, self.finished = max(1, slots), 0, 0
        self.durations: list[float] = []
        self.stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        if enabled and todo:
            from tqdm import tqdm

            # the bar's text is the plain line itself; disable=None: no live bar off a terminal
            self.bar = tqdm(total=total, initial=done, desc=self.line(), file=self.stream, bar_format="{desc} |{bar}|",
                            dynamic_ncols=True, disable=None)
        self.plain = bool(enabled and todo) and (self.bar is None or self.bar.disable)

    @property
    def running(self) -> int:
        return min(self.slots, self.todo - self.finished)

    def line(self) -> str:
        remaining = self.todo - self.finished
        return format_grid_progress(self.name, self.total, self.done, self.running, self.failed,
                                    grid_eta(self.durations, remaining, self.slots))

    def _show(self) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.set_description_str(self.line())
        elif self.plain:
            print(self.line(), file=self.stream, flush=True)

    def start(self) -> None:
        self._show()

    def run_ended(self, ok: bool, seconds: float) -> None:
        """One run ended (``ok`` or failed) after ``seconds``."""
        self.finished += 1
        if ok:
            self.done += 1
            self.durations.append(float(seconds))
        else:
            self.failed += 1
        if self.bar is not None and ok:
            self.bar.update(1)
        self._show()

    @contextlib.contextmanager
    def external_write(self) -> Iterator[None]:
        """Print something else (a run's result line) without tearing the live bar."""
        if self.bar is not None and not self.bar.disable:
            with self.bar.external_write_mode(file=sys.stdout):
                yield
        else:
            yield

    def log(self, log: Callable[[str], Any], msg: str) -> None:
        with self.external_write():
            log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
