"""The Ray backend: one Ray task per run on a Ray cluster (started here, or an existing one by
address), each asking for ``threads`` CPUs (a run's own ``train.threads`` when set) and ``gpus``
GPUs (grid key or ``gpus_per_run``; default 0). Ray workers run in the driver's working folder
at the same absolute path, so a cluster needs a file system shared by every node (data, grid
``out``, caches) and scarce installed in the same environment on every node. The skip/resume
rules, folders and per-run failure reports are the local backend's (:mod:`.local`).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from scarce.config import ConfigError
from scarce.experiments.grid import RunSpec
from scarce.experiments.local import _run_timed
from scarce.utils.runfolder import RunPaths

RAY_INSTALL_HINT = 'pip install -e ".[ray]"'


RAY_TIMEOUT = 30.0
"""Seconds to wait for an existing Ray cluster to answer (``--ray-timeout``)."""


RAY_MAX_RETRIES = 3
"""Ray re-runs a run whose worker process died (node lost, killed for memory) up to this many
times; a rerun resumes from the run's last checkpoint, so nothing is trained twice."""


def _ray_request(config: Mapping[str, Any], resources: tuple[int, float]) -> tuple[int, float]:
    """A run's Ray resource request: its torch threads as CPUs (``train.threads`` when set, else
    the grid's ``threads``, default 1) and the grid's GPUs per run."""
    own = int((config.get("train") or {}).get("threads") or 0)
    return (own if own > 0 else resources[0]), resources[1]


def _check_ray_devices(specs: list[RunSpec], resources: tuple[int, float]) -> None:
    """A run that must train on CUDA but gets no GPU from Ray would either fail on a CPU-only
    node or share an unreserved GPU with every other run: refuse before starting."""
    if resources[1] > 0:
        return
    for s in specs:
        device = str((s.config.get("train") or {}).get("device", "auto"))
        if device.startswith("cuda"):
            raise ConfigError(f"run {str(s.run_dir)!r} trains on train.device={device} but the Ray backend gives each "
                              "run 0 GPUs: pass --gpus-per-run 1 (or set the grid key gpus: 1)")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"the Ray backend needs the ray package, which is not installed: {RAY_INSTALL_HINT}") from e
    return ray


def _run_ray_task(config: dict[str, Any], threads: int, cwd: str) -> tuple[str, str, float]:
    """Body of one run's Ray task: train it in the driver's working folder ``cwd`` (absolute), so
    the grid's relative paths (``out``, dataset folders, caches) mean on the worker what they
    mean where the grid was started — the same folders when the file system is shared."""
    if not os.path.isdir(cwd):
        import socket

        return (str(config.get("out")), f"working folder {cwd!r} does not exist on node {socket.gethostname()!r}: "
                "the Ray backend needs a file system shared by every node at the same path", 0.0)
    os.chdir(cwd)
    return _run_timed(config, threads)


@dataclass
class _RayCluster:
    ray: Any
    slots: int
    """How many runs the cluster trains at once (the progress line's "running", its ETA)."""


@contextlib.contextmanager
def _ray_cluster(address: str | None, requests: list[tuple[int, float]], log: Any,
                 name: str, timeout: float = RAY_TIMEOUT) -> Iterator[_RayCluster]:
    """Ray for one grid: an initialised Ray (a notebook, a test) is used and left as is; else
    ``ray.init(address)`` (None: $RAY_ADDRESS, the cluster this machine runs, else a new local
    one; an existing cluster must answer within ``timeout`` seconds: :func:`_ray_connect`), shut
    down (or disconnected) at the end. Refuses a run request no node can hold."""
    ray = _import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        _ray_connect(ray, address, timeout)
    try:
        yield _RayCluster(ray, _ray_slots(ray, requests, log, name))
    finally:
        if connected_here:
            ray.shutdown()  # stops a cluster started here; only disconnects from an existing one


_RAY_FIX = ("check the address (and, where the cluster uses token authentication, RAY_AUTH_MODE=token with its "
            "token), start one with `ray start --head`, or drop --address to start a local one")


def _ray_connect(ray: Any, address: str | None, timeout: float) -> None:
    """``ray.init(address)`` that gives up after ``timeout`` seconds when it joins an existing
    cluster. Why: Ray retries an address nothing answers at for ever. The cluster's address is
    first tried with a plain TCP connection (refused or unreachable: refused at once);
    ``ray.init`` then runs in a daemon thread, and a cluster that has not answered by the
    deadline is refused (that thread is left behind, blocked in Ray). Starting a new local Ray
    (no address found) is not timed."""
    import logging
    import socket

    shown = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        target = _ray_target(address)
    except (ConnectionError, ValueError) as e:  # "auto" with no cluster running; not HOST:PORT
        raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({e}): {_RAY_FIX}") from e

    def init() -> None:
        ray.init(address=address, logging_level=logging.WARNING)

    if target is None:  # a new local Ray
        try:
            return init()
        except ConnectionError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({e}): {_RAY_FIX}") from e
    deadline = time.monotonic() + timeout
    if target:
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except (OSError, ValueError) as e:
            why = "no answer" if isinstance(e, TimeoutError) else getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({target}: {why}): {_RAY_FIX}") from None
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            init()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 — raised again in the calling thread
            outcome.append(e)

    # ray.init warns that it sets no SIGTERM handler outside the main thread; it is set below
    quiet = lambda record: "SIGTERM handler is not set" not in record.getMessage()
    ray_log = logging.getLogger("ray._private.worker")
    ray_log.addFilter(quiet)
    try:
        thread = threading.Thread(target=connect, name="scarce-ray-connect", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
    finally:
        ray_log.removeFilter(quiet)
    if not outcome:
        raise ConfigError(f"the Ray cluster at {shown!r}{f' ({target})' if target and target != shown else ''} did "
                          f"not answer within {timeout:g}s: check that it runs and its address (and, where it uses "
                          "token authentication, RAY_AUTH_MODE=token with its token), raise --ray-timeout for a slow "
                          "cluster, or drop --address to start a local one")
    if isinstance(outcome[0], ConnectionError):
        why = " ".join(str(outcome[0]).split())
        raise ConfigError(f"cannot reach the Ray cluster at {shown!r} ({why}): {_RAY_FIX}") from outcome[0]
    if outcome[0] is not None:
        raise outcome[0]
    if threading.current_thread() is threading.main_thread():  # as ray.init does in the main thread
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


def _ray_target(address: str | None) -> str | None:
    """The ``HOST:PORT`` ``ray.init(address)`` connects to (as Ray resolves ``auto``,
    ``$RAY_ADDRESS`` and this machine's own address); None: it starts a new local Ray; "": an
    existing cluster whose address Ray's internals did not tell."""
    addr = address
    if os.environ.get("RAY_ADDRESS") and addr in (None, "auto"):
        addr = os.environ["RAY_ADDRESS"]
    if addr is not None and addr.startswith("ray://"):  # Ray Client: its server's own port
        return addr[len("ray://"):]
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # Ray moved it: no TCP check, the timeout still holds
        return None if addr is None else ""
    return canonicalize_bootstrap_address(addr)


def _run_todo_ray(todo: list[Any], cluster: _RayCluster | None, ended: Any) -> None:
    """The Ray backend: one task per run, each with its CPU/GPU request; ``ended(job, out,
    status, seconds)`` as each run ends, as the local backend reports them (a task whose worker
    died is reported like a run that raised)."""
    if not todo:
        return
    assert cluster is not None, "run_grids connects to Ray when a run is left to do"
    ray = cluster.ray
    env = {k: v for k, v in os.environ.items() if k.startswith("SCARCE_")}
    cwd = os.path.abspath(os.getcwd())
    task = ray.remote(_run_ray_task)
    refs: dict[Any, _Job] = {}
    for job in todo:
        cpus, gpus = _ray_request(job.spec.config, job.resources)
        # 0 GPUs: hide the node's GPUs so `train.device=auto` trains on the CPU it reserved
        run_env = dict(env, **({"CUDA_VISIBLE_DEVICES": ""} if gpus == 0 else {}))
        ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_MAX_RETRIES,
                           runtime_env={"env_vars": run_env} if run_env else None,
                           name=f"scarce:{job.spec.run_dir}").remote(job.spec.config, cpus, cwd)
        refs[ref] = job
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                ended(refs[ref], *_ray_result(ray, ref, refs[ref].spec))
    finally:
        for ref in pending:  # interrupted: stop the runs still queued or training (they resume later)
            ray.cancel(ref)


def _ray_result(ray: Any, ref: Any, spec: RunSpec) -> tuple[str, str, float]:
    """A finished task's ``(out, status, seconds)``; a task that raised outside the run (its
    worker died, the node was lost, it could not be unpickled) becomes a failed run with its
    ``FAILED.txt``, as a run that raised in the local backend."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        msg = f"{type(e).__name__}: {first}"
        out = str(spec.config.get("out", spec.run_dir))
        try:
            RunPaths(out).record_failure(msg + "\n\n" + str(e))
        except OSError:
            pass  # the report line still names the run
        return out, msg, 0.0


def _ray_slots(ray: Any, requests: list[tuple[int, float]], log: Any, name: str) -> int:
    """How many runs the cluster trains at once: per alive node, how many run requests fit its
    CPUs and GPUs. A request no node can hold never starts: refused when this process started
    the cluster (no other node can join it), a warning on an existing cluster (an autoscaler
    may add such a node)."""
    # the largest request of each kind: a pool of grids that ask for different CPUs/GPUs is not overcounted
    cpus = max((r[0] for r in requests), default=1)
    gpus = max((r[1] for r in requests), default=0.0)
    local_only = bool(getattr(getattr(ray._private.worker, "_global_node", None), "head", False))
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fit = lambda r: min(int(r.get("CPU", 0) // cpus), int(r.get("GPU", 0) // gpus) if gpus else 1 << 30)
    slots = sum(fit(r) for r in nodes)
    total_cpu = sum(r.get("CPU", 0) for r in nodes)
    total_gpu = sum(r.get("GPU", 0) for r in nodes)
    log(f"grid {name}: Ray cluster of {len(nodes)} node(s), {total_cpu:g} CPUs, {total_gpu:g} GPUs; "
        f"each run asks for {cpus} CPU(s) and {gpus:g} GPU(s): {slots} at a time")
    if slots == 0:
        msg = (f"no node of the Ray cluster has {cpus} CPU(s) and {gpus:g} GPU(s) for one run: lower the grid's "
               "threads / --gpus-per-run, or add a node that has them")
        if local_only:
            raise ConfigError(msg)
        log(f"scarce: warning: {msg}; the runs wait until one joins")
    return max(1, slots)
