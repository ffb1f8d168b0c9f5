"""Metrics computed iteratively over each phase, published under stable keys.

Keys: ``train/loss``, ``val/loss`` and, by task, ``{phase}/accuracy`` (classification) or
``{phase}/mse`` and ``{phase}/mae`` (regression); plus ``lr``, ``epoch``, ``step`` and
``epoch_time`` in each history row.

Per batch the callback only keeps references (the detached loss, predictions and targets); every
``REDUCE_EVERY`` batches (sooner for large outputs) and at the end of the phase it reduces them with a few whole-chunk tensor
operations into running sums that stay where the model runs. The sums are read once per phase, so
there is no per-step host synchronisation on an accelerator and almost no per-step work on the CPU
(the per-step ``.item()`` calls and tensor sums this replaced were most of the Trainer's overhead over
a hand-written loop on small models: ``bench/peer_lightning.py``). Sums are float64 except on
accelerators without it (MPS).
"""

from __future__ import annotations

import time

import torch

from recipe.tasks import Task, task_for
from recipe.train.cadence import data_epoch
from recipe.train.callbacks.base import Callback

REDUCE_EVERY = 128  # batches kept before they are folded into the running sums ...
REDUCE_ELEMENTS = 2**22  # ... or sooner, once the kept predictions hold this many elements (16 MiB of float32)


class Metrics(Callback):
    """Publishes ``{phase}/loss`` and the task's metrics (accuracy, or mse/mae) to ``trainer.metrics`` after each
    phase and a history row per epoch, from running sums kept on the model's device.

    Raises ValueError for an unknown ``task``."""

    order = -20  # publish before anything that reads trainer.metrics in the same event

    def __init__(self, task: str | Task = "classification") -> None:
        self.task = task_for(task)  # raises ValueError for an unknown task

    def before_fit(self) -> None:
        # A resume restores history through load_state_dict, which runs after before_fit.
        self.trainer.metrics = {}
        self.trainer.history = []

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()

    def before_train(self) -> None:
        self._reset()

    def before_validate(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._batches: list[tuple] = []  # (loss: float on the CPU, else a 0-d tensor; n; pred; yb) per batch
        self._kept = 0  # prediction elements in _batches

    def after_loss(self) -> None:
        t = self.trainer
        pred, loss = t.pred.detach(), t.loss.detach()
        # a CPU scalar is cheapest read at once (no sync to avoid); elsewhere keep the tensor
        self._batches.append((loss.item() if loss.device.type == "cpu" else loss, len(t.yb), pred, t.yb))
        self._kept += pred.numel()
        if len(self._batches) >= REDUCE_EVERY or self._kept >= REDUCE_ELEMENTS:
            self._reduce()

    def _reduce(self) -> None:
        """Fold the kept batches into the running sums (tensor ops only: nothing is read back)."""
        if not self._batches:
            return
        batches, self._batches, self._kept = self._batches, [], 0
        yb = torch.cat([b[3].reshape(-1) for b in batches]) if len(batches) > 1 else batches[0][3].reshape(-1)
        device = yb.device
        dtype = torch.float64 if device.type in ("cpu", "cuda") else torch.float32
        if isinstance(batches[0][0], float):
            loss_sum = torch.tensor(sum(b[0] * b[1] for b in batches), dtype=dtype)
        else:
            sizes = torch.tensor([b[1] for b in batches], dtype=dtype, device=device)
            loss_sum = (torch.stack([b[0].reshape(()) for b in batches]).to(dtype) * sizes).sum()
        pred = torch.cat([b[2] for b in batches]) if len(batches) > 1 else batches[0][2]
        sums = {"loss": loss_sum, **{k: v.to(dtype) for k, v in self.task.batch_sums(pred, yb).items()}}
        for key, v in sums.items():
            self._sums[key] = self._sums[key] + v if key in self._sums else v
        self._n += sum(b[1] for b in batches)

    def _publish(self, phase: str) -> None:
        self._reduce()
        if self._n == 0:
            return
        host = torch.stack(list(self._sums.values())).tolist()  # the phase's one host synchronisation
        for key, total in zip(self._sums, host):
            self.trainer.metrics[f"{phase}/{key}"] = total / self._n
        self._reset()

    def after_train(self) -> None:
        self._publish("train")

    def after_validate(self) -> None:
        self._publish("val")

    def after_epoch(self) -> None:
        t = self.trainer
        t.metrics.update(epoch=data_epoch(t), step=t.step, lr=t.lr, epoch_time=time.perf_counter() - self._epoch_start)
        t.history.append(dict(t.metrics))

    def state_dict(self) -> dict:
        return {"history": self.trainer.history}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.history = [dict(row) for row in state["history"]]
        if self.trainer.history:
            self.trainer.metrics = dict(self.trainer.history[-1])
