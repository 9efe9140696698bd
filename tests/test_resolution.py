"""Resolution as data: ``data.aspect=pad`` keeps the aspect ratio, ``data.patch`` trains on crops.

Hand-computed sizes and windows, a model that thresholds its input (so a prediction put back
in the wrong place scores badly), and bit-identical resume of patch training for every method
family that supports patches.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.augment.patches import crop_windows, patch_windows, random_patches
from scarce.data.cache import pad_to, prepare_image, resize_mask
from scarce.data.types import content_size
from tests.tiny import tiny_config, tiny_run_data


@pytest.mark.parametrize("h, w, size, aspect, want", [
    (60, 120, 64, "pad", (32, 64)), (120, 60, 64, "pad", (64, 32)), (100, 100, 64, "pad", (64, 64)),
    (1, 1000, 64, "pad", (1, 64)), (332, 487, 128, "pad", (87, 128)), (60, 120, 64, "squash", (64, 64)),
])
def test_content_size_table(h, w, size, aspect, want):
    assert content_size(h, w, size, aspect) == want


def test_pad_keeps_the_aspect_ratio_and_pads_with_zeros():
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((60, 120, 3)) * 200 + 50).astype(np.uint8))
    arr = prepare_image(img, 64, aspect="pad")
    assert arr.shape == (3, 64, 64)
    assert (arr[:, 32:, :] == 0).all() and (arr[:, :32, :] > 0).all()  # content on top, black below
    direct = np.asarray(img.resize((64, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(arr[:, :32, :], direct)
    mask = np.zeros((60, 120), np.uint8)
    mask[10:20, 100:110] = 1  # 10×10 at original → 5×5-ish at half scale, top-right
    small = resize_mask(mask, 64, "pad")
    assert small.shape == (64, 64) and small[32:].sum() == 0 and small[:, :48].sum() == 0 and 20 <= small.sum() <= 36
    assert pad_to(np.ones((2, 3), np.uint8), 4).tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [0] * 4, [0] * 4]


def test_patch_windows_stay_inside_and_foreground_windows_hold_foreground():
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros((50, 32, 32), dtype=torch.int64)
    masks[:, 28:31, 2:5] = 1  # a 3×3 object in a corner
    win = patch_windows(masks, 50, 32, 32, 8, g, foreground=1.0)
    assert ((win >= 0) & (win <= 24)).all()
    crops = crop_windows(masks, win, 8)
    assert crops.shape == (50, 8, 8) and all(bool(c.any()) for c in crops)  # every window holds the object
    rand = patch_windows(masks, 50, 32, 32, 8, torch.Generator().manual_seed(0), foreground=0.0)
    assert sum(bool(c.any()) for c in crop_windows(masks, rand, 8)) < 25  # random windows mostly miss it
    again = patch_windows(masks, 50, 32, 32, 8, torch.Generator().manual_seed(0), foreground=1.0)
    assert torch.equal(win, again)
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    pi, pm = random_patches(images, masks[:2], 16, torch.Generator().manual_seed(1), 0.5)
    assert pi.shape == (2, 3, 16, 16) and pm.shape == (2, 16, 16)
    for i in range(2):  # image and mask were cut at the same window
        y, x = divmod(int(pi[i, 0, 0, 0].item()) - i * 3 * 32 * 32, 32)
        assert torch.equal(pm[i], masks[i, y:y + 16, x:x + 16])
    with pytest.raises(ValueError, match="larger than"):
        patch_windows(None, 1, 8, 8, 16, g)


class _Threshold(torch.nn.Module):
    """Predicts foreground where the input's first channel is bright: a prediction scaled back
    without cutting the padding off lands in the wrong place."""

    stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] - 0.5) * 50


def _wide_folder(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        m = np.zeros((40, 120), np.uint8)
        m[5 + i:25, 70 + 5 * i:110] = 255
        img = np.stack([m, m // 2, m // 3], -1).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"w{i}.png")
        Image.fromarray(m).save(root / "masks" / f"w{i}.png")
    return root


@pytest.mark.parametrize("aspect", ["squash", "pad"])
def test_evaluation_cuts_the_padding_before_scaling_back(tmp_path, aspect):
    from scarce.data.load import load_folder
    from scarce.evaluation.evaluate import evaluate_set

    data = load_folder(_wide_folder(tmp_path / "wide"), 32, keep_orig=True, aspect=aspect)
    assert data.aspect == aspect and data.content(0) == ((11, 32) if aspect == "pad" else (32, 32))
    rows = evaluate_set(_Threshold(), data, 2, out_dir=tmp_path / "out" / aspect, overlays=1)
    assert min(r["dice"] for r in rows) > 0.9
    pred = np.asarray(Image.open(tmp_path / "out" / aspect / "predictions" / "w0.png"))
    assert pred.shape == (40, 120)


def test_predict_uses_the_runs_aspect(tmp_path, monkeypatch):
    import scarce.api as api
    from scarce.config import save_config
    from tests.test_output_safety import fake_run

    run = fake_run(tmp_path / "run", tmp_path)
    monkeypatch.setattr(api, "load_segmenter", lambda *a, **k: _Threshold().eval())
    folder = _wide_folder(tmp_path / "wide")
    for aspect in ("squash", "pad"):
        cfg = api.load_run_config(run)
        cfg.data.aspect = aspect
        save_config(cfg, run / "config.yaml")
        written = api.predict_folder(run, folder / "images", tmp_path / f"pred_{aspect}")
        for p in written:
            pred = np.asarray(Image.open(p)) > 0
            gt = np.asarray(Image.open(folder / "masks" / Path(p).name)) > 0
            assert pred.shape == (40, 120) and 2 * (pred & gt).sum() / (pred.sum() + gt.sum()) > 0.9, aspect


@pytest.mark.parametrize("name", ["supervised", "fixmatch", "mean_teacher"])
def test_patch_training_resumes_identically(tmp_path, name):
    from scarce.engine.trainer import Trainer

    def cfg(out):
        c = tiny_config(out, {"name": name}, iterations=4)
        c.data.patch = 16
        return c

    data = lambda: tiny_run_data(n_unlabelled=6 if name != "supervised" else 0)  # noqa: E731
    a = Trainer(cfg(tmp_path / "a"), data(), tmp_path / "a")
    res = a.fit()
    assert res.steps == 4 and math.isfinite(res.best_score)
    batch = a.next_batch()
    assert batch.images.shape[-2:] == (16, 16) and batch.masks.shape[-2:] == (16, 16)
    b = Trainer(cfg(tmp_path / "b"), data(), tmp_path / "b")
    b.fit(max_steps=2)
    b2 = Trainer(cfg(tmp_path / "b"), data(), tmp_path / "b")
    b2.fit(resume=True)
    for (k, va), (_, vb) in zip(a.method.segmenter.state_dict().items(), b2.method.segmenter.state_dict().items()):
        assert torch.equal(va, vb), f"{name}: {k} differs after resume"


def test_config_checks(tmp_path):
    from scarce.errors import ConfigError
    from scarce.validate import validate_config

    def check(**data):
        c = tiny_config(tmp_path)
        for k, v in data.items():
            setattr(c.data, k, v)
        validate_config(c)

    check(aspect="pad", patch=16)
    with pytest.raises(ConfigError, match="data.aspect' must be one of squash, pad"):
        check(aspect="letterbox")
    with pytest.raises(ConfigError, match="data.patch' is 64, larger than data.size=32"):
        check(patch=64)
    with pytest.raises(ConfigError, match="data.patch' is 10, not a multiple of the stride 4"):
        check(patch=10)
    with pytest.raises(ConfigError, match="data.patch_foreground"):
        check(patch=16, patch_foreground=2.0)
    c = tiny_config(tmp_path, {"name": "pce_gd"})
    c.data.patch = 16
    with pytest.raises(ConfigError, match="method 'pce_gd' trains on whole images"):
        validate_config(c)


def test_sliding_window_inference_matches_whole_image_for_a_pointwise_network(tmp_path):
    """A per-pixel network gives the same probabilities whole or windowed (Gaussian blending of
    identical overlapping logits is the identity); a network that sees its whole input differs."""
    from scarce.evaluation.evaluate import predict_probs
    from scarce.errors import ConfigError
    from scarce.validate import validate_config

    x = torch.rand(2, 3, 32, 32)
    net = _Threshold()
    whole = predict_probs(net, x)
    net.inference_window = 16
    assert torch.allclose(predict_probs(net, x), whole, atol=1e-5)

    class Mean(torch.nn.Module):
        def forward(self, t):
            return t[:, :1] - t[:, :1].mean(dim=(2, 3), keepdim=True)

    m = Mean()
    a = predict_probs(m, x)
    m.inference_window = 16
    assert not torch.allclose(predict_probs(m, x), a, atol=1e-3)  # the windows were really used
    c = tiny_config(tmp_path)
    c.eval.window = 10
    with pytest.raises(ConfigError, match="eval.window' is 10, not a multiple of the stride 4"):
        validate_config(c)
