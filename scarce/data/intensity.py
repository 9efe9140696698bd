"""Data-level intensity preprocessing (``data.intensity``), applied once when an image is decoded.

Why at the data level: CLAHE and percentile clipping are deterministic, per-image and costly
enough (CLAHE) that they belong with decoding and caching, not in the training loop; and the
same function must run wherever an image enters the project (training/validation/test loading
through :class:`scarce.data.cache.DecodeCache`, and ``scarce predict``), so a model never sees
inputs prepared differently at inference. The setting is part of ``data`` in the run's
``config.yaml``, so ``scarce evaluate``/``scarce predict`` reproduce it.

Modes (on the resized C×S×S uint8 image, i.e. at the training resolution; output is uint8 again,
so the cache stays compact and the loader's ``/255`` contract is unchanged):

* ``none`` (default) — the decoded image, untouched (bit-exact: every earlier run stays valid).
* ``percentile`` — clip to the image's [0.5, 99.5] percentiles (one pair over all channels, so
  colours keep their hue) and rescale that range to [0, 1]; robust to a few saturated pixels,
  undoes global brightness/contrast differences between scanners.
* ``clahe`` — contrast-limited adaptive histogram equalisation, scikit-image's
  ``exposure.equalize_adapthist`` (clip limit 0.01, tiles of 1/8 of the image, 256 bins). Gray
  images directly; RGB images on the V channel of HSV (scikit-image's own colour handling:
  hue and saturation are kept, so colour cues survive). Helps X-ray and ultrasound.
* ``percentile_clahe`` — ``percentile`` then ``clahe``. scikit-image's CLAHE first stretches the
  image's own min–max range, so this differs from ``clahe`` through the outlier pixels the
  percentile clip removes (a few saturated pixels no longer compress the stretch).

Per-image z-score standardisation is *not* here: it is a model-input normalisation
(``model.input_norm``), applied inside the model on float tensors.
"""
from __future__ import annotations

import numpy as np

__all__ = ["INTENSITY_MODES", "PERCENTILES", "CLAHE_CLIP_LIMIT", "check_intensity", "preprocess_intensity",
           "percentile_rescale", "clahe"]

INTENSITY_MODES = ("none", "percentile", "clahe", "percentile_clahe")
PERCENTILES = (0.5, 99.5)
"""Lower/upper percentile of ``percentile`` (nnU-Net's CT clipping uses the same 0.5/99.5)."""
CLAHE_CLIP_LIMIT = 0.01
"""scikit-image's default clip limit (fraction of the tile's pixels per histogram bin)."""


def check_intensity(mode: str) -> str:
    """``mode`` if it is a known ``data.intensity``; else ConfigError with did-you-mean."""
    from scarce.registry import look_up

    return look_up(str(mode).lower(), INTENSITY_MODES, "data.intensity")


def percentile_rescale(x: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """Float image (any shape) → clipped to its [lo, hi] percentiles and rescaled to [0, 1].

    One (lo, hi) pair over all values (all channels). A flat image (hi <= lo) is returned as is.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.percentile(x, percentiles)
    if not hi > lo:
        return x
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def clahe(x: np.ndarray, clip_limit: float = CLAHE_CLIP_LIMIT) -> np.ndarray:
    """C×H×W float image in [0, 1] → CLAHE'd C×H×W float64 in [0, 1] (C = 1 or 3).

    Gray: equalised directly; RGB: scikit-image equalises the V channel of HSV.
    """
    from skimage import exposure

    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    if x.shape[0] == 1:
        return exposure.equalize_adapthist(x[0], clip_limit=clip_limit)[None]
    out = exposure.equalize_adapthist(x.transpose(1, 2, 0), clip_limit=clip_limit)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def preprocess_intensity(arr: np.ndarray, mode: str = "none") -> np.ndarray:
    """C×H×W uint8 image → C×H×W uint8 after ``mode`` (see module docstring).

    ``none`` returns ``arr`` itself (no copy, bit-exact). Other modes round the [0, 1] result to
    the nearest of 256 levels.
    """
    mode = check_intensity(mode)
    if mode == "none":
        return arr
    x = arr.astype(np.float64) / 255.0
    if mode in ("percentile", "percentile_clahe"):
        x = percentile_rescale(x)
    if mode in ("clahe", "percentile_clahe"):
        x = clahe(x)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
