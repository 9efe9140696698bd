"""Data contracts shared by every layer.

* :class:`DatasetInfo` — registry metadata of a named dataset (task, metric, classes, OOD sets).
* :class:`SegData` — a set of decoded, resized image/mask pairs held as tensors. The trainer
  indexes it directly (no DataLoader: the few-label sets fit in memory and 2 cores gain nothing
  from worker processes).
* :class:`RunData` — everything a run needs: train/val (the few-label split) and named test sets.

Tensor contract: images float32 N×C×S×S in [0, 1] (C = 1 gray or 3 RGB); masks int64 N×S×S
holding label ids 0..K-1 (0 = background). Binary tasks have K = 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def out_channels(num_classes: int) -> int:
    """Logit channels a network needs for a K-class task: 1 for binary (sigmoid), K otherwise
    (softmax). A property of the label space, so models (head size) and losses/metrics (how to
    read the logits, :mod:`scarce.losses`) take it from here instead of from each other."""
    return 1 if num_classes == 2 else num_classes


def content_size(height: int, width: int, size: int, aspect: str = "squash") -> tuple[int, int]:
    """(h, w) of an H×W image inside its S×S working image (``data.aspect``): (S, S) when
    squashed; with ``pad`` the longer side becomes S and the shorter keeps the aspect ratio (at
    least 1 pixel). The content sits at the top-left; the rest is padding."""
    if aspect != "pad":
        return size, size
    scale = size / max(height, width)
    return max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale)))


class DataError(ValueError):
    """Bad input data. The message names the file and says what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str
    """skin | lung | polyp | breast | placenta | fundus | prostate | synthetic."""
    metric: str
    """Primary metric of the task: 'jaccard' (skin, as ISIC) or 'dice'."""
    classes: tuple[str, ...] = ("background", "foreground")
    ood: tuple[str, ...] = ()
    """Registered names of this dataset's out-of-distribution test sets."""
    folder: str = ""
    """Folder name under the data root (default: ``name``)."""
    channels: int = 3
    train_split: str | None = None
    """Value in split.csv marking the pool for labelled budgets (None = whole folder minus test)."""
    test_split: str | None = None
    """Value in split.csv marking the official test split (None = a fixed held-out part)."""
    loss: str = "bce_dice"
    description: str = ""
    citation: str = ""
    url: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def folder_name(self) -> str:
        return self.folder or self.name


@dataclass
class SegData:
    """Decoded, resized pairs. ``orig_masks`` (original resolution, uint8 label ids) are kept for
    test/val sets so metrics are computed at each image's original mask resolution."""

    name: str
    images: torch.Tensor  # N×C×S×S float32 in [0, 1]
    masks: torch.Tensor  # N×S×S int64 label ids
    stems: list[str]
    num_classes: int
    orig_masks: list[np.ndarray] | None = None  # each H_i×W_i uint8 label ids
    image_paths: list[str] = field(default_factory=list)
    excluded: int = 0
    """Images of the set's folder left out because the run trained on the same image (content)."""
    note: str = ""
    """Why they were left out, e.g. ``"3 images left out: in the unlabelled pool (same content)"``."""
    aspect: str = "squash"
    """``data.aspect`` the images were made with: with ``pad`` each holds its content at the
    top-left (:meth:`content`) and padding elsewhere."""
    scribbles: torch.Tensor | None = None
    """N×S×S int64 weak labels of a training set read from ``scribbles/`` by the data layer
    (255 = unlabelled), set when the images were chosen because they have scribbles (a folder
    being annotated: :mod:`scarce.data.scribble_data`); the weak methods then train on these.
    ``masks`` of an image without a mask file hold its scribble too: no method reads the masks of
    a scribble training set."""
    partial: bool = False
    """True for a validation set cut from scribbles when no image has a mask: ``masks`` hold the
    held-out scribbled pixels only (255 = not scored), and validation scores those pixels."""

    def content(self, i: int) -> tuple[int, int]:
        """(h, w) of image ``i``'s content in its S×S array: what is cut out before a prediction
        is scaled back to the original H_i×W_i (``orig_masks``); S×S when squashed."""
        size = int(self.images.shape[-1])
        if self.aspect != "pad" or self.orig_masks is None:
            return size, size
        h, w = np.asarray(self.orig_masks[i]).shape[:2]
        return content_size(int(h), int(w), size, self.aspect)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: list[int] | torch.Tensor) -> "SegData":
        idx_list = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        return SegData(
            name=self.name,
            images=self.images[idx_list],
            masks=self.masks[idx_list],
            stems=[self.stems[i] for i in idx_list],
            num_classes=self.num_classes,
            orig_masks=None if self.orig_masks is None else [self.orig_masks[i] for i in idx_list],
            image_paths=[self.image_paths[i] for i in idx_list] if self.image_paths else [],
            aspect=self.aspect,
            scribbles=None if self.scribbles is None else self.scribbles[idx_list],
            partial=self.partial,
        )


@dataclass
class ImageSet:
    """Unlabelled images (a semi-supervised pool): no masks — they are never read for these.
    ``domains[i]`` names the dataset/folder image i came from (multi-domain runs)."""

    name: str
    images: torch.Tensor  # N×C×S×S float32 in [0, 1]
    stems: list[str]
    image_paths: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RunData:
    info: DatasetInfo
    train: SegData
    val: SegData
    tests: dict[str, SegData]
    split: Any  # scarce.data.splits.Split
    unlabelled: ImageSet | None = None
    """The unlabelled pool (only for methods that use one, e.g. the semi-supervised family)."""
    monitor: dict[str, SegData] = field(default_factory=dict)
    """Test sets scored at every validation for per-domain curves only (``eval.monitor``); never
    for checkpoint selection. Empty = nothing extra is scored."""
