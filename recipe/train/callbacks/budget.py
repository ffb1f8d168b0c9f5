"""Stop training when a step or time budget is spent.

The limit ends the training phase at once (``CancelTrain``), so the epoch still validates
and its metrics are recorded, then ends the fit after that epoch.
"""

from __future__ import annotations

import time

from recipe.train.callbacks.base import Callback
from recipe.train.events import CancelTrain


class Budget(Callback):
    """Args:
    max_steps: stop after this many optimiser steps (None: no limit). Default None.
    time_limit_s: stop after this many seconds of fit (None: no limit). Default None.
    """

    order = 90  # last: the epoch's other end-of-epoch handlers (snapshots, logging, checkpoints) run first

    def __init__(self, max_steps: int | None = None, time_limit_s: float | None = None) -> None:
        self.max_steps, self.time_limit_s = max_steps, time_limit_s

    def before_fit(self) -> None:
        self._start = time.perf_counter()
        self._spent = ""

    def after_batch(self) -> None:
        t = self.trainer
        if not t.training or self._spent:
            return
        if self.max_steps is not None and t.step >= self.max_steps:
            self._spent = f"step budget of {self.max_steps} spent"
        elif self.time_limit_s is not None and time.perf_counter() - self._start >= self.time_limit_s:
            self._spent = f"time budget of {self.time_limit_s:g} s spent"
        if self._spent:
            raise CancelTrain(self._spent)

    def after_epoch(self) -> None:
        if self._spent:
            self.trainer.stop(self._spent)
