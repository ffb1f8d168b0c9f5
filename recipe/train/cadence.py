"""Fixed costs on a step cadence: validate (and recompute batch-norm statistics, log, check early stopping) every
few data epochs when epochs are tiny.

Every validation pays a fixed cost whatever the epoch's length: a pass over the validation split, PreciseBN's
forward passes over training batches, the epoch's callbacks and a buffered MLflow write. A 300-image folder
trains 4 optimiser steps an epoch for 200 epochs, so per epoch that cost rivals the training itself. The
remedy is the one step-based trainers use (Lightning's ``val_check_interval``, Keras' ``validation_freq``,
detectron2's ``eval_period``): check every ``max(1 epoch, N steps)``.

:func:`epochs_per_eval` picks ``k`` data epochs per trainer epoch from the step count alone (never from timings,
so a run, its replay and its resume make the same choices), and :class:`EpochGroups` wraps the training batches
so one trainer epoch runs ``k`` data epochs back to back, each in its own seeded order, the last group shorter
when ``k`` does not divide the epochs. The optimiser sees the same batches in the same order as with ``k = 1``;
only what happens between epochs (validation, PreciseBN, early stopping, checkpoints) happens every ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

MIN_POINTS = 20  # validations a fit keeps at least (when it has that many epochs): the curve checks' points


def epochs_per_eval(epochs: int, steps_per_epoch: int, min_steps: int, min_points: int = MIN_POINTS) -> int:
    """Data epochs per validation: the fewest that make at least ``min_steps`` optimiser steps, capped so the fit
    still validates at least ``min_points`` times (``epochs // min_points``), and 1 when epochs already have
    ``min_steps`` steps or ``min_steps`` is 0 (off).

    Example: 200 epochs of 4 steps, ``min_steps=32`` -> 8 (25 validations); 30 epochs of 19 steps -> 1.
    Raises ValueError for a negative argument."""
    if min(epochs, steps_per_epoch, min_steps, min_points) < 0:
        raise ValueError(
            f"epochs_per_eval needs non-negative arguments, got epochs={epochs}, steps_per_epoch={steps_per_epoch}, "
            f"min_steps={min_steps}, min_points={min_points}"
        )
    if min_steps == 0 or steps_per_epoch == 0 or steps_per_epoch >= min_steps:
        return 1
    k = math.ceil(min_steps / steps_per_epoch)
    return max(1, min(k, epochs // max(1, min_points)))


class EpochGroups:
    """Training batches where trainer epoch ``g`` is data epochs ``g*k .. min((g+1)*k, epochs) - 1``, each drawn
    after ``batches.set_epoch(data_epoch)`` (the batcher's seeded reshuffle), so the step sequence equals
    ``epochs`` plain epochs.

    Args:
        batches: re-iterable ``(xb, yb)`` batches with ``len()`` (``set_epoch`` is called when present).
        per_group: ``k``, data epochs per trainer epoch (>= 1).
        epochs: data epochs in the whole fit (>= 1).

    Attributes: ``groups`` (trainer epochs to ask of ``Trainer.fit``), ``total_steps`` (optimiser steps of the
    whole fit, for a schedule), ``data_epoch(g)`` (the last data epoch of group ``g``, 0-based).
    Raises ValueError when ``per_group`` or ``epochs`` is below 1.
    """

    def __init__(self, batches: Any, per_group: int, epochs: int) -> None:
        if per_group < 1 or epochs < 1:
            raise ValueError(f"EpochGroups needs per_group >= 1 and epochs >= 1, got {per_group} and {epochs}")
        self.batches, self.per_group, self.epochs = batches, per_group, epochs
        self.groups = math.ceil(epochs / per_group)
        self.total_steps = epochs * len(batches)
        self._group = 0

    def _span(self, group: int) -> range:
        return range(group * self.per_group, min((group + 1) * self.per_group, self.epochs))

    def data_epoch(self, group: int) -> int:
        """The last data epoch (0-based) trained by the end of trainer epoch ``group``."""
        return min((group + 1) * self.per_group, self.epochs) - 1

    def set_epoch(self, group: int) -> None:
        self._group = group

    def __len__(self) -> int:
        return max(1, len(self._span(self._group))) * len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        for epoch in self._span(self._group):
            if hasattr(self.batches, "set_epoch"):
                self.batches.set_epoch(epoch)
            yield from self.batches

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size, ... of the wrapped batches
        if name == "batches":
            raise AttributeError(name)
        return getattr(self.batches, name)


def data_epoch(trainer: Any) -> int:
    """The data epoch (0-based) the trainer's current epoch ends at: ``trainer.epoch`` unless its training data
    is an :class:`EpochGroups`."""
    data = trainer.train_data
    return data.data_epoch(trainer.epoch) if isinstance(data, EpochGroups) else trainer.epoch


__all__ = ["MIN_POINTS", "EpochGroups", "data_epoch", "epochs_per_eval"]
