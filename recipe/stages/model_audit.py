"""The model audit (:mod:`recipe.checks.audit`) for a stage's config: build the model and the optimiser the
trainer would, take one training batch, audit. Used where a stage first builds its model (baselines, overfit)."""

from __future__ import annotations

from recipe.checks import audit
from recipe.checks.base import Finding
from recipe.config import RecipeConfig
from recipe.data import DataBundle
from recipe.fit import build_for
from recipe.tasks import task_for
from recipe.train import build_optimizer, resolve_device, seed_everything


def audit_for(cfg: RecipeConfig, data: DataBundle) -> list[Finding]:
    """The audit's findings (``recipe.checks.audit.CHECKS``) for ``cfg``'s model on the first shuffled training
    batch (no augmentation), with the optimiser ``cfg.optim`` builds over ``model.parameters()``, as the trainer
    does. Frozen parameters are compared with builds seeded 0 and 1; with ``model.init_from`` set they count as
    loaded. A model that raises on the batch gives :func:`recipe.checks.audit.failed` (the error named)."""
    device = resolve_device(cfg.trainer.device)
    model = build_for(cfg, data).to(device)

    def rebuild(seed: int):
        if cfg.model.init_from is not None:  # the checkpoint's weights, whatever the seed
            return model
        return build_for(cfg.with_overrides({"seed": seed}), data)

    batches = data.batches("train", batch_size=cfg.data.batch_size, shuffle=True, seed=cfg.seed, device=device)
    xb, yb = next(iter(batches))
    opt = build_optimizer(cfg.optim, model.parameters())
    try:
        return audit.audit_model(model, xb, yb, task_for(data).loss, opt, rebuild=rebuild)
    except Exception as e:  # the user's model: its crash is the audit's finding, the stage goes on
        return audit.failed(f"{type(e).__name__}: {e}")
    finally:
        seed_everything(cfg.seed, cfg.trainer.deterministic)  # the audit's random ops leave no trace in what follows
