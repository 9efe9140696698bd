"""Losses for weak supervision from scribbles/clicks (Marin & Boykov, "Robust Trust Region for
Weakly Supervised Segmentation"), as pure functions.

* :func:`partial_cross_entropy` — Eq. 6: cross-entropy on scribbled pixels only (255 = unlabelled).
* :func:`grid_affinities` + :func:`potts_grid_bilinear` — Eq. 7–8: bilinear relaxation
  ``Σ_k (1 − s^k)ᵀ W s^k`` of the Potts model on the 8-grid with Gaussian colour affinities
  ``w_ij = exp(−‖I_i − I_j‖² / 2σ²) / dist(i, j)``.
* :class:`BilateralGrid` + :func:`dense_potts_bilinear` — the same relaxation with the
  fully-connected Gaussian/bilateral kernel of the dense CRF (the Dense-GD regulariser).
* :func:`robust_kl` — Eq. 22/24: the robust divergence d_B = KL_{ε,seeds}; seeds use ``−log q``,
  other pixels ``−log(a + b·q)`` with ``a = ε/(K−1)``, ``b = 1 − K·a``; ε = 0 is cross-entropy.
  Registered in :data:`scarce.losses.LOSSES` as ``robust_kl`` (ε = :data:`DEFAULT_EPS`) so it can
  train on noisy full masks as well.

Dense-CRF filtering choice (why not pydensecrf): pydensecrf's Python API exposes mean-field
inference only, not the permutohedral filtering itself, and its C++ filter has no gradient. We
use a **sparse bilateral grid** instead (Paris & Durand / Chen et al.): every pixel is splatted
with multilinear weights onto the 2^d corners of its cell in the d-dimensional feature space
(y/σ_xy, x/σ_xy, 255·I/σ_rgb) — d = 3 gray, 5 RGB —, only occupied vertices are stored (hashed
with ``torch.unique``), values are blurred with a [1 2 1]/4 kernel along each feature axis and
sliced back with the same weights. Cost O(N·2^d + V·d) per filter for N pixels and V occupied
vertices (never O(N²)); it is pure torch, so autograd differentiates it exactly. It approximates
the Gaussian kernel up to a constant factor (absorbed by the normalisation below) and, like the
permutohedral lattice, drops mass that would spread to unoccupied vertices.

Normalisation: both Potts relaxations are divided by the total affinity ``1ᵀW1`` of the image
(``normalize=True``), i.e. they measure the fraction of affinity mass cut by the soft labelling
(in [0, 1)); that makes the weight ν comparable between image sizes, kernels and datasets.

Shapes: logits N×C×H×W (C = 1 binary sigmoid or K softmax), probabilities N×K×H×W, label maps
N×H×W int64, images N×C_img×H×W float in [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scarce.losses.core import LOSSES

IGNORE = 255
"""Label value of unlabelled pixels (scribble file format)."""

DEFAULT_EPS = 0.2
"""Default outlier probability ε of the registered ``robust_kl`` loss."""

GRID_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
"""The 4 "forward" neighbours (dy, dx) of the 8-grid; each unordered pair appears once."""


# --------------------------------------------------------------------------- probabilities

def class_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """N×C×H×W logits → N×K×H×W log-probabilities (binary 1-channel: [log σ(−x), log σ(x)])."""
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return torch.log_softmax(logits, dim=1)


# --------------------------------------------------------------------------- Eq. 6

def partial_cross_entropy(logits: torch.Tensor, seeds: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Eq. 6, averaged over the scribbled pixels of the batch (``seeds`` N×H×W, 255 = none).

    Returns 0 (with a gradient path) when the batch holds no scribbled pixel.
    """
    logp = class_log_probs(logits)
    valid = seeds != ignore_index
    if not bool(valid.any()):
        return logp.sum() * 0.0
    return F.nll_loss(logp, torch.where(valid, seeds, torch.zeros_like(seeds)).long(), reduction="none")[valid].mean()


# --------------------------------------------------------------------------- Eq. 7-8 (8-grid)

def _shift_pair(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views (a, b) of x (…×H×W) such that b[..., y, x] = x[..., y+dy, x+dx] where both exist."""
    h, w = x.shape[-2:]
    ys_a = slice(0, h - dy)
    ys_b = slice(dy, h)
    if dx >= 0:
        xs_a, xs_b = slice(0, w - dx), slice(dx, w)
    else:
        xs_a, xs_b = slice(-dx, w), slice(0, w + dx)
    return x[..., ys_a, xs_a], x[..., ys_b, xs_b]


def _pad_back(v: torch.Tensor, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """Place a pair map (from :func:`_shift_pair`'s ``a`` view) back on the full H×W grid (zeros elsewhere)."""
    if dx >= 0:
        return F.pad(v, (0, dx, 0, dy))
    return F.pad(v, (-dx, 0, 0, dy))


def grid_affinities(images: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian colour affinities on the 8-grid.

    Args:
        images: N×C×H×W float in [0, 1].
        sigma: colour scale in intensity units; None = per image
            ``σ² = mean ‖I_i − I_j‖²`` over 4-neighbours (Boykov–Jolly / GrabCut β).

    Returns:
        N×4×H×W float32: channel d holds ``w_ij`` between pixel (y, x) and
        (y + dy, x + dx) for ``GRID_OFFSETS[d]`` (diagonals divided by √2), 0 where the
        neighbour falls outside the image.
    """
    x = images.float()
    n, _, h, w = x.shape
    if sigma is None:
        a, b = _shift_pair(x, 0, 1)
        c, d = _shift_pair(x, 1, 0)
        sq = torch.cat([((a - b) ** 2).sum(1).flatten(1), ((c - d) ** 2).sum(1).flatten(1)], dim=1)
        var = sq.mean(1).clamp_min(1e-8).view(n, 1, 1)
    else:
        var = torch.full((n, 1, 1), float(sigma) ** 2)
    out = []
    for dy, dx in GRID_OFFSETS:
        a, b = _shift_pair(x, dy, dx)
        wgt = torch.exp(-((a - b) ** 2).sum(1) / (2 * var)) / math.hypot(dy, dx)
        out.append(_pad_back(wgt, dy, dx, h, w))
    return torch.stack(out, dim=1)


def potts_grid_bilinear(probs: torch.Tensor, weights: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Eq. 7 on the 8-grid: ``Σ_k (1 − s^k)ᵀ W s^k`` per image → N.

    ``probs`` N×K×H×W (soft segmentation s), ``weights`` N×4×H×W from :func:`grid_affinities`.
    W is symmetric over *ordered* pairs, so for one-hot s this equals 2·Σ_{i~j} w_ij [s_i ≠ s_j]
    (twice the discrete Potts energy). ``normalize`` divides by ``1ᵀW1 = 2·Σ w_ij``.
    """
    total = probs.new_zeros(probs.shape[0])
    for d, (dy, dx) in enumerate(GRID_OFFSETS):
        a, b = _shift_pair(probs, dy, dx)
        wa, _ = _shift_pair(weights[:, d], dy, dx)
        total = total + 2 * (wa * (1 - (a * b).sum(1))).flatten(1).sum(1)
    if normalize:
        total = total / (2 * weights.flatten(1).sum(1)).clamp_min(1e-8)
    return total


def potts_grid_energy(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Discrete Potts energy Σ_{i~j} w_ij [s_i ≠ s_j] (each unordered 8-grid pair once) → N."""
    total = weights.new_zeros(labels.shape[0])
    for d, (dy, dx) in enumerate(GRID_OFFSETS):
        a, b = _shift_pair(labels, dy, dx)
        wa, _ = _shift_pair(weights[:, d], dy, dx)
        total = total + (wa * (a != b).to(wa.dtype)).flatten(1).sum(1)
    return total


# --------------------------------------------------------------------------- dense CRF (bilateral grid)

class BilateralGrid:
    """Sparse bilateral grid of one image for fast Gaussian (bilateral) filtering (see module doc).

    ``image`` C×H×W in [0, 1]; ``sigma_xy`` in pixels, ``sigma_rgb`` in 0..255 intensity units.
    :meth:`filter` maps H·W×K values to H·W×K ≈ W·values with W_ij ∝ exp(−|p_i−p_j|²/2σ_xy² −
    |I_i−I_j|²/2σ_rgb²). Built once per training image (it does not depend on the network).
    """

    def __init__(self, image: torch.Tensor, sigma_xy: float = 20.0, sigma_rgb: float = 15.0) -> None:
        img = image.detach().float().cpu()
        c, h, w = img.shape
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        feats = torch.cat([
            yy.reshape(1, -1) / sigma_xy, xx.reshape(1, -1) / sigma_xy, img.reshape(c, -1) * 255.0 / sigma_rgb,
        ]).t()  # N×d
        n, d = feats.shape
        base = torch.floor(feats)
        frac = feats - base
        base = (base - base.min(0).values).long()
        offsets = torch.tensor([[(m >> j) & 1 for j in range(d)] for m in range(2 ** d)], dtype=torch.long)
        coords = base[:, None, :] + offsets[None]  # N×2^d×d
        extent = coords.amax(dim=(0, 1)) + 3
        strides = torch.ones(d, dtype=torch.long)
        for j in range(1, d):
            strides[j] = strides[j - 1] * extent[j - 1]
        keys = ((coords + 1) * strides).sum(-1)  # +1: neighbours of border vertices stay ≥ 0
        wts = torch.where(offsets[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)  # N×2^d
        uniq, inv = torch.unique(keys.reshape(-1), return_inverse=True)
        v = int(uniq.numel())
        self.num_vertices = v
        self.idx = inv.view(n, 2 ** d)
        self.weights = wts.float()
        self.neighbours: list[tuple[torch.Tensor, torch.Tensor]] = []
        for j in range(d):
            pair = []
            for sgn in (1, -1):
                k = uniq + sgn * strides[j]
                pos = torch.searchsorted(uniq, k).clamp_max(v - 1)
                found = uniq[pos] == k
                nb = torch.where(found, pos, torch.full_like(pos, v))
                pair.append(torch.cat([nb, torch.tensor([v])]))  # the zero pad row maps to itself
            self.neighbours.append((pair[0], pair[1]))
        self.shape = (h, w)
        ones = torch.ones(n, 1)
        self.total = float(self.filter(ones).sum())
        """1ᵀW1 of this approximation (for normalisation)."""

    def to(self, device: torch.device | str) -> "BilateralGrid":
        self.idx = self.idx.to(device)
        self.weights = self.weights.to(device)
        self.neighbours = [(a.to(device), b.to(device)) for a, b in self.neighbours]
        return self

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """H·W×K → H·W×K (splat, blur along each feature axis, slice); differentiable, and its
        gradient is bit-identical whatever the thread count (:func:`_rows`)."""
        n, k = values.shape
        contrib = (self.weights[..., None] * values[:, None, :]).reshape(-1, k)
        g = values.new_zeros(self.num_vertices + 1, k).index_add(0, self.idx.reshape(-1), contrib)
        for plus, minus in self.neighbours:
            g = 0.5 * g + 0.25 * (_rows(g, plus) + _rows(g, minus))
        return (_rows(g, self.idx) * self.weights[..., None]).sum(1)


def _rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t[index]`` (rows of ``t``; ``index`` of any shape) by the op whose backward adds the
    gradients of repeated rows in a fixed order on ``t``'s device. The slice reads each grid
    vertex once per pixel corner, so its backward sums many gradients into one row. On CPU
    ``t[index]``'s backward (``index_put_`` with ``accumulate=True``) adds them with atomic adds
    from several threads, in an order that changes from call to call above one thread: the same
    dense_gd run then trained different weights each time, and a resumed run differed from the
    uninterrupted one. ``index_select``'s backward (``index_add``) adds in index order on CPU, so
    the bits do not depend on the thread count (and equal those of one thread). On CUDA it is the
    other way round (``index_add`` uses atomics; ``t[index]``'s backward sorts the indices), as
    listed by :func:`torch.use_deterministic_algorithms`."""
    if t.device.type == "cpu":
        return t.index_select(0, index.reshape(-1)).view(*index.shape, *t.shape[1:])
    return t[index]


def dense_potts_bilinear(probs: torch.Tensor, grids: list[BilateralGrid], normalize: bool = True) -> torch.Tensor:
    """Dense-CRF relaxation ``Σ_k (1 − s^k)ᵀ W s^k`` per image → N (``probs`` N×K×H×W, one
    :class:`BilateralGrid` per image). ``normalize`` divides by ``1ᵀW1``."""
    n, k, h, w = probs.shape
    out = []
    for i in range(n):
        s = probs[i].reshape(k, h * w).t()  # HW×K
        ws = grids[i].filter(s)
        e = ((1 - s) * ws).sum()
        out.append(e / max(grids[i].total, 1e-8) if normalize else e)
    return torch.stack(out)


# --------------------------------------------------------------------------- robust d_B (Eq. 22/24)

def robust_coefficients(eps: float, num_classes: int) -> tuple[float, float]:
    """(a, b) of Eq. 21: a = ε/(K−1), b = 1 − K·a; requires 0 ≤ ε < (K−1)/K so that b > 0."""
    k = int(num_classes)
    if not 0.0 <= eps < (k - 1) / k:
        raise ValueError(f"robust loss: eps must lie in [0, {(k - 1) / k:.3f}) for K={k}, got {eps}")
    a = eps / (k - 1)
    return a, 1.0 - k * a


def robust_kl_terms(logits: torch.Tensor, target: torch.Tensor, eps: float, seeds: torch.Tensor | None = None,
                    ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel terms of Eq. 24 → (loss N×H×W, valid N×H×W bool).

    ``target`` N×H×W labels (proposals or noisy masks; ``ignore_index`` = no label). Pixels with
    a seed (``seeds`` != ignore) use the seed label and plain ``−log q``; other labelled pixels
    use ``−log(a + b·q)``, computed stably as ``−logaddexp(log a, log b + log q)``.
    """
    logp = class_log_probs(logits)
    k = logp.shape[1]
    a, b = robust_coefficients(float(eps), k)
    lab = target.long()
    is_seed = torch.zeros_like(lab, dtype=torch.bool)
    if seeds is not None:
        is_seed = seeds != ignore_index
        lab = torch.where(is_seed, seeds.long(), lab)
    valid = lab != ignore_index
    lq = logp.gather(1, torch.where(valid, lab, torch.zeros_like(lab))[:, None]).squeeze(1)
    if a > 0:
        robust = -torch.logaddexp(torch.full_like(lq, math.log(a)), math.log(b) + lq)
    else:
        robust = -lq
    loss = torch.where(is_seed, -lq, robust)
    return torch.where(valid, loss, torch.zeros_like(loss)), valid


def robust_kl(logits: torch.Tensor, target: torch.Tensor, eps: float = DEFAULT_EPS,
              seeds: torch.Tensor | None = None, ignore_index: int = IGNORE) -> torch.Tensor:
    """d_B = KL_{ε,seeds} (Eq. 24) averaged over labelled pixels; ε = 0 equals cross-entropy."""
    loss, valid = robust_kl_terms(logits, target, eps, seeds, ignore_index)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return loss[valid].mean()


@LOSSES.register("robust_kl")
def robust_kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Registered (logits, target) form: Eq. 22 with ε = DEFAULT_EPS for training on noisy masks."""
    return robust_kl(logits, target, DEFAULT_EPS)


__all__ = [
    "IGNORE", "DEFAULT_EPS", "GRID_OFFSETS", "class_log_probs", "partial_cross_entropy", "grid_affinities",
    "potts_grid_bilinear", "potts_grid_energy", "BilateralGrid", "dense_potts_bilinear", "robust_coefficients",
    "robust_kl_terms", "robust_kl", "robust_kl_loss",
]
