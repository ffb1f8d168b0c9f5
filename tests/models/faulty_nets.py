"""Models with the faults the model audit names (issue 18, item 6), loaded as user models
(``model.name=tests.models.faulty_nets:FunctionalDropout``). Each builds and trains without an error.

Rebuilt from public reports: functional dropout left on in eval (``F.dropout(h, 0.5)`` without
``training=self.training``), a conv body frozen by mistake at its random init. The rest are the same kinds of
fault in other shapes (noise left on, a cut graph, a layer never called, batch norm kept in eval mode), and two
controls that must raise nothing: a body frozen with loaded (seed-independent) weights, and the plain network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """The control: a plain MLP over the flattened input, output layer registered last."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Linear(math.prod(in_shape), width)
        self.head = nn.Linear(width, num_classes)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # small logits at init

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FunctionalDropout(Mlp):
    """``F.dropout(h, 0.5)``: the functional form defaults to training=True, so it drops units in eval too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(self.features(x), 0.5))  # BUG: training=self.training is missing


class EvalNoise(Mlp):
    """Gaussian noise on the hidden units, added whatever the mode (meant as a training-only regulariser)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h + 0.5 * torch.randn_like(h))  # BUG: not under `if self.training:`


class ConvNet(nn.Module):
    """A small conv body (two 3x3 convolutions, global average pooling) and a linear head."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_shape[0], width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FrozenBody(ConvNet):
    """The conv body frozen by mistake (a fine-tuning recipe's freezing loop, with no trained weights loaded):
    its random filters never train, only the head does."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__(in_shape, num_classes, width)
        for p in self.body.parameters():
            p.requires_grad = False  # BUG: nothing was loaded into the body


class LoadedFrozenBody(ConvNet):
    """The control for FrozenBody: the body's weights come from a fixed source (as a trained checkpoint would:
    the same whatever the seed), then are frozen on purpose to fine-tune the head."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__(in_shape, num_classes, width)
        g = torch.Generator().manual_seed(1234)  # stands in for torch.load of trained weights
        with torch.no_grad():
            for p in self.body.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
                p.requires_grad = False


class DetachedBody(ConvNet):
    """The body's output is detached before the head: the body runs, but no gradient reaches it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).detach())  # BUG


class UnusedLayer(Mlp):
    """A layer built in __init__ and never called in forward."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__(in_shape, num_classes, width)
        self.extra = nn.Linear(width, width)  # BUG: forgotten in forward
        self.head = self.head  # keep the output layer registered last


class EvalBatchNorm(nn.Module):
    """A CNN whose train() override keeps its batch norm in eval mode (a "freeze BN" trick copied from a
    fine-tuning recipe): the layer normalises with its running statistics while the model trains."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_shape[0], width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.bn.eval()  # BUG
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
