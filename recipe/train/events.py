"""The trainer's events and its control-flow exceptions, defined once.

The order in which events fire is part of the contract (tests pin it):

    before_fit
      before_epoch                       (for each epoch)
        before_train
          before_batch                   (for each training batch)
            after_pred  after_loss
            before_backward  after_backward
            after_step
          after_batch
        after_train
        before_validate
          before_batch  after_pred  after_loss  after_batch   (for each validation batch)
        after_validate
      after_epoch
    after_fit

A callback stops part of the loop by raising one of the Cancel* exceptions below; the
trainer catches it at the matching level, fires ``after_cancel_<level>``, then the usual
``after_<level>`` (so clean-up code in ``after_*`` always runs).
"""

from __future__ import annotations

LOOP_EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
)


class CancelBatch(Exception):
    """Skip the rest of this batch (no backward/step if raised before them)."""


class CancelTrain(Exception):
    """End this epoch's training phase; validation still runs."""


class CancelValidate(Exception):
    """End this epoch's validation phase."""


class CancelEpoch(Exception):
    """End this epoch; the next one starts."""


class CancelFit(Exception):
    """End training altogether (early stopping, NaN guard, budget, LR finder)."""


CANCELS: dict[str, type[Exception]] = {
    "batch": CancelBatch,
    "train": CancelTrain,
    "validate": CancelValidate,
    "epoch": CancelEpoch,
    "fit": CancelFit,
}
CANCEL_EVENTS: tuple[str, ...] = tuple(f"after_cancel_{level}" for level in CANCELS)
EVENTS: tuple[str, ...] = LOOP_EVENTS + CANCEL_EVENTS


class TrainingError(RuntimeError):
    """Training cannot go on (a diverging loss, a broken model); the message says what to do."""
