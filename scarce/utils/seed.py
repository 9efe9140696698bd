"""Seeding and RNG state capture, so a resumed run continues the same random stream."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors/lists only (loadable with ``weights_only=True``)."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(name: str) -> torch.device:
    """``train.device`` → a torch device that exists here (``auto`` = CUDA when available, else
    CPU); an unknown or unavailable device is a ConfigError naming ``train.device`` and the fix."""
    from scarce.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"config key 'train.device' expects auto, cpu, cuda or cuda:N, got {name!r}") from None
    fix = "use train.device=auto (GPU when there is one, else CPU) or train.device=cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"config key 'train.device' is {name!r} but {why}; {fix}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"config key 'train.device' is {name!r} but only {torch.cuda.device_count()} "
                              f"CUDA device(s) are visible (cuda:0..cuda:{torch.cuda.device_count() - 1}); {fix}")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"config key 'train.device' is {name!r} but MPS is not available here; {fix}")
    elif dev.type != "cpu" and not getattr(getattr(torch, dev.type, None), "is_available", lambda: False)():
        raise ConfigError(f"config key 'train.device' expects auto, cpu, cuda or cuda:N, got {name!r}")
    return dev
