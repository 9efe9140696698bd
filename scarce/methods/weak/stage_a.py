"""Stage A of the robust trust region (Eq. 16 with d_A = KL and Ẽ = PCE + Potts, Eq. 26), solved
by α-expansion graph cuts (GCO v3 through ``gco-wrapper``, the solver of the paper).

For one image with network probabilities q (K×H×W), seeds y (H×W, 255 = none) and 8-grid
affinities w (4×H×W, see :func:`scarce.losses.weak.grid_affinities`) it returns

    s = argmin_{s one-hot}  Σ_{i∈seeds} ∞·[s_i ≠ y_i]  +  ν Σ_{i~j} w_ij [s_i ≠ s_j]  +  λ Σ_i −log q_i^{s_i}

(KL(s‖q) = Σ_i −log q_i^{s_i} for one-hot s), with labels restricted to those present in the
image's scribbles and at most ``max_iter`` expansion cycles.

Why this module is numpy-only: it runs in worker processes (``solve_many``), which then import
numpy + gco only, not torch.

Integer energies: GCO works on int32 terms. Costs are scaled to integers with ``scale``
(≤ 1000 units per 1.0, lowered automatically so the largest term stays ≤ 9·10⁶: GCO v3
aborts the whole process on terms above 10⁷); energies are
therefore exact up to ±0.5/scale per term. "∞" on seeds is the finite cost
``H = 8ν·max w + λ·max(−log q) + 1``: flipping a seed can never lower the energy by more than
H − 1, so no expansion move started from a seed-respecting labelling violates a seed, and the
first expansion of each seed label repairs any violation of the initial labelling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

IGNORE = 255
Q_MIN = 1e-6
"""Probabilities are clamped to ≥ Q_MIN so −log q ≤ 13.8."""

MAX_TERM = 9_000_000
"""Largest integer energy term handed to GCO (GCO v3 aborts the process above 10⁷)."""

GRID_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Same order as :data:`scarce.losses.weak.GRID_OFFSETS` (forward half of the 8-grid)."""


@dataclass
class StageAJob:
    """Inputs of one image (picklable for worker processes)."""

    probs: np.ndarray  # K×H×W float network probabilities f(θ_t)
    seeds: np.ndarray  # H×W int seeds, 255 = unlabelled
    weights: np.ndarray  # 4×H×W float 8-grid affinities
    lam: float = 1.0  # λ, trust-region weight of KL(s‖f)
    potts_weight: float = 1.0  # ν, weight of the Potts term
    max_iter: int = 5  # α-expansion cycles


def grid_edges(h: int, w: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-grid edges of an H×W image as (E×2 int32 site pairs with i < j, E float weights)."""
    idx = np.arange(h * w, dtype=np.int64).reshape(h, w)
    e, wt = [], []
    for d, (dy, dx) in enumerate(GRID_OFFSETS):
        ys = slice(0, h - dy)
        if dx >= 0:
            xs_a, xs_b = slice(0, w - dx), slice(dx, w)
        else:
            xs_a, xs_b = slice(-dx, w), slice(0, w + dx)
        a = idx[ys, xs_a].ravel()
        b = idx[dy:h, xs_b].ravel()
        e.append(np.stack([a, b], 1))
        wt.append(np.asarray(weights[d])[ys, xs_a].ravel())
    return np.concatenate(e).astype(np.int32), np.concatenate(wt).astype(np.float64)


def unary_costs(probs: np.ndarray, lam: float) -> np.ndarray:
    """λ·(−log q) as H·W×K float64 (the trust-region term KL(s‖q) for one-hot s)."""
    k = probs.shape[0]
    q = np.clip(np.asarray(probs, np.float64).reshape(k, -1).T, Q_MIN, 1.0)
    return -lam * np.log(q)


def stage_a_energy(labels: np.ndarray, job: StageAJob) -> float:
    """Energy of a labelling (H×W ints) under ``job``; seed violations give ``inf``."""
    lab = np.asarray(labels).astype(np.int64)
    seeds = np.asarray(job.seeds)
    has = seeds != IGNORE
    if np.any(lab[has] != seeds[has]):
        return math.inf
    u = unary_costs(job.probs, job.lam)
    flat = lab.ravel()
    e_unary = float(u[np.arange(flat.size), flat].sum()) if job.lam != 0 else 0.0
    h, w = lab.shape
    edges, wt = grid_edges(h, w, job.weights)
    cut = flat[edges[:, 0]] != flat[edges[:, 1]]
    return e_unary + job.potts_weight * float(wt[cut].sum())


def present_labels(seeds: np.ndarray, num_classes: int) -> np.ndarray:
    """Sorted labels present in the scribbles (all labels if there are no seeds)."""
    s = np.asarray(seeds)
    p = np.unique(s[s != IGNORE]).astype(np.int64)
    return p if p.size else np.arange(num_classes, dtype=np.int64)


def _gco():
    """The ``gco`` module (gco-wrapper, the ``weak`` extra); a one-line ConfigError without it."""
    try:
        import gco
    except ImportError:
        from scarce.errors import ConfigError

        raise ConfigError("the weak methods' graph cuts need the gco-wrapper package, which is not installed: "
                          "pip install gco-wrapper (or pip install -e \".[weak]\")") from None
    return gco


def solve_stage_a(job: StageAJob) -> np.ndarray:
    """α-expansion solution of Stage A for one image → H×W uint8 labels (see module docstring)."""
    gco = _gco()

    probs = np.asarray(job.probs)
    k, h, w = probs.shape
    seeds = np.asarray(job.seeds).astype(np.int64)
    labels = present_labels(seeds, k)
    if labels.size == 1:
        return np.full((h, w), labels[0], np.uint8)
    u = unary_costs(probs, job.lam)[:, labels]  # HW×L
    edges, wt = grid_edges(h, w, job.weights)
    wt = job.potts_weight * wt
    hard = 8.0 * (float(wt.max()) if wt.size else 0.0) + float(u.max() if u.size else 0.0) + 1.0
    flat = seeds.ravel()
    has = flat != IGNORE
    local = np.searchsorted(labels, flat[has])
    u[has] = hard
    u[np.nonzero(has)[0], local] = 0.0
    scale = min(1000.0, MAX_TERM / max(hard, 1e-12))
    u_int = np.rint(u * scale).astype(np.int32)
    w_int = np.rint(wt * scale).astype(np.int32)
    n_lab = int(labels.size)
    gc = gco.GCO()
    gc.create_general_graph(h * w, n_lab, False)
    try:
        gc.set_data_cost(np.ascontiguousarray(u_int))
        keep = w_int > 0
        if keep.any():
            gc.set_all_neighbors(edges[keep, 0], edges[keep, 1], w_int[keep])
        gc.set_smooth_cost((1 - np.eye(n_lab)).astype(np.int32))
        gc.expansion(int(job.max_iter))
        out = gc.get_labels()
    finally:
        gc.destroy_graph()
    return labels[out].reshape(h, w).astype(np.uint8)


def solve_many(jobs: Sequence[StageAJob] | Iterable[StageAJob], workers: int = 1) -> list[np.ndarray]:
    """Stage A for many images, in ``workers`` processes (spawned: they import numpy + gco only).

    Results are returned in input order and do not depend on ``workers``.
    """
    jobs = list(jobs)
    if jobs:
        _gco()  # missing: one line here, not a traceback from every worker
    if workers <= 1 or len(jobs) <= 1:
        return [solve_stage_a(j) for j in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=min(int(workers), len(jobs))) as pool:
        return pool.map(solve_stage_a, jobs, chunksize=max(1, len(jobs) // (4 * int(workers))))
