"""Stop training as soon as the loss stops being a finite number.

A diverging run should end with a message that says what happened and what to try, not
with a NaN model that later stages silently evaluate. The guard cancels the fit (so
everything recorded so far is kept) and leaves the message in ``trainer.diverged`` (and
``trainer.stop_reason``); callers turn that into a FAIL verdict.

On the CPU every training step is checked at once (reading a CPU scalar is cheaper than any tensor
op). On an accelerator, reading the loss every step would make the host wait for the device every
step, so the detached losses are kept on the device and checked together every ``every`` steps
(default 16) and at the end of each training phase: one host synchronisation per ``every`` steps,
and a diverged run stops at most ``every - 1`` steps late, naming the first step whose loss was not
finite.
"""

from __future__ import annotations

import math

import torch

from recipe.train.callbacks.base import Callback


class NanGuard(Callback):
    """Stops the fit with a message in ``trainer.diverged`` when a training loss is NaN or inf, so a diverged
    run ends with advice instead of a NaN model. On an accelerator losses are checked every ``every`` steps.

    Raises ValueError when ``every`` < 1."""

    order = -30  # before metrics, so a NaN never pollutes them

    def __init__(self, every: int = 16) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.every = every

    def before_fit(self) -> None:
        self.tripped = False
        self.message = ""
        self._pending: list[tuple[int, int, torch.Tensor]] = []  # (epoch, step, loss) not checked yet

    def after_loss(self) -> None:
        t = self.trainer
        if not t.training:
            return
        loss = t.loss.detach()
        if loss.device.type == "cpu":
            value = loss.item()
            if not math.isfinite(value):
                self._trip(value, t.epoch, t.step)
            return
        self._pending.append((t.epoch, t.step, loss))
        if len(self._pending) >= self.every:
            self._check()

    def after_train(self) -> None:
        self._check()

    def _check(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        losses = torch.stack([loss.float().reshape(()) for _, _, loss in pending])
        finite = torch.isfinite(losses).tolist()  # the one host synchronisation
        if all(finite):
            return
        i = finite.index(False)
        epoch, step, _ = pending[i]
        self._trip(float(losses[i]), epoch, step)

    def _trip(self, value: float, epoch: int, step: int) -> None:
        t = self.trainer
        self.tripped = True
        self.message = (
            f"training loss became {value} at epoch {epoch}, step {step} "
            f"(learning rate {t.lr:.3g}); the run diverged. Lower optim.lr (try 10x smaller), "
            "set trainer.grad_clip, or check the inputs for NaN/inf values"
        )
        t.diverged = self.message
        t.stop(self.message)
