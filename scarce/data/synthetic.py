"""Built-in synthetic segmentation data (needs no download): ``synthetic`` and ``synthetic_ood``.

Why: the demo, tests and CI need a dataset that is learnable in a few hundred CPU iterations.
Each image is a *function of its mask*: random ellipses (the foreground) are painted with a
colour and a fine texture distinct from the smooth background, plus noise — so a segmenter
reaches high Dice quickly and a mask→image generator (E2EAug's GAN) can learn the mapping.
``ood=True`` shifts colour, contrast, texture scale and noise (a domain shift): models trained
on the ID data still work, but score lower.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from scarce.config import ConfigError
from scarce.data._fs import atomic_dir
from scarce.utils.io import atomic_write_json

# (background RGB, foreground RGB per class, texture period px, noise sd, contrast)
_STYLE = {
    False: dict(bg=(205, 160, 135), fg=((85, 45, 40), (160, 70, 140), (60, 110, 60)),
                period=4.0, noise=8.0, smooth=18.0),
    True: dict(bg=(165, 175, 205), fg=((115, 95, 140), (190, 120, 90), (90, 150, 120)),
               period=7.0, noise=16.0, smooth=30.0),
}
MARKER = ".synthetic.json"
SYNTHETIC_COMMAND = "scarce data synthetic"
"""Command name in the output marker (:mod:`scarce.utils.paths`) of a generated dataset."""


def synth_pair(rng: np.random.Generator, size: int, ood: bool = False, num_classes: int = 2
               ) -> tuple[np.ndarray, np.ndarray]:
    """One (H×W×3 uint8 image, H×W uint8 label-id mask) drawn from ``rng``."""
    style = _STYLE[bool(ood)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        ry, rx = rng.uniform(0.08, 0.25, 2) * size
        t = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(t) + dy * np.sin(t)) / rx
        v = (-dx * np.sin(t) + dy * np.cos(t)) / ry
        cls = int(rng.integers(1, num_classes)) if num_classes > 2 else 1
        mask[u * u + v * v <= 1.0] = cls
    # smooth background with low-frequency shading
    shade = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), size / 8)
    shade = shade / (np.abs(shade).max() + 1e-8) * style["smooth"]
    img = np.empty((size, size, 3), np.float64)
    img[:] = np.asarray(style["bg"], np.float64)
    img += shade[..., None]
    # foreground: class colour + oriented stripe texture + speckles
    phase = rng.uniform(0, 2 * np.pi)
    ang = rng.uniform(0, np.pi)
    stripes = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / style["period"] + phase)
    speck = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 0.8)
    speck /= speck.std() + 1e-8
    alpha = ndimage.gaussian_filter((mask > 0).astype(np.float64), 0.7)[..., None]
    fg = np.zeros_like(img)
    for c in range(1, num_classes):
        col = np.asarray(style["fg"][(c - 1) % len(style["fg"])], np.float64)
        fg[mask == c] = col
    fg[mask == 0] = np.asarray(style["fg"][0], np.float64)
    fg += (18.0 * stripes + 10.0 * speck)[..., None]
    img = img * (1 - alpha) + fg * alpha
    img += rng.normal(0, style["noise"], img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


def _write_synthetic(folder: Path, n: int, size: int, seed: int, ood: bool, num_classes: int,
                     channels: int) -> None:
    """Write images/, masks/, split.csv and the marker into the (empty, temporary) ``folder``."""
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    rows = ["stem,split"]
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, int(bool(ood)), 7])
        img, mask = synth_pair(rng, size, ood, num_classes)
        stem = f"syn_{i:04d}"
        im = Image.fromarray(img)
        (im.convert("L") if channels == 1 else im).save(folder / "images" / f"{stem}.png")
        out = mask * 255 if num_classes == 2 else mask
        Image.fromarray(out.astype(np.uint8)).save(folder / "masks" / f"{stem}.png")
        rows.append(f"{stem},{'test' if i % 5 == 4 else 'train'}")
    (folder / "split.csv").write_text("\n".join(rows) + "\n")
    params = dict(n=n, size=size, seed=seed, ood=bool(ood), num_classes=num_classes, channels=channels)
    atomic_write_json(folder / MARKER, params)


def _check_args(n: int, size: int, num_classes: int, channels: int) -> None:
    if n < 1 or size < 8 or num_classes < 2 or channels not in (1, 3):
        raise ConfigError(f"synthetic data needs n >= 1, size >= 8, num_classes >= 2 and channels 1 or 3 "
                          f"(got n={n}, size={size}, num_classes={num_classes}, channels={channels})")


def make_synthetic(dest: str | Path, n: int, size: int = 64, seed: int = 0, ood: bool = False,
                   num_classes: int = 2, channels: int = 3, overwrite: bool = False) -> Path:
    """Write a dataset folder ``dest`` (images/, masks/, split.csv) with ``n`` pairs.

    Stems ``syn_0000``...; every 5th pair (i % 5 == 4) is ``test``, the rest ``train``. Binary
    masks are stored 0/255, multi-class ones as label ids. Pair i depends only on
    (seed, i, ood), so it is deterministic.

    Never deletes anything: ``dest`` must be new, empty or an earlier output of this command
    (:mod:`scarce.utils.paths`; then ``overwrite`` rewrites ``images/``, ``masks/``, ``split.csv``
    and the markers, and keeps every other file). Everything is generated in a temporary folder first, so a failure leaves
    nothing behind.
    """
    from scarce.utils.paths import check_output_folder, staged_output

    _check_args(n, size, num_classes, channels)
    target = check_output_folder(dest, overwrite=overwrite, what="destination", command=SYNTHETIC_COMMAND)
    if target.is_dir():
        ours = {f"syn_{i:04d}.png" for i in range(n)}
        for sub in ("images", "masks"):
            folder = target / sub
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"{folder} is a file where synthetic data writes a folder; choose a new destination")
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in ours) if folder.is_dir() else []
            if foreign:
                raise ConfigError(f"{folder} holds files this command would not write ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); they would be mixed into the "
                                  f"dataset: choose a new destination")
    with staged_output(target, SYNTHETIC_COMMAND) as tmp:
        _write_synthetic(tmp, n, size, seed, ood, num_classes, channels)
    return Path(dest)


def ensure_synthetic(root: str | Path, n: int = 160, size: int = 64, seed: int = 0) -> Path:
    """Create ``root/synthetic`` (n pairs) and ``root/synthetic_ood`` (n // 2) unless they exist
    with the same parameters. Returns ``root`` (usable as a data root)."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    # Parallel grid workers may ask at once: one generates, the others wait and reuse it.
    with open(root / ".lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # non-POSIX: no lock (generation is deterministic and atomic)
            pass
        for name, ood, count in (("synthetic", False, n), ("synthetic_ood", True, max(n // 2, 1))):
            want = dict(n=count, size=size, seed=seed, ood=ood, num_classes=2, channels=3)
            marker = root / name / MARKER
            try:
                if json.loads(marker.read_text()) == want:
                    continue
            except (OSError, ValueError):
                pass
            # the cache folder is ours alone: replace it as a whole (atomically)
            with atomic_dir(root / name, overwrite=True, command=SYNTHETIC_COMMAND) as tmp:
                _write_synthetic(tmp, count, size, seed, ood, 2, 3)
    return root
