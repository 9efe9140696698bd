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
