"""``dct``: deep co-training (Peng, Estrada, Pedersoli & Desrosiers, "Deep co-training for
semi-supervised image segmentation", Pattern Recognition 2020 — the E2EAug paper's reference
[16]; after Qiao et al.'s Deep Co-Training, ECCV 2018). Defaults follow the authors' code
(github.com/jizongFox/Deep-Co-Training-for-Semi-Supervised-Image-Segmentation) unless noted.

``views`` segmenters of the run's model config, each from its own initialisation (view 0 is the
run's segmenter — validated, selected and saved —, view k ≥ 1 is built under its own seed drawn
from the run's seed, :func:`view_seeds`), learn from

* **supervision**: the run's loss on the labelled batch, for each view;
* **co-training agreement** on the unlabelled batch: the Jensen–Shannon divergence of the views'
  class-probability maps, JSD(p_1..p_V) = H(mean_v p_v) − mean_v H(p_v) per pixel
  (:func:`js_divergence`), averaged, weight λ_cot = ``weight`` × ramp-up;
* **view difference** through adversarial examples: for each view i, an FGSM image
  z + ε·sign(∇_z CE(view_i(z), t)) (:func:`fgsm`), t = the labels on the labelled images and
  view i's own argmax on the unlabelled ones (the authors use VAT there); each other view j is
  trained to agree on it with view i's clean prediction, KL(p_i(z) ‖ p_j(z_adv_i)) with p_i
  detached (:func:`kl_to`), averaged over the ordered pairs (i, j); weight λ_dif =
  ``dif_weight`` × the same ramp-up. Adversarial images are clipped to [0, 1].

One step: z = cat(x, u) (labelled weak view, unlabelled weak view); every view predicts its own
leaf copy of z in train mode; the FGSM gradients of all views come from that forward pass (one
extra backward to the inputs, no extra forward); each view j then predicts the other views'
adversarial images in one pass; loss = Σ_v sup_v + λ_cot·JSD + λ_dif·dif, one optimizer step
(one optimizer over all views, each view's parameters its own groups: an Adam/SGD step is
per-parameter, so this equals one optimizer per view; the authors step the three terms
separately).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from scarce.engine.method import Batch, TrainContext
from scarce.errors import ConfigError
from scarce.losses import cross_entropy
from scarce.methods import register_method
from scarce.methods.ssl.common import SemiSupervisedMethod, SSLConfig, pseudo_labels, sigmoid_rampup

EPS = 1e-12
"""Floor of probabilities inside logarithms (0·log 0 = 0, finite gradients at saturation)."""


@dataclass
class DCTConfig(SSLConfig):
    """Deep co-training hyperparameters (defaults: the authors' co-training configs)."""

    views: int = 2
    """Number of co-trained segmenters (the authors' ``Model_num: 2``; the paper's main setting)."""
    weight: float = 1.0
    """λ_cot after ramp-up: weight of the Jensen–Shannon agreement on unlabelled images
    (``lambda_cot_max: 1``)."""
    dif_weight: float = 0.05
    """λ_dif after ramp-up: weight of the adversarial view-difference term
    (``lambda_adv_max: 0.05`` in ``config_cotrain.yaml``; 0.005 in the ACDC config)."""
    epsilon: float = 0.05
    """ε of the FGSM step on [0, 1] images (the authors' ``FSGMGenerator(eplision=0.05)``)."""
    rampup: float = 0.8
    """Ramp-up exp(−5(1 − t)²) of λ_cot and λ_dif over this fraction of ``train.iterations``
    (``epoch_max_ramp: 80`` of ``max_epoch: 100``, ``ramp_up_mult: -5``)."""


def check_config(mcfg: DCTConfig) -> None:
    """Raise one ConfigError for the first value of ``mcfg`` that cannot work."""
    def bad(key: str, rule: str, value: Any, example: Any) -> ConfigError:
        return ConfigError(f"config key 'method.{key}' must be {rule}, got {value!r} "
                           f"(e.g. --set method.{key}={example})")

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(mcfg.views, int) or isinstance(mcfg.views, bool) or mcfg.views < 2:
        raise bad("views", "an integer >= 2 (co-trained segmenters)", mcfg.views, 2)
    for key, example in (("weight", 1.0), ("dif_weight", 0.05), ("rampup", 0.8)):
        v = getattr(mcfg, key)
        if not num(v) or v < 0:
            raise bad(key, "a number >= 0", v, example)
    if not num(mcfg.epsilon) or not 0 < mcfg.epsilon <= 1:
        raise bad("epsilon", "a number in (0, 1] (images are in [0, 1])", mcfg.epsilon, 0.05)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy −Σ_k p log p of N×K×H×W probabilities → N×H×W (nats; 0·log 0 = 0)."""
    return -(probs * probs.clamp_min(EPS).log()).sum(dim=1)


def js_divergence(probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Generalised Jensen–Shannon divergence of V ≥ 2 probability maps (each N×K×H×W) with equal
    weights: H(mean_v p_v) − mean_v H(p_v) → N×H×W (nats; 0 iff all agree, ≤ log V)."""
    mean = torch.stack(list(probs)).mean(dim=0)
    return entropy(mean) - torch.stack([entropy(p) for p in probs]).mean(dim=0)


def log_class_probs(logits: torch.Tensor) -> torch.Tensor:
    """N×C×H×W logits → N×K×H×W log class probabilities, stable (binary: [log(1−σ), log σ])."""
    if logits.shape[1] == 1:
        return torch.cat([nn.functional.logsigmoid(-logits), nn.functional.logsigmoid(logits)], dim=1)
    return torch.log_softmax(logits, dim=1)


def kl_to(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ p(logits)) per pixel, averaged: target N×K×H×W probabilities (a fixed
    teacher: detach it), logits N×C×H×W → scalar."""
    return (target * (target.clamp_min(EPS).log() - log_class_probs(logits))).sum(dim=1).mean()


def fgsm(loss: torch.Tensor, inputs: Sequence[torch.Tensor], epsilon: float) -> list[torch.Tensor]:
    """Fast gradient sign perturbations δ = ε·sign(∂loss/∂input) for each leaf ``input`` (which
    must require grad); the graph is kept for the training backward. ‖δ‖∞ = ε (0 where the
    gradient is exactly 0): a first-order step that increases ``loss`` (Goodfellow et al. 2015)."""
    grads = torch.autograd.grad(loss, list(inputs), retain_graph=True)
    return [epsilon * g.sign() for g in grads]


def fgsm_targets(masks: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Targets of a view's FGSM loss on z = cat(x, u): the labels for the labelled images
    (``masks`` N×H×W), the view's own argmax (detached) for the unlabelled ones."""
    n = masks.shape[0]
    own, _ = pseudo_labels(SemiSupervisedMethod.probs(logits[n:].detach()))
    return torch.cat([masks, own])


def view_seeds(seed: int, views: int) -> list[int]:
    """Initialisation seeds of views 1 … V−1, drawn from a generator seeded by ``train.seed`` (view 0
    is the segmenter, built under ``train.seed`` itself). Not from ``ctx.generator``: that one
    differs per rank, and under DDP every rank must build the same views."""
    g = torch.Generator().manual_seed(int(seed) * 1000 + 43)
    return [int(s) for s in torch.randint(0, 2**31 - 1, (views - 1,), generator=g)]


@register_method("dct")
class DCT(SemiSupervisedMethod):
    """Deep co-training (module docstring). Modules: model (view 0), view1, …, view{V−1}."""

    Config = DCTConfig

    def __init__(self, ctx: TrainContext, mcfg: DCTConfig) -> None:
        check_config(mcfg)
        super().__init__(ctx, mcfg)
        self.view_seeds = view_seeds(int(ctx.cfg.train.seed), mcfg.views)
        self.others: list[nn.Module] = []
        for seed in self.view_seeds:  # each view its own initialisation; the global RNG is left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self.others.append(ctx.create_segmenter())
        # one optimizer over all views (per-parameter steps: the same as one per view); view 0's
        # groups first, so the logged lr is the segmenter's
        from scarce.models import segmenter_param_groups

        optim = ctx.cfg.train.optim
        groups: list[dict[str, Any]] = []
        for net in self.views:
            g = segmenter_param_groups(net, optim.lr, optim.encoder_lr_mult)
            groups += list(g) if isinstance(g, list) else [{"params": list(g)}]
        self.optimizer = ctx.make_optimizer(groups, optim)

    @classmethod
    def check_run_config(cls, cfg: Any, mcfg: DCTConfig) -> None:
        """Called by :func:`scarce.validate.validate_config`: bad settings fail before data loads."""
        check_config(mcfg)

    @property
    def views(self) -> list[nn.Module]:
        """All co-trained segmenters, view 0 (the run's segmenter) first."""
        return [self.model, *self.others]

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, **{f"view{k}": m for k, m in enumerate(self.others, start=1)}}

    def dif_weight(self, step: int) -> float:
        """λ_dif(step) = ``dif_weight`` × the same sigmoid ramp-up as λ_cot."""
        return float(self.mcfg.dif_weight) * sigmoid_rampup(step, self.mcfg.rampup * self.ctx.cfg.train.iterations)

    def training_step(self, batch: Batch, step: int) -> dict[str, Any]:
        assert batch.unlabelled is not None
        x, y = self.labelled_view(batch)
        u = self.weak_view(batch.unlabelled)
        z = torch.cat([x, u]).detach()
        n, views = x.shape[0], self.views
        inputs = [z.clone().requires_grad_(True) for _ in views]  # own leaf: own input gradient
        logits = []
        for net, inp in zip(views, inputs):
            net.train()
            logits.append(net(inp))
        probs = [self.probs(lg) for lg in logits]
        sup = [self.ctx.loss_fn(lg[:n], y) for lg in logits]
        cot = js_divergence([p[n:] for p in probs]).mean()
        # view difference: FGSM images of every view from this forward pass
        adv_loss = sum(cross_entropy(lg, fgsm_targets(y, lg)) for lg in logits)
        deltas = fgsm(adv_loss, inputs, float(self.mcfg.epsilon))
        adv = [(z + d).clamp(0.0, 1.0).detach() for d in deltas]
        difs = []
        for j, net in enumerate(views):
            others = [i for i in range(len(views)) if i != j]
            out = net(torch.cat([adv[i] for i in others]))
            for k, i in enumerate(others):
                difs.append(kl_to(probs[i].detach(), out[k * z.shape[0]:(k + 1) * z.shape[0]]))
        dif = torch.stack(difs).mean()
        lam_cot, lam_dif = self.consistency_weight(step), self.dif_weight(step)
        loss = torch.stack(sup).sum() + lam_cot * cot + lam_dif * dif
        self.ctx.step(loss, self.optimizer)
        return {"loss": loss.detach(), **{f"sup_{k}": s.detach() for k, s in enumerate(sup)},
                "cot": cot.detach(), "dif": dif.detach(), "lambda_cot": lam_cot, "lambda_dif": lam_dif}
