"""A tiny synthetic learner: a few hundred 2-class points, a small MLP with dropout, seconds to train."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recipe.config import OptimConfig
from recipe.data.batching import InMemoryBatcher
from recipe.train import Trainer, build_optimizer, loss_for_task, seed_everything


def make_data(n: int = 256, seed: int = 0, task: str = "classification"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    if task == "classification":
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    else:
        y = 2.0 * x[:, 0] - x[:, 1] + 0.1 * torch.randn(n, generator=g)
    return x, y


def make_trainer(
    cbs=(),
    *,
    seed: int = 0,
    epochs_data_seed: int = 0,
    lr: float = 1e-2,
    task: str = "classification",
    dropout: float = 0.1,
    batch_size: int = 32,
    loss_fn=None,
    defaults: bool = True,
    opt: str = "adam",
) -> Trainer:
    seed_everything(seed)
    x, y = make_data(task=task, seed=epochs_data_seed)
    out = 2 if task == "classification" else 1
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, out))
    train = InMemoryBatcher(x[:192], y[:192], batch_size, shuffle=True, seed=seed)
    valid = InMemoryBatcher(x[192:], y[192:], 64)
    return Trainer(
        model,
        train,
        valid,
        loss_fn=loss_fn or loss_for_task(task),
        opt=build_optimizer(OptimConfig(name=opt, lr=lr), model.parameters()),
        cbs=list(cbs),
        task=task,
        device="cpu",
        defaults=defaults,
        progress=False,
    )


@pytest.fixture
def trainer_factory():
    return make_trainer
