"""``gan_aug`` (pair-GAN baseline): pair shapes/labels for binary and multi-class tasks, a
learning pair GAN, the pretraining cache, and a frozen generator during segmenter training."""
from __future__ import annotations

import torch

from scarce.engine.trainer import Trainer
from scarce.methods.gan.gan_aug import GanAugConfig, build_pair_gan, pair_gan_step, pretrain_pair_gan
from scarce.models.pair_gan import PairGenerator, hard_labels
from tests.tiny import tiny_config, tiny_run_data

torch.set_num_threads(1)


def test_pairs_are_images_and_label_masks():
    g = torch.Generator().manual_seed(0)
    for k, m in ((2, 1), (3, 3)):
        gen = PairGenerator(8, 3, k, 32, ngf=4)
        images, logits = (t.detach() for t in gen(gen.noise(2, g)))
        assert images.shape == (2, 3, 32, 32) and logits.shape == (2, m, 32, 32)
        assert float(images.min()) >= 0 and float(images.max()) <= 1
        imgs, masks = gen.sample(2, g)
        assert masks.shape == (2, 32, 32) and masks.dtype == torch.long
        assert int(masks.min()) >= 0 and int(masks.max()) < k
    assert torch.equal(hard_labels(torch.tensor([[[[-1.0, 0.5]]]])), torch.tensor([[[0, 1]]]))


def test_pair_gan_step_updates_both_nets():
    torch.manual_seed(0)
    data = tiny_run_data(n_train=4)
    gen, disc = build_pair_gan(GanAugConfig(nz=8, ngf=4, ndf=4), 3, 2, 32)
    opt_g, opt_d = torch.optim.Adam(gen.parameters(), 1e-3), torch.optim.Adam(disc.parameters(), 1e-3)
    g0 = [p.clone() for p in gen.parameters()]
    d0 = [p.clone() for p in disc.parameters()]
    ld, lg = pair_gan_step(gen, disc, opt_g, opt_d, data.train.images, data.train.masks, gen.noise(4))
    assert torch.isfinite(torch.tensor([ld, lg])).all()
    assert any(not torch.equal(a, b) for a, b in zip(g0, gen.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, disc.parameters()))


def test_pretrain_cache_hit_is_identical(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "gan_aug"})
    data = tiny_run_data(n_train=4)
    gc = GanAugConfig(nz=8, ngf=4, ndf=4, pretrain_iters=2)
    rng = torch.get_rng_state()
    r1 = pretrain_pair_gan(cfg, data, gc, tmp_path / "cache")
    first, p1, hit1 = r1.generator, r1.path, r1.cached
    assert torch.equal(rng, torch.get_rng_state())
    r2 = pretrain_pair_gan(cfg, data, gc, tmp_path / "cache")
    second, p2, hit2 = r2.generator, r2.path, r2.cached
    assert not hit1 and hit2 and p1 == p2 and p1.name.startswith("gan_aug-")
    assert all(torch.equal(v, second[k]) for k, v in first.items())
    gc.lam = 5.0  # not a pretraining setting: same file
    assert pretrain_pair_gan(cfg, data, gc, tmp_path / "cache").path == p1
    gc.ngf = 8
    assert pretrain_pair_gan(cfg, data, gc, tmp_path / "cache").path != p1


def test_trains_segmenter_with_frozen_pair_generator(tmp_path):
    cfg = tiny_config(tmp_path, {"name": "gan_aug", "pretrain_iters": 2, "nz": 8, "ngf": 4, "ndf": 4,
                                 "gallery": 2, "lam": 0.5, "gan_cache": str(tmp_path / "c")}, iterations=2)
    trainer = Trainer(cfg, tiny_run_data(), tmp_path)
    trainer.method.setup()
    before = {k: v.clone() for k, v in trainer.method.pair_generator.state_dict().items()}
    trainer = Trainer(cfg, tiny_run_data(), tmp_path)
    assert trainer.fit().steps == 2
    for k, v in trainer.method.pair_generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert (tmp_path / "gallery.png").exists()
    assert any(p.name.startswith("gan_aug-") for p in (tmp_path / "c").iterdir())
