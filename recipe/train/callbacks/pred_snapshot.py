"""Predictions on one fixed batch after every epoch: the recipe's "prediction dynamics".

The batch is the first validation batch unless one is given. Snapshots are taken in eval
mode under no_grad, so they change neither the weights nor any RNG state.
"""

from __future__ import annotations

import torch

from recipe.tasks import task_for
from recipe.train.callbacks.base import Callback


class PredictionSnapshots(Callback):
    """Args:
    batch: (xb, yb) to snapshot; default the first batch of ``trainer.valid_data`` (or train data).
    max_items: keep at most this many examples of the batch. Default 16.
    Results: ``xb``, ``yb`` (the batch) and ``snapshots``: list of (epoch, predictions on CPU), where
    predictions are class probabilities (classification) or raw outputs (regression).
    """

    order = 45

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None, max_items: int = 16) -> None:
        self.batch, self.max_items = batch, max_items

    def before_fit(self) -> None:
        t = self.trainer
        if self.batch is None:
            source = t.valid_data if t.valid_data is not None else t.train_data
            xb, yb = next(iter(source))
        else:
            xb, yb = self.batch
        self.xb, self.yb = xb[: self.max_items], yb[: self.max_items]
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self._take(-1)  # the state at init, before any step

    @torch.no_grad()
    def _take(self, epoch: int) -> None:
        t = self.trainer
        was_training = t.model.training
        t.model.eval()
        with t.autocast():
            out = t.model(self.xb.to(t.device)).float()
        t.model.train(was_training)
        self.snapshots.append((epoch, task_for(t.task).outputs(out).cpu()))

    def after_epoch(self) -> None:
        self._take(self.trainer.epoch)

    def state_dict(self) -> dict:
        return {"epochs": [e for e, _ in self.snapshots], "preds": [p for _, p in self.snapshots]}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = list(zip(state["epochs"], state["preds"], strict=True))
