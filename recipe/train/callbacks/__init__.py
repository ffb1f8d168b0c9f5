"""Trainer callbacks, one behaviour a module."""

from recipe.train.callbacks.base import Callback, sort_callbacks
from recipe.train.callbacks.budget import Budget
from recipe.train.callbacks.checkpoint import Checkpoint
from recipe.train.callbacks.distill import Distill
from recipe.train.callbacks.early_stopping import EarlyStopping
from recipe.train.callbacks.ema import EMA
from recipe.train.callbacks.grad_clip import GradClip
from recipe.train.callbacks.lr_finder import LRFinder, LRSuggestion, lr_find, suggest_lr
from recipe.train.callbacks.metrics import Metrics
from recipe.train.callbacks.mixed_precision import MixedPrecision
from recipe.train.callbacks.nan_guard import NanGuard
from recipe.train.callbacks.precise_bn import PreciseBN, recompute_bn_stats
from recipe.train.callbacks.pred_snapshot import PredictionSnapshots
from recipe.train.callbacks.progress import ProgressBar
from recipe.train.callbacks.recorder import Recorder
from recipe.train.callbacks.schedule import SCHEDULES, Schedule, build_scheduler
from recipe.train.callbacks.snapshots import Snapshots
from recipe.train.callbacks.swa import SWA, Polyak
from recipe.train.callbacks.update_ratio import UpdateRatio


def default_callbacks(task: str = "classification", progress: bool = True) -> list[Callback]:
    """What every fit gets: iterative metrics, the recorder, the NaN guard and a progress bar."""
    return [Metrics(task), Recorder(), NanGuard(), ProgressBar(enabled=progress)]


__all__ = [
    "SCHEDULES",
    "SWA",
    "Budget",
    "Callback",
    "Checkpoint",
    "Distill",
    "EMA",
    "EarlyStopping",
    "GradClip",
    "LRFinder",
    "LRSuggestion",
    "Metrics",
    "MixedPrecision",
    "NanGuard",
    "Polyak",
    "PreciseBN",
    "PredictionSnapshots",
    "ProgressBar",
    "Recorder",
    "Schedule",
    "Snapshots",
    "UpdateRatio",
    "build_scheduler",
    "default_callbacks",
    "lr_find",
    "recompute_bn_stats",
    "sort_callbacks",
    "suggest_lr",
]
