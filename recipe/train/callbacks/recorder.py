"""Per-step record of loss and learning rate, with the debiased exponentially smoothed loss.

The smoothed loss is ``avg_t / (1 - beta**t)`` where ``avg_t = beta*avg_{t-1} + (1-beta)*loss_t``:
without the division the first values are biased towards zero. The LR finder and the
learning-curve diagnosis read ``losses`` / ``smooth_losses`` / ``lrs``. Training losses are
kept as tensors and converted in bulk at the end of each epoch (no per-step GPU sync);
``smooth_loss`` is computed on demand.
"""

from __future__ import annotations

import torch

from recipe.train.callbacks.base import Callback
from recipe.train.utils import DebiasedEMA


class Recorder(Callback):
    """Records every training step's loss and learning rate, and the debiased EMA of the loss with factor
    ``beta`` (``train/smooth_loss`` after each epoch).

    Raises ValueError when ``beta`` is not in [0, 1)."""

    order = -19

    def __init__(self, beta: float = 0.98) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.beta = beta

    def before_fit(self) -> None:
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[float] = []
        self._ema = DebiasedEMA(self.beta)
        self._pending: list[torch.Tensor] = []

    def after_step(self) -> None:
        self._pending.append(self.trainer.loss.detach())
        self.lrs.append(self.trainer.lr)

    def _flush(self) -> None:
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        self._pending = []
        for v in values:
            self.losses.append(v)
            self.smooth_losses.append(self._ema.update(v))

    @property
    def smooth_loss(self) -> float:
        """The debiased smoothed training loss as of the last step."""
        self._flush()
        return self.smooth_losses[-1] if self.smooth_losses else float("nan")

    def after_train(self) -> None:
        self._flush()
        if self.smooth_losses:
            self.trainer.metrics["train/smooth_loss"] = self.smooth_losses[-1]

    def after_fit(self) -> None:
        self._flush()

    def state_dict(self) -> dict:
        self._flush()
        return {"losses": self.losses, "smooth_losses": self.smooth_losses, "lrs": self.lrs, "avg": self._ema.avg}

    def load_state_dict(self, state: dict) -> None:
        self.losses, self.smooth_losses = list(state["losses"]), list(state["smooth_losses"])
        self.lrs = list(state["lrs"])
        self._ema = DebiasedEMA(self.beta, float(state["avg"]), len(self.losses))
