"""Metrics computed iteratively over each phase, published under stable keys.

Keys: ``train/loss``, ``val/loss`` and, by task, ``{phase}/accuracy`` (classification) or
``{phase}/mse`` and ``{phase}/mae`` (regression); plus ``lr``, ``epoch``, ``step`` and
``epoch_time`` in each history row. On an accelerator the sums stay on the device and are
read once per phase, so the run is not synchronised every batch; on the CPU plain floats are
cheaper than tensor additions.
"""

from __future__ import annotations

import time

import torch

from recipe.tasks import Task, task_for
from recipe.train.callbacks.base import Callback


class Metrics(Callback):
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
        self._sums: dict[str, torch.Tensor | float] = {}

    def after_loss(self) -> None:
        t = self.trainer
        n = len(t.yb)
        pred, yb = t.pred.detach(), t.yb
        self._add("loss", t.loss.detach().float() * n)
        for key, total in self.task.batch_sums(pred, yb).items():
            self._add(key, total)
        self._n += n

    def _add(self, key: str, value: torch.Tensor) -> None:
        v = value.item() if value.device.type == "cpu" else value
        self._sums[key] = self._sums[key] + v if key in self._sums else v

    def _publish(self, phase: str) -> None:
        if self._n == 0:
            return
        for key, total in self._sums.items():
            self.trainer.metrics[f"{phase}/{key}"] = float(total) / self._n

    def after_train(self) -> None:
        self._publish("train")

    def after_validate(self) -> None:
        self._publish("val")

    def after_epoch(self) -> None:
        t = self.trainer
        t.metrics.update(epoch=t.epoch, step=t.step, lr=t.lr, epoch_time=time.perf_counter() - self._epoch_start)
        t.history.append(dict(t.metrics))

    def state_dict(self) -> dict:
        return {"history": self.trainer.history}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.history = [dict(row) for row in state["history"]]
        if self.trainer.history:
            self.trainer.metrics = dict(self.trainer.history[-1])
