"""One shared tester for every registered model (smp ``BaseModelTester`` style).

Every case is tiny (32–64 px, width 8–16) so the suite runs in seconds on 2 shared CPU cores.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from scarce.losses import out_channels
from scarce.models import MODELS, count_parameters, create_model

# Small per-model settings; every registered model must appear here (checked below).
MODEL_KWARGS: dict[str, dict[str, Any]] = {
    "unet": {"width": 8, "depth": 3},
    "deeplabv3": {"width": 8, "backbone": "resnet18", "output_stride": 8},
}


def test_every_registered_model_is_tested() -> None:
    assert set(MODELS.names()) == set(MODEL_KWARGS)


@pytest.fixture(params=sorted(MODEL_KWARGS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def _build(name: str, in_ch: int = 3, k: int = 2, **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_ch, k, **{**MODEL_KWARGS[name], **kw})


@pytest.mark.parametrize("in_ch", [1, 3])
@pytest.mark.parametrize("k", [2, 3])
def test_output_shape(name: str, in_ch: int, k: int) -> None:
    model = _build(name, in_ch, k).eval()
    s = model.stride
    for h, w in [(4 * s, 4 * s), (4 * s, 6 * s), (max(32, 2 * s), max(32, 2 * s))]:
        with torch.no_grad():
            y = model(torch.rand(2, in_ch, h, w))
        assert y.shape == (2, out_channels(k), h, w)
        assert torch.isfinite(y).all()
    assert model.out_channels == out_channels(k)


def test_bad_size_and_channels_raise(name: str) -> None:
    model = _build(name).eval()
    s = model.stride
    with pytest.raises(ValueError, match="divisible by the model stride"):
        model(torch.rand(1, 3, 4 * s + 1, 4 * s))
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(1, 1, 4 * s, 4 * s))


def test_gradient_reaches_every_parameter(name: str) -> None:
    model = _build(name).train()
    x = torch.rand(2, 3, 32, 32)
    y = model(x)
    (y.square().mean() + y.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no/invalid gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"zero gradient for {zero}"


def test_train_batch_of_one(name: str) -> None:
    """Scarce-label runs may use batch 1–2; training mode must not fail on a single image."""
    model = _build(name).train()
    model(torch.rand(1, 3, 32, 32)).mean().backward()


def test_eval_is_deterministic(name: str) -> None:
    model = _build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_same_seed_same_init(name: str) -> None:
    a, b = _build(name), _build(name)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_unknown_name_suggests() -> None:
    with pytest.raises(KeyError, match="Did you mean 'unet'"):
        create_model("unte", 3, 2)


def test_unet_bilinear_variant() -> None:
    model = create_model("unet", 1, 2, width=8, depth=2, bilinear=True).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_deeplab_output_stride_16_and_backbones() -> None:
    m16 = create_model("deeplabv3", 3, 3, width=8, output_stride=16)
    assert m16.stride == 16
    with pytest.raises(ValueError, match="output_stride"):
        create_model("deeplabv3", 3, 2, width=8, output_stride=4)
    with pytest.raises(ValueError, match="resnet50"):
        create_model("deeplabv3", 3, 2, width=8, backbone="resnet5")


def test_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Default CPU nets stay small; paper-size counts match the reference architectures."""
    counts = {
        "unet w16 d4": count_parameters(create_model("unet", 3, 2)),
        "deeplabv3 resnet18 w16": count_parameters(create_model("deeplabv3", 3, 2)),
        "deeplabv3 resnet50 w16": count_parameters(create_model("deeplabv3", 3, 2, backbone="resnet50")),
    }
    with capsys.disabled():
        print("\n" + "\n".join(f"  {k:<26}{v:>12,}" for k, v in counts.items()))
    assert counts["unet w16 d4"] < 2_000_000
    assert counts["deeplabv3 resnet18 w16"] < 2_000_000
