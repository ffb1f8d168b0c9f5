"""EMA (Polyak) weights, via torch.optim.swa_utils.AveragedModel.

Validation runs with the averaged weights (swapped in before validation, swapped back
after), so ``val/*`` metrics describe the model you would ship; at the end of fit the
averaged weights stay in the model when ``use_at_end`` is True.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from recipe.train.callbacks.base import Callback


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
        self.ema = AveragedModel(self.trainer.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
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
