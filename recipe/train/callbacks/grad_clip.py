"""Clip the global gradient norm (not the loss: clipping the loss silently ignores outliers)."""

from __future__ import annotations

import torch

from recipe.train.callbacks.base import Callback


class GradClip(Callback):
    """Args:
    max_norm: the largest allowed global L2 norm of the gradients.
    The norm before clipping is left in ``trainer.grad_norm`` (a tensor) for other callbacks.
    """

    order = 20

    def __init__(self, max_norm: float) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm = max_norm

    def after_backward(self) -> None:
        self.trainer.grad_norm = torch.nn.utils.clip_grad_norm_(self.trainer.model.parameters(), self.max_norm)
