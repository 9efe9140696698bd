"""The local backend: a grid's runs in worker processes on this machine.

Each run trains in a worker (:func:`_run_one`: train, evaluate, resume when interrupted; a run
that raises writes its ``FAILED.txt`` and the grid goes on). The pool stops cleanly: SIGINT or
SIGTERM lets the runs in flight stop at a checkpoint, and a worker ends with the grid process
that spawned it (:func:`_exit_with_parent`).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import threading
import time
import traceback
from typing import Any, Callable

from scarce.config import RunConfig, from_dict
from scarce.utils.runfolder import RunPaths

_IN_RUN = threading.Event()
"""Set while this process trains a run (a pool worker's watcher waits for it before exiting)."""


INTERRUPTED = "interrupted"
"""Status prefix of a run stopped on SIGINT/SIGTERM at a checkpoint (it resumes; not a failure)."""


NOT_STARTED = "not started (the grid was asked to stop)"


def _run_one(config: dict[str, Any], threads: int) -> tuple[str, str]:
    """Worker: train + evaluate one run (resuming it if interrupted) with ``threads`` torch threads.

    The process-wide settings it changes for the run (torch's thread count, also the one
    ``train.threads`` sets in the trainer, and the warning format) are restored when it returns:
    with one worker the runs train in the grid's own process (:func:`_run_todo_local`), and the
    code that runs after the grid there (a second grid, a test) must find them as it left them."""
    import warnings

    import torch

    threads_before, format_before = torch.get_num_threads(), warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *args, **kw: f"scarce: warning: {msg}\n"
    torch.set_num_threads(max(1, threads))
    try:
        return _train_one(config)
    finally:
        torch.set_num_threads(threads_before)
        warnings.formatwarning = format_before


def _train_one(config: dict[str, Any]) -> tuple[str, str]:
    """:func:`_run_one`'s run: its folder and status (``ok``, interrupted, locked or the error)."""
    from scarce.api import train_run
    from scarce.utils.interrupt import Interrupted
    from scarce.utils.lock import FolderLockedError

    cfg = from_dict(RunConfig, config)
    try:
        train_run(cfg, resume=True)
        RunPaths(cfg.out).clear_failure()  # an earlier failure is stale now
        return cfg.out, "ok"
    except Interrupted as e:  # stopped on a signal at a checkpoint: not a failure, it resumes
        return cfg.out, f"{INTERRUPTED} {e.detail}"
    except FolderLockedError as e:  # another process trains this run: leave its folder alone
        return cfg.out, str(e)
    except Exception as e:  # one failed run must not stop the grid
        msg = f"{type(e).__name__}: {e}"
        RunPaths(cfg.out).record_failure(msg + "\n\n" + traceback.format_exc())
        return cfg.out, msg


def _run_timed(config: dict[str, Any], threads: int) -> tuple[str, str, float]:
    """:func:`_run_one` and its wall time in seconds (the grid's ETA is made of these); no run
    starts once this process was asked to stop (a queued run a worker already holds)."""
    from scarce.utils import interrupt

    if interrupt.requested() is not None:
        return str(config.get("out")), NOT_STARTED, 0.0
    t = time.time()
    _IN_RUN.set()
    try:
        out, status = _run_one(config, threads)
    finally:
        _IN_RUN.clear()
    return out, status, time.time() - t


def _run_todo_local(todo: list[Any], n_workers: int, ended: Any,
                    run: Callable[[dict[str, Any], int], tuple[str, str, float]] = _run_timed) -> int | None:
    """The local backend: ``n_workers`` processes on this machine (in this process when 1), each
    job's run by ``run(config, threads)`` (:func:`_run_timed`); ``ended(job, out, status,
    seconds)`` as each run ends. SIGINT/SIGTERM: no further run
    starts, the runs in flight stop at a checkpoint (the workers get the request too), and the
    signal's number is returned (None: every run ended)."""
    from scarce.utils import interrupt

    with interrupt.graceful():
        if n_workers <= 1:
            for job in todo:
                if interrupt.requested() is not None:
                    break
                ended(job, *run(job.spec.config, job.threads))
            return interrupt.requested()
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(os.getpid(),)) as ex:
            futs = {ex.submit(run, job.spec.config, job.threads): job for job in todo}
            pending, forwarded = set(futs), False
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        if not f.cancelled():
                            ended(futs[f], *f.result())
                    if not forwarded and interrupt.requested() is not None:
                        forwarded = True
                        for f in pending:
                            f.cancel()  # the queued runs; a worker's run in flight stops at its next step
                        _forward_stop(ex)
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)  # a second signal: nothing new starts
                raise
        return interrupt.requested()


def _forward_stop(ex: cf.ProcessPoolExecutor) -> None:
    """Pass a stop request on to the pool's workers (a SIGTERM sent to this process alone does
    not reach them; Ctrl-C does, and :data:`scarce.utils.interrupt.FORWARD` never counts as a
    second signal there)."""
    from scarce.utils.interrupt import FORWARD

    if FORWARD is None:
        return
    for pid in list((getattr(ex, "_processes", None) or {}).keys()):
        try:
            os.kill(pid, FORWARD)
        except OSError:
            pass  # already gone


def _worker_init(parent: int) -> None:
    """Pool-worker initializer: end with the grid process (:func:`_exit_with_parent`) and take
    SIGINT/SIGTERM (and a request the grid process forwards) as "stop at a checkpoint"."""
    from scarce.utils import interrupt

    _exit_with_parent(parent)
    interrupt.install(worker=True)


def _exit_with_parent(parent: int, poll: float = 1.0, grace: float = 120.0) -> None:
    """Pool-worker initializer: a daemon thread ends this worker once the grid process that
    spawned it is gone. Why: a ``scarce experiment`` killed with SIGTERM/SIGKILL (not Ctrl-C,
    which reaches the whole process group) left its spawned workers alive, still training and
    taking the queued runs — a second, invisible grid. The run being trained is first asked to
    stop (:mod:`scarce.utils.interrupt`: it checkpoints the step in flight, so even ``kill -9``
    of the grid process loses no step), and the worker exits once that run has returned, or
    after ``grace`` seconds (a run still evaluating resumes its evaluation)."""
    import signal

    from scarce.utils import interrupt

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        interrupt.request(signal.SIGTERM)
        end = time.time() + grace
        while _IN_RUN.is_set() and time.time() < end:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="scarce-exit-with-parent", daemon=True).start()
