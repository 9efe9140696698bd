"""Deterministic intensity shifts for stress-testing trained segmenters (ImageNet-C style).

Why: the real out-of-distribution sets (ph2, cvc_clinicdb, another hospital's X-rays) differ
from the training data in many ways at once, so a lower OOD score does not say *what* a method
is fragile to. Here every finished run is scored on its own test images under one controlled,
reproducible change at a time — brighter, lower contrast, blurrier, noisier, lower resolution —
at increasing severity, and the drop against the unshifted images (severity 0) is measured.

Contract of every shift ``fn(images, severity, generator) -> images``: ``images`` float N×C×H×W
in [0, 1] (C = 1 or 3; at the network's resolution S, i.e. what the model is fed), output of the
same shape, dtype and device, clamped to [0, 1]; severity 0 returns the input itself (bit-exact),
1..3 increase the change; nothing is drawn from a global RNG: only ``noise`` draws, from the
explicit ``generator`` (``None`` = seed 0), so the same call gives the same images. The input is
never modified in place. For RGB, one parameter for all channels (no colour cast); the
pixel operations are kornia's (``enhance.adjust_brightness``,
``adjust_contrast_with_mean_subtraction``, ``adjust_gamma``, ``filters.gaussian_blur2d``,
``geometry.transform.resize``).

Parameters per severity (``SHIFT_PARAMS``):

==============  ===========================  =======  =======  =======
shift           parameter                    1        2        3
==============  ===========================  =======  =======  =======
``brightness``  + offset (additive)          +0.1     +0.2     +0.3
``contrast``    factor around the mean       ×0.7     ×0.5     ×0.3
``gamma``       γ of x^γ (γ < 1: brighter)   0.8      0.65     0.5
``dark_gamma``  γ of x^γ (γ > 1: darker)     1.25     1.54     2.0
``blur``        Gaussian σ in px at S        1        2        3
``noise``       Gaussian σ (additive)        0.04     0.08     0.12
``lowres``      down-sampling factor         1/2      1/3      1/4
``xray_shift``  contrast, then brightness    ×0.7+0.1 ×0.5+0.2 ×0.3+0.3
==============  ===========================  =======  =======  =======

Why these values: ``brightness`` and ``blur`` are ImageNet-C's first three levels (Hendrycks &
Dietterich 2019: V + 0.1/0.2/0.3; σ = 1/2/3 px), so results read like the robustness literature.
ImageNet-C's contrast starts at ×0.4, already extreme for medical scans; ×0.7 is a plausible
scanner/hospital difference, ×0.3 an extreme one. The γ values reach past the training
augmentation's range (nnU-Net draws γ in [0.7, 1.5]), and ``dark_gamma`` uses the reciprocals
(1/0.8, 1/0.65, 1/0.5), so the two are symmetric in log γ. ``noise`` is ImageNet-C's σ
(0.08/0.12/0.18) shifted down one level — 0.04, then its 0.08 and 0.12 — so that level 1 is a
mild, plausible detector difference; at 128 px no resolution averages the noise away, and 0.12
already hides thin, low-contrast structures. ``lowres`` simulates a coarser acquisition (area-averaging down-sampling, bilinear back
up to S: 64/43/32 px at 128), about ImageNet-C's pixelate levels 2–5. ``xray_shift`` is
``brightness`` after ``contrast`` at the same severity: the case of a chest X-ray set from
another hospital that is brighter and lower-contrast.

Contrast is taken around each image's own mean (kornia: the gray-level mean for RGB, so the
hue is kept); ``noise`` is drawn independently per pixel and channel (sensor noise) with one σ.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from scarce.registry import Registry

__all__ = ["SHIFTS", "SHIFT_PARAMS", "SEVERITIES", "REFERENCE", "SHIFT_SEED", "apply_shift", "resolve_shifts",
           "check_severities", "shift_parameter_rows", "shifted_images", "evaluate_shifted_sets",
           "format_shift_table", "write_shift_outputs"]

ShiftFn = Callable[[torch.Tensor, int, "torch.Generator | None"], torch.Tensor]
"""(images N×C×H×W in [0, 1], severity 0..3, generator or None) → shifted images, same shape."""

SHIFTS: Registry[ShiftFn] = Registry("intensity shift")
SEVERITIES = (1, 2, 3)
REFERENCE = "none"
"""Name of the unshifted reference row (severity 0) in results."""
SHIFT_SEED = 0
"""Seed of the ``noise`` draws in :func:`evaluate_shifted_sets`: every run sees the same noisy
images (and every severity the same noise pattern, scaled)."""

SHIFT_PARAMS: dict[str, tuple[Any, ...]] = {
    "brightness": (0.1, 0.2, 0.3),
    "contrast": (0.7, 0.5, 0.3),
    "gamma": (0.8, 0.65, 0.5),
    "dark_gamma": (1 / 0.8, 1 / 0.65, 1 / 0.5),
    "blur": (1.0, 2.0, 3.0),
    "noise": (0.04, 0.08, 0.12),
    "lowres": (1 / 2, 1 / 3, 1 / 4),
    "xray_shift": ((0.7, 0.1), (0.5, 0.2), (0.3, 0.3)),
}
"""Parameter of each shift at severities 1, 2, 3 (module docstring)."""

_PARAM_NAMES = {"brightness": "+ offset", "contrast": "contrast factor", "gamma": "γ", "dark_gamma": "γ",
                "blur": "σ (px)", "noise": "σ", "lowres": "scale", "xray_shift": "(contrast factor, + offset)"}


def check_severities(severities: Iterable[Any] | None) -> tuple[int, ...]:
    """Sorted unique severities in 1..3 (0, the unshifted reference, is always evaluated and
    dropped here); a ConfigError names the bad value."""
    from scarce.config import ConfigError

    if severities is None:
        return SEVERITIES
    out: set[int] = set()
    for s in severities:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or float(s) != int(s) or not 0 <= int(s) <= 3:
            raise ConfigError(f"shift severity must be 0, 1, 2 or 3 (0 = unshifted), got {s!r}; e.g. --severities 1 2 3")
        if int(s) > 0:
            out.add(int(s))
    if not out:
        raise ConfigError("no shift severity left to evaluate (0 is the unshifted reference, always included); "
                          "choose from 1, 2, 3")
    return tuple(sorted(out))


def _severity(severity: Any) -> int:
    from scarce.config import ConfigError

    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 3:
        raise ConfigError(f"shift severity must be an int 0..3 (0 = unshifted), got {severity!r}")
    return severity


def _param(name: str, severity: int) -> Any:
    return SHIFT_PARAMS[name][severity - 1]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float N×C×H×W tensor in [0, 1], got {got}")


# --------------------------------------------------------------------------- shifts

def _brightness(x: torch.Tensor, offset: float) -> torch.Tensor:
    from kornia.enhance import adjust_brightness

    return adjust_brightness(x, float(offset))  # x + offset, clipped to [0, 1]


def _contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    from kornia.enhance import adjust_contrast_with_mean_subtraction

    return adjust_contrast_with_mean_subtraction(x, float(factor))  # (x − mean)·f + mean, clipped


def _gamma(x: torch.Tensor, gamma: float) -> torch.Tensor:
    from kornia.enhance import adjust_gamma

    return adjust_gamma(x.clamp(0.0, 1.0), float(gamma))


@SHIFTS.register("brightness")
def brightness(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brighter: ``x + offset`` (offset 0.1/0.2/0.3), clipped to [0, 1]."""
    return images if severity == 0 else _brightness(images, _param("brightness", severity))


@SHIFTS.register("contrast")
def contrast(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lower contrast around each image's mean: ``(x − mean)·f + mean``, f = 0.7/0.5/0.3."""
    return images if severity == 0 else _contrast(images, _param("contrast", severity))


@SHIFTS.register("gamma")
def gamma(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brighter mid-tones, black and white kept: ``x^γ``, γ = 0.8/0.65/0.5."""
    return images if severity == 0 else _gamma(images, _param("gamma", severity))


@SHIFTS.register("dark_gamma")
def dark_gamma(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Darker mid-tones: ``x^γ``, γ = 1/0.8, 1/0.65, 1/0.5."""
    return images if severity == 0 else _gamma(images, _param("dark_gamma", severity))


@SHIFTS.register("blur")
def blur(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur, σ = 1/2/3 px at the network resolution (kernel 2⌈3σ⌉ + 1, reflect border;
    the kernel is capped below the image size, as reflect padding needs)."""
    if severity == 0:
        return images
    from kornia.filters import gaussian_blur2d

    sigma = float(_param("blur", severity))
    h, w = images.shape[-2:]
    ks = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
    if ks < 3:
        return images.clone()
    return gaussian_blur2d(images, (ks, ks), (sigma, sigma), border_type="reflect").clamp(0.0, 1.0)


@SHIFTS.register("noise")
def noise(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise, σ = 0.04/0.08/0.12, clipped; drawn from ``generator`` (``None`` =
    a fresh generator with seed 0) on the CPU, so results do not depend on the device."""
    if severity == 0:
        return images
    g = generator if generator is not None else torch.Generator().manual_seed(SHIFT_SEED)
    eps = torch.randn(tuple(images.shape), generator=g, device=g.device, dtype=torch.float32)
    return (images + float(_param("noise", severity)) * eps.to(images)).clamp(0.0, 1.0)


@SHIFTS.register("lowres")
def lowres(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A coarser acquisition: down-sample by 1/2, 1/3, 1/4 (area-averaging, antialiased
    bilinear) and back up to the input size (bilinear)."""
    if severity == 0:
        return images
    from kornia.geometry.transform import resize

    h, w = images.shape[-2:]
    f = float(_param("lowres", severity))
    small = (max(1, round(h * f)), max(1, round(w * f)))
    down = resize(images, small, interpolation="bilinear", antialias=True, align_corners=False)
    return resize(down, (h, w), interpolation="bilinear", align_corners=False).clamp(0.0, 1.0)


@SHIFTS.register("xray_shift")
def xray_shift(images: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brighter and lower-contrast together: ``contrast`` then ``brightness`` at the same
    severity, i.e. ``((x − mean)·f + mean) + offset`` with (f, offset) = (0.7, 0.1), (0.5, 0.2),
    (0.3, 0.3): a chest X-ray set from another hospital."""
    if severity == 0:
        return images
    f, offset = _param("xray_shift", severity)
    return _brightness(_contrast(images, f), offset)


# --------------------------------------------------------------------------- public helpers

def apply_shift(name: str, images: torch.Tensor, severity: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the registered shift ``name`` at ``severity`` (0..3) to float N×C×H×W images in
    [0, 1]; unknown names raise KeyError with did-you-mean, a bad severity ConfigError."""
    fn = SHIFTS.get(name)
    _check_images(images)
    return fn(images, _severity(severity), generator)


def resolve_shifts(shifts: str | Iterable[str] | None = None) -> list[str]:
    """Shift names in registry order from ``None``/``"all"`` (every shift), a comma-separated
    string (``"contrast,blur"``) or a list; duplicates dropped. An unknown name raises KeyError
    ``unknown intensity shift 'x'. Did you mean ...? Available: ...`` before any work is done,
    an empty string or list a ConfigError listing the shift names."""
    if shifts is None:
        return list(SHIFT_PARAMS)
    items = shifts.split(",") if isinstance(shifts, str) else [p for s in shifts for p in str(s).split(",")]
    names = [s.strip().lower() for s in items if s.strip()]
    if not names:  # e.g. --shifts "": never silently "all" (nor a plain evaluation)
        from scarce.config import ConfigError

        raise ConfigError(f"--shifts names no intensity shift (got {shifts!r}); pass 'all' or comma-separated "
                          f"shift names: {', '.join(SHIFT_PARAMS)}")
    if "all" in names:
        return list(SHIFT_PARAMS)
    for n in names:
        SHIFTS.get(n)  # did-you-mean KeyError
    return [n for n in SHIFT_PARAMS if n in names]


def _fmt_param(v: Any) -> str:
    if isinstance(v, tuple):
        return f"×{v[0]:g} {v[1]:+g}"
    return f"{v:.3g}"


def shift_parameter_rows(shifts: Sequence[str] | None = None) -> list[dict[str, str]]:
    """``[{shift, parameter, "1", "2", "3"}]`` for tables (the module docstring's values)."""
    return [{"shift": n, "parameter": _PARAM_NAMES[n], **{str(s): _fmt_param(_param(n, s)) for s in SEVERITIES}}
            for n in (shifts or list(SHIFT_PARAMS))]


CHUNK = 64
"""Images shifted per call; chunk k's noise comes from a generator seeded ``seed + k``, so
the shifted set never depends on how the evaluation is batched."""


def shifted_images(images: torch.Tensor, name: str, severity: int, seed: int = SHIFT_SEED,
                   intensity: str = "none") -> torch.Tensor:
    """The test images (N×C×S×S float in [0, 1], decoded *without* ``data.intensity``) as the
    model sees them under the shift: shifted in chunks of :data:`CHUNK`, then — when the run uses
    ``data.intensity`` preprocessing — quantised to 8 bits and preprocessed per image exactly as
    :mod:`scarce.data.intensity` does at decode time.

    Why shift before the preprocessing: a brighter scanner changes the stored file, and the
    run's own preprocessing (e.g. ``percentile``) is part of the method under test; shifting its
    output instead would hide precisely the robustness it buys. Severity 0 with ``none``
    returns ``images`` itself; with preprocessing it equals the normal evaluation's input.
    """
    from scarce.data.intensity import check_intensity

    intensity = check_intensity(intensity)
    fn = SHIFTS.get(name) if severity else None
    if fn is None and intensity == "none":
        return images
    out = torch.empty_like(images)
    for k, start in enumerate(range(0, int(images.shape[0]), CHUNK)):
        x = images[start:start + CHUNK]
        if fn is not None:
            x = fn(x, severity, torch.Generator().manual_seed(int(seed) + k))
        if intensity != "none":
            x = _preprocess(x, intensity)
        out[start:start + CHUNK] = x
    return out


def _preprocess(x: torch.Tensor, intensity: str) -> torch.Tensor:
    import numpy as np

    from scarce.data.intensity import preprocess_intensity

    u8 = x.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    done = np.stack([preprocess_intensity(a, intensity) for a in u8])
    return torch.from_numpy(done).to(x).div(255)


def evaluate_shifted_sets(model: torch.nn.Module, tests: Mapping[str, Any], num_classes: int,
                          shifts: Sequence[str], severities: Sequence[int] = SEVERITIES,
                          threshold: float = 0.5, iou_threshold: float = 0.65, tta: str = "none",
                          intensity: str = "none", seed: int = SHIFT_SEED, batch_size: int = 16,
                          device: str | torch.device | None = None,
                          log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Score ``model`` on every test set unshifted (``shift="none"``, severity 0) and under
    each shift × severity, as :func:`scarce.evaluation.evaluate.evaluate_set` does (original
    mask resolution, ``threshold``, ``tta``; no files).

    ``tests`` maps names to :class:`~scarce.data.types.SegData` decoded without
    ``data.intensity`` (``intensity`` is applied after the shift, :func:`shifted_images`).
    Returns one row per (test set, shift, severity): ``{test_set, shift, severity, n,
    <metric>_mean, <metric>_std, ...}`` for every metric the evaluation reports (std over
    images, ddof 0; NaN where undefined).
    """
    from dataclasses import replace

    from scarce.evaluation.evaluate import _json_safe, check_tta, evaluate_set
    from scarce.evaluation.metrics import aggregate

    check_tta(tta)
    sev = check_severities(severities)
    names = resolve_shifts(list(shifts))
    rows: list[dict[str, Any]] = []
    for set_name, data in tests.items():
        for name, s in [(REFERENCE, 0)] + [(n, s) for n in names for s in sev]:
            x = shifted_images(data.images, name, s, seed, intensity)
            per_image = evaluate_set(model, replace(data, images=x), num_classes, out_dir=None,
                                     threshold=threshold, save_predictions=False, overlays=0,
                                     iou_threshold=iou_threshold, device=device, batch_size=batch_size, tta=tta)
            agg = {k: (float("nan") if v is None else v) for k, v in _json_safe(aggregate(per_image)).items()}
            n = agg.pop("n", len(per_image))
            rows.append({"test_set": set_name, "shift": name, "severity": s, "n": int(n), **agg})
            if log is not None:
                log(f"{set_name}: {name} {s}")
    return rows


# --------------------------------------------------------------------------- files

def _cell(row: Mapping[str, Any], metric: str) -> str:
    m, sd = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return ""
    return f"{m:.3f} ± {sd:.3f}" if sd is not None and not (isinstance(sd, float) and math.isnan(sd)) else f"{m:.3f}"


def format_shift_table(rows: Sequence[Mapping[str, Any]], metric: str = "dice") -> list[str]:
    """Markdown lines: per test set, one table (rows = shifts, columns = severities; cells
    ``mean ± std`` of ``metric`` over images) below the unshifted reference."""
    lines: list[str] = []
    sets = list(dict.fromkeys(r["test_set"] for r in rows))
    for t in sets:
        sub = [r for r in rows if r["test_set"] == t]
        ref = next((r for r in sub if r["shift"] == REFERENCE), None)
        sev = sorted({int(r["severity"]) for r in sub if r["shift"] != REFERENCE})
        lines += [f"## {t} (n={ref['n'] if ref else sub[0]['n']})", ""]
        if ref is not None:
            lines += [f"Unshifted (severity 0): {metric} {_cell(ref, metric)}", ""]
        head = ["shift", *[f"severity {s}" for s in sev], "mean Δ vs unshifted"]
        lines += ["| " + " | ".join(head) + " |", "|---|" + "|".join([":---:"] * (len(head) - 1)) + "|"]
        for name in dict.fromkeys(r["shift"] for r in sub if r["shift"] != REFERENCE):
            by = {int(r["severity"]): r for r in sub if r["shift"] == name}
            cells = [_cell(by[s], metric) if s in by else "" for s in sev]
            means = [by[s].get(f"{metric}_mean") for s in sev if s in by]
            means = [float(m) for m in means if m is not None and not math.isnan(float(m))]
            delta = ""
            if ref is not None and means and not math.isnan(float(ref.get(f"{metric}_mean", math.nan))):
                delta = f"{sum(means) / len(means) - float(ref[f'{metric}_mean']):+.3f}"
            lines.append("| " + " | ".join([name, *cells, delta]) + " |")
        lines.append("")
    return lines


SHIFTS_CSV, SHIFTS_MD, SHIFTS_META = "shifts.csv", "shifts.md", "shifts.json"


def write_shift_outputs(out_dir: str | Any, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                        metric: str = "dice", title: str = "") -> None:
    """Write ``shifts.csv`` (one row per test set × shift × severity), ``shifts.md`` and
    ``shifts.json`` (what was evaluated: checkpoint fingerprint, shifts, severities, parameters,
    evaluation settings) into ``out_dir``, each atomically; ``shifts.json`` last, so a folder
    holding it holds a complete evaluation."""
    from pathlib import Path

    from scarce.evaluation.evaluate import _write_csv
    from scarce.utils.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    _write_csv(out / SHIFTS_CSV, [dict(r) for r in rows])
    shown = [s for s in meta.get("shifts", [])]
    params = ["| shift | parameter | 1 | 2 | 3 |", "|---|---|:---:|:---:|:---:|"]
    params += [f"| {p['shift']} | {p['parameter']} | {p['1']} | {p['2']} | {p['3']} |"
               for p in shift_parameter_rows(shown or None)]
    lines = ["# Intensity-shift stress test", ""]
    if title:
        lines += [title, ""]
    lines += [f"Cells: {metric} per image at original mask resolution, mean ± std over the test images; "
              "severity 0 = the unshifted test images. Shifts (scarce/evaluation/shifts.py), applied at the "
              "network's input resolution:", "", *params, "", *format_shift_table(rows, metric),
              f"All metrics: [{SHIFTS_CSV}]({SHIFTS_CSV}).", ""]
    atomic_write_text(out / SHIFTS_MD, "\n".join(lines))
    atomic_write_json(out / SHIFTS_META, dict(meta))
