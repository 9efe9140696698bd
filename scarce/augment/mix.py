"""CutMix for segmentation: paste a random box of one sample into another, image and target alike.

Why here (augment layer): semi-supervised methods (FixMatch/UniMatch) mix unlabelled images and
their pseudo-labels; the box must move the image pixels and the (hard or soft) pseudo-label
pixels identically, with every draw from the explicit generator (checkpointed: exact resume).

Box: area fraction ~ U(``area``), aspect ratio ~ exp(U(log ``ratio``)), position uniform so the
box lies inside the image; applied to a sample with probability ``prob`` (else its box is empty
and the sample is left as it is). The generator is consumed by the same amount whatever is drawn.
"""
from __future__ import annotations

import math

import torch

__all__ = ["cutmix_boxes", "box_masks", "apply_cutmix"]


def cutmix_boxes(n: int, height: int, width: int, generator: torch.Generator, prob: float = 1.0,
                 area: tuple[float, float] = (0.02, 0.4), ratio: tuple[float, float] = (0.3, 1 / 0.3)
                 ) -> torch.Tensor:
    """N×4 int64 boxes (y0, x0, y1, x1), half-open; an empty box (y1 = y0) where not applied."""
    u = torch.rand((n, 5), generator=generator, dtype=torch.float64)
    a = area[0] + (area[1] - area[0]) * u[:, 0]
    r = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    h = torch.clamp((a * height * width * r).sqrt().round(), 1, height).long()
    w = torch.clamp((a * height * width / r).sqrt().round(), 1, width).long()
    y0 = ((height - h + 1) * u[:, 2]).floor().long().clamp(0, height - 1)
    x0 = ((width - w + 1) * u[:, 3]).floor().long().clamp(0, width - 1)
    on = u[:, 4] < prob
    y1 = torch.where(on, y0 + h, y0)
    x1 = torch.where(on, x0 + w, x0)
    return torch.stack([y0, x0, y1, x1], dim=1)


def box_masks(boxes: torch.Tensor, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """N×H×W bool: True inside each sample's box."""
    ys = torch.arange(height, device=device)[None, :, None]
    xs = torch.arange(width, device=device)[None, None, :]
    b = boxes.to(device)
    return ((ys >= b[:, 0, None, None]) & (ys < b[:, 2, None, None])
            & (xs >= b[:, 1, None, None]) & (xs < b[:, 3, None, None]))


def apply_cutmix(images: torch.Tensor, targets: torch.Tensor, source_images: torch.Tensor,
                 source_targets: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``source`` into ``images``/``targets`` inside ``boxes``.

    images/source_images N×C×H×W; targets/source_targets N×H×W (hard labels, or any per-pixel
    value such as a confidence mask) or N×K×H×W (soft); returns new tensors (inputs untouched)."""
    n, _, h, w = images.shape
    inside = box_masks(boxes, h, w, images.device)
    out_img = torch.where(inside[:, None], source_images, images)
    m = inside if targets.dim() == 3 else inside[:, None]
    out_t = torch.where(m, source_targets, targets)
    return out_img, out_t
