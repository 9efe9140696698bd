"""Numeric precision of the training forward passes (``train.precision``): auto | fp32 | bf16 | fp16.

Why a key: mixed precision is the cheap speed-up on a GPU (bf16/fp16 tensor cores) and on CPUs
with native bf16 (AVX512-BF16, AMX), but not everywhere: on the 2-core AMD EPYC (AVX512-BF16)
this project trains on, a training step of the EfficientNet-Lite0 U-Net in bf16 autocast takes
1.24× (supervised) and 1.17× (FixMatch) the time of fp32 channels-last at the ``quality``
preset's 128 px, about the same at 192 px, and 0.98× / 0.77× at 256 px (one thread;
docs/results/benchmarks/step_speed.md); bf16 was not validated on real data, so ``auto`` keeps
fp32 on CPU. What ``auto`` chose is recorded in ``environment.json`` (``precision``).

How: autocast wraps each *segmenter forward pass* only (a forward pre-hook enters it, a forward
hook leaves it and casts the logits back to float32), installed once where the engine builds a
segmenter (:meth:`scarce.engine.method.TrainContext.prepare_network`). So every method family
gets it without method code, and what happens around the network stays float32: augmentation
(kornia's affine matrices are ``matmul``\\s, which autocast would round to bf16), losses, the
backward pass and the optimizer. Networks in eval mode (validation, evaluation, ``scarce
predict``, a teacher in eval mode) run in float32, so the checkpoint is chosen with the numbers
it is evaluated with. ``fp16`` adds a :class:`torch.amp.GradScaler` (``ctx.step`` scales the
loss, unscales before the step and skips steps with inf/NaN gradients); ``bf16`` needs none.

Resolution (:func:`resolve_precision`):

* ``auto``: CPU → ``fp32`` (measured here); CUDA → ``bf16`` where the GPU supports it (Ampere and
  later), else ``fp32`` (standard AMP practice, not measured in this project: no GPU was lent);
* ``bf16``: CUDA with bf16 support, or a CPU whose oneDNN runs bf16 natively (AVX512-core/BF16,
  AMX or Arm BF16); else a one-line ConfigError;
* ``fp16``: CUDA only (with the GradScaler); not with two-pass optimisers (SAM), whose closure
  GradScaler cannot drive.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_bf16_supported() -> bool:
    """True when this CPU runs bf16 convolutions natively (oneDNN's check: AVX512-core or later,
    AMX, Arm BF16); falls back to torch's AVX512-BF16 probe on builds without the oneDNN op."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        return bool(probe()) if callable(probe) else False


def _cuda_bf16_supported(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except (AssertionError, RuntimeError):
        return False


def check_precision_name(name: Any) -> str:
    """``train.precision`` lower-cased, or a one-line ConfigError (did-you-mean)."""
    from scarce.config import ConfigError
    from scarce.registry import look_up

    if not isinstance(name, str):
        raise ConfigError(f"config key 'train.precision' must be one of {', '.join(PRECISIONS)}, got {name!r} "
                          f"(e.g. --set train.precision=auto)")
    return look_up(name.strip().lower(), PRECISIONS, "precision (train.precision)")


def resolve_precision(name: Any, device: str | torch.device) -> str:
    """The effective precision (``fp32`` | ``bf16`` | ``fp16``) of ``train.precision`` on
    ``device`` (module docstring); a one-line ConfigError when the device cannot run it."""
    from scarce.config import ConfigError

    name = check_precision_name(name)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if name == "auto":
        return "bf16" if cuda and _cuda_bf16_supported(dev) else "fp32"
    if name == "bf16" and not (_cuda_bf16_supported(dev) if cuda else dev.type == "cpu" and cpu_bf16_supported()):
        where = "this GPU" if cuda else "this CPU" if dev.type == "cpu" else f"device {dev.type}"
        raise ConfigError(f"train.precision=bf16 but {where} has no native bf16 support; use train.precision=auto "
                          f"(or fp32)")
    if name == "fp16" and not cuda:
        raise ConfigError(f"train.precision=fp16 needs a CUDA device (it trains on {dev.type}); use "
                          f"train.precision=auto (or fp32, or bf16 on a CPU that supports it)")
    return name


def _to_float(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_float(v) for k, v in out.items()}
    return out


class _AutocastHooks:
    """Forward pre-hook + forward hook pair: autocast(device_type, dtype) around ``module``'s
    forward while it is in training mode; the output is cast back to float32. Picklable and
    deep-copyable with the module (a mean teacher's copy keeps it)."""

    def __init__(self, device_type: str, dtype: torch.dtype) -> None:
        self.device_type, self.dtype = device_type, dtype
        self.active: list[Any] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> "_AutocastHooks":
        return _AutocastHooks(self.device_type, self.dtype)

    def enter(self, module: nn.Module, args: Any) -> None:
        ctx = torch.autocast(self.device_type, dtype=self.dtype) if module.training else None
        if ctx is not None:
            ctx.__enter__()
        self.active.append(ctx)

    def leave(self, module: nn.Module, args: Any, out: Any) -> Any:
        ctx = self.active.pop() if self.active else None
        if ctx is None:
            return None
        ctx.__exit__(None, None, None)
        return _to_float(out)


def apply_precision(module: nn.Module, precision: str, device: str | torch.device) -> nn.Module:
    """Install the autocast hooks of ``precision`` (effective: fp32 | bf16 | fp16) on ``module``;
    ``fp32`` leaves it untouched (bit-identical to a run before the key existed). Returns it."""
    if precision == "fp32":
        return module
    hooks = _AutocastHooks(torch.device(device).type, DTYPES[precision])
    module.register_forward_pre_hook(hooks.enter)
    module.register_forward_hook(hooks.leave, always_call=True)
    return module


def make_grad_scaler(precision: str, device: str | torch.device) -> "torch.amp.GradScaler | None":
    """A GradScaler for ``fp16`` (None otherwise: fp32 and bf16 need none)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


__all__ = ["PRECISIONS", "apply_precision", "check_precision_name", "cpu_bf16_supported", "make_grad_scaler",
           "resolve_precision"]
