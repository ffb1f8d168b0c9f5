"""Stop training the moment the loss stops being a finite number.

A diverging run should end with a message that says what happened and what to try, not
with a NaN model that later stages silently evaluate. The guard cancels the fit (so
everything recorded so far is kept) and leaves the message in ``trainer.diverged`` (and
``trainer.stop_reason``); callers turn that into a FAIL verdict.
"""

from __future__ import annotations

import math

import torch

from recipe.train.callbacks.base import Callback


class NanGuard(Callback):
    order = -30  # before metrics, so a NaN never pollutes them

    def before_fit(self) -> None:
        self.tripped = False
        self.message = ""

    def after_loss(self) -> None:
        t = self.trainer
        if not t.training:
            return
        loss = t.loss.detach()
        # On the CPU a scalar read is cheaper than a tensor op; elsewhere keep it one fused check.
        finite = math.isfinite(loss.item()) if loss.device.type == "cpu" else bool(torch.isfinite(loss).all())
        if not finite:
            self.tripped = True
            self.message = (
                f"training loss became {loss.item()} at epoch {t.epoch}, step {t.step} "
                f"(learning rate {t.lr:.3g}); the run diverged. Lower optim.lr (try 10x smaller), "
                "set trainer.grad_clip, or check the inputs for NaN/inf values"
            )
            t.diverged = self.message
            t.stop(self.message)
