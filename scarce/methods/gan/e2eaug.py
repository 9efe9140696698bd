"""``e2eaug``: end-to-end learned augmentation (E2EAug, paper Sec. 3), a three-level optimisation.

Networks: segmenter W, Pix2Pix mask→image generator with weights G and searchable
architecture A = {α_i,k} (softmax-mixed Conv/UpConv-421/622/823 cells), PatchGAN discriminator E.

Per iteration (paper Eq. 1–4, one-step unrolling as Sec. 3.3 / DARTS):

* **Stage I** (every ``gan_every`` iterations) — discriminator step, then generator step on
  D_gan = {(M_j, I_j)} with A fixed (real Adam updates via ``ctx.step``).
* **Stage III** (every ``arch_every`` iterations) — hypergradient of
  L_seg(D_val; W') w.r.t. A where G' = G − ξ_G∇_G L_gan(G, A) and
  W' = W − ξ_W∇_W [L_seg(D_tr; W) + λ·L_seg(D_aug(G', A); W)], D_aug = (f(M̂; G', A), M̂) with
  M̂ the batch masks augmented (rotate/flip/translate, random order). The gradient flows from
  the validation loss through W' into the generated images and through G' into α (the
  images are never detached on that path — the authors' public code detaches them, so its α
  never moves). ``exact`` or ``finite_difference`` (DARTS) hypergradients, see
  :mod:`scarce.engine.bilevel`. Then an Adam step on A.
* **Stage II** — real segmenter step on L_seg(D_tr; W) + λ·L_seg(D_aug(G, A); W).

The objective (:class:`E2EAugObjective`) is separate from the method so that tests can check the
hypergradient on tiny float64 networks without a Trainer, and it is the ONLY definition of the
Stage I generator loss and the Stage II segmenter loss: the real steps call the same functions
with the live networks' parameter dicts (A and E held fixed, real BatchNorm buffers), the
hypergradient with the unrolled ones — so α always gets the gradient of the objective that is
actually trained.

Defaults = CPU preset (mean iteration ≤ 2.5× a supervised one, ``benchmarks/e2eaug_cost.py``):
GAN Adam lr 2e-4 (paper 1e-5), ngf/ndf 8 (Pix2Pix 64), half of each batch's masks augmented
(paper: all), real GAN updates every 2nd iteration (paper: every one), ``exact``
hypergradient with A updated every 24 iterations (paper: every one),
arch Adam lr 5e-3, betas (0.5, 0.999) (DARTS: 3e-4 over ~20k A steps; a 1000-iteration CPU
run has ~40). Measured: 2.21× a supervised iteration (2.49× with A every 16).
Paper-like GPU settings: ``gan_lr=1e-5, gen_ngf=64, disc_ndf=64, aug_fraction=1, gan_every=1,
arch_every=1, arch_lr=3e-4``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call

from scarce.engine.bilevel import HyperResult, Level, Params, buffers_copy, flat_norm, hypergradient, should_update
from scarce.engine.method import Batch, TrainContext
from scarce.methods import register_method
from scarce.methods.gan.base import MaskToImageMethod, MixedLoss, mixed_loss
from scarce.methods.gan.pretrain import (
    GANConfig, PretrainedGAN, build_discriminator, disc_loss, gan_optimizer, gen_loss,
)
from scarce.models.gan import one_hot_masks
from scarce.utils.io import atomic_write_json
from scarce.utils.runfolder import ARCHITECTURE_FILE


@dataclass
class E2EAugConfig(GANConfig):
    hypergradient: str = "exact"
    """exact (autograd through both unrolled steps) | finite_difference (DARTS approximation).
    Both cost about the same here; exact is the true gradient, while the central differences
    are biased by ReLU/LeakyReLU/max-pool kinks (cosine to exact ≈ 0.8 on a tiny U-Net, can be
    < 0.3 on the real nets), so exact is the default."""
    arch_every: int = 24
    """Update A every k iterations (paper: 1). An exact A step costs ≈ 8 supervised iterations
    on CPU (128 px, U-Net 16, batch 4) on top of a ≈ 2.0× base, so k = 24 keeps the mean
    iteration ≤ 2.5× supervised (k = 16 measured 2.49×: no margin)."""
    gan_every: int = 2
    """Real Stage I (D and G) updates every k iterations (paper: 1; the GAN is pretrained, and
    k = 2 halves its share of the CPU iteration cost). The unrolled G' of every A update is
    always computed."""
    arch_lr: float = 5e-3
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    fd_eps: float = 0.01
    """DARTS' finite-difference step: ε = fd_eps / ‖v‖."""
    inner_lr_g: float | None = None
    """ξ_G of the virtual generator step; None = the generator optimizer's current lr."""
    inner_lr_w: float | None = None
    """ξ_W of the virtual segmenter step; None = the segmenter optimizer's current lr."""
    val_batch: int = 0
    """Validation batch of Stage III; 0 = ``train.batch_size`` (capped by the val set)."""
    detach_generated: bool = False
    """DEBUG ONLY: detach generated images in Stage II (cuts the path to α, like the authors'
    code). The tests use it to show that a cut path is detected."""


class E2EAugObjective:
    """The three level losses as functions of explicit parameter dicts (for ``functional_call``).

    images N×C×S×S in [0, 1], masks N×S×S int64; generated images come from one-hot masks
    N×K×S×S. The discriminator enters Stage I with its current (detached) weights. ``virtual``
    segmenter passes (the unrolled ones) use cloned buffers, so they never touch the real
    BatchNorm statistics; the real Stage II step passes ``virtual=False`` (a plain forward).
    """

    def __init__(self, segmenter: nn.Module, generator: nn.Module, discriminator: nn.Module,
                 loss_fn: Any, num_classes: int, lam: float = 1.0, l1_weight: float = 100.0,
                 detach_generated: bool = False) -> None:
        self.seg, self.gen, self.disc = segmenter, generator, discriminator
        self.loss_fn, self.k, self.lam, self.l1 = loss_fn, num_classes, lam, l1_weight
        self.detach_generated = detach_generated

    # -- parameter dicts
    def gen_weights(self) -> Params:
        return dict(self.gen.named_weight_parameters())

    def arch(self) -> Params:
        return dict(self.gen.named_arch_parameters())

    def seg_weights(self) -> Params:
        return {n: p for n, p in self.seg.named_parameters() if p.requires_grad}

    @staticmethod
    def fixed(params: Params) -> Params:
        """Detached views: a level that holds these parameters fixed (no graph, no gradient)."""
        return {n: p.detach() for n, p in params.items()}

    # -- functional pieces
    def generate(self, g: Params, a: Params, onehot: torch.Tensor) -> torch.Tensor:
        """f(M; G, A): N×K×S×S one-hot → N×C×S×S images."""
        return functional_call(self.gen, {**g, **a}, (onehot,))

    def segment(self, w: Params, images: torch.Tensor, virtual: bool = True) -> torch.Tensor:
        """Segmenter logits with weights ``w``; ``virtual`` = on cloned buffers (see class doc)."""
        return functional_call(self.seg, {**w, **buffers_copy(self.seg)} if virtual else w, (images,))

    def generator_loss(self, fake: torch.Tensor, onehot: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """L_gan of generated images ``fake`` = f(M; G, A) for one-hot masks M with E fixed: the
        Pix2Pix generator loss (adv + λ_L1·L1) through the discriminator's detached weights."""
        e = self.fixed(dict(self.disc.named_parameters()))
        logits = functional_call(self.disc, e, (onehot, fake))
        return gen_loss(logits, fake, images, self.l1)

    def gan_loss(self, g: Params, a: Params, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Stage I generator loss L_gan(D_gan; G, A, E) with E fixed (adv + λ_L1·L1)."""
        onehot = one_hot_masks(masks, self.k, images.dtype)
        return self.generator_loss(self.generate(g, a, onehot), onehot, images)

    def train_losses(self, w: Params, g: Params, a: Params, images: torch.Tensor, masks: torch.Tensor,
                     aug_masks: torch.Tensor, virtual: bool = True,
                     transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> MixedLoss:
        """Stage II: L_seg(D_tr; W) + λ·L_seg((f(M̂; G, A), M̂); W) (one segmenter pass on both),
        with its two terms (:func:`~scarce.methods.gan.base.mixed_loss`). ``transform`` maps the
        generated images before the segmenter (the real step's intensity augmentation)."""
        fake = self.generate(g, a, one_hot_masks(aug_masks, self.k, images.dtype))
        if self.detach_generated:
            fake = fake.detach()
        if transform is not None:
            fake = transform(fake)
        logits = self.segment(w, torch.cat([images, fake], dim=0), virtual)
        n = images.shape[0]
        return mixed_loss(self.loss_fn, logits[:n], masks, logits[n:], aug_masks, self.lam)

    def train_loss(self, w: Params, g: Params, a: Params, images: torch.Tensor, masks: torch.Tensor,
                   aug_masks: torch.Tensor) -> torch.Tensor:
        """Stage II's total loss (the W level of the hypergradient)."""
        return self.train_losses(w, g, a, images, masks, aug_masks).total

    def levels(self, images: torch.Tensor, masks: torch.Tensor, aug_masks: torch.Tensor,
               lr_g: float, lr_w: float) -> list[Level]:
        """Stage I (G) and Stage II (W) as one-step-unrolled levels for :func:`hypergradient`."""
        return [
            Level("G", self.gen_weights(), lambda g, lower, a: self.gan_loss(g, a, masks, images), lr_g),
            Level("W", self.seg_weights(),
                  lambda w, lower, a: self.train_loss(w, lower[0], a, images, masks, aug_masks), lr_w),
        ]

    def hypergradient(self, images: torch.Tensor, masks: torch.Tensor, aug_masks: torch.Tensor,
                      val_images: torch.Tensor, val_masks: torch.Tensor, lr_g: float, lr_w: float,
                      mode: str = "exact", eps: float = 0.01) -> HyperResult:
        """dL_seg(D_val; W'(G'(A), A))/dA (Stage III)."""
        def outer(unrolled: list[Params], a: Params) -> torch.Tensor:
            return self.loss_fn(self.segment(unrolled[-1], val_images), val_masks)

        return hypergradient(self.levels(images, masks, aug_masks, lr_g, lr_w), outer, self.arch(), mode, eps)

    def unrolled_val_loss(self, images: torch.Tensor, masks: torch.Tensor, aug_masks: torch.Tensor,
                          val_images: torch.Tensor, val_masks: torch.Tensor, lr_g: float, lr_w: float) -> torch.Tensor:
        """L_val after the unrolled Stage I+II steps at the generator's current α (no graph kept):
        the function whose numerical derivative the exact hypergradient must match."""
        from scarce.engine.bilevel import unroll

        with torch.enable_grad():
            unrolled = unroll(self.levels(images, masks, aug_masks, lr_g, lr_w), self.arch(), create_graph=False)
        with torch.no_grad():
            return self.loss_fn(self.segment(unrolled[-1], val_images), val_masks)


@register_method("e2eaug")
class E2EAug(MaskToImageMethod):
    """E2EAug method (see module docstring). Modules: model, generator, discriminator."""

    Config = E2EAugConfig
    searchable_generator = True

    def __init__(self, ctx: TrainContext, mcfg: E2EAugConfig) -> None:
        super().__init__(ctx, mcfg)
        size = int(ctx.data.train.images.shape[-1])
        self.discriminator = build_discriminator(mcfg, ctx.num_classes, ctx.in_channels, size).to(ctx.device)
        self.opt_gen = gan_optimizer(self.generator.weight_parameters(), mcfg)
        self.opt_disc = gan_optimizer(list(self.discriminator.parameters()), mcfg)
        arch = self.generator.arch_parameters()
        self.opt_arch = (torch.optim.Adam(arch, lr=mcfg.arch_lr, betas=tuple(mcfg.arch_betas),
                                          weight_decay=mcfg.arch_weight_decay) if arch else None)
        self.objective = E2EAugObjective(self.model, self.generator, self.discriminator, ctx.loss_fn,
                                         ctx.num_classes, mcfg.lam, mcfg.l1_weight, mcfg.detach_generated)
        self.alpha_steps: list[int] = []
        self.alpha_history: list[torch.Tensor] = []
        self.derived_history: list[dict[str, Any]] = []
        self._last: dict[str, float] = {}
        self._gan_losses: dict[str, float] = {}

    # ------------------------------------------------------------------ setup / state
    def load_pretrained(self, pre: PretrainedGAN) -> None:
        super().load_pretrained(pre)
        self.discriminator.load_state_dict(pre.discriminator)

    def setup(self) -> None:
        """Pretrain (or load the cached) Pix2Pix for this split, then record α at step 0."""
        super().setup()
        self._record_alpha(0)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"model": self.optimizer, "gen": self.opt_gen, "disc": self.opt_disc}
        if self.opt_arch is not None:
            opts["arch"] = self.opt_arch
        return opts

    def extra_state(self) -> dict[str, Any]:
        return {
            "alpha_steps": torch.tensor(self.alpha_steps, dtype=torch.long),
            "alpha_history": torch.stack(self.alpha_history) if self.alpha_history else torch.zeros(0),
            "derived_history": list(self.derived_history),
            "derived": self.generator.derived_architecture(),
            "last": dict(self._last),
            "gan_losses": dict(self._gan_losses),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.alpha_steps = [int(s) for s in state.get("alpha_steps", torch.zeros(0)).tolist()]
        hist = state.get("alpha_history", torch.zeros(0))
        self.alpha_history = [h.clone() for h in hist] if hist.numel() else []
        self.derived_history = list(state.get("derived_history", []))
        self._last = dict(state.get("last", {}))
        self._gan_losses = dict(state.get("gan_losses", {}))

    def _record_alpha(self, step: int) -> None:
        if not self.generator.is_searchable:
            return
        if self.alpha_steps and self.alpha_steps[-1] == step:
            self.alpha_history[-1] = self.generator.arch_alphas()
            return
        self.alpha_steps.append(step)
        self.alpha_history.append(self.generator.arch_alphas())

    # ------------------------------------------------------------------ the step
    def _val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        val = self.ctx.data.val if len(self.ctx.data.val) else self.ctx.data.train
        bs = min(len(val), self.mcfg.val_batch or self.ctx.cfg.train.batch_size)
        idx = torch.randperm(len(val), generator=self.ctx.generator)[:bs].to(val.images.device)
        return val.images[idx], val.masks[idx]

    def inner_lrs(self) -> tuple[float, float]:
        lr_g = self.mcfg.inner_lr_g if self.mcfg.inner_lr_g is not None else self.opt_gen.param_groups[0]["lr"]
        lr_w = self.mcfg.inner_lr_w if self.mcfg.inner_lr_w is not None else self.optimizer.param_groups[0]["lr"]
        return float(lr_g), float(lr_w)

    def arch_step(self, images: torch.Tensor, masks: torch.Tensor, aug_masks: torch.Tensor) -> HyperResult:
        """Stage III: hypergradient of the validation loss w.r.t. α, then an Adam step on α."""
        val_images, val_masks = self._val_batch()
        lr_g, lr_w = self.inner_lrs()
        res = self.objective.hypergradient(images, masks, aug_masks, val_images, val_masks, lr_g, lr_w,
                                           self.mcfg.hypergradient, self.mcfg.fd_eps)
        arch = self.generator.named_arch_parameters()
        for name, p in arch:
            p.grad = res.grads[name].detach().clone()
        params = [p for _, p in arch]
        self.ctx.sync_gradients(params)
        assert self.opt_arch is not None
        self.opt_arch.step()
        return res

    def gan_step(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
        """Stage I (real): D step on (real, G(M) detached), then a G step on the objective's
        :meth:`E2EAugObjective.generator_loss` with A and E fixed (the loss the G level of the
        hypergradient unrolls). Returns the D and G losses."""
        obj = self.objective
        onehot = one_hot_masks(masks, self.ctx.num_classes, images.dtype)
        fake = obj.generate(obj.gen_weights(), obj.fixed(obj.arch()), onehot)
        ld = disc_loss(self.discriminator(onehot, images), self.discriminator(onehot, fake.detach()))
        self.ctx.step(ld, self.opt_disc)
        lg = obj.generator_loss(fake, onehot, images)
        self.ctx.step(lg, self.opt_gen)
        return {"loss_d": float(ld.detach()), "loss_g": float(lg.detach())}

    def training_step(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        images, masks = batch.images, batch.masks
        obj = self.objective
        if should_update(step, self.mcfg.gan_every):
            self._gan_losses = self.gan_step(images, masks)
        aug_masks = self.augment_masks(masks)
        # Stage III: A update through the unrolled G' and W'
        if self.opt_arch is not None and should_update(step, self.mcfg.arch_every):
            res = self.arch_step(images, masks, aug_masks)
            self._last = {"loss_val": float(res.outer_loss), "hypergrad_norm": flat_norm(res.grads)}
            self._record_alpha(step + 1)
        # Stage II (real): the objective's train loss with the live W (real BatchNorm buffers) and
        # G, A fixed; real pairs first (real_augment + intensity if set), then the ⌈f·n⌉ generated
        # ones (augmented too with intensity_generated)
        real, real_masks = self.real_pairs(images, masks)
        loss = obj.train_losses(obj.seg_weights(), obj.fixed(obj.gen_weights()), obj.fixed(obj.arch()),
                                real, real_masks, aug_masks, virtual=False,
                                transform=lambda fake: self.augment_generated(fake, images))
        self.ctx.step(loss.total, self.optimizer)
        return {**loss.logs(), **self._gan_losses, **self._last}

    # ------------------------------------------------------------------ hooks
    def on_validation(self, step: int, score: float) -> dict[str, float]:
        """Record α and log the derived architecture (op index per cell, as floats)."""
        if not self.generator.is_searchable:
            return {}
        self._record_alpha(step)
        derived = self.generator.derived_architecture()
        self.derived_history.append({"step": int(step), "derived": derived})
        out: dict[str, float] = {}
        for name, cell in self.generator.cells():
            out[f"arch/{name.replace('.cell', '')}"] = float(cell.alpha.detach().argmax())  # type: ignore[union-attr]
        return out

    def architecture_record(self) -> dict[str, Any]:
        """α history (raw and softmax) + derived architecture, JSON-ready."""
        gen = self.generator
        cells = [(n, c.op_names) for n, c in gen.cells()]
        hist = [h.tolist() for h in self.alpha_history]
        soft = [torch.softmax(h, dim=-1).tolist() for h in self.alpha_history]
        return {"cells": [n for n, _ in cells], "ops": {n: ops for n, ops in cells}, "steps": self.alpha_steps,
                "alpha": hist, "weights": soft, "derived": gen.derived_architecture(),
                "derived_history": self.derived_history}

    def finalize(self, run_dir: Path) -> None:
        """Write ``architecture.json`` and ``gallery.png`` (real | mask | augmented mask | generated)."""
        if self.generator.is_searchable:
            atomic_write_json(Path(run_dir) / ARCHITECTURE_FILE, self.architecture_record())
        super().finalize(run_dir)
