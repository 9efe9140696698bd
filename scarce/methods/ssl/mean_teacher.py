"""``mean_teacher``: a student segmenter learns from labels and from an exponential moving average
of itself (Tarvainen & Valpola, NeurIPS 2017; the SSL4MIS 2-D recipe, Luo et al.).

One step (L labelled, M unlabelled images):

1. views: labelled weak view (image + mask), unlabelled weak view ``u_w`` (geometric) and its
   strong view ``u_s`` (:meth:`~scarce.methods.ssl.common.SemiSupervisedMethod.strong_view`,
   intensity only: pixel-aligned with ``u_w``);
2. the teacher predicts ``u_w`` without gradient, in train mode (batch statistics, as the
   original code and SSL4MIS, whose teachers are never put in eval mode); its own BatchNorm
   running statistics are left as they were (they are the EMA of the student's);
3. the student (the run's segmenter: validated and saved) predicts ``cat(x, u_s)``;
4. loss = run loss(student(x), y) + λ_u(step) · mean((p_student(u_s) − p_teacher(u_w))²) over
   class probabilities (binary: the same as the squared sigmoid difference), λ_u with the
   sigmoid ramp-up of :meth:`~scarce.methods.ssl.common.SemiSupervisedMethod.consistency_weight`;
5. after the optimizer step: teacher ← α·teacher + (1 − α)·student for every float parameter and
   buffer (BatchNorm running statistics), integer buffers copied, with α = min(``ema``,
   1 − 1/(t + 1)) at update t = 1, 2, … (Tarvainen's warm-up: the early teacher follows the
   fast-improving student).

The teacher is a second network in :meth:`modules` (checkpointed, exact resume). ``train.ema``
(a validation-time EMA of the student) is independent of it. The student's step is a closure
(``closure_step``): a two-pass optimiser (``train.optim.name=sam``) re-evaluates it with the same
views and teacher targets.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from scarce.engine.method import Batch
from scarce.methods import register_method
from scarce.methods.ssl.common import SemiSupervisedMethod, SSLConfig


@dataclass
class MeanTeacherConfig(SSLConfig):
    """Mean-teacher hyperparameters (defaults: SSL4MIS ``train_mean_teacher_2D.py`` unless noted)."""

    ema: float = 0.99
    """EMA decay α of the teacher (SSL4MIS ``--ema_decay 0.99``; Tarvainen's 0.99 during ramp-up)."""
    weight: float = 0.1
    """λ_u after ramp-up: weight of the probability-MSE consistency (SSL4MIS ``--consistency 0.1``)."""
    rampup: float = 1.0
    """Sigmoid ramp-up of λ_u over this fraction of ``train.iterations`` (SSL4MIS ramps over 200
    × 150 = 30,000 iterations, its whole run)."""


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher ← decay · teacher + (1 − decay) · student, for every float parameter and buffer
    (BatchNorm running mean/var included); integer buffers (``num_batches_tracked``) copied."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for k, t in t_state.items():
        s = s_state[k]
        if t.is_floating_point():
            t.lerp_(s.to(t.dtype), 1.0 - decay)
        else:
            t.copy_(s)


@register_method("mean_teacher")
class MeanTeacher(SemiSupervisedMethod):
    """Mean teacher (module docstring): ``model`` = student, ``teacher`` = its EMA."""

    Config = MeanTeacherConfig
    closure_step = True

    def __init__(self, ctx: Any, mcfg: MeanTeacherConfig) -> None:
        from scarce.config import ConfigError

        ema = mcfg.ema
        if not isinstance(ema, (int, float)) or isinstance(ema, bool) or not 0.0 <= ema <= 1.0:
            raise ConfigError(f"config key 'method.ema' must be a number in [0, 1], got {ema!r} "
                              f"(e.g. --set method.ema=0.99)")
        super().__init__(ctx, mcfg)
        self.teacher = copy.deepcopy(self.model)
        self.teacher.requires_grad_(False)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "teacher": self.teacher}

    def decay(self, step: int) -> float:
        """α of the EMA update after training step ``step`` (0-based): min(ema, 1 − 1/(step + 2))."""
        return min(float(self.mcfg.ema), 1.0 - 1.0 / (step + 2))

    @torch.no_grad()
    def teacher_probs(self, images: torch.Tensor) -> torch.Tensor:
        """M×K×H×W teacher class probabilities (train mode: batch statistics; the teacher's running
        statistics are restored afterwards, so they remain the EMA of the student's)."""
        buffers = [b.clone() for b in self.teacher.buffers()]
        self.teacher.train()
        probs = self.probs(self.teacher(images))
        for b, saved in zip(self.teacher.buffers(), buffers):
            b.copy_(saved)
        return probs

    def training_step(self, batch: Batch, step: int) -> dict[str, Any]:
        assert batch.unlabelled is not None
        x, y = self.labelled_view(batch)
        u_w = self.weak_view(batch.unlabelled)
        u_s = self.strong_view(u_w)
        target = self.teacher_probs(u_w)

        lam = self.consistency_weight(step)
        parts: dict[str, torch.Tensor] = {}

        def compute() -> torch.Tensor:
            # a closure (train.optim.name=sam re-evaluates it at θ + ε with the same views and targets)
            self.model.train()
            logits = self.model(torch.cat([x, u_s]))
            loss_x = self.ctx.loss_fn(logits[: x.shape[0]], y)
            loss_c = torch.mean((self.probs(logits[x.shape[0]:]) - target) ** 2)
            parts.setdefault("loss_x", loss_x.detach())
            parts.setdefault("loss_c", loss_c.detach())
            return loss_x + lam * loss_c

        loss = self.ctx.step(compute, self.optimizer)
        ema_update(self.teacher, self.model, self.decay(step))
        return {"loss": loss, **parts, "lambda_u": lam}
