"""The trainer owns the loop; methods only define their step.

Iteration-based: every ``val_every`` iterations it validates the segmenter on the labelled
validation split (the dataset's primary metric), keeps the best checkpoint (by validation,
never by test), writes ``last.pt`` atomically and optionally stops early; ``eval.monitor`` test
sets are scored beside it for per-domain curves (logged only, never selected on). The learning rate
follows ``train.schedule``: ReduceLROnPlateau stepped on each validation score (``plateau``, the
default) or a per-iteration curve (``cosine`` | ``onecycle`` | ``poly``, with ``train.warmup``)
stepped after every training step. ``train.ema`` keeps an exponential moving average of the
segmenter's weights, updated after every step; validation and ``best.pt`` then use the average.
``fit(resume=True)`` restores model/optimizers/schedulers/EMA/RNG/sampler/step from ``last.pt``
so that an interrupted run ends bit-identical to an uninterrupted one on CPU. SIGINT (Ctrl-C) or
SIGTERM during ``fit`` finishes the step in flight, writes ``last.pt`` at that step and raises
:class:`scarce.utils.interrupt.Interrupted` (single process; under torchrun the usual behaviour).

Under ``torchrun`` (WORLD_SIZE > 1) it initialises a process group (gloo on CPU, nccl on GPU),
shards every global batch across ranks (distributed sampling), averages gradients in
``ctx.step`` and does all file I/O on rank 0.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scarce.config import RunConfig, to_dict
from scarce.data.types import RunData
from scarce.losses import get_loss
from scarce.engine.method import Batch, Method, TrainContext
from scarce.engine.optim import make_ema, make_lr_scheduler
from scarce.engine.spec import resolve_method
from scarce.engine.streams import Stream
from scarce.utils import interrupt
from scarce.utils.io import atomic_torch_save, atomic_write_text, torch_load
from scarce.utils.runfolder import RunPaths
from scarce.utils.seed import resolve_device, rng_state, seed_everything, set_rng_state

TENSORBOARD_MISSING = ("train.tensorboard=true but the tensorboard package is not installed: this run logs to "
                       "log.csv only (pip install tensorboard, or set train.tensorboard=false)")

@dataclass
class FitResult:
    best_score: float
    best_step: int
    steps: int
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_loss_name(cfg: RunConfig, data: RunData) -> str:
    """``train.loss: auto`` → the dataset's loss (BCE + soft Jaccard for skin, + soft Dice else)."""
    if cfg.train.loss != "auto":
        return cfg.train.loss
    return data.info.loss if data.train.num_classes == 2 else "ce_dice"


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class _Window:
    """Running means of a method's step outputs between two log rows, and the time per step."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.t0 = time.perf_counter()

    def add(self, out: dict[str, Any]) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint between two log rows keeps, so the next row averages the same steps
        as in an uninterrupted run (time per step is not kept: it restarts with the process)."""
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.count = {k: float(v) for k, v in state["sums"].items()}, int(state["count"])

    def row(self, step: int, lr: float) -> dict[str, Any]:
        """The log row of the window (``step``, mean outputs, ``lr``, ``sec_per_step``); resets it."""
        n = max(self.count, 1)
        row: dict[str, Any] = {"step": step, **{k: v / n for k, v in self.sums.items()}}
        row["lr"] = lr
        row["sec_per_step"] = (time.perf_counter() - self.t0) / n
        self.sums, self.count, self.t0 = {}, 0, time.perf_counter()
        return row


class _Progress:
    """What a person watching sees: a tqdm bar on a terminal; where no live bar can go (stderr is
    a pipe, a log file, nohup) one plain line per validation on stderr instead, so a long run
    shows progress before the end (stdout stays for results, e.g. ``scarce train --json | jq``)."""

    def __init__(self, trainer: "Trainer", cfg: Any) -> None:
        self.trainer, self.bar = trainer, None
        if trainer.is_main and cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.iterations, initial=trainer.step, desc=f"{trainer.method.name}", leave=False,
                            dynamic_ncols=True, disable=None)
        self.plain = trainer.is_main and cfg.progress and (self.bar is None or self.bar.disable)
        self.t0, self.step0, self.last_val = time.time(), trainer.step, math.nan

    def eta(self) -> float | None:
        """Seconds left at this session's pace (steps since start or resume); None before one."""
        t = self.trainer
        done = t.step - self.step0
        return (time.time() - self.t0) / done * (t.cfg.train.iterations - t.step) if done > 0 else None

    def step(self, out: dict[str, Any], best: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if "loss" in out:  # tqdm's own [elapsed<remaining] is the ETA
                self.bar.set_postfix(loss=f"{float(out['loss']):.3f}", val=f"{self.last_val:.3f}", best=f"{best:.3f}")

    def validation(self, row: dict[str, Any]) -> None:
        score = row.get("val_" + self.trainer.data.info.metric)
        if isinstance(score, (int, float)):
            self.last_val = float(score)
        if self.plain:
            from scarce.utils.progress import format_duration

            print(f"{self.trainer._progress_line(row)}  ETA {format_duration(self.eta())}", file=sys.stderr, flush=True)

    def close(self, stopped_early: bool) -> None:
        if self.bar is not None:
            self.bar.close()
        t = self.trainer
        if self.plain and (t.step >= t.cfg.train.iterations or stopped_early):
            metric = t.data.info.metric
            print(f"trained {t.run_dir}: {t.step} steps{' (stopped early)' if stopped_early else ''}, "
                  f"best val {metric} {t.best_score:.4f} at step {t.best_step}", file=sys.stderr, flush=True)


class Trainer:
    """Run one method on one :class:`RunData`; see the module docstring.

    ``method``: the run's method resolved once by the caller (a
    :class:`scarce.methods.MethodSpec`: ``name``, ``cls``, ``config``); without it the trainer
    resolves ``cfg.method`` itself (:func:`scarce.engine.spec.resolve_method`)."""

    def __init__(self, cfg: RunConfig, data: RunData, run_dir: str | os.PathLike[str], method: Any = None) -> None:
        self.cfg = cfg
        self.data = data
        self.run_dir = Path(run_dir)
        self.files = RunPaths(self.run_dir)
        self.rank, self.world_size = _dist_env()
        self._init_distributed()
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        if self.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        seed_everything(cfg.train.seed)
        self.spec = method if method is not None else resolve_method(cfg)
        method_cls, mcfg = self.spec.cls, self.spec.config
        # Stream generators are shared by all ranks (same global batch order); the method's
        # generator differs per rank so augmentation draws differ between shards.
        self.labelled = Stream(len(data.train), cfg.train.seed, cfg.train.batch_size, self.rank, self.world_size)
        method_gen = torch.Generator().manual_seed(cfg.train.seed * 1000 + 17 + self.rank)
        self.data = self._to_device(data)
        self.loss_name = resolve_loss_name(cfg, data)
        from scarce.engine.precision import resolve_precision

        self.precision = resolve_precision(cfg.train.precision, self.device)  # effective: fp32 | bf16 | fp16
        self.ctx = TrainContext(
            cfg, self.data, self.run_dir, self.device, method_gen, get_loss(self.loss_name),
            rank=self.rank, world_size=self.world_size, precision=self.precision,
        )
        torch.manual_seed(cfg.train.seed)  # identical model init on every rank and every run
        self.method: Method = method_cls(self.ctx, mcfg)
        self.ctx.modules = self.method.modules
        self.scheduled = list(self.method.scheduled_optimizers())
        self.schedulers = [make_lr_scheduler(opt, cfg.train) for opt in self.scheduled]
        self.per_iteration = str(cfg.train.schedule).lower() != "plateau"
        # generic over methods: every method's segmenter is ``method.segmenter``
        self.ema = make_ema(self.method.segmenter, cfg.train.ema) if cfg.train.ema else None
        if cfg.eval.monitor and not self.data.monitor:
            from scarce.data.types import DataError

            raise DataError(f"eval.monitor={list(cfg.eval.monitor)} but the run data holds no monitored test set; load "
                            f"them with prepare_run_data(..., monitor=cfg.eval.monitor) (scarce train does)")
        self.unlabelled: Stream | None = None
        if "unlabelled" in method_cls.streams:
            if self.data.unlabelled is None or len(self.data.unlabelled) == 0:
                from scarce.data.types import DataError

                raise DataError(f"method {method_cls.name!r} trains on unlabelled images but the run data has none; "
                                f"load them with prepare_run_data(..., with_unlabelled=True) (scarce train does)")
            self.unlabelled = Stream(len(self.data.unlabelled), cfg.train.seed * 1000 + 29,
                                     self.method.unlabelled_batch_size(), self.rank, self.world_size)
        # data.patch: crop windows from their own generator (per rank, checkpointed), so the
        # method's draws stay those of a whole-image run
        self.patch_gen = (torch.Generator().manual_seed(cfg.train.seed * 1000 + 41 + self.rank)
                          if cfg.data.patch else None)
        self.step = 0
        self.best_score = -math.inf
        self.best_step = -1
        self.bad_validations = 0
        self.history: list[dict[str, float]] = []
        self._window = _Window()  # the log row in the making (checkpointed between two rows)

    # ------------------------------------------------------------------ setup helpers
    def _init_distributed(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                backend = "nccl" if torch.cuda.is_available() and self.cfg.train.device != "cpu" else "gloo"
                dist.init_process_group(backend=backend)

    def _to_device(self, data: RunData) -> RunData:
        if self.device.type == "cpu":
            return data
        import dataclasses

        def mv(s):
            return dataclasses.replace(s, images=s.images.to(self.device), masks=s.masks.to(self.device))

        unl = data.unlabelled
        if unl is not None:
            unl = dataclasses.replace(unl, images=unl.images.to(self.device))
        return dataclasses.replace(data, train=mv(data.train), val=mv(data.val), unlabelled=unl)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ckpt_path(self) -> Path:
        return self.files.last_checkpoint

    @property
    def best_path(self) -> Path:
        return self.files.best_checkpoint

    @property
    def eval_model(self) -> torch.nn.Module:
        """What validation scores and ``best.pt`` stores: the EMA of the segmenter's weights when
        ``train.ema`` is on, else the segmenter itself (same class and state_dict keys)."""
        return self.ema.module if self.ema is not None else self.method.segmenter

    def _after_step(self) -> None:
        """After each training step: update the EMA, then step the per-iteration schedules."""
        if self.ema is not None:
            self.ema.update_parameters(self.method.segmenter)
        if self.per_iteration:
            for s in self.schedulers:
                s.step()

    # ------------------------------------------------------------------ batching
    def next_batch(self) -> Batch:
        """The next labelled batch (epoch-wise shuffling of the training set by the labelled
        :class:`Stream`; the global batch is sharded across ranks) and, for a method that
        consumes unlabelled images, the next unlabelled batch from its own stream."""
        mine = self.labelled.next_indices()
        dev_idx = mine.to(self.data.train.images.device)
        images, masks = self.data.train.images[dev_idx], self.data.train.masks[dev_idx]
        patch = int(self.cfg.data.patch)
        if patch and self.patch_gen is not None:  # data.patch: one random window per image and its mask
            from scarce.augment.patches import random_patches

            images, masks = random_patches(images, masks, patch, self.patch_gen, float(self.cfg.data.patch_foreground))
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        batch = Batch(images, masks, mine)
        if self.unlabelled is not None:
            assert self.data.unlabelled is not None
            u_idx = self.unlabelled.next_indices()
            u = self.data.unlabelled.images[u_idx.to(self.data.unlabelled.images.device)]
            if patch and self.patch_gen is not None:
                from scarce.augment.patches import random_patches

                u = random_patches(u, None, patch, self.patch_gen)[0]
            if self.cfg.train.channels_last:
                u = u.contiguous(memory_format=torch.channels_last)
            batch.unlabelled, batch.unlabelled_index = u, u_idx
        return batch

    # ------------------------------------------------------------------ checkpoints
    def _gather_generators(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        state = (generator or self.ctx.generator).get_state()
        if self.world_size <= 1:
            return [state]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, state)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "method": self.method.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **({"grad_scaler": self.ctx.scaler.state_dict()} if self.ctx.scaler is not None else {}),
            # the labelled stream under the keys it always had (older last.pt files resume)
            "sampler_gen": self.labelled.generator.get_state(),
            "method_gens": self._gather_generators(),
            **({"patch_gens": self._gather_generators(self.patch_gen)} if self.patch_gen is not None else {}),
            "perm": self.labelled.perm,
            "pos": self.labelled.pos,
            **({"streams": {"unlabelled": self.unlabelled.state_dict()}} if self.unlabelled is not None else {}),
            "rng": rng_state(),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "log_window": self._window.state_dict(),
            "config": to_dict(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.method.load_state_dict(state["method"])
        for s, sd in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(sd)
        if self.ema is not None and "ema" in state:  # a resumed run has the same config (run lock)
            self.ema.load_state_dict(state["ema"])
        if self.ctx.scaler is not None and "grad_scaler" in state:  # fp16
            self.ctx.scaler.load_state_dict(state["grad_scaler"])
        self.labelled.load_state_dict({"generator": state["sampler_gen"], "perm": state["perm"], "pos": state["pos"]})
        if self.unlabelled is not None:
            self.unlabelled.load_state_dict(state["streams"]["unlabelled"])
        gens = state["method_gens"]
        self.ctx.generator.set_state(gens[self.rank] if self.rank < len(gens) else gens[0])
        if self.patch_gen is not None:
            gens = state["patch_gens"]
            self.patch_gen.set_state(gens[self.rank] if self.rank < len(gens) else gens[0])
        set_rng_state(state["rng"])
        self.best_score = float(state["best_score"])
        self.best_step = int(state["best_step"])
        self.bad_validations = int(state["bad_validations"])
        self.history = list(state["history"])
        if "log_window" in state:  # absent in checkpoints written before interrupted runs kept it
            self._window.load_state_dict(state["log_window"])

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # collective (all ranks) when distributed
        if self.is_main:
            atomic_torch_save(state, self.ckpt_path)

    def _save_best(self) -> None:
        if self.is_main:
            atomic_torch_save(
                {"model": self.eval_model.state_dict(), "step": self.step, "score": self.best_score},
                self.best_path,
            )

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        self._log_rows: list[dict[str, Any]] = []
        self._tb = None
        if not self.is_main:
            return
        log = self.files.log_file
        if log.exists():  # keep only rows up to the resumed step: the log matches an uninterrupted run
            rows = list(csv.DictReader(io.StringIO(log.read_text())))
            self._log_rows = [r for r in rows if int(float(r["step"])) <= self.step]
        if self.cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # an optional package (scarce[tb]): CSV only, said once
                import warnings

                warnings.warn(TENSORBOARD_MISSING, stacklevel=2)
                return
            try:
                self._tb = SummaryWriter(str(self.files.tb_dir), purge_step=self.step + 1)
            except Exception:  # event files cannot be written: CSV only
                self._tb = None

    def _log(self, row: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self._log_rows.append(row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, row["step"])

    def _flush_logs(self) -> None:
        if not self.is_main:
            return
        keys: list[str] = []
        for r in self._log_rows:
            keys.extend(k for k in r if k not in keys)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in self._log_rows:
            w.writerow(r)
        atomic_write_text(self.files.log_file, buf.getvalue())
        if self._tb is not None:
            self._tb.flush()

    # ------------------------------------------------------------------ validation
    def validate(self) -> float:
        from scarce.evaluation.evaluate import validate

        # eval.tta: the checkpoint is chosen with the predictions it will be evaluated with
        score = (validate(self.eval_model, self.data.val, self.data.info.metric, tta=self.cfg.eval.tta)
                 if self.is_main else 0.0)
        if self.world_size > 1:
            import torch.distributed as dist

            t = torch.tensor([score], dtype=torch.float64)
            dist.broadcast(t, 0)
            score = float(t.item())
        return score

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False, max_steps: int | None = None) -> FitResult:
        """Train to ``train.iterations`` (or stop after ``max_steps`` more steps: used to
        simulate interruptions). Returns the best validation score and step.

        The loop only sequences the parts: :meth:`_start` (resume or method setup, logs),
        :meth:`_train_step`, :meth:`_log_window` every ``log_every`` steps,
        :meth:`_validate_and_select` every ``val_every`` steps (scheduler, best checkpoint,
        early stop), :meth:`_finish` (close logs, the method's finalize).

        SIGINT/SIGTERM (single process, main thread): the step in flight finishes, ``last.pt``
        is written at it (the log window too, so the resumed log is the uninterrupted one) and
        :class:`~scarce.utils.interrupt.Interrupted` is raised; ``fit(resume=True)`` continues
        bit-identically. A second signal stops at once."""
        cfg = self.cfg.train
        with interrupt.graceful(self.world_size <= 1):
            stopped_early = self._start(resume)
            limit = cfg.iterations if max_steps is None else min(cfg.iterations, self.step + max_steps)
            progress = _Progress(self, cfg)
            window = self._window
            while self.step < limit and not stopped_early:
                out, lr = self._train_step()
                window.add(out)
                progress.step(out, self.best_score)
                is_val = self.step % cfg.val_every == 0 or self.step == cfg.iterations
                if self.step % cfg.log_every == 0 or is_val:
                    row = window.row(self.step, lr)
                    if is_val:
                        row.update(self._validate_and_select())
                    self._log(row)
                    if is_val:
                        progress.validation(row)
                        self._flush_logs()
                        self.save_checkpoint()
                        stopped_early = bool(cfg.early_stop and self.bad_validations >= cfg.early_stop)
                if (signum := interrupt.requested()) is not None:
                    self._stop_on_signal(signum, saved=is_val, progress=progress)
            progress.close(stopped_early)
            self._finish(stopped_early)
        return FitResult(self.best_score, self.best_step, self.step, stopped_early, list(self.history))

    def _stop_on_signal(self, signum: int, saved: bool, progress: "_Progress") -> None:
        """A stop was requested during the step just done: checkpoint it (unless the validation
        of this step just did), close the logs and raise :class:`Interrupted`."""
        if not saved:
            self._flush_logs()
            self.save_checkpoint()
        progress.close(False)
        self.close_logs()
        raise interrupt.Interrupted(signum, f"at step {self.step} of {self.cfg.train.iterations}, checkpoint saved in "
                                    f"{self.run_dir}", self.step, str(self.run_dir))

    def _start(self, resume: bool) -> bool:
        """Restore ``last.pt`` (``resume`` and one exists) or set the method up; open the logs.
        Returns whether the run had already stopped early (killed before its evaluation: it
        stays stopped)."""
        cfg = self.cfg.train
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.ckpt_path.exists()
        if resumed:
            # CPU: generator/RNG states must stay CPU tensors; modules and optimizers move their
            # state to the parameters' device when loading.
            fix = "delete it and run the same command with --resume to start this run over, or train into a new --out"
            state = torch_load(self.ckpt_path, map_location="cpu", fix=fix)
            try:
                self.load_state_dict(state)
            except (RuntimeError, KeyError, TypeError, ValueError) as e:  # another network's (or method's) state
                from scarce.utils.io import CheckpointError

                if isinstance(e, CheckpointError):
                    raise
                raise CheckpointError(f"checkpoint {self.ckpt_path} does not fit this run's networks "
                                      f"({' '.join(str(e).split())[:300]}); {fix}") from None
            if self.is_main and cfg.progress:
                print(f"resuming {self.run_dir} from step {self.step}/{cfg.iterations}", file=sys.stderr, flush=True)
        else:
            self.method.setup()
        self._open_logs()
        return bool(resumed and cfg.early_stop and self.bad_validations >= cfg.early_stop)

    def _train_step(self) -> tuple[dict[str, Any], float]:
        """One method step on the next batch; returns its outputs and the lr it trained with
        (group 0: the decoder's when the encoder has its own)."""
        batch = self.next_batch()
        self.method.train()
        lr = self.scheduled[0].param_groups[0]["lr"] if self.scheduled else float("nan")
        out = self.method.training_step(batch, self.step)
        self._after_step()
        self.step += 1
        return out, lr

    def _validate_and_select(self) -> dict[str, Any]:
        """Validate, step a plateau scheduler, keep ``best.pt`` when the score improves at a
        selectable step (never a test score), count validations without improvement (early
        stop). Returns the log columns (``val_<metric>`` and the method's own)."""
        score = self.validate()
        row: dict[str, Any] = {"val_" + self.data.info.metric: score}
        if not self.per_iteration:
            for s in self.schedulers:
                s.step(score)
        selectable = self.step == self.cfg.train.iterations or self.method.selectable(self.step)
        if selectable and score > self.best_score:
            self.best_score, self.best_step, self.bad_validations = score, self.step, 0
            self._save_best()
        elif selectable:
            self.bad_validations += 1
        row.update(self.method.on_validation(self.step, score))
        row.update(self._monitor())
        self.history.append({"step": self.step, "score": score})
        return row

    def _monitor(self) -> dict[str, float]:
        """``monitor/<set>`` log columns: the validation metric (with ``eval.tta``) of the eval
        model on each ``eval.monitor`` test set, for per-domain curves over training. Computed
        after selection and never fed back: choosing a checkpoint, the plateau step or early
        stopping on a test domain would make that domain's test score optimistic. Inference only
        (no RNG drawn, eval mode restored), so a run trains bit-identically with or without it."""
        if not self.is_main or not self.data.monitor:
            return {}
        from scarce.evaluation.evaluate import validate

        metric, tta = self.data.info.metric, self.cfg.eval.tta
        return {f"monitor/{name}": validate(self.eval_model, d, metric, tta=tta) for name, d in self.data.monitor.items()}

    def _finish(self, stopped_early: bool) -> None:
        """Flush and close the logs; a completed (or early-stopped) run calls the method's
        ``finalize`` (galleries, architecture records) on rank 0."""
        self._flush_logs()
        if self._tb is not None:
            self._tb.close()
        if self.step >= self.cfg.train.iterations or stopped_early:
            if self.is_main:
                self.method.finalize(self.run_dir)

    def _progress_line(self, row: dict[str, Any]) -> str:
        """``step 200/400  loss 0.3121  val dice 0.8123  best 0.8123 (step 200)`` (one validation)."""
        metric = self.data.info.metric
        parts = [f"step {self.step}/{self.cfg.train.iterations}"]
        if isinstance(row.get("loss"), (int, float)):
            parts.append(f"loss {row['loss']:.4f}")
        score = row.get("val_" + metric)
        if isinstance(score, (int, float)):
            parts.append(f"val {metric} {score:.4f}")
        if self.best_step >= 0:
            parts.append(f"best {self.best_score:.4f} (step {self.best_step})")
        return "  ".join(parts)

    def load_best(self) -> torch.nn.Module:
        """The segmenter with the best-validation weights loaded."""
        fix = "retrain the run into a new --out"
        state = torch_load(self.best_path, map_location=self.device, fix=fix)
        from scarce.utils.io import load_weights

        load_weights(self.method.segmenter, state.get("model") if isinstance(state, dict) else state,
                     self.best_path, "this run's segmenter", fix)
        return self.method.segmenter

    def close_logs(self) -> None:
        """Close the TensorBoard writer (``fit`` closes it when it returns; this is for a run that
        raised, before its files are removed: :func:`scarce.api.train_run`)."""
        tb = getattr(self, "_tb", None)
        if tb is not None:
            tb.close()
            self._tb = None
