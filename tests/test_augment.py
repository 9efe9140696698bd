"""Joint image/mask augmentations: alignment, exact labels, reproducibility, random order."""
from __future__ import annotations

import pytest
import torch

from scarce.augment import (AUGMENTATIONS, AugmentConfig, apply_augment, augment_masks, op_names,
                            sample_augment)
from scarce.config import ConfigError

ALL = AUGMENTATIONS.names()  # the shared testers below cover every registered augmentation


def _masks(n: int = 8, s: int = 48) -> torch.Tensor:
    """N×S×S labels: a disc (1) and a rectangle (2) at per-sample positions."""
    g = torch.Generator().manual_seed(123)
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    out = torch.zeros(n, s, s, dtype=torch.int64)
    for i in range(n):
        cy, cx = torch.randint(14, s - 14, (2,), generator=g).tolist()
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < 80] = 1
        out[i, 4:12, 6:20] = 2
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_names() -> None:
    assert {"none", "rotate", "flip", "translate", "combine"} <= set(ALL)  # the paper's baselines
    assert set(op_names()) == {"rotate", "flip", "translate"}


@pytest.mark.parametrize("name", ALL)
def test_image_and_mask_stay_aligned(name: str) -> None:
    masks = _masks()
    images = (masks > 0).float()[:, None].repeat(1, 3, 1, 1)  # pixel value = foreground
    out_img, out_mask = apply_augment(name, images, masks, _gen(0))
    assert out_img.shape == images.shape and out_mask is not None and out_mask.shape == masks.shape
    agree = ((out_img[:, 0] > 0.5) == (out_mask > 0)).float().mean().item()
    assert agree >= 0.99, agree


@pytest.mark.parametrize("name", ALL)
def test_masks_keep_label_set_and_dtype(name: str) -> None:
    masks = _masks()
    out = augment_masks(name, masks, _gen(1))
    assert out.dtype == torch.int64
    assert set(out.unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output(name: str) -> None:
    masks = _masks()
    images = torch.rand(masks.shape[0], 1, *masks.shape[1:], generator=_gen(9))
    a = apply_augment(name, images, masks, _gen(5))
    b = apply_augment(name, images, masks, _gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("name", ["rotate", "flip", "translate", "combine"])
def test_different_seeds_differ(name: str) -> None:
    images = torch.rand(8, 1, 32, 32, generator=_gen(9))
    a, _ = apply_augment(name, images, None, _gen(1))
    b, _ = apply_augment(name, images, None, _gen(2))
    assert not torch.equal(a, b)


def test_none_is_identity() -> None:
    masks = _masks()
    images = torch.rand(masks.shape[0], 3, *masks.shape[1:])
    out_img, out_mask = apply_augment("none", images, masks, _gen(0))
    assert torch.equal(out_img, images) and out_mask is not None and torch.equal(out_mask, masks)


def test_per_sample_draws() -> None:
    """One draw per sample: identical inputs come out differently within a batch."""
    images = torch.rand(1, 1, 32, 32, generator=_gen(3)).repeat(4, 1, 1, 1)
    out, _ = apply_augment("rotate", images, None, _gen(0))
    assert not torch.equal(out[0], out[1])


def test_combine_order_is_random_per_sample() -> None:
    draw = sample_augment("combine", 64, 32, 32, _gen(0))
    assert len(set(draw.orders)) > 1
    assert all(sorted(o) == ["flip", "rotate", "translate"] for o in draw.orders)
    fixed = sample_augment("combine", 64, 32, 32, _gen(0), random_order=False)
    assert set(fixed.orders) == {("rotate", "flip", "translate")}
    # Order matters: same op parameters, different composition → different transform.
    assert not torch.allclose(draw.matrices, fixed.matrices)


def test_combine_single_op_ablation_is_config_change() -> None:
    masks = _masks()
    via_combine = augment_masks("combine", masks, _gen(4), ops=["rotate"])
    via_rotate = augment_masks("rotate", masks, _gen(4))
    assert torch.equal(via_combine, via_rotate)
    cfg = AugmentConfig(ops=["flip"], hflip_prob=1.0, vflip_prob=0.0)
    assert torch.equal(augment_masks("combine", masks, _gen(0), cfg), masks.flip(-1))


def test_mask_only_matches_joint() -> None:
    masks = _masks()
    images = torch.rand(masks.shape[0], 1, *masks.shape[1:])
    for name in ALL:
        _, joint = apply_augment(name, images, masks, _gen(7))
        alone = augment_masks(name, masks, _gen(7))
        assert joint is not None and torch.equal(joint, alone), name


def test_generator_advances_and_global_rng_untouched() -> None:
    g = _gen(0)
    state = torch.get_rng_state()
    images = torch.rand(4, 1, 32, 32, generator=_gen(1))
    a, _ = apply_augment("combine", images, None, g)
    b, _ = apply_augment("combine", images, None, g)
    assert not torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_params_raise() -> None:
    masks = _masks(2, 32)
    with pytest.raises(ConfigError, match="max_rotation"):
        augment_masks("rotate", masks, _gen(0), max_rotaton=10)
    with pytest.raises(ConfigError, match="rotate"):
        augment_masks("combine", masks, _gen(0), ops=["rotat"])
    with pytest.raises(KeyError, match="flip"):
        augment_masks("flp", masks, _gen(0))
