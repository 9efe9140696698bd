"""Random patches cut from whole images (``data.patch``), drawn from an explicit generator.

Why: a step costs what its pixels cost. Training on P×P patches of S×S working images lets S
grow (small objects keep their pixels) while a step stays as cheap as a P×P one; the network,
fully convolutional, still predicts whole S×S images. Random windows rarely hit a polyp that
covers 1 % of the frame, so a share of the windows (nnU-Net's foreground oversampling, 1/3) is
centred on a random foreground pixel of the mask.

The same window cuts an image and its mask. Every window costs the same draws whatever the
data, except the foreground pixel's index (its range is the mask's foreground count), so a run
is reproducible from the generator's state.
"""
from __future__ import annotations

import torch


def patch_windows(masks: torch.Tensor | None, n: int, height: int, width: int, size: int,
                  generator: torch.Generator, foreground: float = 0.0) -> torch.Tensor:
    """Top-left corners (N×2 int64: y, x) of ``size``×``size`` windows in ``height``×``width``
    images. With ``masks`` (N×H×W label ids), a share ``foreground`` of the windows is centred
    (clamped to the image) on a uniformly drawn foreground pixel of its mask, when it has one."""
    if size > height or size > width:
        raise ValueError(f"patch {size} is larger than the {height}×{width} images")
    out = torch.empty((n, 2), dtype=torch.int64)
    for i in range(n):
        want_fg = bool(torch.rand((), generator=generator) < foreground)
        y = int(torch.randint(height - size + 1, (), generator=generator))
        x = int(torch.randint(width - size + 1, (), generator=generator))
        if want_fg and masks is not None:
            fg = (masks[i] > 0).nonzero()
            if len(fg):
                k = int(torch.randint(len(fg), (), generator=generator))
                cy, cx = (int(v) for v in fg[k].tolist())
                y = min(max(cy - size // 2, 0), height - size)
                x = min(max(cx - size // 2, 0), width - size)
        out[i, 0], out[i, 1] = y, x
    return out


def crop_windows(tensor: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Cut each sample of ``tensor`` (N×…×H×W) at its window (:func:`patch_windows`) → N×…×size×size."""
    return torch.stack([tensor[i, ..., int(y):int(y) + size, int(x):int(x) + size]
                        for i, (y, x) in enumerate(windows.tolist())])


def random_patches(images: torch.Tensor, masks: torch.Tensor | None, size: int, generator: torch.Generator,
                   foreground: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N×C×size×size images, N×size×size masks or None): one window per sample, the same for
    its image and mask (:func:`patch_windows`)."""
    n, _, h, w = images.shape
    win = patch_windows(masks, n, h, w, size, generator, foreground if masks is not None else 0.0)
    return crop_windows(images, win, size), (crop_windows(masks, win, size) if masks is not None else None)


__all__ = ["crop_windows", "patch_windows", "random_patches"]
