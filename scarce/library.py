"""The small library surface: ``scarce.train(...)``, ``m = scarce.load(run)``, ``m.predict(x)``.

Why: training and then segmenting an array used to take three calls into three modules
(:func:`scarce.config.load_config`, :func:`scarce.api.train_run`, :func:`scarce.api.predict_folder`,
folder to folder). These wrap them without a second code path: :meth:`Segmenter.predict` prepares
an image with the same functions as ``scarce predict`` (:func:`scarce.data.load.image_input` with
the run's ``data.size``/``data.aspect``/``data.intensity``, the padding cut off as
:func:`scarce.data.types.content_size` says, probabilities scaled back bilinearly to the input's
size and thresholded there), so an array, its PNG file and ``scarce predict`` give the same mask.

    import scarce
    res = scarce.train("synthetic", out="runs/syn", preset="cpu", train={"iterations": 200})
    m = scarce.load(res["run_dir"])
    mask = m.predict("image.png")            # H×W uint8 label ids at the image's own size
    probs = m.predict_proba(array)           # K×H×W float32 class probabilities

``scarce/__init__.py`` exposes :func:`train` and :func:`load` lazily (importing scarce does no work).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from scarce.config import ConfigError, deep_merge, load_yaml


def _overrides(sections: Mapping[str, Any]) -> dict[str, Any]:
    """``train={"iterations": 50}`` and ``train__iterations=50`` → ``{"train": {"iterations": 50}}``."""
    out: dict[str, Any] = {}
    for key, value in sections.items():
        parts = key.split("__")
        if any(not p for p in parts):
            raise ConfigError(f"scarce.train: keyword {key!r} is not a config key (use e.g. train={{'iterations': 50}} "
                              f"or train__iterations=50)")
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        out = deep_merge(out, nested)
    return out


def train(dataset: str | os.PathLike[str], method: str | Mapping[str, Any] = "supervised",
          out: str | os.PathLike[str] | None = None, *, preset: str | None = None,
          config: str | os.PathLike[str] | Mapping[str, Any] | None = None, sets: Sequence[str] | None = None,
          resume: bool = False, **sections: Any) -> dict[str, Any]:
    """Train ``method`` on ``dataset`` (a registered name or an ``images/`` + ``masks/`` folder) into
    the run folder ``out`` (default ``runs/<dataset>-<method>``) and evaluate it, as ``scarce train``.

    Config keys, lowest first: the ``preset`` (default as the CLI: ``quality``, or
    ``$SCARCE_PRESET``), ``config`` (a YAML file or a mapping), keyword sections
    (``train={"iterations": 200}``, ``data={"size": 64}``, or ``train__iterations=200``), then
    ``sets`` (``["train.iterations=200"]``, as ``--set``). ``method`` is a method name or a method
    section (``{"name": "e2eaug", "lam": 0.5}``). ``resume`` continues an unfinished run and returns
    a finished one's results.

    Returns :func:`scarce.api.train_run`'s result: ``{"run_dir", "best_val", "best_step", "tests":
    {set: metrics}, ...}``; ``scarce.load(result["run_dir"])`` gives its segmenter.
    """
    from scarce.api import train_run
    from scarce.config import load_config, parse_overrides

    m = dict(method) if isinstance(method, Mapping) else {"name": str(method)}
    if not m.get("name"):
        raise ConfigError("scarce.train: method needs a name, e.g. method='supervised'")
    if out is None:
        out = Path("runs") / f"{Path(str(dataset)).name}-{m['name']}"
    user = (dict(config) if isinstance(config, Mapping) else load_yaml(config)) if config else {}
    user = deep_merge(user, {"data": {"dataset": str(dataset)}, "method": m, "out": str(out)})
    kw = _overrides(sections)
    user = deep_merge(user, kw)
    cfg = load_config(user, list(sets or []), preset=preset)
    given = sorted(_dotted(deep_merge(kw, parse_overrides(sets))))
    plan_kw = {"given": given} if cfg.train.budget_minutes else {}
    return train_run(cfg, resume=resume, **plan_kw)


def _dotted(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in d.items():
        keys += _dotted(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return keys


def _as_pil(image: Any, channels: int) -> Any:
    """A path, PIL image or numpy/torch array (H×W, or H×W×C with C = 1, 3 or 4) → the PIL image
    (mode ``L`` or ``RGB`` for ``channels``) that :func:`scarce.data.folder.read_image_pil` returns
    for the same pixels in a PNG file: uint8 as is; bool → 0/255; floats in [0, 1] ×255 (rounded);
    other values (16-bit, other floats) min–max scaled to 0..255, as a 16-bit PNG is."""
    import numpy as np
    from PIL import Image

    from scarce.data.folder import _to_8bit, pil_8bit, read_image_pil

    if isinstance(image, (str, os.PathLike)):
        return read_image_pil(image, channels=channels)
    if isinstance(image, Image.Image):
        return pil_8bit(image, channels)
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(f"predict expects an H×W or H×W×C image (C = 1, 3 or 4), got shape {arr.shape}; "
                         f"for a C×H×W array pass array.transpose(1, 2, 0)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= float(arr.min()) and float(arr.max()) <= 1.0:
            arr = np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)
        else:
            arr = _to_8bit(arr)
    return pil_8bit(Image.fromarray(np.ascontiguousarray(arr)), channels)


class Segmenter:
    """A finished run's best checkpoint with its preprocessing (see the module docstring).

    Attributes: ``run_dir``, ``config`` (the run's :class:`~scarce.config.RunConfig`), ``model``
    (the torch network, eval mode), ``classes`` (names, index = label id), ``num_classes``,
    ``channels``, ``size``, ``aspect``, ``intensity``, ``threshold``, ``tta``.
    """

    def __init__(self, run_dir: str | os.PathLike[str], sets: Sequence[str] | None = None,
                 device: str | None = None) -> None:
        from scarce.api import load_run_config, load_segmenter
        from scarce.data.registry import get_info

        self.run_dir = Path(run_dir)
        self.config = load_run_config(run_dir, sets=list(sets) if sets else None)
        info = get_info(self.config.data.dataset, num_classes=self.config.data.num_classes)
        self.num_classes, self.channels = int(info.num_classes), int(info.channels)
        classes = list(info.classes)
        self.classes = classes if len(classes) == self.num_classes else \
            ["background"] + [f"c{c}" for c in range(1, self.num_classes)]
        self.model = load_segmenter(run_dir, self.config, in_channels=self.channels, num_classes=self.num_classes)
        if device is not None:
            self.model = self.model.to(device)
        d, e = self.config.data, self.config.eval
        self.size, self.aspect, self.intensity = int(d.size), str(d.aspect), str(d.intensity)
        self.threshold, self.tta = float(e.threshold), str(e.tta)

    def __repr__(self) -> str:
        return (f"Segmenter(run={self.run_dir.as_posix()!r}, classes={self.classes}, size={self.size}, "
                f"aspect={self.aspect!r}, intensity={self.intensity!r}, threshold={self.threshold:g})")

    def _probs(self, image: Any) -> tuple[Any, tuple[int, int]]:
        """K×h×w probabilities at the working size with the padding cut off, and the input's (H, W)."""
        from scarce.data.load import image_input
        from scarce.data.types import content_size
        from scarce.evaluation.evaluate import predict_probs

        img = _as_pil(image, self.channels)
        w, h = img.size
        x = image_input(img, self.size, self.intensity, self.aspect)  # = training's input for this image
        ch, cw = content_size(h, w, self.size, self.aspect)  # data.aspect=pad: cut the padding off
        return predict_probs(self.model, x, tta=self.tta)[0][:, :ch, :cw], (h, w)

    def predict_proba(self, image: Any) -> Any:
        """K×H×W float32 class probabilities at the input's own size (bilinear from the working
        size, as ``scarce predict --probabilities``). ``image``: a path, PIL image or array."""
        from scarce.evaluation.evaluate import upsampled_probs

        probs, size = self._probs(image)
        return upsampled_probs(probs, size).numpy().astype("float32", copy=False)

    def predict(self, image: Any) -> Any:
        """H×W uint8 label ids (0 = background) at the input's own size, exactly the mask
        ``scarce predict`` writes for the same image (binary: 0/1 here, 0/255 in its PNG).
        ``image``: a path, a PIL image, or an H×W / H×W×C array (uint8; floats in [0, 1])."""
        from scarce.evaluation.evaluate import upsampled_labels

        probs, size = self._probs(image)
        return upsampled_labels(probs, size, self.threshold)


def load(run_dir: str | os.PathLike[str], sets: Sequence[str] | None = None, device: str | None = None) -> Segmenter:
    """The :class:`Segmenter` of a finished run folder (its best checkpoint); ``sets`` override
    keys of its config as ``scarce predict --set`` does (e.g. ``["eval.tta=flip"]``)."""
    return Segmenter(run_dir, sets=sets, device=device)


__all__ = ["Segmenter", "load", "train"]
