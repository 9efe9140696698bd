"""Unconditional image+mask pair GAN (the ``gan_aug`` baseline's networks): noise → (image, mask).

A pair's mask uses the segmenters' output convention (:func:`scarce.data.types.out_channels`): M = 1
logit channel for binary tasks (label = ``sigmoid > 0.5``), M = K for multi-class tasks (argmax);
:func:`hard_labels` turns generated mask logits into labels (the rule of :func:`scarce.losses.predict`). Real masks enter the discriminator in
the same M-channel format (:func:`real_mask`: 0/1 or one-hot), fakes as probabilities
(:func:`soft_mask`).

Why instance norm by default: no running statistics, so a sample depends neither on its
batch-mates nor on train/eval mode, and a frozen generator's samples are reproducible.

Tensors: images N×C×S×S in [0, 1], masks N×S×S int64, z N×nz×1×1.
"""
from __future__ import annotations

import torch
from torch import nn

from scarce.data.types import out_channels
from scarce.models.gan import one_hot_masks
from scarce.models.search import init_gan_weights, norm_layer

__all__ = ["PairGenerator", "PairDiscriminator", "soft_mask", "real_mask", "hard_labels", "start_size"]


def start_size(size: int) -> tuple[int, int]:
    """(start px, number of ×2 up-samplings): the smallest start ≥ 4 px reached by exact halvings."""
    n = 0
    while size % (2 ** (n + 1)) == 0 and size // (2 ** (n + 1)) >= 4:
        n += 1
    return size // 2 ** n, n


def soft_mask(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits N×M×S×S → probabilities (sigmoid for M = 1, softmax over M otherwise)."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def hard_labels(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits N×M×S×S → int64 labels N×S×S: the rule of :func:`scarce.losses.predict` (argmax;
    binary ``sigmoid > 0.5``), with the binary rule in logit form (``logit > 0``, the same in exact
    arithmetic). Why not ``predict`` itself: models must not import losses (layers), and float32
    ``sigmoid`` rounds logits in (0, 8.9e-8] to exactly 0.5, so those pixels would flip to
    background and ``gan_aug`` runs would no longer reproduce (or resume) the runs made before —
    rare (≈ 4e-7 of the pixels of an untrained 128 px generator), but a silent break."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


def real_mask(masks: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Real masks N×S×S → N×M×S×S in the generator's mask format (0/1 for K = 2, else one-hot)."""
    if num_classes == 2:
        return masks.unsqueeze(1).to(dtype)
    return one_hot_masks(masks, num_classes, dtype)


class PairGenerator(nn.Module):
    """DCGAN-style z N×nz×1×1 → N×(C+M)×S×S: C image channels + M mask-logit channels (a
    transposed conv from 1×1 to a 4–8 px start, then ×2 transposed 4-2-1 convs with norm + ReLU,
    a 3×3 conv to C + M channels)."""

    def __init__(self, nz: int, image_channels: int, num_classes: int, size: int, ngf: int = 16,
                 max_mult: int = 8, norm: str = "instance") -> None:
        super().__init__()
        self.nz, self.image_channels, self.num_classes = int(nz), int(image_channels), int(num_classes)
        start, n_up = start_size(size)
        ch = [ngf * min(2 ** (n_up - i), max_mult) for i in range(n_up + 1)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch[0], start, 1, 0, bias=False), norm_layer(norm, ch[0]), nn.ReLU()]
        for i in range(n_up):
            layers += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False), norm_layer(norm, ch[i + 1]), nn.ReLU()]
        layers.append(nn.Conv2d(ch[-1], image_channels + out_channels(num_classes), 3, 1, 1))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z N×nz(×1×1) → (images N×C×S×S in [0, 1], mask logits N×M×S×S)."""
        out = self.net(z.view(z.shape[0], self.nz, 1, 1))
        c = self.image_channels
        return (torch.tanh(out[:, :c]) + 1) / 2, out[:, c:]

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """N×nz×1×1 standard-normal noise (drawn on the CPU generator, moved to the net's device)."""
        dev = self.net[0].weight.device
        return torch.randn(n, self.nz, 1, 1, generator=generator).to(dev, self.net[0].weight.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n generated pairs: images n×C×S×S in [0, 1], int64 label masks n×S×S."""
        images, logits = self(self.noise(n, generator))
        return images, hard_labels(logits)


class PairDiscriminator(nn.Module):
    """DCGAN-style critic on pairs: cat(image, mask) N×(C+M)×S×S → one logit per sample, N."""

    def __init__(self, in_channels: int, size: int, ndf: int = 16, max_mult: int = 8, norm: str = "instance") -> None:
        super().__init__()
        start, n_down = start_size(size)
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(n_down):
            cout = ndf * min(2 ** i, max_mult)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0 or norm == "none")]
            if i > 0:
                layers.append(norm_layer(norm, cout))
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, start, 1, 0))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([images, mask], dim=1)).flatten()
