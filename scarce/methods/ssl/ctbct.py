"""``ctbct``: cross teaching between a CNN and a Transformer (Luo et al., "Semi-Supervised Medical
Image Segmentation via Cross Teaching between CNN and Transformer", MIDL 2022; the SSL4MIS
recipe ``train_cross_teaching_between_cnn_transformer_2D.py``).

Two segmenters of different inductive bias learn from the labels and from each other:

* the **CNN** = the run's segmenter (``model.*``; any registered network, pretrained encoder or
  not): it is what validation selects, ``best.pt`` stores and evaluation scores (the paper
  evaluates the CNN);
* the **Transformer** = MONAI's Swin UNETR with ``spatial_dims=2``
  (:func:`build_transformer`), trained **from scratch** (the paper's Swin-UNet starts from
  ImageNet weights; none can be downloaded here). It follows the run's output convention (1
  logit channel for binary tasks, K for multi-class) and ``model.input_norm`` (``auto`` = none:
  it has no pretrained weights).

One step (L labelled, M unlabelled images): ``z = cat(x, u)`` with ``x`` the labelled weak view
(image + mask) and ``u`` the unlabelled weak view (:mod:`scarce.methods.ssl.common`); both nets
predict ``z`` in train mode (BatchNorm over labelled + unlabelled, as SSL4MIS), then for each net

    loss_net = 0.5 · run_loss(net(x), y) + λ_u(step) · Dice(p_net(u), argmax p_other(u))

where the pseudo-label is the OTHER net's argmax, detached (a hard target: no gradient reaches
the teaching net), Dice is SSL4MIS's soft Dice over all K classes, background included, with
squared denominators over the whole batch (MONAI ``DiceLoss(squared_pred=True, batch=True)``),
and λ_u = ``weight`` × sigmoid ramp-up. With the run's default loss (``bce_dice``/``ce_dice``)
the supervised term is SSL4MIS's 0.5·(CE + Dice); skin datasets' ``bce_jaccard`` gives
0.5·(CE + Jaccard). The two losses share no parameters, so each net is stepped by its own
optimizer through ``ctx.step`` (the CNN with ``train.optim``, the Transformer with the same
settings and ``transformer_lr``); both follow ``train.schedule`` and both are checkpointed
(:meth:`CTBCT.modules`, :meth:`CTBCT.optimizers`): resume is exact.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from scarce.engine.method import Batch, TrainContext
from scarce.errors import ConfigError
from scarce.methods import register_method
from scarce.methods.ssl.common import SemiSupervisedMethod, SSLConfig, pseudo_labels

PATCH = 2
"""Swin UNETR's patch size: the input side must be a multiple of PATCH ** 5 = 32."""
NORMS = ("batch", "instance")


@dataclass
class CTBCTConfig(SSLConfig):
    """Cross-teaching hyperparameters (defaults: SSL4MIS's CTBCT script unless noted)."""

    weight: float = 0.1
    """λ_u after ramp-up: weight of each net's Dice to the other's pseudo-labels (SSL4MIS
    ``--consistency 0.1``, the paper's 0.1)."""
    rampup: float = 1.0
    """Sigmoid ramp-up of λ_u over this fraction of ``train.iterations`` (SSL4MIS ramps over
    ``iter // 150`` up to 200, i.e. 30,000 iterations = its whole run)."""
    transformer_lr: float | None = None
    """Learning rate of the Transformer's optimizer (otherwise ``train.optim``'s settings);
    None = ``train.optim.lr`` (SSL4MIS trains both nets with SGD lr 0.01)."""
    transformer_features: int = 12
    """Swin UNETR ``feature_size`` (a multiple of 12; MONAI's default 24, the paper's Swin-UNet
    96): 12 keeps the from-scratch Transformer CPU-sized (≈1.6 M parameters, a 16-wide U-Net has
    ≈1.9 M)."""
    transformer_depth: int = 2
    """Swin blocks per stage (MONAI's default ``depths=(2, 2, 2, 2)``, Swin-T's)."""
    transformer_norm: str = "batch"
    """Normalisation of Swin UNETR's convolutional blocks: batch | instance (MONAI's default).
    ``batch``, because instance norm is undefined on the 1×1 bottleneck of 32-pixel inputs;
    ``instance`` needs ``data.size`` ≥ 64."""
    validate_transformer: bool = True
    """Also score the Transformer on the validation split at every validation (logged as
    ``val_transformer_<metric>``; never used for checkpoint selection). SSL4MIS validates both."""


def check_config(mcfg: CTBCTConfig, size: int) -> None:
    """Raise one ConfigError for the first value of ``mcfg`` (or ``data.size``) that cannot work."""
    def bad(key: str, rule: str, value: Any, example: Any) -> ConfigError:
        return ConfigError(f"config key 'method.{key}' must be {rule}, got {value!r} "
                           f"(e.g. --set method.{key}={example})")

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not num(mcfg.weight) or mcfg.weight < 0:
        raise bad("weight", "a number >= 0", mcfg.weight, 0.1)
    if not num(mcfg.rampup) or mcfg.rampup < 0:
        raise bad("rampup", "a number >= 0 (a fraction of train.iterations)", mcfg.rampup, 1.0)
    if mcfg.transformer_lr is not None and (not num(mcfg.transformer_lr) or mcfg.transformer_lr <= 0):
        raise bad("transformer_lr", "a number > 0 or null (= train.optim.lr)", mcfg.transformer_lr, 0.001)
    f = mcfg.transformer_features
    if not isinstance(f, int) or isinstance(f, bool) or f < 12 or f % 12:
        raise bad("transformer_features", "a positive multiple of 12 (Swin UNETR's feature_size)", f, 12)
    d = mcfg.transformer_depth
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise bad("transformer_depth", "an integer >= 1 (Swin blocks per stage)", d, 2)
    if mcfg.transformer_norm not in NORMS:
        raise bad("transformer_norm", " or ".join(NORMS), mcfg.transformer_norm, "batch")
    step = PATCH ** 5
    if size % step:
        lo = max(step, size // step * step)
        raise ConfigError(f"method 'ctbct' trains a Swin UNETR transformer, whose input side must be a multiple "
                          f"of {step}; config key 'data.size' is {size}: use e.g. --set data.size={lo} or "
                          f"{lo + step}")
    if mcfg.transformer_norm == "instance" and size < 2 * step:
        raise ConfigError(f"method.transformer_norm=instance needs data.size >= {2 * step} (instance norm is "
                          f"undefined on the 1×1 bottleneck of {size}-pixel inputs); use --set "
                          f"method.transformer_norm=batch or a larger data.size")


class TransformerSegmenter(nn.Module):
    """[0, 1] images N×C×S×S → N×out_channels×S×S logits with a 2-D Swin UNETR (S a multiple of
    32); ``norm`` is the run's input normalisation (:class:`scarce.models.InputNorm`)."""

    def __init__(self, in_channels: int, out_channels: int, features: int = 12, depth: int = 2,
                 norm_name: str = "batch", input_norm: str = "none") -> None:
        super().__init__()
        from monai.networks.nets import SwinUNETR  # heavy import: only for runs that use it

        from scarce.models import InputNorm

        self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), PATCH ** 5
        self.norm = InputNorm(input_norm, self.in_channels)
        self.net = SwinUNETR(in_channels=self.in_channels, out_channels=self.out_channels, patch_size=PATCH,
                             depths=(depth,) * 4, feature_size=features, norm_name=norm_name, spatial_dims=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(f"the Swin UNETR transformer needs H and W multiples of {self.stride}, "
                             f"got {tuple(x.shape[-2:])}")
        return self.net(self.norm(x))


def build_transformer(ctx: TrainContext, mcfg: CTBCTConfig) -> TransformerSegmenter:
    """The Transformer of the run: same in/out channels (output convention) as the segmenter,
    the run's ``model.input_norm`` (``auto`` → none: no pretrained weights), on the run's device."""
    from scarce.data.types import out_channels
    from scarce.models.input_norm import resolve_input_norm

    norm = resolve_input_norm(ctx.cfg.model.input_norm, None, "none")
    net = TransformerSegmenter(ctx.in_channels, out_channels(ctx.num_classes), mcfg.transformer_features,
                               mcfg.transformer_depth, mcfg.transformer_norm, norm)
    return ctx.prepare_network(net)  # device, train.channels_last and train.precision as the CNN


def dice_to_labels(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SSL4MIS's Dice loss: 1 − (2 Σ p·t + s) / (Σ p² + Σ t² + s) per class over the whole batch
    (s = 1e-5), averaged over all K classes (background included). probs N×K×H×W, labels N×H×W
    int64 → scalar (MONAI ``DiceLoss``)."""
    from monai.losses import DiceLoss

    loss = DiceLoss(include_background=True, to_onehot_y=True, softmax=False, squared_pred=True,
                    smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
    return loss(probs, labels.unsqueeze(1))


def cross_pseudo_labels(logits_a: torch.Tensor, logits_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-labels FOR net a, pseudo-labels FOR net b): each the other net's argmax class
    (N×H×W int64) from its detached logits (N×C×H×W, binary: sigmoid > 0.5)."""
    labels_from_b, _ = pseudo_labels(SemiSupervisedMethod.probs(logits_b.detach()))
    labels_from_a, _ = pseudo_labels(SemiSupervisedMethod.probs(logits_a.detach()))
    return labels_from_b, labels_from_a


@register_method("ctbct")
class CTBCT(SemiSupervisedMethod):
    """Cross teaching CNN ↔ Transformer (module docstring). Modules: model (CNN), transformer."""

    Config = CTBCTConfig

    def __init__(self, ctx: TrainContext, mcfg: CTBCTConfig) -> None:
        check_config(mcfg, int(ctx.data.train.images.shape[-1]))
        super().__init__(ctx, mcfg)
        self.transformer = build_transformer(ctx, mcfg)
        optim = ctx.cfg.train.optim
        if mcfg.transformer_lr is not None:
            optim = dataclasses.replace(optim, lr=float(mcfg.transformer_lr))
        self.opt_transformer = ctx.make_optimizer(self.transformer.parameters(), optim)

    @classmethod
    def check_run_config(cls, cfg: Any, mcfg: CTBCTConfig) -> None:
        """Called by :func:`scarce.validate.validate_config`: refuse a size the Transformer cannot
        take before any data is loaded (a patch too: the Transformer then sees patches)."""
        check_config(mcfg, int(cfg.data.size))
        if int(cfg.data.patch):
            check_config(mcfg, int(cfg.data.patch))

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "transformer": self.transformer}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer, "transformer": self.opt_transformer}

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        """Both nets follow ``train.schedule`` (SSL4MIS decays both lrs alike); the CNN's lr is logged."""
        return [self.optimizer, self.opt_transformer]

    def losses(self, logits_cnn: torch.Tensor, logits_tr: torch.Tensor, masks: torch.Tensor, lam: float
               ) -> dict[str, torch.Tensor]:
        """Both nets' losses from their logits on ``cat(x, u)`` (N+M)×C×H×W, the first N labelled
        with ``masks`` N×H×W. ``cnn``/``transformer`` depend only on that net's logits (the other
        net's pseudo-labels are detached), so each can be back-propagated into its own net."""
        n = masks.shape[0]
        for_cnn, for_tr = cross_pseudo_labels(logits_cnn[n:], logits_tr[n:])
        sup_cnn = 0.5 * self.ctx.loss_fn(logits_cnn[:n], masks)
        sup_tr = 0.5 * self.ctx.loss_fn(logits_tr[:n], masks)
        cps_cnn = dice_to_labels(self.probs(logits_cnn[n:]), for_cnn)
        cps_tr = dice_to_labels(self.probs(logits_tr[n:]), for_tr)
        return {"cnn": sup_cnn + lam * cps_cnn, "transformer": sup_tr + lam * cps_tr,
                "sup_cnn": sup_cnn, "sup_transformer": sup_tr, "cps_cnn": cps_cnn, "cps_transformer": cps_tr}

    def training_step(self, batch: Batch, step: int) -> dict[str, Any]:
        assert batch.unlabelled is not None
        x, y = self.labelled_view(batch)
        u = self.weak_view(batch.unlabelled)
        z = torch.cat([x, u])
        self.model.train()
        self.transformer.train()
        lam = self.consistency_weight(step)
        out = self.losses(self.model(z), self.transformer(z), y, lam)
        # separate graphs: each backward reaches only its own net (SSL4MIS sums them, same gradients)
        self.ctx.step(out["cnn"], self.optimizer)
        self.ctx.step(out["transformer"], self.opt_transformer)
        logs = {k: v.detach() for k, v in out.items() if k not in ("cnn", "transformer")}
        return {"loss": (out["cnn"] + out["transformer"]).detach(), "loss_cnn": out["cnn"].detach(),
                "loss_transformer": out["transformer"].detach(), **logs, "lambda_u": lam}

    def on_validation(self, step: int, score: float) -> dict[str, float]:
        """The Transformer's validation score (logged only; the CNN is what is selected)."""
        if not self.mcfg.validate_transformer or not self.ctx.is_main or len(self.ctx.data.val) == 0:
            return {}
        from scarce.evaluation.evaluate import validate

        metric = self.ctx.info.metric
        value = validate(self.transformer, self.ctx.data.val, metric, tta=self.ctx.cfg.eval.tta)
        self.transformer.train()
        return {f"val_transformer_{metric}": float(value)}
