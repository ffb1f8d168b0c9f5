"""The learning-rate finder (Smith, "Cyclical Learning Rates", 2015; fastai's ``lr_find``).

Train for up to ``num_steps`` steps while the learning rate grows exponentially from ``min_lr`` to
``max_lr``, record the loss of every step and its debiased exponentially smoothed value, and stop as soon as
the smoothed loss exceeds ``div_factor`` times the best seen so far (it diverged: larger rates only get
worse). Afterwards the model, the optimiser, the RNG states and the trainer's counters are put back exactly
as they were, so a fit after the finder is the fit that would have happened without it.

The suggestion (:func:`suggest_lr`), from the smoothed curve:

- ``min_div_10`` (default): a tenth of the learning rate at the smoothed loss minimum. At the minimum the
  rate is already too large to make steady progress (the next steps blow up); an order of magnitude below
  it the loss still falls fast and training is stable.
- ``steepest``: the learning rate where the smoothed loss falls fastest per decade of learning rate (the
  most negative d loss / d log10 lr before the minimum).

Both read the curve of a short run in which the model also learns, so the loss at a given rate depends on
the steps before it; the suggestion is a starting point to confirm, not an optimum.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recipe.train.callbacks.base import Callback
from recipe.train.utils import DebiasedEMA, get_rng_state, set_rng_state
from recipe.train.utils import smooth as smooth

if TYPE_CHECKING:
    from recipe.train.trainer import Trainer

RULES = ("min_div_10", "steepest")
SKIP_START = 0.1  # the first tenth of the sweep is left out of the suggestion: the smoothed loss is still noisy
MIN_FALL = 0.02  # a curve whose smoothed minimum is not this fraction below its start shows no usable descent


@dataclass(frozen=True)
class LRSuggestion:
    """What the sweep found. ``lr`` is None when the curve shows no descent (``reason`` says why)."""

    lr: float | None  # the suggestion by ``rule``
    rule: str
    lr_at_min: float  # where the smoothed loss was lowest
    lr_steepest: float  # where it fell fastest
    start_loss: float  # the smoothed loss at the start of the sweep
    min_loss: float  # its minimum
    diverged: bool  # the sweep stopped because the loss blew up (otherwise the minimum may lie beyond max_lr)
    reason: str = ""

    def to_metrics(self, prefix: str = "lr_finder/") -> dict[str, float]:
        """The sweep's numbers as MLflow metrics under ``prefix``: learning rates at the minimum and steepest
        descent, start and minimum smoothed loss (the task's loss units), ``diverged`` as 0/1, and ``suggested`` when
        there is one."""
        out = {
            "lr_at_min": self.lr_at_min,
            "lr_steepest": self.lr_steepest,
            "start_loss": self.start_loss,
            "min_loss": self.min_loss,
            "diverged": float(self.diverged),
        }
        if self.lr is not None:
            out["suggested"] = self.lr
        return {prefix + k: float(v) for k, v in out.items()}


def sweep_lrs(min_lr: float, max_lr: float, num_steps: int) -> np.ndarray:
    """The exponential schedule of the sweep: ``num_steps`` rates from ``min_lr`` to ``max_lr`` inclusive
    (``np.geomspace``)."""
    return np.geomspace(min_lr, max_lr, num_steps)


def suggest_lr(
    lrs: Sequence[float], smooth_losses: Sequence[float], rule: str = "min_div_10", diverged: bool = True
) -> LRSuggestion:
    """The suggested learning rate from a sweep (see the module docstring for the rules)."""
    if rule not in RULES:
        raise ValueError(f"unknown lr rule {rule!r}; rules are: {', '.join(RULES)}")
    lrs_a, sl = np.asarray(lrs, dtype=np.float64), np.asarray(smooth_losses, dtype=np.float64)
    n = min(len(lrs_a), len(sl))
    lrs_a, sl = lrs_a[:n], sl[:n]
    finite = np.isfinite(sl)
    if n < 5 or finite.sum() < 5:
        return LRSuggestion(
            None,
            rule,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            diverged,
            f"only {int(finite.sum())} usable steps in the sweep; need at least 5",
        )
    start = int(min(n - 1, max(1, round(SKIP_START * n))))
    i_min = start + int(np.nanargmin(np.where(finite[start:], sl[start:], np.inf)))
    start_loss, min_loss = float(sl[0]), float(sl[i_min])
    # steepest descent before the minimum, per decade of lr
    i_steep = _steepest(np.log10(lrs_a), sl, start, i_min)
    lr_min, lr_steep = float(lrs_a[i_min]), float(lrs_a[i_steep])
    fell = (start_loss - min_loss) / abs(start_loss) if start_loss else 0.0
    if not fell > MIN_FALL:
        return LRSuggestion(
            None,
            rule,
            lr_min,
            lr_steep,
            start_loss,
            min_loss,
            diverged,
            f"the smoothed loss never fell more than {MIN_FALL:.0%} below its start "
            f"({start_loss:.4g} -> minimum {min_loss:.4g})",
        )
    lr = lr_min / 10 if rule == "min_div_10" else lr_steep
    return LRSuggestion(lr, rule, lr_min, lr_steep, start_loss, min_loss, diverged)


def _steepest(log_lrs: np.ndarray, sl: np.ndarray, start: int, stop: int) -> int:
    """Index of the most negative slope of ``sl`` per decade in ``[start, stop]``, each slope a difference over
    a window of about a twentieth of the sweep on each side: step-to-step differences of a smoothed loss are
    mostly noise, which made the plain gradient pick the noisy start of the curve."""
    if stop - start < 2:
        return stop
    k = max(1, len(sl) // 20)
    best, best_i = math.inf, stop
    for i in range(start, stop + 1):
        lo, hi = max(start, i - k), min(stop, i + k)
        if hi > lo:
            slope = (sl[hi] - sl[lo]) / (log_lrs[hi] - log_lrs[lo])
            if slope < best:
                best, best_i = slope, i
    return best_i


class LRFinder(Callback):
    """Sweep the learning rate during a fit and suggest one; everything is restored afterwards.

    Use :func:`lr_find` (it sizes the fit and removes the callback again) rather than adding this by hand.

    Args:
        min_lr: the first learning rate. Default 1e-7.
        max_lr: the last learning rate. Default 10.
        num_steps: optimiser steps of the sweep (fewer if the loss diverges). Default 100.
        beta: smoothing of the recorded loss (debiased EMA). Default 0.98.
        div_factor: stop once the smoothed loss exceeds this multiple of its best value. Default 4.
        rule: how to suggest a rate, "min_div_10" or "steepest" (see the module docstring). Default "min_div_10".
        restore: put model, optimiser, RNG states and trainer counters back after the sweep. Default True.

    Results (after the fit): ``lrs``, ``losses``, ``smooth_losses`` (one per step), ``diverged``,
    ``stop_reason`` and ``suggestion`` (an :class:`LRSuggestion`).
    """

    order = -40  # before the NaN guard: a non-finite loss is this callback's divergence signal, not an error

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        beta: float = 0.98,
        div_factor: float = 4.0,
        rule: str = "min_div_10",
        restore: bool = True,
    ) -> None:
        if not 0 < min_lr < max_lr:
            raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if num_steps < 5:
            raise ValueError(f"num_steps must be at least 5, got {num_steps}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if div_factor <= 1:
            raise ValueError(f"div_factor must be > 1, got {div_factor}")
        if rule not in RULES:
            raise ValueError(f"unknown lr rule {rule!r}; rules are: {', '.join(RULES)}")
        self.min_lr, self.max_lr, self.num_steps = min_lr, max_lr, num_steps
        self.beta, self.div_factor, self.rule, self.restore = beta, div_factor, rule, restore
        self.schedule = sweep_lrs(min_lr, max_lr, num_steps)

    def before_fit(self) -> None:
        t = self.trainer
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.diverged = False
        self.stop_reason = ""
        self.suggestion: LRSuggestion | None = None
        self._ema, self._best = DebiasedEMA(self.beta), math.inf
        self._saved: dict[str, Any] | None = None
        # The finder measures the training loss only: validation would cost time and publish meaningless metrics.
        self._valid_data, t.valid_data = t.valid_data, None
        if self.restore:
            self._saved = {
                "model": copy.deepcopy(t.model.state_dict()),
                "opt": copy.deepcopy(t.opt.state_dict()),
                "rng": get_rng_state(),
                "step": t.step,
                "epoch": t.epoch,
                "stop_reason": t.stop_reason,
            }

    def before_batch(self) -> None:
        if not self.trainer.training:
            return
        lr = float(self.schedule[min(len(self.lrs), self.num_steps - 1)])
        for group in self.trainer.opt.param_groups:
            group["lr"] = lr

    def after_loss(self) -> None:
        t = self.trainer
        if not t.training:
            return
        value = float(t.loss.detach().float().item())
        self.lrs.append(t.lr)
        self.losses.append(value)
        if not math.isfinite(value):
            self.smooth_losses.append(math.inf)
            self._stop(f"the loss became {value} at lr {t.lr:.3g}", diverged=True)
        smoothed = self._ema.update(value)
        self.smooth_losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if len(self.losses) > 1 and smoothed > self.div_factor * self._best:
            self._stop(
                f"the smoothed loss {smoothed:.4g} exceeded {self.div_factor:g} x its best "
                f"{self._best:.4g} at lr {t.lr:.3g}",
                diverged=True,
            )

    def after_batch(self) -> None:
        # after_batch, not after_step: the trainer has zeroed the gradients by now, so none leak into a later fit
        if self.trainer.training and len(self.lrs) >= self.num_steps:
            self._stop(f"swept {self.num_steps} steps up to lr {self.max_lr:.3g} without divergence", diverged=False)

    def _stop(self, reason: str, diverged: bool) -> None:
        self.diverged, self.stop_reason = diverged, reason
        self.trainer.stop(f"lr finder: {reason}")

    def after_fit(self) -> None:
        t = self.trainer
        self.suggestion = suggest_lr(self.lrs, self.smooth_losses, self.rule, diverged=self.diverged)
        t.opt.zero_grad(set_to_none=True)
        t.valid_data = self._valid_data
        if self._saved is not None:
            t.model.load_state_dict(self._saved["model"])
            t.opt.load_state_dict(self._saved["opt"])
            set_rng_state(self._saved["rng"])
            t.step, t.epoch, t.stop_reason = self._saved["step"], self._saved["epoch"], self._saved["stop_reason"]
            self._saved = None

    @property
    def epochs_needed(self) -> int:
        """Epochs of the trainer's training data that cover ``num_steps`` steps."""
        return max(1, math.ceil(self.num_steps / max(1, len(self.trainer.train_data))))


def lr_find(trainer: Trainer, **kwargs: Any) -> LRFinder:
    """Run an LR sweep on ``trainer`` (keyword arguments as :class:`LRFinder`) and return the finder, whose
    ``suggestion`` holds the result. The trainer's model and optimiser are left as they were."""
    finder = LRFinder(**kwargs)
    trainer.add_cbs([finder])
    try:
        trainer.fit(finder.epochs_needed)
    finally:
        trainer.remove_cbs([finder])
    return finder
