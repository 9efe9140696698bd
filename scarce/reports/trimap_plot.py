"""Trimap plot like the paper's Figure 6: mIoU inside boundary bands (y) against band width in
pixels (x), one line per method (optionally mean ± std over seeds as a shaded band)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def plot_trimap(results: Mapping[str, Mapping[int, float] | Mapping[int, Sequence[float]]],
                path: str | os.PathLike[str], title: str = "Trimap accuracy",
                ylabel: str = "mIoU in band") -> Path:
    """Save the plot atomically to ``path`` (format from the suffix, e.g. .png/.pdf).

    ``results``: {method label: {width: mIoU}} or {method label: {width: [mIoU per seed]}}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scarce.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=120)
    for label, by_width in results.items():
        widths = sorted(int(w) for w in by_width)
        vals = [np.atleast_1d(np.asarray(by_width[w], dtype=np.float64)) for w in widths]
        mean = np.array([np.nanmean(v) for v in vals])
        ax.plot(widths, mean, marker="o", ms=3, label=str(label))
        if any(v.size > 1 for v in vals):
            std = np.array([np.nanstd(v) for v in vals])
            ax.fill_between(widths, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("trimap width (pixels)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    target = Path(path)
    fmt = target.suffix.lstrip(".") or "png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt)
    plt.close(fig)
    return target


__all__ = ["plot_trimap"]
