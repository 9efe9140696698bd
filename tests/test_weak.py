"""Weak supervision: scribbles, weak losses, Stage A (α-expansion), trimap, and the four methods
(pce_gd, grid_gd, dense_gd, grid_tr) through the shared Trainer incl. exact resume."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from scarce.data.scribbles import (  # noqa: E402
    UNLABELLED,
    load_scribbles,
    read_scribble,
    resize_scribble,
    stem_rng,
    synthesize_scribbles,
    write_scribbles,
)
from scarce.data.types import DataError, DatasetInfo, RunData, SegData  # noqa: E402
from scarce.losses.weak import (  # noqa: E402
    BilateralGrid,
    dense_potts_bilinear,
    grid_affinities,
    partial_cross_entropy,
    potts_grid_bilinear,
    potts_grid_energy,
    robust_kl,
    robust_kl_terms,
)
from scarce.methods.weak.stage_a import StageAJob, solve_many, solve_stage_a, stage_a_energy  # noqa: E402


# ============================================================================ helpers

def _toy_image(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((3, h, w), np.float32)
    img[:, :, w // 2:] = 0.7
    img[0, h // 2:, :] += 0.25
    return img + 0.05 * rng.random(img.shape).astype(np.float32)


def _toy_job(seed: int = 0, k: int = 3, lam: float = 1.0, potts: float = 1.0, h: int = 16) -> StageAJob:
    rng = np.random.default_rng(seed)
    img = _toy_image(h, h, seed)
    wts = grid_affinities(torch.from_numpy(img)[None])[0].numpy()
    logits = rng.normal(size=(k, h, h)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(0)
    seeds = np.full((h, h), UNLABELLED, np.int64)
    seeds[1:3, 1:3] = 0
    seeds[1:3, h - 3:h - 1] = 1
    if k > 2:
        seeds[h - 3:h - 1, h - 3:h - 1] = 2
    return StageAJob(probs, seeds, wts, lam=lam, potts_weight=potts, max_iter=5)


def _with_seeds(lab: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    out = lab.copy()
    out[seeds != UNLABELLED] = seeds[seeds != UNLABELLED]
    return out


def _ellipse_mask(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    m = np.zeros((size, size), np.int64)
    m[((yy - size * 0.45) ** 2 / (size * 0.25) ** 2 + (xx - size * 0.5) ** 2 / (size * 0.32) ** 2) < 1] = 1
    m[2:size // 6 + 2, 4:size - 4] = 2
    return m


# ============================================================================ Stage A

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stage_a_energy_not_worse_than_argmax_and_random(seed: int) -> None:
    job = _toy_job(seed)
    s = solve_stage_a(job)
    e = stage_a_energy(s, job)
    assert math.isfinite(e)
    tol = 1e-2  # integer rounding inside GCO (0.5e-3 per term)
    argmax = _with_seeds(job.probs.argmax(0), job.seeds)
    assert e <= stage_a_energy(argmax, job) + tol
    rng = np.random.default_rng(100 + seed)
    for _ in range(4):
        rand = _with_seeds(rng.integers(0, 3, job.seeds.shape), job.seeds)
        assert e <= stage_a_energy(rand, job) + tol


@pytest.mark.parametrize("lam,potts", [(0.0, 1.0), (1.0, 1.0), (1.0, 50.0), (100.0, 0.1)])
def test_stage_a_respects_seeds(lam: float, potts: float) -> None:
    job = _toy_job(3, lam=lam, potts=potts)
    s = solve_stage_a(job)
    has = job.seeds != UNLABELLED
    assert np.array_equal(s[has], job.seeds[has])


def test_stage_a_large_lambda_returns_network_argmax() -> None:
    job = _toy_job(4, lam=1e4, potts=1.0)
    argmax = job.probs.argmax(0)
    job.probs[:, job.seeds != UNLABELLED] = 0.01  # make the network agree with the seeds
    for c in range(3):
        job.probs[c][job.seeds == c] = 0.98
    s = solve_stage_a(job)
    assert np.array_equal(s, _with_seeds(argmax, job.seeds))


def test_stage_a_zero_potts_returns_unary_argmin() -> None:
    job = _toy_job(5, lam=1.0, potts=0.0)
    s = solve_stage_a(job)
    assert np.array_equal(s, _with_seeds(job.probs.argmax(0), job.seeds))


def test_stage_a_restricts_labels_to_scribbled_ones() -> None:
    job = _toy_job(6, k=3)
    job.seeds[job.seeds == 1] = 2  # only labels {0, 2} scribbled
    job.probs[1] = 0.9  # the network prefers the absent label everywhere
    s = solve_stage_a(job)
    assert set(np.unique(s).tolist()) <= {0, 2}


def test_stage_a_single_label_image() -> None:
    job = _toy_job(7)
    job.seeds[job.seeds != UNLABELLED] = 1
    assert (solve_stage_a(job) == 1).all()


def test_stage_a_workers_match_sequential() -> None:
    jobs = [_toy_job(s) for s in range(3)]
    seq = solve_many(jobs, workers=1)
    par = solve_many(jobs, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(seq, par))


def test_grid_relaxation_matches_discrete_potts_on_one_hot() -> None:
    job = _toy_job(8, lam=0.0, potts=1.0)
    job.seeds[:] = UNLABELLED
    lab = np.random.default_rng(0).integers(0, 3, (16, 16))
    wts = torch.from_numpy(job.weights)[None]
    onehot = F.one_hot(torch.from_numpy(lab), 3).permute(2, 0, 1)[None].float()
    relaxed = potts_grid_bilinear(onehot, wts, normalize=False)
    discrete = potts_grid_energy(torch.from_numpy(lab)[None], wts)
    assert torch.allclose(relaxed, 2 * discrete, rtol=1e-5)
    assert stage_a_energy(lab, job) == pytest.approx(float(discrete), rel=1e-5)
    norm = potts_grid_bilinear(onehot, wts)
    assert 0 < float(norm) < 1


def test_grid_affinities_shape_and_range() -> None:
    img = torch.from_numpy(_toy_image(12, 10))[None]
    w = grid_affinities(img)
    assert w.shape == (1, 4, 12, 10)
    assert float(w.max()) <= 1.0 and float(w.min()) >= 0.0
    assert float(w[0, 0, :, -1].abs().sum()) == 0.0  # right neighbour outside
    assert float(w[0, 3, :, 0].abs().sum()) == 0.0  # down-left neighbour outside
    # strong edge between columns 4 and 5 → weak affinity across it
    assert float(w[0, 0, :, 4].mean()) < 0.1 * float(w[0, 0, :, 1].mean())


# ============================================================================ losses

def test_robust_kl_hand_computed_table() -> None:
    # K = 3, ε = 0.3 → a = 0.15, b = 1 − 3·0.15 = 0.55
    logits = torch.tensor([[[[0.0, math.log(2.0)]], [[0.0, 0.0]], [[0.0, math.log(5.0)]]]])  # 1×3×1×2
    # pixel 0: q = (1/3, 1/3, 1/3); pixel 1: q = (2/8, 1/8, 5/8)
    target = torch.tensor([[[1, 2]]])
    loss, valid = robust_kl_terms(logits, target, eps=0.3)
    expected = [-math.log(0.15 + 0.55 / 3), -math.log(0.15 + 0.55 * 5 / 8)]
    assert valid.all()
    assert torch.allclose(loss[0, 0], torch.tensor(expected, dtype=loss.dtype), atol=1e-6)
    # pixel 1 is a seed with label 0 → plain −log q = −log(2/8)
    seeds = torch.tensor([[[UNLABELLED, 0]]])
    loss, _ = robust_kl_terms(logits, target, eps=0.3, seeds=seeds)
    assert loss[0, 0, 1].item() == pytest.approx(-math.log(2 / 8), abs=1e-6)
    assert loss[0, 0, 0].item() == pytest.approx(expected[0], abs=1e-6)
    assert robust_kl(logits, target, 0.3, seeds).item() == pytest.approx((expected[0] - math.log(0.25)) / 2, abs=1e-6)


def test_robust_kl_eps0_is_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    assert torch.allclose(robust_kl(logits, target, 0.0), F.cross_entropy(logits, target), atol=1e-6)
    bin_logits = torch.randn(2, 1, 5, 6, generator=g)
    bt = torch.randint(0, 2, (2, 5, 6), generator=g)
    ref = F.binary_cross_entropy_with_logits(bin_logits[:, 0], bt.float())
    assert torch.allclose(robust_kl(bin_logits, bt, 0.0), ref, atol=1e-6)


def test_robust_kl_is_flatter_for_confident_mistakes_and_validates_eps() -> None:
    logits = torch.tensor([[[[-8.0]]]])  # binary, q(fg) ≈ 3e-4, label fg
    t = torch.ones(1, 1, 1, dtype=torch.long)
    assert robust_kl(logits, t, 0.2).item() < robust_kl(logits, t, 0.0).item()
    assert robust_kl(logits, t, 0.2).item() <= -math.log(0.2) + 1e-6
    with pytest.raises(ValueError, match="eps"):
        robust_kl(logits, t, 0.5)  # K = 2 needs ε < 1/2
    from scarce.losses import get_loss

    assert get_loss("robust_kl")(logits, t).item() == pytest.approx(robust_kl(logits, t, 0.2).item())


def test_partial_cross_entropy_uses_seeds_only() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g)
    seeds = torch.full((1, 4, 4), UNLABELLED)
    seeds[0, 0, 0], seeds[0, 3, 2] = 2, 1
    ref = F.cross_entropy(logits[0, :, [0, 3], [0, 2]].t(), torch.tensor([2, 1]))
    assert torch.allclose(partial_cross_entropy(logits, seeds), ref, atol=1e-6)
    assert partial_cross_entropy(logits, torch.full((1, 4, 4), UNLABELLED)).item() == 0.0


def test_bilateral_grid_approximates_gaussian_kernel() -> None:
    img = torch.from_numpy(_toy_image(16, 16))
    grid = BilateralGrid(img, sigma_xy=4.0, sigma_rgb=15.0)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    f = torch.cat([torch.stack([yy, xx]).reshape(2, -1) / 4.0, img.reshape(3, -1) * 255 / 15]).t()
    dense = torch.exp(-torch.cdist(f, f) ** 2 / 2)
    v = torch.rand(256, 2, generator=torch.Generator().manual_seed(0))
    approx, exact = grid.filter(v), dense @ v
    corr = torch.corrcoef(torch.stack([approx[:, 0], exact[:, 0]]))[0, 1]
    assert corr > 0.85
    assert grid.num_vertices < 256 * 32  # sparse: far fewer than N·2^d and than N² entries


def test_dense_potts_zero_for_constant_labelling_and_differentiable() -> None:
    img = torch.from_numpy(_toy_image(16, 16))
    grid = BilateralGrid(img, 4.0, 15.0)
    const = torch.zeros(1, 2, 16, 16)
    const[:, 0] = 1
    assert dense_potts_bilinear(const, [grid]).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(1, 2, 16, 16, requires_grad=True)
    e = dense_potts_bilinear(torch.softmax(logits, 1), [grid])
    e.backward()
    assert 0 < e.item() < 1 and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # the edge-aligned labelling cuts less affinity than a misaligned one
    aligned = torch.zeros(1, 2, 16, 16)
    aligned[:, 0, :, :8], aligned[:, 1, :, 8:] = 1, 1
    shifted = torch.zeros(1, 2, 16, 16)
    shifted[:, 0, :, :4], shifted[:, 1, :, 4:] = 1, 1
    assert dense_potts_bilinear(aligned, [grid]).item() < dense_potts_bilinear(shifted, [grid]).item()


# ============================================================================ scribbles

LENGTHS = (0.0, 0.3, 0.5, 0.8, 1.0)


def test_scribbles_inside_regions_and_monotone_lengths() -> None:
    m = _ellipse_mask(48)
    out = {L: synthesize_scribbles(m, L, stem_rng(3, "img"), 3) for L in LENGTHS}
    for L, s in out.items():
        lab = s != UNLABELLED
        assert np.array_equal(s[lab], m[lab]), f"scribble outside its class region at length {L}"
        for c in range(3):
            assert (s == c).any(), f"class {c} missing at length {L}"
    for c in range(3):
        counts = [int((out[L] == c).sum()) for L in LENGTHS[1:]]
        assert counts == sorted(counts), f"class {c} counts {counts}"
        for a, b in zip(LENGTHS[1:], LENGTHS[2:]):  # nested strokes
            assert not ((out[a] == c) & (out[b] != c)).any()
        assert int((out[1.0] == c).sum()) > int((out[0.0] == c).sum())


def test_length_zero_gives_one_click_per_class() -> None:
    from scipy import ndimage

    m = _ellipse_mask(48)
    s = synthesize_scribbles(m, 0.0, stem_rng(0, "x"), 3)
    for c in range(3):
        _, n = ndimage.label(s == c)
        assert n == 1
        assert 1 <= int((s == c).sum()) <= 30


def test_scribbles_deterministic_per_seed() -> None:
    m = _ellipse_mask(48)
    a = synthesize_scribbles(m, 0.5, stem_rng(7, "img"), 3)
    b = synthesize_scribbles(m, 0.5, stem_rng(7, "img"), 3)
    assert np.array_equal(a, b)


def test_resize_keeps_every_class() -> None:
    s = np.full((40, 40), UNLABELLED, np.uint8)
    s[5, 5] = 0
    s[21, 21] = 1  # single pixels likely skipped by nearest sampling
    r = resize_scribble(s, 8)
    assert r.shape == (8, 8) and set(np.unique(r).tolist()) == {0, 1, UNLABELLED}


def test_write_and_load_scribbles(synthetic_folder: Path) -> None:
    out = write_scribbles(synthetic_folder, 0.5, seed=1)
    assert out == synthetic_folder / "scribbles"
    stems = sorted(p.stem for p in (synthetic_folder / "masks").iterdir())
    assert sorted(p.stem for p in out.glob("*.png")) == stems
    assert not [p for p in synthetic_folder.iterdir() if p.name.startswith(".scribbles")]
    seeds = load_scribbles(synthetic_folder, stems[:3], 32, 2)
    assert seeds.shape == (3, 32, 32) and seeds.dtype == torch.int64
    assert set(torch.unique(seeds).tolist()) <= {0, 1, UNLABELLED}
    first = (out / f"{stems[0]}.png").read_bytes()
    write_scribbles(synthetic_folder, 0.5, seed=1, overwrite=True)  # rewrite: same bytes
    assert (out / f"{stems[0]}.png").read_bytes() == first


def test_write_scribbles_failure_leaves_no_partial_folder(synthetic_folder: Path, monkeypatch) -> None:
    import scarce.data.scribbles as sc

    calls = {"n": 0}
    real = sc.synthesize_scribbles

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*a, **k)

    monkeypatch.setattr(sc, "synthesize_scribbles", flaky)
    with pytest.raises(RuntimeError):
        sc.write_scribbles(synthetic_folder, 1.0, seed=0)
    assert not (synthetic_folder / "scribbles").exists()
    assert not [p for p in synthetic_folder.iterdir() if p.name.startswith(".scribbles")]


def _save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.mark.parametrize("case,pattern", [
    ("size", "image is"), ("ids", "holds value"), ("empty", "no scribbled pixel"), ("missing", "missing scribble file"),
])
def test_bad_scribble_files_give_clear_errors(synthetic_folder: Path, case: str, pattern: str) -> None:
    stem = sorted(p.stem for p in (synthetic_folder / "images").iterdir())[0]
    path = synthetic_folder / "scribbles" / f"{stem}.png"
    good = np.full((48, 48), UNLABELLED, np.uint8)
    good[10, 10] = 1
    if case == "size":
        _save(path, good[:40])
    elif case == "ids":
        bad = good.copy()
        bad[20, 20] = 7
        _save(path, bad)
    elif case == "empty":
        _save(path, np.full((48, 48), UNLABELLED, np.uint8))
    else:
        (synthetic_folder / "scribbles").mkdir()
    with pytest.raises(DataError, match=pattern) as err:
        load_scribbles(synthetic_folder, [stem], 32, 2)
    assert f"{stem}.png" in str(err.value)
    with pytest.raises(DataError):
        read_scribble(path, 2, (48, 48))


# ============================================================================ trimap

def test_trimap_hand_made() -> None:
    from scarce.evaluation.trimap import boundary_map, trimap_miou

    gt = np.zeros((8, 8), np.int64)
    gt[:, 4:] = 1
    assert np.array_equal(np.nonzero(boundary_map(gt)[0])[0], [3, 4])
    assert trimap_miou(gt, gt, 2, [1, 3]) == {1: 1.0, 3: 1.0}
    pred = np.zeros((8, 8), np.int64)
    pred[:, 5:] = 1  # boundary one column to the right
    # w = 1: band = columns 2..5; class 0: tp 2, fp 1 → 2/3; class 1: tp 1, fn 1 → 1/2
    res = trimap_miou(pred, gt, 2, [1, 8])
    assert res[1] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # w = 8: whole image; class 0: 4/5, class 1: 3/4
    assert res[8] == pytest.approx((4 / 5 + 3 / 4) / 2)


def test_trimap_plot_written(tmp_path: Path) -> None:
    from scarce.reports.trimap_plot import plot_trimap

    out = plot_trimap({"pce_gd": {1: 0.5, 4: 0.6, 8: 0.7}, "grid_tr": {1: [0.55, 0.6], 4: [0.65, 0.66], 8: [0.7, 0.72]}},
                      tmp_path / "plots" / "trimap.png")
    assert out.is_file() and out.stat().st_size > 1000
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


# ============================================================================ methods through the Trainer

def _segdata(n: int, size: int, seed: int, k: int = 2) -> SegData:
    from scarce.data.synthetic import synth_pair

    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for _ in range(n):
        im, m = synth_pair(rng, size, num_classes=k)
        imgs.append(torch.from_numpy(im).permute(2, 0, 1).float() / 255)
        masks.append(torch.from_numpy(m.astype(np.int64)))
    return SegData("syn", torch.stack(imgs), torch.stack(masks), [f"s{seed}_{i}" for i in range(n)], k)


def _rundata(k: int = 2) -> RunData:
    info = DatasetInfo("syn", "synthetic", "dice", classes=tuple(f"c{i}" for i in range(k)))
    return RunData(info, _segdata(4, 32, 0, k), _segdata(2, 32, 1, k), {}, None)


def _cfg(name: str, iterations: int = 8, **method):
    from scarce.config import load_config

    extra = {"pretrain_iters": 2} if name != "pce_gd" else {}
    if name == "grid_tr":
        extra["epochs_per_stage"] = 1
    return load_config({
        "train": {"iterations": iterations, "batch_size": 2, "val_every": 3, "progress": False, "tensorboard": False},
        "model": {"width": 4, "depth": 2},
        "method": {"name": name, "scribbles": "synthetic:0.5", **extra, **method},
    })


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.method.segmenter.state_dict().items()}


@pytest.mark.parametrize("name", ["pce_gd", "grid_gd", "dense_gd", "grid_tr"])
def test_method_trains_and_resumes_identically(name: str, tmp_path: Path) -> None:
    from scarce.engine.trainer import Trainer

    data = _rundata()
    full = Trainer(_cfg(name), data, tmp_path / "full")
    res = full.fit()
    assert res.steps == 8 and math.isfinite(res.best_score)
    part = Trainer(_cfg(name), data, tmp_path / "part")
    part.fit(max_steps=3)
    resumed = Trainer(_cfg(name), data, tmp_path / "part")
    resumed.fit(resume=True)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: resumed weights differ"
    if name == "grid_tr":
        # stage A at steps 2, 4, 6 (pretrain 2, one epoch = 2 steps); proposals are checkpointed
        assert full.method.rounds == 3 and resumed.method.rounds == 3
        assert torch.equal(full.method.proposals, resumed.method.proposals)
        seeds = full.method.seeds
        has = seeds != UNLABELLED
        assert torch.equal(full.method.proposals.long()[has], seeds[has])


@pytest.fixture
def torch_threads():
    """``torch_threads(n)`` sets torch's thread count for one test; restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_dense_gd_is_exact_at_any_thread_count(torch_threads, tmp_path: Path) -> None:
    """Above one torch thread (one an in-process grid left behind, or ``train.threads``) the dense
    kernel's gradient is the same bits at every call, and a resumed dense_gd run still equals the
    uninterrupted one. The bilateral grid's slice adds many pixel gradients into each vertex;
    ``t[index]``'s CPU backward added them with atomic adds in an order that changed from call to
    call, so two identical runs differed (``scarce.losses.weak._rows``)."""
    from scarce.engine.trainer import Trainer

    grid = BilateralGrid(torch.from_numpy(_toy_image(32, 32)), 32 / 6, 15.0)
    gen = torch.Generator().manual_seed(0)
    v, w = torch.rand(32 * 32, 2, generator=gen), torch.rand(32 * 32, 2, generator=gen)

    def grad() -> torch.Tensor:
        x = v.clone().requires_grad_(True)
        (grid.filter(x) * w).sum().backward()
        return x.grad

    torch_threads(1)
    one = grad()
    torch_threads(4)
    assert all(torch.equal(grad(), one) for _ in range(20)), "the filter's gradient depends on the threads"
    data = _rundata()
    full = Trainer(_cfg("dense_gd"), data, tmp_path / "full")
    full.fit()
    Trainer(_cfg("dense_gd"), data, tmp_path / "part").fit(max_steps=3)
    resumed = Trainer(_cfg("dense_gd"), data, tmp_path / "part")
    resumed.fit(resume=True)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "dense_gd at 4 threads: resumed weights differ"


def test_grid_tr_lambda_zero_fixed_proposals_and_multiclass(tmp_path: Path) -> None:
    from scarce.engine.trainer import Trainer

    tr = Trainer(_cfg("grid_tr", lam=0.0, eps=0.3), _rundata(k=3), tmp_path / "r")
    tr.fit()
    assert tr.method.rounds == 1  # λ = 0: Stage A does not depend on the network


def test_training_masks_are_not_used(tmp_path: Path) -> None:
    """With scribbles from files, corrupting the training masks changes nothing."""
    from PIL import Image

    from scarce.data.synthetic import make_synthetic
    from scarce.engine.trainer import Trainer

    folder = make_synthetic(tmp_path / "d", 4, size=32, seed=0)
    write_scribbles(folder, 1.0, seed=0)
    stems = sorted(p.stem for p in (folder / "images").iterdir())
    imgs = torch.stack([torch.from_numpy(np.array(Image.open(next((folder / "images").glob(f"{s}.*"))).convert("RGB")))
                        .permute(2, 0, 1).float() / 255 for s in stems])
    info = DatasetInfo("syn", "synthetic", "dice")
    val = _segdata(2, 32, 1)
    runs = []
    for fill in (0, 1):
        masks = torch.full((len(stems), 32, 32), fill, dtype=torch.int64)
        data = RunData(info, SegData("syn", imgs, masks, stems, 2), val, {}, None)
        t = Trainer(_cfg("grid_tr", iterations=6, scribbles=str(folder)), data, tmp_path / f"run{fill}")
        t.fit()
        runs.append(_weights(t))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_auto_scribbles_need_paths() -> None:
    from scarce.engine.trainer import Trainer

    with pytest.raises(DataError, match="synthetic:L"):
        Trainer(_cfg("pce_gd", scribbles="auto"), _rundata(), "/tmp/unused-weak-run")


def test_model_trimap_runs_on_segdata() -> None:
    from scarce.evaluation.evaluate import model_trimap
    from scarce.models import create_model

    data = _segdata(2, 32, 3)
    torch.manual_seed(0)
    model = create_model("unet", 3, 2, width=4, depth=2)
    res = model_trimap(model, data, widths=[2, 8])
    assert set(res) == {2, 8} and all(0.0 <= v <= 1.0 for v in res.values())
