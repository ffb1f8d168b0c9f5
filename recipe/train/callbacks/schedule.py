"""Learning-rate schedules, wrapping torch.optim.lr_scheduler (LambdaLR where torch has none).

Every schedule but ``plateau`` steps once per optimiser step, with its length measured in
steps: an epoch-based decay silently depends on the dataset size (the recipe's warning
about ImageNet's "decay at epoch 30"), so epoch settings are converted to steps here, once.
``plateau`` steps after each validation on ``val/loss`` (``train/loss`` without validation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from recipe.config import ScheduleConfig
from recipe.train.cadence import EpochGroups
from recipe.train.callbacks.base import Callback

SCHEDULES = ("constant", "step", "cosine", "linear", "inverse_sqrt", "one_cycle", "cosine_restarts", "plateau")


def build_scheduler(
    cfg: ScheduleConfig, opt: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
) -> sched.LRScheduler | sched.ReduceLROnPlateau:
    """The torch scheduler for ``cfg``; lengths in optimiser steps."""
    total = max(1, total_steps)
    spe = max(1, steps_per_epoch)
    base_lr = opt.param_groups[0]["lr"]
    if cfg.name == "constant":
        return sched.LambdaLR(opt, lambda _: 1.0)
    if cfg.name == "step":
        return sched.StepLR(opt, step_size=cfg.step_epochs * spe, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=total, eta_min=base_lr * cfg.min_lr_ratio)
    if cfg.name == "linear":
        return sched.LinearLR(opt, start_factor=1.0, end_factor=cfg.min_lr_ratio, total_iters=total)
    if cfg.name == "inverse_sqrt":
        warm = max(1, cfg.warmup_steps)
        return sched.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else math.sqrt(warm / (s + 1)))
    if cfg.name == "one_cycle":
        return sched.OneCycleLR(opt, max_lr=base_lr * cfg.max_lr_mult, total_steps=total, pct_start=cfg.pct_start)
    if cfg.name == "cosine_restarts":
        return sched.CosineAnnealingWarmRestarts(
            opt, T_0=cfg.restart_epochs * spe, T_mult=cfg.restart_mult, eta_min=base_lr * cfg.min_lr_ratio
        )
    if cfg.name == "plateau":
        return sched.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    raise ValueError(f"unknown schedule {cfg.name!r}; schedules are: {', '.join(SCHEDULES)}")


class Schedule(Callback):
    """Drive ``trainer.opt``'s learning rate by ``cfg`` over the fit.

    Args:
        cfg: the schedule section of the config (default: constant).
        total_steps: the schedule's length in steps; default ``n_epochs * len(train_data)``, or ``max_steps``.
    """

    order = 10

    def __init__(self, cfg: ScheduleConfig | None = None, total_steps: int | None = None) -> None:
        self.cfg = cfg or ScheduleConfig()
        self.total_steps = total_steps
        self.scheduler: Any = None
        self._per_step = self.cfg.name != "plateau"

    def before_fit(self) -> None:
        t = self.trainer
        data = t.train_data
        # EpochGroups (several data epochs per trainer epoch): the schedule counts data epochs and real steps
        spe = len(data.batches) if isinstance(data, EpochGroups) else len(data)
        total = self.total_steps or (data.total_steps if isinstance(data, EpochGroups) else t.n_epochs * spe)
        for group in t.opt.param_groups:  # a second fit must start from the base lr, not the decayed one
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"]
        self.scheduler = build_scheduler(self.cfg, t.opt, total, spe)
        self._per_step = self.cfg.name != "plateau"

    def after_step(self) -> None:
        if self._per_step:
            self.scheduler.step()

    def after_validate(self) -> None:
        if not self._per_step:
            self.scheduler.step(self.trainer.metrics["val/loss"])

    def after_train(self) -> None:
        if not self._per_step and self.trainer.valid_data is None:
            self.scheduler.step(self.trainer.metrics["train/loss"])

    def state_dict(self) -> dict:
        # LambdaLR saves its lambdas as None: they are rebuilt from the config in before_fit.
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
