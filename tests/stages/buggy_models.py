"""Models with the silent bugs the baselines stage must catch, loaded as user models
(``model.name=tests.stages.buggy_models:MixBatch``). Each trains without an error; only the checks tell.

All are small MLPs over the flattened input (fast on a CPU) with the output layer registered last, as the
custom-model contract asks (so ``init_final_bias`` finds it). ``Clean`` is the same network without a bug.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Clean(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Linear(math.prod(in_shape), width)
        self.head = nn.Linear(width, num_classes)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # init well: small logits at init

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MixBatch(Clean):
    """Flattens with ``reshape(D, N).t()``, a view where a permute was meant: row i of the result holds
    elements of every example of the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[0]).t()  # BUG: should be x.reshape(x.shape[0], -1)
        return self.head(torch.relu(self.body(flat)))


class BatchMeanSub(Clean):
    """Centres the hidden features with the batch mean: each prediction depends on the rest of the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h - h.mean(0, keepdim=True))  # BUG: a per-example statistic was meant


class IgnoreInput(Clean):
    """Feeds zeros instead of the input (a typo'd variable): it can only learn the class priors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(torch.zeros_like(x.flatten(1)))))  # BUG: x never used


class BigHead(Clean):
    """Output weights initialised 10x too large (default init x 10): confident, wrong logits at init."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 64, scale: float = 10.0) -> None:
        super().__init__(in_shape, num_classes, width)
        with torch.no_grad():
            self.head.weight.mul_(10 * scale)  # undo the x0.1 above, then the bug


class ClassOffset(Clean):
    """Adds 5 to the logit of class 0 after the output layer, where setting the bias from priors cannot reach."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__(in_shape, num_classes, width)
        offset = torch.zeros(num_classes)
        offset[0] = 5.0
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.offset  # BUG


class SoftmaxOut(Clean):
    """Ends in a softmax: the loss (cross-entropy, which applies log_softmax itself) then sees probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).softmax(dim=-1)  # BUG: CrossEntropyLoss wants logits


class GapCNN(nn.Module):
    """Not a bug: a plain, correct CNN of a user's own (two 3x3 convolutions, global average pooling, a linear
    head; no batch norm). Slow to memorise a batch at a small learning rate, which is no reason to fail."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_shape[0], width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))
