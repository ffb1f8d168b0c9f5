"""Snapshot ensembles (Huang et al., 2017): one run, several ensemble members for the price of one.

With a cosine schedule with warm restarts, the weights at the end of each cycle (where the learning rate is
lowest) sit in different local minima; collected, they form an ensemble. ``every_epochs`` should equal the
cycle length (``schedule.restart_epochs`` with ``restart_mult=1``).
"""

from __future__ import annotations

from typing import Any

from recipe.train.callbacks.base import Callback


class Snapshots(Callback):
    """Args:
    every_epochs: keep a copy of the weights (CPU state_dict) at the end of every this-many-th epoch. Required.
    """

    every_epoch = True  # counts data epochs: no several-epochs-per-validation cadence
    order = 90  # after everything that changes the weights in after_epoch

    def __init__(self, every_epochs: int) -> None:
        if every_epochs < 1:
            raise ValueError(f"every_epochs must be >= 1, got {every_epochs}")
        self.every = every_epochs

    def before_fit(self) -> None:
        self.states: list[dict[str, Any]] = []
        self.epochs: list[int] = []

    def after_epoch(self) -> None:
        if (self.trainer.epoch + 1) % self.every == 0:
            self.states.append({k: v.detach().cpu().clone() for k, v in self.trainer.model.state_dict().items()})
            self.epochs.append(self.trainer.epoch)
