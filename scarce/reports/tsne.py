"""t-SNE of pooled deep features coloured by domain (the DiM paper's feature figure).

Why: a multi-domain method claims features that do not split by domain. Per run, every test
image of every test set (ID test part + OOD sets / domains) becomes one vector — the segmenter's
deepest encoder feature map, global-average-pooled (N×C) — and scikit-learn's t-SNE maps them
to 2-D; points are coloured by test set. Runs are embedded separately (each model has its own
feature space), one panel each, so base vs DiM is read side by side.

Hook point (:func:`feature_module`), found on the network inside any input-normalisation
wrapper: ``encoder`` (pretrained-encoder U-Net: its stride-32 features; DeepLabV3 on an encoder:
its dilated last stage), ``backbone`` (from-scratch DeepLabV3: the ResNet output before ASPP),
``down[-1]`` (from-scratch U-Net: the bottleneck, stride ``2**depth``). A forward hook reads it
during a normal eval-mode forward, so no model changes and the input normalisation stays the
model's own. The library entry point that loads runs is :func:`scarce.api.tsne_runs`.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from scarce.reports.plots import _colors, save_figure
from scarce.utils.io import atomic_write_text
from scarce.utils.runfolder import CONFIG_FILE

if TYPE_CHECKING:
    import numpy as np

CSV_NAME, PNG_NAME = "tsne.csv", "tsne.png"


def feature_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is the model's deepest encoder feature (see the module docstring).
    Raises ValueError for a network with none of the known hook points."""
    net = getattr(model, "net", model)  # scarce.models.Normalized wraps the network
    for name in ("encoder", "backbone"):
        if isinstance(getattr(net, name, None), torch.nn.Module):
            return getattr(net, name)
    down = getattr(net, "down", None)
    if isinstance(down, torch.nn.ModuleList) and len(down):
        return down[-1]
    raise ValueError(f"{type(net).__name__} has no encoder/backbone/down feature to hook for the t-SNE")


@torch.no_grad()
def pooled_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Global-average-pooled deepest encoder features: N×C×S×S images in [0, 1] → N×C' float32
    (CPU). Eval mode (the model's previous mode restored), batches of ``batch_size``."""
    module = feature_module(model)
    dev = next(model.parameters()).device
    grabbed: list[torch.Tensor] = []

    def hook(_m: Any, _inp: Any, out: Any) -> None:
        feat = out[-1] if isinstance(out, (list, tuple)) else out  # encoders return every stage
        grabbed.append(feat.float().mean(dim=(2, 3)).cpu())

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, int(images.shape[0]), max(1, batch_size)):
            model(images[start:start + batch_size].to(dev, dtype=torch.float32))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(grabbed) if grabbed else torch.zeros((0, 0))


def tsne_coords(features: "np.ndarray | torch.Tensor", seed: int = 0, perplexity: float = 30.0) -> "np.ndarray":
    """N×C features → N×2 t-SNE coordinates (scikit-learn, PCA init, ``random_state=seed``: the
    same features give the same picture). The perplexity is capped at (N − 1) / 3 (at least 1)
    for small sets: t-SNE needs perplexity < N, and about N/3 keeps neighbourhoods meaningful."""
    import numpy as np
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    n = int(x.shape[0])
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 images, got {n}")
    p = min(float(perplexity), max(1.0, (n - 1) / 3.0))
    return TSNE(n_components=2, perplexity=p, init="pca", random_state=int(seed)).fit_transform(x)


def tsne_panel(model: torch.nn.Module, tests: dict[str, Any], seed: int = 0, perplexity: float = 30.0,
               batch_size: int = 16) -> dict[str, list[Any]]:
    """One run's panel: every image of every test set (``{name: SegData}``, the run's domains) →
    ``{"test_set", "stem", "x", "y"}`` lists, one entry per image, in test-set then image order."""
    feats, sets, stems = [], [], []
    for name, d in tests.items():
        feats.append(pooled_features(model, d.images, batch_size))
        sets += [name] * len(d)
        stems += list(d.stems)
    xy = tsne_coords(torch.cat(feats).numpy(), seed, perplexity)
    return {"test_set": sets, "stem": stems, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist()}


def write_tsne(panels: Sequence[tuple[str, dict[str, list[Any]]]], out_dir: str | Path) -> tuple[Path, Path]:
    """``tsne.csv`` (run, test_set, stem, x, y: one row per image and run) and ``tsne.png`` (one
    panel per run, points coloured by test set with one legend colour per set across panels)
    into ``out_dir``; returns their paths."""
    import csv

    from matplotlib.figure import Figure

    out = Path(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "test_set", "stem", "x", "y"])
    for title, p in panels:
        for row in zip(p["test_set"], p["stem"], p["x"], p["y"]):
            w.writerow([title, row[0], row[1], f"{row[2]:.6g}", f"{row[3]:.6g}"])
    atomic_write_text(out / CSV_NAME, buf.getvalue())
    sets = list(dict.fromkeys(s for _, p in panels for s in p["test_set"]))
    colors = _colors(sets)
    fig = Figure(figsize=(4.4 * max(1, len(panels)), 4.2))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0].tolist()
    for ax, (title, p) in zip(axes, panels):
        for s in sets:
            idx = [i for i, t in enumerate(p["test_set"]) if t == s]
            if idx:
                ax.scatter([p["x"][i] for i in idx], [p["y"][i] for i in idx], s=10, color=colors[s], label=s,
                           alpha=0.8, linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if sets:
        axes[0].legend(fontsize=7, markerscale=1.5, loc="best")
    save_figure(fig, out / PNG_NAME)
    return out / CSV_NAME, out / PNG_NAME


def is_tsne_output(folder: Path) -> bool:
    """True when ``folder`` holds an earlier t-SNE output (tsne.csv + tsne.png) and is not a run
    folder: ``scarce tsne`` may rewrite it without ``--overwrite``."""
    return (folder / CSV_NAME).is_file() and (folder / PNG_NAME).is_file() and not (folder / CONFIG_FILE).exists()


__all__ = ["feature_module", "pooled_features", "tsne_coords", "tsne_panel", "write_tsne", "is_tsne_output"]
