"""The synthetic-pair family written once: E2EAug's real steps train the objective its
hypergradient differentiates, ``scarce gan pretrain`` shows the method's own gallery, and the
shared pretraining keeps the cache keys (and file names) that existing GAN caches have."""
from __future__ import annotations

import torch

from scarce.engine.method import Batch
from scarce.engine.trainer import Trainer
from tests.tiny import tiny_config, tiny_run_data

torch.set_num_threads(1)


def test_e2eaug_real_steps_train_the_objective(tmp_path):
    """The real Stage I G step and Stage II segmenter step are computed BY the objective (the
    functions the hypergradient unrolls): changing the objective's λ and λ_L1 changes the real
    losses. (Before, the real steps had their own copy of both losses and ignored these.)"""
    cfg = tiny_config(tmp_path, {"name": "e2eaug", "pretrain_iters": 0, "gan_every": 1, "arch_every": 0,
                                 "gallery": 0}, iterations=1)
    method = Trainer(cfg, tiny_run_data(), tmp_path).method
    method.objective.lam, method.objective.l1 = 0.0, 0.0
    data = tiny_run_data()
    logs = method.training_step(Batch(data.train.images[:4], data.train.masks[:4], torch.arange(4)), 0)
    assert float(logs["loss"]) == float(logs["loss_real"])  # λ = 0: the generated term is out
    assert logs["loss_g"] < 5  # λ_L1 = 0: adversarial BCE only (with λ_L1 = 100 it is ≈ 30)


def test_gan_pretrain_gallery_is_the_methods_gallery(tmp_path):
    """``scarce gan pretrain`` draws its gallery like the method's ``gallery.png`` (the method's
    mask options and seed): for ``separate`` (frozen pretrained generator, shared cache) the two
    PNGs are byte-identical. Before, the command used its own seed and only ``mask_ops``."""
    from scarce.api import GAN_GALLERY, pretrain_gan_run, train_run
    from scarce.config import load_config

    def cfg(out):
        c = load_config(sets=[f"out={out}", "data.size=32", "data.synthetic_n=40", "data.budget=20",
                              "model.width=4", "model.depth=2", "train.iterations=1", "train.batch_size=4",
                              "train.progress=false", "train.tensorboard=false", "train.threads=1",
                              f"data.cache_dir={tmp_path / 'cache'}"])
        c.method = {"name": "separate", "pretrain_iters": 2, "gallery": 3, "mask_ops": ["rotate", "flip"],
                    "mask_random_order": False, "augment": {"max_rotation": 90}}
        return c

    train_run(cfg(tmp_path / "runs" / "sep"))
    res = pretrain_gan_run(cfg(tmp_path / "runs" / "gan"))
    assert res["cached"] is True  # the run's pretrained generator, from the shared cache
    assert (tmp_path / "runs" / "gan" / GAN_GALLERY).read_bytes() == (tmp_path / "runs" / "sep" / "gallery.png").read_bytes()


def test_cache_keys_and_file_names_are_unchanged(tmp_path):
    """Pinned keys (computed by the code that wrote the existing caches): a change here would
    silently orphan every GAN cache on disk."""
    from scarce.methods.gan import gan_aug
    from scarce.methods.gan.e2eaug import E2EAugConfig
    from scarce.methods.gan.gan_aug import GanAugConfig
    from scarce.methods.gan.pretrain import PRETRAIN_FIELDS, GANRecipe, cache_file, cache_key

    cfg = tiny_config(tmp_path, {"name": "e2eaug"})
    data, data3 = tiny_run_data(), tiny_run_data(num_classes=3)
    assert cache_key(cfg, data, E2EAugConfig(), PRETRAIN_FIELDS, searchable=True) == "5ffa82fc8472df38"
    assert cache_key(cfg, data, E2EAugConfig(), PRETRAIN_FIELDS, searchable=False) == "11c6c01d24b28964"
    assert cache_key(cfg, data3, E2EAugConfig(generator="spade", pretrain_batch=2), PRETRAIN_FIELDS,
                     searchable=True) == "371804dc513cb625"
    assert cache_key(cfg, data, GanAugConfig(), gan_aug.PRETRAIN_FIELDS) == "bee6e6ffcf417933"
    assert cache_key(cfg, data3, GanAugConfig(ngf=4), gan_aug.PRETRAIN_FIELDS) == "2de3bbc6e896d9e5"

    def name(tag, variant):
        return cache_file(GANRecipe(tag, variant, (), {}, None, None, None), data, 3, "k")

    assert name("pix2pix", "search") == "pix2pix-tiny-s3-search-k.pt"
    assert name("gan_aug", None) == "gan_aug-tiny-s3-k.pt"


def _segmenter_inputs(tmp_path, method: dict) -> torch.Tensor:
    """The images of the one segmenter forward of a single training step (real + generated)."""
    cfg = tiny_config(tmp_path / str(len(list(tmp_path.iterdir()))), method, iterations=1)
    data = tiny_run_data()
    m = Trainer(cfg, data, tmp_path / f"r{len(list(tmp_path.iterdir()))}").method
    seen: list[torch.Tensor] = []
    m.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    m.training_step(Batch(data.train.images[:4], data.train.masks[:4], torch.arange(4)), 0)
    assert len(seen) == 1
    return seen[0]


def test_intensity_augmentation_reaches_the_generated_images(tmp_path):
    """E2EAug out of distribution: with ``method.intensity`` the generated half of the
    batch is intensity-augmented as well (``intensity_generated``, default true), by draws taken
    after the real half's, so the real half is unchanged; ``intensity_generated: false`` feeds the
    generated images raw. For every member of the family."""
    always = {"brightness_prob": 1.0, "brightness_range": [0.5, 0.6]}   # every image darker
    base = {"e2eaug": {"pretrain_iters": 0, "arch_every": 0, "gan_every": 0, "gallery": 0},
            "separate": {"pretrain_iters": 0, "gallery": 0},
            "gan_aug": {"pretrain_iters": 0, "gallery": 0}}
    for name, extra in base.items():
        common = {"name": name, **extra, "intensity": "nnunet", "intensity_params": always, "aug_fraction": 0.5}
        on = _segmenter_inputs(tmp_path, common)
        off = _segmenter_inputs(tmp_path, {**common, "intensity_generated": False})
        assert on.shape[0] == off.shape[0] == 6, name          # 4 real + ⌈0.5·4⌉ generated
        assert torch.equal(on[:4], off[:4]), name                # the real half: same draws
        assert not torch.allclose(on[4:], off[4:]), name         # generated half augmented only when on
        assert float(on[4:].mean()) < 0.65 * float(off[4:].mean()), name   # ×0.5–0.6 brightness


def test_match_appearance_gives_each_image_a_real_images_statistics():
    """match_appearance: every output channel has the mean/std of the reference image drawn for
    it (hand-checkable: constant-free images, no clamping), one draw per image from the generator."""
    from scarce.methods.gan.base import match_appearance

    g = torch.Generator().manual_seed(0)
    imgs = 0.5 + 0.05 * torch.randn(5, 3, 16, 16, generator=g)             # narrow, like G's output
    ref = torch.stack([0.2 + 0.1 * i + 0.02 * (i + 1) * torch.randn(3, 16, 16, generator=g) for i in range(4)])
    out = match_appearance(imgs, ref, torch.Generator().manual_seed(1))
    idx = torch.randint(4, (5,), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.mean(dim=(2, 3)), ref[idx].mean(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3)), ref[idx].std(dim=(2, 3)), atol=1e-5)
    # structure kept: per channel, the output is an increasing affine map of the input
    assert torch.allclose(torch.corrcoef(torch.stack([out[0, 0].flatten(), imgs[0, 0].flatten()]))[0, 1],
                          torch.tensor(1.0), atol=1e-5)


def test_generated_appearance_match_real_widens_generated_images(tmp_path):
    """With ``generated_appearance: match_real`` the generated half of the segmenter's batch takes
    the real batch images' statistics (so the real half is unchanged); a typo is one error."""
    import pytest

    common = {"name": "separate", "pretrain_iters": 0, "gallery": 0, "aug_fraction": 1.0}
    off = _segmenter_inputs(tmp_path, common)
    on = _segmenter_inputs(tmp_path, {**common, "generated_appearance": "match_real"})
    assert torch.equal(on[:4], off[:4]) and not torch.allclose(on[4:], off[4:])
    def close_to_a_real_image(x: torch.Tensor) -> bool:   # its mean and std (up to the [0, 1] clamp)
        mean, std = x.mean(dim=(1, 2, 3)), x.flatten(1).std(dim=1)
        return all(((mean[:4] - mean[i]).abs() < 0.03).logical_and((std[:4] / std[i] - 1).abs() < 0.25).any()
                   for i in range(4, x.shape[0]))

    assert close_to_a_real_image(on) and not close_to_a_real_image(off)   # untrained G: std 0.04 vs 0.2
    with pytest.raises(ValueError, match="Did you mean 'match_real'"):
        _segmenter_inputs(tmp_path, {**common, "generated_appearance": "match_rel"})


def test_real_augment_moves_real_images_and_masks_alike(tmp_path):
    """``method.real_augment`` (E2EAug with the supervised recipe's Combine on its real
    half) moves each real image and its mask by the same draw in the segmenter's update, for
    every member; ``none`` feeds the batch untouched; a typo is one did-you-mean error.
    Images are their own masks here, so a moved image thresholded at 0.5 must equal the mask
    the loss receives (bilinear vs nearest differ only on a few boundary pixels)."""
    import pytest

    base = {"e2eaug": {"pretrain_iters": 0, "arch_every": 0, "gan_every": 0, "gallery": 0},
            "separate": {"pretrain_iters": 0, "gallery": 0},
            "gan_aug": {"pretrain_iters": 0, "gallery": 0}}
    data = tiny_run_data()
    masks = data.train.masks[:4]
    images = masks[:, None].to(data.train.images.dtype).expand(-1, data.train.images.shape[1], -1, -1).contiguous()

    def step(name: str, method: dict) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = tiny_config(tmp_path / f"{name}{len(list(tmp_path.iterdir()))}", {"name": name, **method}, iterations=1)
        m = Trainer(cfg, data, tmp_path / f"r{len(list(tmp_path.iterdir()))}").method
        seen, targets = [], []
        m.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
        owner = getattr(m, "objective", m.ctx)
        loss_fn = owner.loss_fn
        owner.loss_fn = lambda logits, y: (targets.append(y.clone()), loss_fn(logits, y))[1]
        m.training_step(Batch(images, masks, torch.arange(4)), 0)
        return seen[0][:4], targets[0]

    for name, extra in base.items():
        plain_images, plain_masks = step(name, {**extra})
        assert torch.equal(plain_images, images) and torch.equal(plain_masks, masks), name
        moved_images, moved_masks = step(name, {**extra, "real_augment": "rotate"})
        assert not torch.equal(moved_masks, masks), name                     # the real pairs moved
        agree = ((moved_images[:, 0] > 0.5).long() == moved_masks).float().mean()
        assert agree > 0.97, (name, float(agree))                             # ... image and mask alike
    with pytest.raises(ValueError, match="Did you mean 'combine'"):
        step("separate", {**base["separate"], "real_augment": "combin"})
