"""Update-to-weight ratio per layer: ||Δw|| / ||w|| for each weight tensor after a step.

Around 1e-3 is healthy; far below means the layer barely learns (lr too low), far above
means it is being thrashed (lr too high). Measured every ``every`` steps, since it needs
a copy of the weights before the step.
"""

from __future__ import annotations

import math

import torch

from recipe.train.callbacks.base import Callback


class UpdateRatio(Callback):
    """Args:
    every: measure on every this-many-th step. Default 10.
    Results: ``history`` is a list of (step, {param_name: log10 ratio}); ``latest`` the last dict;
    ``trainer.metrics["update_ratio/<name>"]`` the last log10 ratio of each weight.
    """

    order = 35

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every

    def before_fit(self) -> None:
        self.history: list[tuple[int, dict[str, float]]] = []
        self.latest: dict[str, float] = {}
        self._before: dict[str, torch.Tensor] | None = None

    def _weights(self) -> dict[str, torch.nn.Parameter]:
        # Weights (dim > 1), not biases or norm scales: those have their own, less meaningful, scales.
        return {n: p for n, p in self.trainer.model.named_parameters() if p.requires_grad and p.dim() > 1}

    def after_backward(self) -> None:
        # step + 1 is the step about to be taken
        if (self.trainer.step + 1) % self.every == 0:
            self._before = {n: p.detach().clone() for n, p in self._weights().items()}

    def after_step(self) -> None:
        if self._before is None:
            return
        ratios = {}
        for name, p in self._weights().items():
            w0 = self._before[name]
            ratio = float((p.detach() - w0).norm() / (w0.norm() + 1e-12))
            ratios[name] = math.log10(ratio) if ratio > 0 else float("-inf")
        self._before = None
        self.latest = ratios
        self.history.append((self.trainer.step, ratios))
        for name, value in ratios.items():
            self.trainer.metrics[f"update_ratio/{name}"] = value
