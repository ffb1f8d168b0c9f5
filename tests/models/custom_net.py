"""A user's own model, loaded as ``model.name=tests.models.custom_net:TinyNet`` in the tests."""

import math

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def make_dict(in_shape, num_classes):
    return {"not": "a module"}


def strict(in_shape, num_classes):  # takes no extra keyword arguments
    return TinyNet(in_shape, num_classes)


NOT_CALLABLE = 3
