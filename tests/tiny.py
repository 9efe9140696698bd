"""In-memory tiny data for trainer/method tests (no files, no data layer needed).

Images are a function of the mask (foreground bright + textured, background dark), so a
segmenter learns them in a few steps and a mask→image GAN has something to learn.
"""
from __future__ import annotations

import numpy as np
import torch

import scarce.methods  # noqa: F401  (registers the resolver a Trainer given a config alone uses)
from scarce.data.types import DatasetInfo, ImageSet, RunData, SegData


def tiny_segdata(n: int, size: int = 32, num_classes: int = 2, channels: int = 3, seed: int = 0,
                 name: str = "tiny", orig_scale: int = 1) -> SegData:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for k in range(1, num_classes):
            cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=g)
            r = int(torch.randint(size // 8, size // 4, (1,), generator=g)) // k + 2
            masks[i][((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r] = k
    noise = torch.rand(n, channels, size, size, generator=g) * 0.2
    level = masks.float().unsqueeze(1) / max(1, num_classes - 1)
    images = (0.2 + 0.6 * level + noise).clamp(0, 1).expand(n, channels, size, size).contiguous()
    orig = [np.kron(m.numpy(), np.ones((orig_scale, orig_scale))).astype(np.uint8) for m in masks]
    return SegData(name=name, images=images, masks=masks, stems=[f"{name}_{i:03d}" for i in range(n)],
                   num_classes=num_classes, orig_masks=orig)


def tiny_run_data(n_train: int = 8, n_val: int = 4, n_test: int = 4, size: int = 32, num_classes: int = 2,
                  channels: int = 3, n_unlabelled: int = 0) -> RunData:
    classes = ("background",) + tuple(f"c{k}" for k in range(1, num_classes))
    info = DatasetInfo(name="tiny", task="synthetic", metric="dice", classes=classes, channels=channels)
    return RunData(
        info=info,
        train=tiny_segdata(n_train, size, num_classes, channels, seed=1, name="tiny"),
        val=tiny_segdata(n_val, size, num_classes, channels, seed=2, name="tiny"),
        tests={"tiny": tiny_segdata(n_test, size, num_classes, channels, seed=3, name="tiny", orig_scale=2)},
        split=None,
        unlabelled=_tiny_unlabelled(n_unlabelled, size, num_classes, channels) if n_unlabelled else None,
    )


def _tiny_unlabelled(n: int, size: int, num_classes: int, channels: int) -> ImageSet:
    d = tiny_segdata(n, size, num_classes, channels, seed=4, name="tiny_u")
    return ImageSet(name="tiny:unlabelled", images=d.images, stems=d.stems, domains=["tiny"] * n)


def tiny_config(tmp_path, method: dict | None = None, **train):
    from scarce.config import load_config

    sets = [f"out={tmp_path}", "data.size=32", "model.width=4", "model.depth=2", "train.batch_size=4",
            "train.val_every=2", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
            "train.threads=1"]
    sets += [f"train.{k}={v}" for k, v in train.items()]
    cfg = load_config(sets=sets)
    if method:
        cfg.method = dict(method)
    return cfg
