"""The baselines stage's laboratory: its state and the training runs every experiment shares.

:class:`Lab` holds what the experiments read (the config, the data, the task, the val labels) and the
helpers they train with (:meth:`Lab.train`, :meth:`Lab.quick`), and collects what they leave (notes,
figures, the NaN guard's message per run, the config handed on). :class:`ShortRun` is the one short
training run on the real data, frozen after it ends and handed to every experiment that needs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recipe import tracking
from recipe.config import RecipeConfig
from recipe.fit import FitResult, fit
from recipe.stages.base import StageContext
from recipe.stages.ending import Figures
from recipe.tasks import task_for
from recipe.train import Callback, resolve_device
from recipe.train.callbacks import Budget, PredictionSnapshots

STAGE = "baselines"
KIND = "ablation"  # recipe.kind of the stage's grandchild runs
MIN_EPOCHS = 5  # a run shorter than this many epochs of the training split uses shorter "epochs" (FirstBatches)


# --- small callbacks only this stage needs ---------------------------------------------------------------


class _PreHook(Callback):
    """A callback that owns a forward pre-hook on the model (set as ``_handle``) and removes it after fit."""

    def after_fit(self) -> None:
        self.remove()

    def remove(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.remove()
            self._handle = None


class _InputCapture(_PreHook):
    """A forward pre-hook keeps exactly the tensor entering the model on the first training batch (after
    batching, augmentation and device transfer), with that batch's labels."""

    order = 50

    def before_fit(self) -> None:
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self._handle = self.trainer.model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        if self.x is None and module.training and args and isinstance(args[0], Tensor):
            self.x = args[0].detach().float().cpu().clone()

    def after_pred(self) -> None:
        if self.y is None and self.x is not None and self.trainer.training:
            self.y = self.trainer.yb.detach().cpu().clone()


class _ZeroInputs(_PreHook):
    """Every input the model sees, in training and validation, replaced by zeros (a forward pre-hook)."""

    def before_fit(self) -> None:
        self._handle = self.trainer.model.register_forward_pre_hook(
            lambda module, args: (torch.zeros_like(args[0]), *args[1:])
        )


class _LossAtInit(Callback):
    """The val loss before any step (mean, and per example), measured as the fit starts."""

    order = -100  # before every other before_fit: nothing has touched the model yet

    def before_fit(self) -> None:
        t = self.trainer
        pred, y = t.predict(t.valid_data)
        self.loss = float(t.loss_fn(pred, y))
        self.per_example = task_for(t.task).loss(pred, y, reduction="none").double().numpy()


class _StopBelow(Callback):
    """End the fit once the training loss is at or below ``target``."""

    order = 80  # after every other after_step (the MLflow logger's included): stopping skips the rest

    def __init__(self, target: float) -> None:
        self.target = target

    def after_step(self) -> None:
        if float(self.trainer.loss.detach()) <= self.target:
            self.trainer.stop(f"loss reached {self.target:.3g}")


def diverse(y: Tensor, n: int, task: Any) -> Tensor:
    """Indices of ``n`` examples covering as many classes as possible (round-robin over the classes in order of
    appearance), sorted by class; regression: the first ``n``. ``task``: a name or Task."""
    if not task_for(task).classifier:
        return torch.arange(min(n, len(y)))
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(y.tolist()):
        by_class.setdefault(int(c), []).append(i)
    picked: list[int] = []
    while len(picked) < min(n, len(y)):
        for idx in by_class.values():
            if idx and len(picked) < n:
                picked.append(idx.pop(0))
    return torch.tensor(sorted(picked, key=lambda i: (int(y[i]), i)), dtype=torch.long)


def _logger(prefix: str = "") -> tracking.MLflowLogger:
    """The MLflow logger for these short fits: one synchronous write at the end of the fit (an asynchronous
    one would make ending the run wait out MLflow's logging thread, ~1 s, more than the fit takes)."""
    return tracking.MLflowLogger(flush_s=math.inf, prefix=prefix, synchronous=True)


# --- the shared state ---------------------------------------------------------------------------------------


class NeedsShortRun(RuntimeError):
    """An experiment needs the short run, which raised."""


@dataclass(frozen=True)
class ShortRun:
    """The short run on the real data (``stages.baselines.short_steps`` steps, per-epoch validation), frozen.

    ``init_loss`` / ``init_per_example``: the val loss before any step (mean; per example, (N,)); ``x``, ``y``:
    exactly the first training batch that entered the model (after batching, augmentation, device transfer);
    ``snapshots``: (epoch, outputs) on ``snap_y``'s fixed val examples, the first at init (epoch -1)."""

    fit: FitResult
    init_loss: float
    init_per_example: np.ndarray
    x: Tensor | None
    y: Tensor | None
    snapshots: list[tuple[int, Tensor]]
    snap_y: Tensor

    @property
    def trainer(self):
        """The short run's :class:`~recipe.train.Trainer` (its history, callbacks and step count)."""
        return self.fit.trainer

    @property
    def metrics(self) -> dict[str, float]:
        """The short run's final val metrics ("val/loss", "val/accuracy" or "val/mae", ...)."""
        return self.fit.metrics

    @property
    def losses(self) -> list[float]:
        """The per-step training loss (nats, or squared target units)."""
        return self.fit.losses

    @property
    def smooth_losses(self) -> list[float]:
        """The debiased EMA of the per-step training loss (the recorder's)."""
        return self.fit.smooth_losses

    @property
    def divergence(self) -> str:
        """The NaN guard's message ("" when the loss stayed finite)."""
        return self.fit.divergence


def need(short: ShortRun | None, error: str = "") -> ShortRun:
    """``short``, or NeedsShortRun when the short run raised."""
    if short is None:
        raise NeedsShortRun("needs the short run, which raised" + (f" {error}" if error else ""))
    return short


@dataclass
class Lab:
    """What the experiments share; see the module docstring."""

    ctx: StageContext
    notes: list[str] = field(default_factory=list)
    diverged: dict[str, str] = field(default_factory=dict)  # run -> the NaN guard's message ("" = finite)
    runs: dict[str, FitResult] = field(default_factory=dict)  # every run of the stage, by name, in order

    def __post_init__(self) -> None:
        self.cfg: RecipeConfig = self.ctx.cfg
        self.bc = self.cfg.stages.baselines
        self.data = self.ctx.data()
        self.task = task_for(self.data)
        self.device = resolve_device(self.cfg.trainer.device)
        self.handed_on = self.cfg
        self.tags = tracking.run_tags(self.ctx.input_cfg, self.data.fingerprint, stage=STAGE, kind=KIND)
        train_size = self.data.split_sizes.get("train", 0)
        self.spe = max(1, math.ceil(train_size / self.cfg.data.batch_size))  # batches in an epoch of train
        self.short_cfg = self.run_cfg(self.bc.short_steps)
        self.figures = Figures(enabled=self.bc.plots)
        self.y_val = torch.cat([y.cpu() for _, y in self.val_batches()])

    def geometry(self, steps: int) -> tuple[int, int]:
        """(epochs, batches per epoch) for a run of about ``steps`` steps: whole epochs of the training split,
        or MIN_EPOCHS shorter ones when the split is too large for that many in ``steps``."""
        if math.ceil(steps / self.spe) >= MIN_EPOCHS:
            return math.ceil(steps / self.spe), self.spe
        return MIN_EPOCHS, max(1, math.ceil(steps / MIN_EPOCHS))

    def run_cfg(self, steps: int, **overrides: Any) -> RecipeConfig:
        """The config for a run of about ``steps`` steps, in whole epochs: the budget's max_steps would stop the
        fit in the middle of its last epoch, before that epoch's callbacks run; no time limit either, which
        would make runs irreproducible; no early stopping or checkpoint init (every run the same length)."""
        over = {
            "budget.max_steps": None,
            "budget.epochs": self.geometry(steps)[0],
            "budget.time_limit_s": None,
            "budget.early_stopping": None,
            "model.init_from": None,
            "trainer.progress": False,
        }
        return self.cfg.with_overrides({**over, **overrides})

    @contextmanager
    def child(self, name: str, params: dict[str, Any]) -> Iterator[None]:
        """A nested MLflow run (a grandchild of the flow run) for one experiment's training."""
        with tracking.start_run(name, self.tags, params=params, nested=True):
            yield

    def train(self, name: str, cfg: RecipeConfig, steps: int, cbs: list[Callback], **kw: Any) -> FitResult:
        """:func:`recipe.fit.fit` for a run of about ``steps`` steps (see :meth:`geometry`), no eval-mode
        evaluation, MLflow curves only through a logger in ``cbs``. A diverged run's (or one that never
        validated) val loss and metric are NaN: no trustworthy validation after a divergence."""
        try:
            r = fit(
                cfg, self.data, callbacks=cbs, evaluate=False, log=False, steps_per_epoch=self.geometry(steps)[1], **kw
            )
        finally:
            for cb in cbs:
                if isinstance(cb, _PreHook):
                    cb.remove()
        self.diverged[name] = r.divergence
        if r.diverged or "val/loss" not in r.metrics:
            r.metrics.update({k: math.nan for k in ("val/loss", f"val/{self.task.metric}")})
        self.runs[name] = r
        return r

    def quick(self, name: str, cfg: RecipeConfig, steps: int) -> FitResult:
        """The first ``steps`` steps of the short run's schedule with ``cfg`` (a seed, an init), no validation,
        no MLflow run: the same epochs and batches per epoch, so a non-constant schedule has the same horizon."""
        return self.train(name, cfg, self.bc.short_steps, [Budget(max_steps=steps)], validate=False)

    def val_batches(self, augment: bool = False):
        """The val split in its stored order, eval batch size, on the training device."""
        return self.data.batches("val", batch_size=self.cfg.data.eval_batch_size, augment=augment, device=self.device)

    def plot(self, path: str, make: Callable[[], Any]) -> None:
        """Log a figure; a plotting error becomes a note, never a failed check."""
        self.figures.log(path, make)

    def dumb(self) -> dict[str, float]:
        """The dumbest predictor's val metrics (:meth:`recipe.tasks.Task.dumb_baseline`)."""
        return self.task.dumb_baseline(
            self.y_val, class_counts=self.data.class_counts, target_mean=self.data.target_mean
        )

    def short_run(self) -> ShortRun:
        """Train the short run (its own grandchild run) and freeze what the experiments read from it."""
        cfg = self.short_cfg.with_overrides({"trainer.progress": self.cfg.trainer.progress})
        xv, yv = next(iter(self.val_batches()))
        pick = diverse(yv.cpu(), self.bc.snapshot_examples, self.task).to(xv.device)
        snap = PredictionSnapshots((xv[pick], yv[pick]), max_items=self.bc.snapshot_examples)
        capture, at_init = _InputCapture(), _LossAtInit()
        params = {"steps": self.bc.short_steps, "inputs": "real", "model.name": cfg.model.name, "seed": cfg.seed}
        with self.child("short_run", params):
            r = self.train("short_run", cfg, self.bc.short_steps, [at_init, snap, capture, _logger()])
            tracking.log_metrics({"skeleton/loss_at_init": at_init.loss}, step=0)
        self._note_short(r)
        return ShortRun(r, at_init.loss, at_init.per_example, capture.x, capture.y, list(snap.snapshots), snap.yb)

    def _note_short(self, r: FitResult) -> None:
        bpe = len(r.trainer.train_data)
        epochs = f"epochs of {bpe}" if bpe == self.spe else f"'epochs' of {bpe} of the split's {self.spe} batches"
        m = self.task.metric
        self.notes.append(
            f"short run: {r.trainer.step} steps ({r.trainer.epoch + 1} {epochs}) in {r.seconds:.1f} "
            f"s; val {m} {r.metrics.get('val/' + m, math.nan):.4g}"
        )


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _short(name: str, n: int = 16) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1) :]
