"""The one trainer every stage uses.

The loop is a handful of small methods, each wrapped by ``_with_events`` so callbacks can
act before and after it and cancel it. Everything beyond forward / loss / backward / step
-- metrics, schedules, clipping, checkpoints, logging -- is a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from recipe.train.callbacks.base import Callback, sort_callbacks
from recipe.train.events import CANCELS, EVENTS, CancelFit, TrainingError
from recipe.train.utils import resolve_device, to_device


class Trainer:
    """Fits a model with an optimiser and callbacks.

    Args:
        model: the network; moved to ``device``.
        train_data: iterable of ``(xb, yb)`` batches with ``len()``; ``set_epoch(epoch)`` is called when present
            (the in-memory batcher reshuffles deterministically per epoch from it).
        valid_data: same, or None to skip validation.
        loss_fn: ``loss_fn(pred, yb) -> scalar``.
        opt: a torch optimiser over ``model``'s parameters.
        cbs: callbacks, in addition to ``default_callbacks(task)`` when ``defaults`` is True.
        task: "classification" or "regression" (picks the default metrics).
        device: "auto" (cuda, then mps, then cpu), a name, or a torch.device.
        defaults: add the default callbacks (metrics, recorder, NaN guard, progress bar). Default True.
        progress: show the progress bar (only ever on a terminal). Default True.

    State, readable and writable by callbacks through ``self.trainer``:
        model, opt, loss_fn, train_data, valid_data, device, task
        cbs: the sorted callbacks.
        n_epochs: epochs asked of ``fit``; epoch: the current epoch (0-based); start_epoch: first epoch of this fit
            (> 0 after a resume).
        step: optimiser steps taken since the start of training (survives a resume).
        iter: index of the batch within the current phase; n_iter: batches in the current phase.
        xb, yb: the current batch (on device); pred: the model output; loss: the current batch's loss (a tensor).
        training: True in the training phase, False while validating.
        metrics: latest values with stable keys ("train/loss", "val/loss", "val/accuracy", "lr", ...).
        history: one dict of metrics per finished epoch (with "epoch" and "step").
        stop_reason: why fit ended early ("" when it ran all epochs).
        diverged: the NaN guard's message when the training loss stopped being finite ("" otherwise); a
            diverged fit also has it as ``stop_reason``.
        fit_time: seconds spent in the last fit.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Iterable,
        valid_data: Iterable | None = None,
        *,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        opt: torch.optim.Optimizer,
        cbs: Sequence[Callback] = (),
        task: str = "classification",
        device: str | torch.device = "auto",
        defaults: bool = True,
        progress: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.train_data, self.valid_data = train_data, valid_data
        self.loss_fn, self.opt, self.task = loss_fn, opt, task
        self.metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.step = 0
        self.epoch = self.start_epoch = self.n_epochs = 0
        self.iter = self.n_iter = 0
        self.training = False
        self.stop_reason = self.diverged = ""
        self.fit_time = 0.0
        self.xb = self.yb = self.pred = self.loss = None
        self.autocast: Any = nullcontext  # MixedPrecision swaps in torch.autocast
        self._resume_state: dict[str, Any] | None = None
        if defaults:
            from recipe.train.callbacks import default_callbacks

            cbs = [*default_callbacks(task, progress=progress), *cbs]
        self.cbs: list[Callback] = []
        self._handlers: dict[str, list[Callable[[], Any]]] = {}
        self.add_cbs(cbs)

    # --- callbacks -------------------------------------------------------------------------------------------

    def add_cbs(self, cbs: Iterable[Callback]) -> None:
        """Attach callbacks to this trainer, re-sort all of them (:func:`sort_callbacks`) and rebuild the event
        handlers. Raises ValueError on a cycle in run_before/run_after or a misspelt event method."""
        for cb in cbs:
            cb.trainer = self
            self.cbs.append(cb)
        self.cbs = sort_callbacks(self.cbs)
        self._handlers = {event: [] for event in EVENTS}
        for cb in self.cbs:
            for event, handler in cb.handlers().items():
                self._handlers[event].append(handler)

    def remove_cbs(self, cbs: Iterable[Callback]) -> None:
        """Detach the given callback objects (by identity) and rebuild the event handlers of the rest."""
        drop = {id(c) for c in cbs}
        keep = [c for c in self.cbs if id(c) not in drop]
        self.cbs = []
        self.add_cbs(keep)

    def cb(self, kind: type | str) -> Callback | None:
        """The first callback of this class (or with this ``name``), or None."""
        for c in self.cbs:
            if (isinstance(kind, type) and isinstance(c, kind)) or kind in (type(c).__name__, c.name):
                return c
        return None

    def __call__(self, event: str) -> None:
        try:
            handlers = self._handlers[event]
        except KeyError:
            raise ValueError(f"unknown event {event!r}; events are: {', '.join(EVENTS)}") from None
        for handler in handlers:
            handler()

    def _with_events(self, f: Callable[[], None], level: str) -> None:
        try:
            self(f"before_{level}")
            f()
        except CANCELS[level]:
            self(f"after_cancel_{level}")
        self(f"after_{level}")

    # --- the loop ----------------------------------------------------------------------------------------------

    def fit(self, epochs: int, *, resume_from: str | None = None) -> dict[str, float]:
        """Train for ``epochs`` epochs (fewer if a callback cancels); return the final metrics.

        ``resume_from`` is a checkpoint written by the Checkpoint callback: training continues after the
        epoch it was written at, with model, optimiser, schedule, callbacks and RNG states restored, so the
        result equals an uninterrupted run.
        """
        if resume_from is not None:
            from recipe.train.checkpoint import load_checkpoint

            self._resume_state = load_checkpoint(resume_from, map_location=self.device)
        self.n_epochs, self.start_epoch = epochs, 0
        self.stop_reason = self.diverged = ""
        start = time.perf_counter()
        try:
            self._with_events(self._do_fit, "fit")
        finally:
            self.fit_time = time.perf_counter() - start
            self._resume_state = None
        return dict(self.metrics)

    def _do_fit(self) -> None:
        if self._resume_state is not None:
            from recipe.train.checkpoint import restore_trainer

            restore_trainer(self, self._resume_state)
        for self.epoch in range(self.start_epoch, self.n_epochs):
            self._with_events(self._do_epoch, "epoch")

    def _do_epoch(self) -> None:
        self._with_events(self._do_train, "train")
        if self.valid_data is not None:
            self._with_events(self._do_validate, "validate")

    def _do_train(self) -> None:
        self.training = True
        self.model.train()
        self._run_batches(self.train_data)

    def _do_validate(self) -> None:
        self.training = False
        self.model.eval()
        with torch.no_grad():
            self._run_batches(self.valid_data)

    def _run_batches(self, data: Any) -> None:
        if hasattr(data, "set_epoch"):
            data.set_epoch(self.epoch)
        self.n_iter = len(data)
        for self.iter, (xb, yb) in enumerate(data):
            self.xb, self.yb = to_device(xb, self.device), to_device(yb, self.device)
            self._with_events(self._do_batch, "batch")

    def _do_batch(self) -> None:
        with self.autocast():
            self.pred = self.model(self.xb)
            self("after_pred")
            self.loss = self.loss_fn(self.pred, self.yb)
        self("after_loss")
        if not self.training:
            return
        self("before_backward")
        self.loss.backward()
        self("after_backward")
        self.opt.step()
        self.step += 1
        self("after_step")
        self.opt.zero_grad(set_to_none=True)

    # --- outside fit -------------------------------------------------------------------------------------------

    def validate(self, data: Iterable | None = None) -> dict[str, float]:
        """Run one validation pass (with callbacks, so metrics are computed as in fit) and return the metrics."""
        data = self.valid_data if data is None else data
        if data is None:
            raise ValueError("validate() needs data: the trainer has no valid_data")
        saved, self.valid_data = self.valid_data, data
        try:
            self._with_events(self._do_validate, "validate")
        finally:
            self.valid_data = saved
        return dict(self.metrics)

    @torch.no_grad()
    def predict(self, data: Iterable) -> tuple[Tensor, Tensor]:
        """Model outputs and targets for every batch of ``data``, concatenated, on the CPU. No callbacks."""
        self.model.eval()
        preds, targets = [], []
        for xb, yb in data:
            with self.autocast():
                preds.append(self.model(to_device(xb, self.device)).float().cpu())
            targets.append(yb.cpu() if isinstance(yb, Tensor) else torch.as_tensor(yb))
        return torch.cat(preds), torch.cat(targets)

    def stop(self, reason: str) -> None:
        """Record why and cancel the fit; for callbacks."""
        self.stop_reason = reason
        raise CancelFit(reason)

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])


__all__ = ["Trainer", "TrainingError"]
