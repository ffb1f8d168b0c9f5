"""EMA (Polyak) weights, via torch.optim.swa_utils.AveragedModel.

Validation runs with the averaged weights (swapped in before validation, swapped back
after), so ``val/*`` metrics describe the model you would ship; at the end of fit the
averaged weights stay in the model when ``use_at_end`` is True. The decay warms up (:func:`warmup_ema`).
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from recipe.train.callbacks.base import Callback


def warmup_ema(decay: float):
    """An ``AveragedModel`` ``multi_avg_fn``: the EMA of the weights with decay ``min(decay, (1 + n) / (10 + n))`` at
    its n-th update (n >= 1; the first copies the weights), so a short run's average follows its recent weights
    rather than its first ones. At decay 0.99 a 70-step run (squeeze at a small budget.minutes) kept ~half the
    weight on its first steps, and the EMA model scored 52% val accuracy on digits against the run's 95% (a new
    user's trial). The warm-up is TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule, also timm's
    ``ModelEmaV3`` warm-up; from n ~ 900 on (decay 0.99) it is the plain EMA."""

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - d)  # as torch's get_ema_multi_avg_fn
        else:
            for a, b in zip(ema, current, strict=True):
                a.copy_(a * d + b * (1.0 - d))

    return update


class EMA(Callback):
    """Args:
    decay: weight of the running average per step, e.g. 0.999. Required.
    use_at_end: leave the averaged weights in the model after fit. Default True.
    """

    order = 25

    def __init__(self, decay: float, use_at_end: bool = True) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay, self.use_at_end = decay, use_at_end

    def before_fit(self) -> None:
        # use_buffers: batch-norm statistics are averaged too, so the EMA model is self-consistent.
        self.ema = AveragedModel(self.trainer.model, multi_avg_fn=warmup_ema(self.decay), use_buffers=True)
        self._backup: list[torch.Tensor] | None = None

    def after_step(self) -> None:
        self.ema.update_parameters(self.trainer.model)

    def _tensors(self, model: torch.nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

    def _swap_in(self) -> None:
        live = self._tensors(self.trainer.model)
        self._backup = [t.detach().clone() for t in live]
        with torch.no_grad():
            for dst, src in zip(live, self._tensors(self.ema.module), strict=True):
                dst.copy_(src)

    def _swap_out(self) -> None:
        if self._backup is None:
            return
        with torch.no_grad():
            for dst, src in zip(self._tensors(self.trainer.model), self._backup, strict=True):
                dst.copy_(src)
        self._backup = None

    def before_validate(self) -> None:
        if self.ema.n_averaged.item() > 0:
            self._swap_in()

    def after_validate(self) -> None:
        self._swap_out()

    def after_fit(self) -> None:
        self._swap_out()
        if self.use_at_end and self.ema.n_averaged.item() > 0:
            self._swap_in()
            self._backup = None

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
