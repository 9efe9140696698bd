"""Runs that learn from drawn scribbles: which images train, which validate, and how a checkpoint
is chosen when no image has a mask.

Why a split of its own: a folder being annotated (``scarce annotate``) holds images with a
scribble, images with a mask, images with both and images with neither. Scribbles train the weak
methods but cannot score a model; masks can. The usual split draws training and validation
images from one pool of masked images, which would refuse every image without a mask.

Rules, for a weak method reading ``scribbles/`` (``method.scribbles=auto``):

* **Test**: the masked images' test part, exactly as for every method (official ``split.csv``
  test rows, else the fixed held-out 20 % of the masked images).
* **Every other image has both a mask and a scribble** (scribbles synthesised from the masks by
  ``scarce data scribbles``: the benchmark setting): the usual nested split, untouched
  (:func:`scribble_split_needed` is False).
* **Validation**: the masked images without a scribble, at most ``max(20, n_train·f/(1−f))`` of
  them (``f`` = ``data.val_fraction``) in a seeded order; when every masked image has a scribble
  too, an ``f`` share of those (at least one of two or more); none when no image has a mask.
* **Training**: every other scribbled image outside the test part. ``data.budget`` counts these
  (nested across budgets: one seeded order); an unregistered folder with fewer than the default
  budget takes all of them, as the usual split does.
* **No validation image** (no masks at all): a held-out share ``f`` of each image's scribbled
  pixels (:func:`holdout_pixels`) scores the checkpoints instead, and is not trained on.

Images with neither a mask nor a scribble are not used (not annotated yet).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from scarce.data.folder import SCRIBBLE_DIR, FolderIndex
from scarce.data.scribbles import UNLABELLED, load_scribbles, stem_rng
from scarce.data.splits import Split, make_split, pool_and_test
from scarce.data.types import DataError, DatasetInfo, SegData

MIN_VALIDATION = 20
"""Masked validation images a scribble run keeps at least (when it has that many)."""
HOLDOUT_GRID = 8
"""Held-out scribble pixels are chosen in blocks of an 8×8 grid over the training-size image:
neighbouring pixels of one stroke are nearly copies of each other, so holding out single pixels
would score the model on what it trained on."""


def image_path(index: FolderIndex, stem: str) -> Path:
    """The image file of ``stem``, with or without a mask."""
    return index.images.get(stem) or index.unlabelled[stem]


def _eligible(index: FolderIndex, info: DatasetInfo, test: Sequence[str]) -> list[str]:
    """Every image (masked or not) a run may train or validate on: outside the test part and, for
    a dataset whose ``split.csv`` names a training part, inside it (as :func:`pool_and_test`)."""
    held = set(test)
    stems = sorted(set(index.stems) | set(index.unlabelled))
    if info.test_split and index.splits:
        stems = [s for s in stems if index.splits.get(s) != info.test_split]
    if info.train_split and index.splits:
        stems = [s for s in stems if index.splits.get(s) == info.train_split]
    return [s for s in stems if s not in held]


def _test_part(index: FolderIndex, info: DatasetInfo) -> list[str]:
    if not index.stems:
        return []
    return pool_and_test(index.stems, index.splits, info.train_split, info.test_split, index.groups or None)[1]


def scribble_split_needed(index: FolderIndex, info: DatasetInfo) -> bool:
    """True for a folder being annotated: it has ``scribbles/`` and an image outside the test
    part lacks a mask or a scribble. False in the benchmark setting (every such image has both),
    which keeps the usual split bit for bit."""
    if not (index.root / SCRIBBLE_DIR).is_dir():
        return False
    elig = _eligible(index, info, _test_part(index, info))
    masked, scribbled = set(index.stems), set(index.scribbles)
    return not elig or any(s not in masked or s not in scribbled for s in elig)


def _seeded(stems: Sequence[str], seed: int) -> list[str]:
    """``stems`` (sorted) in the seeded order every budget shares (so budgets are nested)."""
    ordered = sorted(stems)
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def scribble_split(info: DatasetInfo, index: FolderIndex, budget: int | str, seed: int,
                   val_fraction: float = 0.2, default_budget: int | None = None) -> Split:
    """The :class:`Split` of a folder being annotated (rules: module docstring). ``budget``
    counts scribbled training images; ``default_budget`` (``DataConfig.budget``) is the value an
    unregistered folder smaller than it replaces by all its scribbled images, with a warning.
    ``meta`` records the counts and ``validation``: ``masks`` or ``scribble_pixels``."""
    test = _test_part(index, info)
    elig = _eligible(index, info, test)
    masked, scribbled = set(index.stems), set(index.scribbles)
    mask_only = [s for s in elig if s in masked and s not in scribbled]
    both = [s for s in elig if s in masked and s in scribbled]
    val: list[str] = []
    if not mask_only and len(both) >= 2:
        val = _seeded(both, seed)[:max(1, round(len(both) * val_fraction))]
    pool = [s for s in elig if s in scribbled and s not in set(val)]
    if not pool:
        raise DataError(f"{info.name!r} has no image with a scribble outside its {len(test)} test images "
                        f"(scribbles/ of {index.root}); draw some with `scarce annotate {index.root}` or "
                        f"synthesise them from the masks with `scarce data scribbles`")
    small = (info.task == "custom" and default_budget is not None and budget == default_budget
             and len(pool) < default_budget)
    if isinstance(budget, int) and budget > len(pool) and not small:
        raise DataError(f"data.budget={budget} but only {len(pool)} images of {info.name!r} have a scribble outside "
                        f"the test and validation images; use data.budget <= {len(pool)} (all takes all {len(pool)}) "
                        f"or draw more with `scarce annotate`")
    train = make_split(pool, [], "all" if small else budget, seed, 0.0, dataset=info.name).train
    if small:
        warnings.warn(f"data.budget={budget} (the default) is more than the {len(pool)} scribbled images of "
                      f"{info.name!r} outside its test and validation images: training on all {len(pool)}; set "
                      f"data.budget=all for the same without this warning", stacklevel=3)
    if mask_only:
        cap = max(MIN_VALIDATION, math.ceil(len(train) * val_fraction / max(1e-9, 1.0 - val_fraction)))
        val = _seeded(mask_only, seed + 1)[:cap]
    neither = len(set(index.unlabelled) - scribbled)
    split = Split(dataset=info.name, seed=int(seed), budget=len(train), train=train, val=val, test=list(test),
                  pool_size=len(pool), val_fraction=float(val_fraction))
    split.meta = {"folder": str(index.root),
                  "test_source": "official" if (info.test_split and index.splits) else "held_out",
                  "labels": "scribbles", "validation": "masks" if val else "scribble_pixels",
                  "masked": len(masked), "scribbled": len(scribbled), "neither": neither}
    return split


def holdout_pixels(seeds: torch.Tensor, stems: Sequence[str], fraction: float, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split N×S×S scribbles into (training seeds, held-out seeds), both 255 where unlabelled.

    Per image, a ``fraction`` share (at least one) of the :data:`HOLDOUT_GRID` blocks that hold
    scribbled pixels is held out, drawn by :func:`~scarce.data.scribbles.stem_rng` (so an image's
    share does not depend on the other images); an image whose scribbles lie in one block keeps
    them all for training (it would otherwise have nothing to learn from)."""
    train = seeds.clone()
    held = torch.full_like(seeds, UNLABELLED)
    size = int(seeds.shape[-1])
    step = max(1, math.ceil(size / HOLDOUT_GRID))
    for i, stem in enumerate(stems):
        labelled = (seeds[i] != UNLABELLED).numpy()
        blocks = [(by, bx) for by in range(0, size, step) for bx in range(0, size, step)
                  if labelled[by:by + step, bx:bx + step].any()]
        if len(blocks) < 2:
            continue
        n = min(len(blocks) - 1, max(1, round(len(blocks) * fraction)))
        order = stem_rng(seed, stem).permutation(len(blocks))
        for j in order[:n]:
            by, bx = blocks[int(j)]
            held[i, by:by + step, bx:bx + step] = seeds[i, by:by + step, bx:bx + step]
            train[i, by:by + step, bx:bx + step] = UNLABELLED
    return train, held


def load_scribble_sets(index: FolderIndex, info: DatasetInfo, split: Split, size: int, num_classes: int,
                       aspect: str, seed: int, val_fraction: float,
                       decode: Callable[[list[tuple[Path, Path | None]]], tuple[torch.Tensor, list[np.ndarray | None]]],
                       load_masked: Callable[[list[str]], SegData]) -> tuple[SegData, SegData]:
    """(training set with its scribbles, validation set) of a :func:`scribble_split`.

    ``decode(pairs)`` decodes (image, mask or None) pairs as the usual loader does (images
    N×C×S×S, masks S×S or None); ``load_masked(stems)`` loads masked validation images. A training
    image without a mask gets its (training) scribble as ``masks`` (no method reads them:
    :attr:`SegData.scribbles`). With no validation image the validation set is the training
    images scored on their held-out scribbled pixels (:func:`holdout_pixels`, ``partial``)."""
    stems = list(split.train)
    pairs = [(image_path(index, s), index.masks.get(s)) for s in stems]
    images, decoded_masks = decode(pairs)
    seeds = load_scribbles(index.root, stems, size, num_classes)
    held = None
    if not split.val:
        seeds, held = holdout_pixels(seeds, stems, val_fraction, seed)
        if not bool((held != UNLABELLED).any()):
            raise DataError(f"no image of {info.name!r} has a mask, and its scribbles are too small to hold a share "
                            f"of them out for choosing the checkpoint; add masks to a few images (they become the "
                            f"validation images) or draw longer scribbles")
    masks = torch.stack([torch.from_numpy(m.astype(np.int64)) if m is not None else seeds[i]
                         for i, m in enumerate(decoded_masks)])
    paths = [str(p) for p, _ in pairs]
    train = SegData(name=info.name, images=images, masks=masks, stems=stems, num_classes=num_classes,
                    image_paths=paths, aspect=aspect, scribbles=seeds)
    if held is None:
        return train, load_masked(list(split.val))
    val = SegData(name=info.name, images=images, masks=held, stems=stems, num_classes=num_classes,
                  image_paths=paths, aspect=aspect, partial=True)
    return train, val


def pixel_validation_note(share: float, metric: str, tested: bool) -> str:
    """The line a run validated on held-out scribbled pixels writes into its log and summary
    (``tested``: whether any test set with masks was scored)."""
    head = (f"no validation image has a mask: the checkpoint is chosen on a held-out {share:.0%} of the "
            f"scribbled pixels (pooled {metric} on those pixels, which are not trained on)")
    if tested:
        return head
    return f"{head}; no image has a mask to test on, so no {metric} can be reported: add masks to a few images"
