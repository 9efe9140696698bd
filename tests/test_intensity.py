"""Intensity handling: data-level preprocessing (``data.intensity``) and nnU-Net-style intensity
augmentation (``method.intensity``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.augment import apply_augment, apply_intensity, sample_augment
from scarce.augment.intensity import IntensityConfig
from scarce.config import ConfigError
from scarce.data.cache import DecodeCache, prepare_image, resize_image
from scarce.data.folder import read_image_pil
from scarce.data.intensity import INTENSITY_MODES, clahe, preprocess_intensity
from scarce.data.load import image_input, load_folder, load_image

ALL_ON = {k: 1.0 for k in ("noise_prob", "blur_prob", "brightness_prob", "contrast_prob", "lowres_prob",
                           "gamma_inverted_prob", "gamma_prob")}
ALL_OFF = {k: 0.0 for k in ALL_ON}


# ============================================================================ preprocessing

def test_none_is_the_identity_bit_exact():
    arr = np.random.default_rng(0).integers(0, 256, (3, 9, 7), dtype=np.uint8)
    assert preprocess_intensity(arr, "none") is arr
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    assert np.array_equal(prepare_image(img, 16, "none"), resize_image(img, 16))


def test_percentile_rescale_hand_computed():
    # 4 values 0, 10, 20, 30: numpy's linear percentiles are p0.5 = 0.15, p99.5 = 29.85, so
    # 10 → (10 − 0.15) / 29.7 · 255 = 84.57 → 85 and 20 → 170.43 → 170.
    arr = np.array([[[0, 10], [20, 30]]], dtype=np.uint8)
    assert preprocess_intensity(arr, "percentile").tolist() == [[[0, 85], [170, 255]]]
    # ramp 0..199: p0.5 = 0.995, p99.5 = 198.005; 100 → 99.005 / 197.01 · 255 = 128.15 → 128
    ramp = np.arange(200, dtype=np.uint8).reshape(1, 10, 20)
    out = preprocess_intensity(ramp, "percentile")
    assert out.dtype == np.uint8 and out.shape == ramp.shape
    assert (out.flat[0], out.flat[1], out.flat[100], out.flat[199]) == (0, 0, 128, 255)


def test_percentile_uses_one_range_over_all_channels():
    # channels 0..30, 100..130, 200..230: one (lo, hi) pair keeps the channels apart (hue kept)
    base = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    arr = np.stack([base, base + 100, base + 200])
    out = preprocess_intensity(arr, "percentile")
    assert out[0].min() == 0 and out[2].max() == 255
    assert out[0].max() < 50 and out[2].min() > 200  # a per-channel rescale would stretch each to 0..255


def test_flat_image_is_left_alone():
    arr = np.full((1, 4, 4), 77, dtype=np.uint8)
    assert np.array_equal(preprocess_intensity(arr, "percentile"), arr)


@pytest.mark.parametrize("channels", [1, 3])
def test_clahe_shape_range_and_effect(channels):
    # low-contrast gradient 100..140: CLAHE spreads it
    ramp = np.linspace(100, 140, 64 * 64).reshape(64, 64).astype(np.uint8)
    arr = np.stack([ramp] * channels)
    out = preprocess_intensity(arr, "clahe")
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert int(out.max()) - int(out.min()) > 2 * (int(arr.max()) - int(arr.min()))
    if channels == 3:  # gray RGB stays gray (CLAHE on HSV value keeps hue/saturation)
        assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    f = clahe(arr.astype(np.float64) / 255.0)
    assert f.shape == arr.shape and f.min() >= 0.0 and f.max() <= 1.0


def test_percentile_clahe_is_percentile_then_clahe():
    # scikit-image's CLAHE stretches the image's own min–max first, so the percentile step matters
    # through the outliers it clips: two extreme pixels in a 60..120 image
    arr = np.random.default_rng(3).integers(60, 120, (1, 32, 32), dtype=np.uint8)
    arr[0, 0, 0], arr[0, 5, 5] = 0, 255
    from scarce.data.intensity import percentile_rescale

    expect = np.clip(np.rint(clahe(percentile_rescale(arr / 255.0)) * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(preprocess_intensity(arr, "percentile_clahe"), expect)
    assert not np.array_equal(expect, preprocess_intensity(arr, "clahe"))


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown data.intensity 'clahee'. Did you mean 'clahe'"):
        preprocess_intensity(np.zeros((1, 4, 4), np.uint8), "clahee")


def test_cache_keys_differ_per_mode_and_none_keeps_the_old_disk_key(synthetic_folder, tmp_path):
    img = sorted((synthetic_folder / "images").iterdir())[0]
    mask = synthetic_folder / "masks" / f"{img.stem}.png"
    dc = DecodeCache(tmp_path / "cache")
    out = {mode: dc.get(img, mask, 32, 3, 2, intensity=mode).image for mode in INTENSITY_MODES}
    assert dc.stats["decoded"] == len(INTENSITY_MODES)  # no mode was served another mode's array
    for a in INTENSITY_MODES:
        for b in INTENSITY_MODES:
            if a < b:
                assert not np.array_equal(out[a], out[b]), (a, b)
    files = sorted((tmp_path / "cache" / "decoded").rglob("*.npz"))
    assert len(files) == len(INTENSITY_MODES)
    # the ``none`` entry keeps the key written before the option existed (old caches stay valid)
    h = hashlib.sha1(img.read_bytes() + b"\0" + mask.read_bytes() + b"|32|3|2|v1")
    assert (tmp_path / "cache" / "decoded" / h.hexdigest()[:2] / f"{h.hexdigest()}.npz") in files
    # a fresh cache on the same folder reads each mode's own array from disk
    dc2 = DecodeCache(tmp_path / "cache")
    for mode in INTENSITY_MODES:
        assert np.array_equal(dc2.get(img, mask, 32, 3, 2, intensity=mode).image, out[mode])
    assert dc2.stats["disk_hits"] == len(INTENSITY_MODES) and dc2.stats["decoded"] == 0


@pytest.mark.parametrize("mode", INTENSITY_MODES)
def test_loading_and_predict_input_are_identical(synthetic_folder, mode):
    data = load_folder(synthetic_folder, size=32, intensity=mode, cache=DecodeCache())
    for i, path in enumerate(data.image_paths[:3]):
        x, (h, w) = load_image(path, 32, 3, mode)
        assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(x[0], data.images[i]), path
        assert torch.equal(image_input(read_image_pil(path, 3), 32, mode), x)
        assert (h, w) == (48, 48)
    plain = load_folder(synthetic_folder, size=32, cache=DecodeCache())
    assert torch.equal(plain.images, load_folder(synthetic_folder, size=32, intensity="none",
                                                 cache=DecodeCache()).images)
    assert torch.equal(plain.images[0], torch.from_numpy(
        resize_image(read_image_pil(data.image_paths[0], 3), 32).copy()).float().mul(1.0 / 255.0))
    if mode != "none":
        assert not torch.equal(plain.images, data.images)


@pytest.mark.slow
def test_run_reproduces_intensity_in_evaluate_and_predict(tmp_path, monkeypatch):
    """A run trained with data.intensity=clahe stores it in config.yaml; ``scarce predict`` feeds
    the model exactly the (preprocessed) tensors evaluation used for the same files."""
    import yaml

    import scarce.evaluation.evaluate as ev
    from scarce.api import predict_folder, train_run
    from scarce.config import load_config
    from scarce.data.load import load_test_sets

    run = tmp_path / "run"
    cfg = load_config(sets=[f"out={run}", f"data.dataset={tmp_path / 'syn'}", "data.size=32", "data.budget=6",
                            "data.intensity=clahe", "model.width=4", "model.depth=2", "train.iterations=2",
                            "train.val_every=1", "train.batch_size=4", "train.progress=false",
                            "train.tensorboard=false", "train.threads=1", "eval.overlays=0",
                            "eval.save_predictions=false"])
    from scarce.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "syn", 12, size=48, seed=0)
    train_run(cfg)
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["intensity"] == "clahe"
    tests = load_test_sets(load_config(run / "config.yaml").data, seed=0)
    test = tests["syn"]
    seen: list[torch.Tensor] = []
    real = ev.predict_probs
    monkeypatch.setattr(ev, "predict_probs", lambda model, x, *a, **k: (seen.append(x.clone()), real(model, x, *a, **k))[1])
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in test.image_paths:
        (imgs / Path(p).name).write_bytes(Path(p).read_bytes())
    predict_folder(run, imgs, tmp_path / "pred")
    assert len(seen) == len(test)
    for x, stem in zip(seen, sorted(Path(p).stem for p in test.image_paths)):
        i = test.stems.index(stem)
        assert torch.equal(x[0], test.images[i]), stem
    plain = load_folder(tmp_path / "syn", size=32, stems=test.stems, cache=DecodeCache())
    assert not torch.equal(plain.images, test.images)  # clahe really was applied


# ============================================================================ augmentation

def _batch(n=4, c=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(n, c, s, s, generator=g)


def test_same_generator_seed_same_output_and_input_untouched():
    x = _batch()
    keep = x.clone()
    a = apply_intensity("nnunet", x, torch.Generator().manual_seed(5), **ALL_ON)
    b = apply_intensity("nnunet", x, torch.Generator().manual_seed(5), **ALL_ON)
    c = apply_intensity("nnunet", x, torch.Generator().manual_seed(6), **ALL_ON)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, keep)


def test_one_draw_per_sample():
    x = _batch(1).repeat(4, 1, 1, 1)  # four identical images
    y = apply_intensity("nnunet", x, torch.Generator().manual_seed(0), **ALL_ON)
    for i in range(1, 4):
        assert not torch.allclose(y[0], y[i])


def test_zero_probabilities_are_the_identity():
    x = _batch()
    y = apply_intensity("nnunet", x, torch.Generator().manual_seed(0), **ALL_OFF)
    assert torch.equal(y, x)
    g = torch.Generator().manual_seed(0)
    assert apply_intensity("none", x, g) is x
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # none draws nothing


def test_generator_consumption_does_not_depend_on_the_draws():
    x = _batch()
    states = []
    for params in (ALL_ON, ALL_OFF, {}):
        g = torch.Generator().manual_seed(0)
        apply_intensity("nnunet", x, g, **params)
        states.append(g.get_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])


@pytest.mark.parametrize("op", sorted(ALL_ON))
def test_each_op_changes_images_and_stays_in_unit_range(op):
    x = torch.cat([_batch(3), torch.zeros(1, 3, 32, 32)])
    x[0, :, :4] = 1.0  # saturated pixels
    y = apply_intensity("nnunet", x, torch.Generator().manual_seed(1), **{**ALL_OFF, op: 1.0})
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y[:3], x[:3]), op


def test_all_ops_stay_in_unit_range_on_extreme_inputs():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(8, 1, 24, 24, generator=g) > 0.5).float()  # only 0 and 1
    for _ in range(5):
        y = apply_intensity("nnunet", x, g, **ALL_ON)
        assert torch.isfinite(y).all() and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_brightness_is_multiplicative_within_nnunet_range():
    x = _batch(8)
    y = apply_intensity("nnunet", x, torch.Generator().manual_seed(3), **{**ALL_OFF, "brightness_prob": 1.0})
    ratio = (y / x).flatten(1)
    assert torch.allclose(ratio.min(1).values, ratio.max(1).values, atol=1e-5)  # one factor per image
    f = ratio[:, 0]
    assert (f >= 0.75 - 1e-6).all() and (f <= 1.25 + 1e-6).all() and (f < 1).any() and (f > 1).any()


def test_gamma_keeps_the_order_of_intensities():
    x = torch.linspace(0, 1, 256).view(1, 1, 16, 16).repeat(4, 1, 1, 1)
    for key in ("gamma_prob", "gamma_inverted_prob"):
        y = apply_intensity("nnunet", x, torch.Generator().manual_seed(4), **{**ALL_OFF, key: 1.0},
                            gamma_retain_stats=False)
        assert (y.flatten(1).diff(dim=1) >= -1e-6).all(), key
        assert not torch.allclose(y, x)


def test_defaults_are_nnunets():
    c = IntensityConfig()
    assert (c.noise_prob, c.blur_prob, c.brightness_prob, c.contrast_prob, c.lowres_prob,
            c.gamma_inverted_prob, c.gamma_prob) == (0.1, 0.2 * 0.5, 0.15, 0.15, 0.25 * 0.5, 0.1, 0.3)
    assert (c.brightness_range, c.contrast_range, c.gamma_range, c.lowres_scale, c.blur_sigma) == \
        ((0.75, 1.25), (0.75, 1.25), (0.7, 1.5), (0.5, 1.0), (0.5, 1.0))


def test_bad_names_and_params_are_config_errors():
    x = _batch(1)
    with pytest.raises(ConfigError, match="Did you mean 'nnunet'"):
        apply_intensity("nnunet2", x, torch.Generator())
    with pytest.raises(ConfigError, match="gamma_prob must be a probability"):
        apply_intensity("nnunet", x, torch.Generator(), gamma_prob=2)
    with pytest.raises(ConfigError, match="lowres_scale"):
        apply_intensity("nnunet", x, torch.Generator(), lowres_scale=[0.5, 2])
    with pytest.raises(ConfigError, match="gama_prob"):
        apply_intensity("nnunet", x, torch.Generator(), gama_prob=0.1)


def test_masks_and_geometry_are_those_of_the_geometric_op_alone():
    """Geometric draw first (image + mask), then intensity (image only): the masks, and the
    generator draws of the geometric op, are exactly those of the geometric op alone."""
    x = _batch(4)
    m = (x[:, 0] > 0.5).long()
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    xa, ma = apply_augment("combine", x, m, g1)
    xi = apply_intensity("nnunet", xa, g1, **ALL_ON)
    xb, mb = apply_augment("combine", x, m, g2)
    assert torch.equal(ma, mb) and torch.equal(xa, xb)
    assert not torch.equal(xi, xa)
    # pointwise intensity ops (no blur/low-res/noise) keep every pixel where it was: the
    # warped-in black border (0 → 0 under ×, gamma and range-preserving contrast) stays put
    pointwise = {**ALL_OFF, "brightness_prob": 1.0, "gamma_prob": 1.0}
    xp = apply_intensity("nnunet", xa, torch.Generator().manual_seed(1), **pointwise, gamma_retain_stats=False)
    assert torch.equal(xp == 0, xa == 0)


# ---------------------------------------------------------------- existing augment names unchanged

# Fixed-seed values of the paper's Rotate/Flip/Translate/Combine baselines, recorded with the code
# before intensity augmentation existed (identical output from ``git show HEAD~:scarce/augment``):
# image sum, mask sum, and the generator's next draw (= how much the op consumed).
REGRESSION = {
    "none": (770.4335, 381, 0.49625658988952637),
    "rotate": (709.0889, 353, 0.13203048706054688),
    "flip": (770.4335, 381, 0.4900934100151062),
    "translate": (699.9665, 344, 0.4900934100151062),
    "combine": (675.5861, 347, 0.41940832138061523),
}
MATRICES = {
    "rotate": [1.0, -0.0039, 0.0295, 0.0039, 1.0, -0.0293, 0.9608, 0.2772, -1.7851, -0.2772, 0.9608, 2.3729],
    "flip": [-1.0, 0.0, 15.0, 0.0, -1.0, 15.0, 1.0, 0.0, 0.0, 0.0, -1.0, 15.0],
    "translate": [1.0, 0.0, -0.012, 0.0, 1.0, -1.3169, 1.0, 0.0, 0.8583, 0.0, 1.0, -1.1775],
    "combine": [-1.0, 0.0039, 15.0017, -0.0039, -1.0, 15.1715, -0.9608, -0.2772, 18.0537, -0.2772, 0.9608, 2.7963],
}


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_existing_augment_names_are_unchanged(name):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    m = (torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5).long()
    xi, mi = apply_augment(name, x, m, g)
    img_sum, mask_sum, next_draw = REGRESSION[name]
    assert float(xi.double().sum()) == pytest.approx(img_sum, abs=2e-3)
    assert int(mi.sum()) == mask_sum
    assert torch.rand(1, generator=g).item() == next_draw
    if name in MATRICES:
        d = sample_augment(name, 2, 16, 16, torch.Generator().manual_seed(0))
        assert d.matrices[:, :2].flatten().tolist() == pytest.approx(MATRICES[name], abs=1e-4)


# ============================================================================ methods

def _supervised(tmp_path, **method):
    from scarce.engine.trainer import Trainer
    from tests.tiny import tiny_config, tiny_run_data

    cfg = tiny_config(tmp_path, {"name": "supervised", **method}, iterations=1)
    return Trainer(cfg, tiny_run_data(), tmp_path).method


def _batch_of(method):
    from scarce.engine.method import Batch

    tr = method.ctx.data.train
    return Batch(images=tr.images[:4].clone(), masks=tr.masks[:4].clone(), index=torch.arange(4))


def test_supervised_intensity_none_draws_nothing_extra(tmp_path):
    """``augment=combine`` with ``intensity`` none/absent consumes the generator exactly as the
    combine draw alone: the paper's baselines stay bit-identical."""
    for method in ({"augment": "combine"}, {"augment": "combine", "intensity": "none"}):
        m = _supervised(tmp_path / str(len(method)), **method)
        m.ctx.generator.manual_seed(3)
        batch = _batch_of(m)
        m.training_step(batch, 0)
        g = torch.Generator().manual_seed(3)
        apply_augment("combine", batch.images, batch.masks, g)
        assert torch.equal(m.ctx.generator.get_state(), g.get_state())


def test_supervised_intensity_changes_images_not_masks(tmp_path):
    seen = {}
    for name in ("none", "nnunet"):
        m = _supervised(tmp_path / name, augment="flip", intensity=name,
                        intensity_params={"brightness_prob": 1.0, "gamma_prob": 1.0})
        m.ctx.generator.manual_seed(0)
        calls = []
        m.ctx.loss_fn = lambda logits, masks, _c=calls: (_c.append(masks.clone()), logits.mean() * 0)[1]
        m.model = _Recorder(m.model)
        m.optimizer = torch.optim.SGD(m.model.parameters(), lr=0.0)
        m.training_step(_batch_of(m), 0)
        seen[name] = (m.model.inputs[0], calls[0])
    assert torch.equal(seen["none"][1], seen["nnunet"][1])  # masks: the flip's alone
    assert not torch.equal(seen["none"][0], seen["nnunet"][0])  # images: intensity-augmented


class _Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.inputs = inner, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.inner(x)


def test_bad_method_intensity_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="method.intensity.*Did you mean 'nnunet'"):
        _supervised(tmp_path, intensity="nnunett")
    with pytest.raises(ConfigError, match="method.intensity_params.gamma_prob"):
        _supervised(tmp_path, intensity="nnunet", intensity_params={"gamma_prob": -1})


@pytest.mark.parametrize("name", ["e2eaug", "separate", "gan_aug"])
def test_gan_methods_accept_intensity(name):
    from scarce.methods import method_spec
    from scarce.engine.method import _intensity_setting

    mcfg = method_spec({"name": name, "intensity": "nnunet", "intensity_params": {"noise_prob": 0}}).config
    setting = _intensity_setting(mcfg)
    assert setting is not None and setting[0] == "nnunet" and setting[1].noise_prob == 0
    assert _intensity_setting(method_spec({"name": name}).config) is None


@pytest.mark.slow
def test_supervised_with_intensity_resumes_exactly(tmp_path):
    from scarce.engine.trainer import Trainer
    from tests.tiny import tiny_config, tiny_run_data

    def weights(t):
        return {k: v.clone() for k, v in t.method.segmenter.state_dict().items()}

    method = {"name": "supervised", "augment": "combine", "intensity": "nnunet",
              "intensity_params": {"noise_prob": 0.5, "lowres_prob": 0.5}}
    full = Trainer(tiny_config(tmp_path / "a", method, iterations=6), tiny_run_data(), tmp_path / "a")
    full.fit()
    part = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    part.fit(max_steps=4)
    resumed = Trainer(tiny_config(tmp_path / "b", method, iterations=6), tiny_run_data(), tmp_path / "b")
    assert resumed.fit(resume=True).steps == 6
    a, b = weights(full), weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    plain = Trainer(tiny_config(tmp_path / "c", {"name": "supervised", "augment": "combine"}, iterations=6),
                    tiny_run_data(), tmp_path / "c")
    plain.fit()
    assert any(not torch.equal(a[k], v) for k, v in weights(plain).items())  # the aug was applied


@pytest.mark.slow
def test_e2eaug_step_with_intensity_runs(tmp_path):
    from scarce.engine.trainer import Trainer
    from tests.tiny import tiny_config, tiny_run_data

    cfg = tiny_config(tmp_path, {"name": "e2eaug", "pretrain_iters": 2, "gallery": 0, "intensity": "nnunet"},
                      iterations=2)
    res = Trainer(cfg, tiny_run_data(), tmp_path).fit()
    assert res.steps == 2
