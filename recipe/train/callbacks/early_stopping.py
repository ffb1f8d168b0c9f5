"""Stop when a monitored metric stops improving ("early stopping" in the recipe's regularize step).

As in Keras, the metric is read from ``trainer.metrics`` by a stable key; a missing key warns
once and lists the keys that exist, instead of silently never stopping.
"""

from __future__ import annotations

import copy
import math
import warnings

from recipe.train.cadence import EpochGroups, data_epoch
from recipe.train.callbacks.base import Callback


class EarlyStopping(Callback):
    """Args:
    monitor: metric key to watch. Default "val/loss".
    mode: "min" or "max". Default "min".
    patience: epochs without improvement before stopping. Default 5. When the trainer validates every ``k`` data
        epochs (:class:`~recipe.train.cadence.EpochGroups`), it stops after ``ceil(patience / k)`` checks
        without improvement, and epochs are reported as data epochs.
    min_delta: smallest change that counts as an improvement. Default 0.0.
    restore_best: load the best epoch's weights when stopping (and at the end of fit). Default True.
    """

    order = 30

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = abs(min_delta), restore_best

    def before_fit(self) -> None:
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state = None
        self._warned = False
        data = self.trainer.train_data if hasattr(self, "trainer") else None
        self._per_check = data.per_group if isinstance(data, EpochGroups) else 1
        self._checks = math.ceil(self.patience / self._per_check)

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def after_epoch(self) -> None:
        t = self.trainer
        if self.monitor not in t.metrics:
            if not self._warned:
                warnings.warn(
                    f"EarlyStopping: metric {self.monitor!r} is not available; keys are: "
                    f"{', '.join(sorted(t.metrics))}",
                    stacklevel=2,
                )
                self._warned = True
            return
        value = float(t.metrics[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, data_epoch(t), 0
            if self.restore_best:
                self._best_state = copy.deepcopy(t.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self._checks:
            self.stopped_epoch = data_epoch(t)
            t.stop(
                f"early stopping: {self.monitor} has not improved for {self.wait * self._per_check} epochs "
                f"(best {self.best:.4g} at epoch {self.best_epoch})"
            )

    def after_fit(self) -> None:
        if self.restore_best and self._best_state is not None:
            self.trainer.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_state": self._best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self._best_state = state["best_state"]
