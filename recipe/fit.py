"""One plain training run from a config: data, model, trainer, fit, evaluate.

This is the skeleton every stage builds on, and what ``flows train`` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch import nn

from recipe.config import RecipeConfig
from recipe.data import DataBundle, load_data
from recipe.models import build_model, init_final_bias
from recipe.train import Trainer, make_trainer, seed_everything


@dataclass
class FitResult:
    model: nn.Module
    trainer: Trainer
    data: DataBundle
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    stop_reason: str = ""
    diverged: bool = False


def build_for(cfg: RecipeConfig, data: DataBundle) -> nn.Module:
    """The config's model for ``data``, seeded, with the final bias set from the training split when asked."""
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    model = build_model(cfg.model, data.in_shape, data.num_classes)
    if cfg.model.init_bias:
        if data.task == "classification":
            counts = data.class_counts
            init_final_bias(model, class_priors=[c / sum(counts) for c in counts])
        else:
            init_final_bias(model, target_mean=data.target_mean)
    return model


def fit_config(cfg: RecipeConfig, data: DataBundle | None = None) -> FitResult:
    start = time.perf_counter()
    data = data or load_data(cfg)
    model = build_for(cfg, data)
    trainer = make_trainer(cfg, model, data)
    metrics = trainer.fit(cfg.budget.epochs)
    guard = trainer.cb("nan_guard")
    return FitResult(
        model=model, trainer=trainer, data=data, metrics=metrics, seconds=time.perf_counter() - start,
        stop_reason=trainer.stop_reason, diverged=bool(guard and guard.tripped),
    )
