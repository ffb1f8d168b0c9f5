"""Optimisers and losses from the config: torch's own, nothing re-implemented."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from recipe.config import OptimConfig


def build_optimizer(cfg: OptimConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam, AdamW (decoupled weight decay) or RMSprop, per ``cfg``."""
    params = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps,
                                   weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimiser {cfg.name!r}; use sgd, adam, adamw or rmsprop")


class RegressionMSE(nn.Module):
    """MSE between a (N, 1) output and (N,) targets: squeezing here avoids silent (N, N) broadcasting."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(pred.float().reshape(target.shape), target.float())


def loss_for_task(task: str) -> nn.Module:
    if task == "classification":
        return nn.CrossEntropyLoss()
    if task == "regression":
        return RegressionMSE()
    raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
