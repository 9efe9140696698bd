"""Method base class and the training context every method receives.

A *method* (supervised, e2eaug, grid_tr, ...) owns its networks and optimizers and defines one
training step; the :class:`~scarce.engine.trainer.Trainer` owns everything else (the loop,
batching, validation, schedulers, checkpoints, resume, logging, distributed sync). Adding a
method = one file with a subclass that overrides :meth:`Method.training_step` (and, if it has
more networks than the segmenter, :meth:`Method.modules` / :meth:`Method.optimizers`).
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from torch import nn

from scarce.config import OptimConfig, RunConfig
from scarce.data.types import DatasetInfo, RunData
from scarce.engine.optim import make_optimizer


@dataclass
class Batch:
    images: torch.Tensor  # N×C×S×S float in [0, 1]
    masks: torch.Tensor  # N×S×S int64 label ids
    index: torch.Tensor  # N indices into the training SegData
    unlabelled: torch.Tensor | None = None
    """M×C×S×S unlabelled images (methods whose ``streams`` include ``"unlabelled"``), else None."""
    unlabelled_index: torch.Tensor | None = None
    """M indices into ``ctx.data.unlabelled`` (e.g. its ``domains``)."""


@dataclass
class NoConfig:
    """Methods without hyperparameters of their own."""


class TrainContext:
    """What a method may use: config, data, device, the seeded generator, loss, optimizer
    factory and a distributed-aware :meth:`step`. Built by the trainer."""

    def __init__(
        self,
        cfg: RunConfig,
        data: RunData,
        run_dir: Path,
        device: torch.device,
        generator: torch.Generator,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        rank: int = 0,
        world_size: int = 1,
        precision: str = "fp32",
    ) -> None:
        from scarce.engine.precision import make_grad_scaler

        self.cfg = cfg
        self.data = data
        self.run_dir = Path(run_dir)
        self.device = device
        self.generator = generator
        """Every random draw of a method goes through this generator (checkpointed)."""
        self.loss_fn = loss_fn
        self.rank = rank
        self.world_size = world_size
        self.precision = precision
        """Effective ``train.precision`` (fp32 | bf16 | fp16: :mod:`scarce.engine.precision`)."""
        self.scaler = make_grad_scaler(precision, device)
        """fp16's GradScaler (None otherwise); :meth:`step` uses it, the trainer checkpoints it."""
        self.modules: Callable[[], dict[str, nn.Module]] = dict
        """The method's networks (set by the trainer to ``method.modules``): ``step`` keeps their
        BatchNorm running statistics fixed during a closure's re-evaluation (SAM's second pass)."""

    @property
    def info(self) -> DatasetInfo:
        return self.data.info

    @property
    def num_classes(self) -> int:
        return self.data.train.num_classes

    @property
    def in_channels(self) -> int:
        return int(self.data.train.images.shape[1])

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def create_segmenter(self) -> nn.Module:
        """A fresh segmenter from ``cfg.model``, prepared by :meth:`prepare_network`."""
        from scarce.models import model_from_config

        model = model_from_config(self.cfg.model, in_channels=self.in_channels, num_classes=self.num_classes)
        return self.prepare_network(model)

    def prepare_network(self, net: nn.Module) -> nn.Module:
        """A segmenting network as every method trains it: on the run's device, channels-last
        (``train.channels_last``; the weights' layout decides the convolutions' and so the
        activations' layout, whatever the input's) and with ``train.precision``'s autocast
        around its training forward passes. The one place for this: :meth:`create_segmenter`
        and methods' own segmenters (CTBCT's Transformer) call it."""
        from scarce.engine.precision import apply_precision

        net = net.to(self.device)
        net.inference_window = int(self.cfg.eval.window)  # read by predict_probs (eval.window)
        if self.cfg.train.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return apply_precision(net, self.precision, self.device)

    def make_optimizer(self, params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
                       optim: OptimConfig | None = None) -> torch.optim.Optimizer:
        return make_optimizer(params, optim or self.cfg.train.optim)

    def make_segmenter_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The segmenter's optimizer: a pretrained encoder's parameters get
        ``train.optim.encoder_lr_mult`` × lr (one group, as before, when the multiplier is 1)."""
        from scarce.config import ConfigError
        from scarce.models import segmenter_param_groups

        optim = self.cfg.train.optim
        if not isinstance(optim.encoder_lr_mult, (int, float)) or optim.encoder_lr_mult < 0:
            raise ConfigError(f"config key 'train.optim.encoder_lr_mult' must be a number >= 0, got "
                              f"{optim.encoder_lr_mult!r} (e.g. --set train.optim.encoder_lr_mult=0.1)")
        return self.make_optimizer(segmenter_param_groups(model, optim.lr, optim.encoder_lr_mult), optim)

    def sync_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average gradients over ranks (data-parallel); no-op for a single process."""
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def step(self, loss: torch.Tensor | Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer
             ) -> torch.Tensor:
        """zero_grad → backward → gradient sync over ranks → optimizer step; returns the loss.

        ``loss`` is a tensor (one forward/backward pass, as every method so far) or a closure
        that runs the forward pass and returns the loss: then the optimizer's ``step(closure)``
        may re-evaluate it (SAM's second pass at θ + ε) — each evaluation does zero_grad,
        backward and the gradient sync, so a two-pass optimiser is one registered optimiser, not
        a trainer fork. A plain optimizer calls the closure once (same result as a tensor)."""
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if callable(loss):
            forward = loss
            calls = [0]

            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                calls[0] += 1
                if calls[0] == 1:
                    value = forward()
                else:  # a re-evaluation (θ + ε): batch statistics, but running statistics unchanged
                    with frozen_batchnorm(self.modules().values()):
                        value = forward()
                self._backward(value)
                self.sync_gradients(params)
                return value

            with torch.enable_grad():
                first = closure()
            if getattr(optimizer, "needs_closure", False):  # e.g. SAM: a second pass at θ + ε
                optimizer.step(closure)  # (fp16's GradScaler is refused with it: scarce.validate)
            else:
                self._optimizer_step(optimizer)
            return first.detach()
        if getattr(optimizer, "needs_closure", False):
            from scarce.config import ConfigError

            raise ConfigError(f"train.optim.name={self.cfg.train.optim.name!r} evaluates the loss twice per step, "
                              f"but method {self.cfg.method.get('name')!r} computes it once; use another optimizer "
                              f"(e.g. train.optim.name=adam) or a method that passes a closure to ctx.step")
        optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        self.sync_gradients(params)
        self._optimizer_step(optimizer)
        return loss.detach()

    def _backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``; under fp16 on the GradScaler's scaled loss."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; under fp16 the GradScaler unscales the gradients, skips the step
        when they hold inf/NaN, and updates its scale."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


@contextlib.contextmanager
def frozen_batchnorm(modules: Iterable[nn.Module]) -> Iterator[None]:
    """BatchNorm layers keep normalising with batch statistics but do not update their running
    statistics (momentum 0; ``num_batches_tracked`` restored): a second forward pass of the same
    step (SAM at θ + ε) must not count the batch twice."""
    saved = []
    for m in modules:
        for bn in m.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                tracked = None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone()
                saved.append((bn, bn.momentum, tracked))
                bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, momentum, tracked in saved:
            bn.momentum = momentum
            if tracked is not None:
                bn.num_batches_tracked.copy_(tracked)


def _intensity_setting(mcfg: Any) -> tuple[str, Any] | None:
    """(name, IntensityConfig) from a method config's ``intensity``/``intensity_params`` fields;
    None when absent or ``none``. Raises ConfigError naming ``method.intensity...`` when bad."""
    name = getattr(mcfg, "intensity", "none")
    if name is None or str(name).lower() == "none":
        return None
    from scarce.augment.intensity import check_intensity_name, resolve_intensity_config

    name = check_intensity_name(name, "method.intensity")
    params = getattr(mcfg, "intensity_params", None) or {}
    if not isinstance(params, dict):
        from scarce.config import ConfigError

        raise ConfigError(f"method.intensity_params must be a mapping of IntensityConfig fields "
                          f"(e.g. {{gamma_prob: 0}}), got {params!r}")
    return name, resolve_intensity_config(None, where="method.intensity_params.", **params)


class Method(abc.ABC):
    """Base class of all training methods (see module docstring)."""

    Config: ClassVar[type] = NoConfig
    name: ClassVar[str] = "method"
    closure_step: ClassVar[bool] = False
    """True when the method's steps pass a closure to ``ctx.step`` (two-pass optimisers such as
    ``train.optim.name=sam`` need it; :func:`scarce.validate.validate_config` checks)."""
    patches: ClassVar[bool] = True
    """False for a method whose per-image data (scribbles, a generator's output size) cannot be
    cut with ``data.patch``: it trains on whole images and the config check refuses a patch."""
    labels: ClassVar[str] = "masks"
    """What the method's training images are labelled with: ``masks`` (full masks) or
    ``scribbles`` (the weak methods). :meth:`scribble_files` says whether a run reads them from
    the dataset's ``scribbles/`` folder (then images without a mask can train)."""

    @classmethod
    def scribble_files(cls, mcfg: Any) -> bool:
        """True when a run with method config ``mcfg`` trains on the dataset's ``scribbles/``
        files (the data layer then chooses images by their scribbles: :mod:`scarce.data.scribble_data`)."""
        return False

    streams: ClassVar[tuple[str, ...]] = ("labelled",)
    """Data streams the method consumes each step: ``labelled`` (always) and ``unlabelled``
    (semi-supervised: the trainer then loads ``data.unlabelled`` images only and fills
    ``Batch.unlabelled`` from its own checkpointed sampler)."""

    def unlabelled_batch_size(self) -> int:
        """Unlabelled images per step and rank (default ``train.batch_size``)."""
        return int(self.ctx.cfg.train.batch_size)

    def __init__(self, ctx: TrainContext, mcfg: Any) -> None:
        self.ctx = ctx
        self.mcfg = mcfg
        self.model: nn.Module = ctx.create_segmenter()
        self.optimizer = ctx.make_segmenter_optimizer(self.model)
        self._intensity = _intensity_setting(mcfg)  # a bad method.intensity fails before training

    # ---- what subclasses override -------------------------------------------------------
    def setup(self) -> None:
        """One-off preparation before the first step of a fresh run (not called on resume)."""

    @abc.abstractmethod
    def training_step(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        """One optimisation step on ``batch``; returns scalars to log (``loss`` at least)."""

    def modules(self) -> dict[str, nn.Module]:
        """All networks to checkpoint (``model`` is the segmenter)."""
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers whose learning rate follows ``train.schedule`` (ReduceLROnPlateau on a
        validation plateau, or the per-iteration cosine / onecycle / poly curve); the first one's
        group-0 lr is the log's ``lr`` column. Default: :meth:`plateau_optimizers` (the segmenter's
        optimizer), so a method overriding either name is honoured; others (a GAN's) keep their lr."""
        return self.plateau_optimizers()

    def plateau_optimizers(self) -> list[torch.optim.Optimizer]:
        """Older name of :meth:`scheduled_optimizers` (kept: methods may override it)."""
        return [self.optimizer]

    def extra_state(self) -> dict[str, Any]:
        """Extra tensors/plain values to checkpoint (e.g. architecture history)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def on_validation(self, step: int, score: float) -> dict[str, float]:
        """Hook after each validation; returned values are logged."""
        return {}

    def selectable(self, step: int) -> bool:
        """Whether the weights after ``step`` iterations may become the run's result (best
        checkpoint). Methods whose first phase trains another objective (the weak methods' PCE
        pretraining) exclude it, so that a ``grid_tr`` run never returns its PCE start; the last
        step is always selectable."""
        return True

    def finalize(self, run_dir: Path) -> None:
        """Hook after training (e.g. write a gallery of generated pairs)."""

    # ---- provided ---------------------------------------------------------------------
    @property
    def segmenter(self) -> nn.Module:
        return self.model

    def augment_pairs(self, images: torch.Tensor, masks: torch.Tensor,
                      name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The real labelled pairs as the segmenter trains on them: the classic joint augmentation
        ``name`` (none | rotate | flip | translate | combine; one draw per sample moves an image
        N×C×H×W and its mask N×H×W alike) and then ``method.intensity`` on the images. ``none``
        draws nothing from ``ctx.generator`` (runs without it stay bit-identical)."""
        if name != "none":
            from scarce.augment import apply_augment

            images, moved = apply_augment(name, images, masks, self.ctx.generator)
            assert moved is not None
            masks = moved
        return self.augment_intensity(images), masks

    def augment_intensity(self, images: torch.Tensor) -> torch.Tensor:
        """``method.intensity`` (none | nnunet, :mod:`scarce.augment.intensity`) applied to a batch
        of *real* training images, N×C×H×W in [0, 1] → same shape; masks are not involved, so call
        it after any geometric augmentation. ``none`` (or a method without the field) returns the
        batch itself and draws nothing from ``ctx.generator``: runs without it stay bit-identical.
        """
        if self._intensity is None:
            return images
        from scarce.augment.intensity import apply_intensity

        name, icfg = self._intensity
        return apply_intensity(name, images, self.ctx.generator, icfg)

    def train(self) -> None:
        for m in self.modules().values():
            m.train()

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state.get("extra", {}))

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.mcfg) if dataclasses.is_dataclass(self.mcfg) else {}
