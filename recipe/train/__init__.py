"""The shared trainer: one loop, events, cancel exceptions, and callbacks for everything else."""

from recipe.train.callbacks import Callback, default_callbacks
from recipe.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from recipe.train.events import (
    CANCEL_EVENTS,
    EVENTS,
    LOOP_EVENTS,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelTrain,
    CancelValidate,
    TrainingError,
)
from recipe.train.factory import config_callbacks, make_trainer
from recipe.train.optim import build_optimizer, loss_for_task
from recipe.train.trainer import Trainer
from recipe.train.utils import resolve_device, seed_everything

__all__ = [
    "CANCEL_EVENTS",
    "EVENTS",
    "LOOP_EVENTS",
    "Callback",
    "CancelBatch",
    "CancelEpoch",
    "CancelFit",
    "CancelTrain",
    "CancelValidate",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "config_callbacks",
    "default_callbacks",
    "load_checkpoint",
    "load_weights",
    "loss_for_task",
    "make_trainer",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
