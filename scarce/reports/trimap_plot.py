"""Trimap plot like the paper's Figure 6: mIoU inside boundary bands (y) against band width in
pixels (x), one line per method (mean ± std over seeds as a shaded band).

A weak-supervision grid has methods × backbones × scribble lengths: two dozen lines on one axis
are unreadable, so :func:`plot_trimap` can also draw one panel per group (e.g. per scribble
length, as the paper draws one figure per supervision level) with reference rows (full
supervision) dashed in every panel and the same colour for a line in every panel.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

ByWidth = Mapping[int, float] | Mapping[int, Sequence[float]]


def _draw(ax: Any, label: str, by_width: ByWidth, color: Any, dashed: bool = False) -> None:
    widths = sorted(int(w) for w in by_width)
    vals = [np.atleast_1d(np.asarray(by_width[w], dtype=np.float64)) for w in widths]
    mean = np.array([np.nanmean(v) if v.size else np.nan for v in vals])
    ax.plot(widths, mean, marker="o", ms=3, color=color, ls="--" if dashed else "-", lw=1 if dashed else 1.5,
            label=label)
    if any(v.size > 1 for v in vals):
        std = np.array([np.nanstd(v, ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.fill_between(widths, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)


def plot_trimap(results: Mapping[str, ByWidth], path: str | os.PathLike[str], title: str = "Trimap accuracy",
                ylabel: str = "mIoU in band", panels: Mapping[str, Mapping[str, ByWidth]] | None = None) -> Path:
    """Save the plot atomically to ``path`` (PNG).

    Args:
        results: {label: {width: mIoU}} or {label: {width: [mIoU per seed]}}. Without ``panels``
            these are the lines of a single axis; with ``panels`` they are reference lines
            (dashed, e.g. full supervision) repeated in every panel.
        panels: optional {panel title: {line label: {width: values}}}; one axis per panel, shared
            y range, a line keeps its colour across panels.
    """
    from scarce.reports.plots import _colors, _figure, save_figure

    groups: dict[str, Mapping[str, ByWidth]] = dict(panels) if panels else {"": results}
    refs: Mapping[str, ByWidth] = results if panels else {}
    labels = sorted({lab for g in groups.values() for lab in g} | set(refs))
    colors = _colors(labels)
    fig, axes = _figure(len(groups), width=4.2, height=3.6)
    for ax, (name, lines) in zip(axes, groups.items()):
        for lab, by_w in refs.items():
            _draw(ax, lab, by_w, colors[lab], dashed=True)
        for lab in sorted(lines):
            _draw(ax, lab, lines[lab], colors[lab])
        ax.set_xlabel("trimap width (pixels)")
        ax.set_title(name or title, fontsize=9)
        ax.grid(alpha=0.3)
    if len(groups) > 1:
        lo = min(a.get_ylim()[0] for a in axes)
        hi = max(a.get_ylim()[1] for a in axes)
        for a in axes:
            a.set_ylim(lo, hi)
        fig.suptitle(title, fontsize=10)
    axes[0].set_ylabel(ylabel)
    handles: dict[str, Any] = {}
    for a in axes:  # every line once, also those missing from the last panel
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    axes[-1].legend(list(handles.values()), list(handles), fontsize=7, loc="lower right")
    return save_figure(fig, path)


__all__ = ["plot_trimap"]
