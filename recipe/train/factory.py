"""Build a Trainer from a RecipeConfig and a DataBundle: how every stage gets its trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from recipe.config import RecipeConfig
from recipe.tasks import task_for
from recipe.train.callbacks import EMA, Budget, Callback, GradClip, MixedPrecision, PreciseBN, Schedule
from recipe.train.optim import build_optimizer, training_loss
from recipe.train.trainer import Trainer
from recipe.train.utils import resolve_device

if TYPE_CHECKING:
    from recipe.data import DataBundle


def config_callbacks(cfg: RecipeConfig, device_type: str) -> list[Callback]:
    """The callbacks the config asks for: schedule and budget always; clipping, EMA, bf16, precise batch-norm
    statistics when set (PreciseBN does nothing for a model without batch norm)."""
    cbs: list[Callback] = [
        Schedule(cfg.schedule, total_steps=cfg.budget.max_steps),
        Budget(max_steps=cfg.budget.max_steps, time_limit_s=cfg.budget.time_limit_s),
    ]
    if cfg.trainer.grad_clip:
        cbs.append(GradClip(cfg.trainer.grad_clip))
    if cfg.trainer.ema_decay:
        cbs.append(EMA(cfg.trainer.ema_decay))
    if cfg.trainer.precise_bn:
        cbs.append(PreciseBN(cfg.trainer.precise_bn))
    precision = cfg.trainer.precision
    if precision == "bf16" or (precision == "auto" and device_type == "cuda"):
        cbs.append(MixedPrecision())
    return cbs


def make_trainer(
    cfg: RecipeConfig,
    model: nn.Module,
    data: DataBundle,
    *,
    cbs: Sequence[Callback] = (),
    train_split: str = "train",
    valid_split: str | None = "val",
    augment: bool | None = None,
    **trainer_kwargs: Any,
) -> Trainer:
    """A Trainer over ``data``'s splits with the optimiser, loss and callbacks ``cfg`` describes.

    ``augment`` defaults to whether ``cfg.data.augment`` lists any transform; validation is never augmented.
    """
    device = resolve_device(cfg.trainer.device)
    augment = bool(cfg.data.augment) if augment is None else augment
    # Batch size and augmentations come from ``cfg``, not from the config the data was loaded with: stages
    # try other values of both on the same loaded data.
    train = data.batches(
        train_split,
        batch_size=cfg.data.batch_size,
        shuffle=True,
        augment=list(cfg.data.augment) if augment else False,
        seed=cfg.seed,
        device=device,
    )
    valid = data.batches(valid_split, batch_size=cfg.data.eval_batch_size, device=device) if valid_split else None
    model = model.to(device)
    return Trainer(
        model,
        train,
        valid,
        loss_fn=training_loss(model, data.task),
        opt=build_optimizer(cfg.optim, model.parameters()),
        cbs=[*config_callbacks(cfg, device.type), *cbs],
        task=task_for(data),  # a regression task reports metrics in the target's units
        device=device,
        progress=cfg.trainer.progress,
        **trainer_kwargs,
    )
