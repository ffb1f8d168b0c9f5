"""The capacity ladder: ``grow(cfg)`` is the next, bigger model to try when the current one cannot
overfit -- one change per rung ("complexify only one thing at a time").

The rule (a pure function of the config, so ``grow(cfg, 2) == grow(grow(cfg))``):

* ``linear`` -> ``mlp`` with the config's width and depth (the first step beyond the baseline).
* ``resnet18`` -> ``resnet34``; ``resnet34`` is the top of the ladder (an error).
* Models sized by width and depth (``mlp``, ``cnn``, ``resnet``, and registered models of your own):
  double ``width`` while ``width < 16 * 2**depth``, otherwise add one to ``depth``. Once the two are
  in balance the rungs alternate: (64, 2) -> (64, 3) -> (128, 3) -> (128, 4) -> ...; a config off
  balance first moves towards it: (16, 2) -> (32, 2) -> (64, 2).
* ``package.module:callable``: the same rule on integer ``width`` / ``depth`` entries of ``model.kwargs``
  (whichever exist); with neither there is no knob to turn, which is an error.
"""

from __future__ import annotations

from typing import Any

from recipe.config import ModelConfig
from recipe.models.registry import ModelConfigError

BALANCE = 16  # width per 2**depth at which the ladder switches from widening to deepening
NEXT_MODEL = {"linear": "mlp", "resnet18": "resnet34"}
TOP_OF_LADDER = {"resnet34"}


def grow(cfg: ModelConfig, step: int = 1) -> ModelConfig:
    """The config ``step`` rungs up the capacity ladder from ``cfg`` (see the module docstring)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    for _ in range(step):
        cfg = _next_rung(cfg)
    return cfg


def _next_rung(cfg: ModelConfig) -> ModelConfig:
    if cfg.name in NEXT_MODEL:
        return cfg.model_copy(update={"name": NEXT_MODEL[cfg.name]}, deep=True)
    if cfg.name in TOP_OF_LADDER:
        raise ModelConfigError(
            f"model.name={cfg.name!r} is the top of the capacity ladder; to go bigger, pick a model sized by "
            "width and depth (resnet) or your own package.module:callable"
        )
    if ":" in cfg.name:
        kwargs = dict(cfg.kwargs)
        knobs = {k: kwargs[k] for k in ("width", "depth") if isinstance(kwargs.get(k), int)}
        if not knobs:
            raise ModelConfigError(
                f"cannot grow model.name={cfg.name!r}: give it integer model.kwargs.width and/or model.kwargs.depth "
                "for the ladder to turn (a custom callable only receives model.kwargs, not model.width/depth)"
            )
        kwargs.update(_bigger(knobs.get("width"), knobs.get("depth")))
        return cfg.model_copy(update={"kwargs": kwargs}, deep=True)
    return cfg.model_copy(update=_bigger(cfg.width, cfg.depth), deep=True)


def _bigger(width: int | None, depth: int | None) -> dict[str, Any]:
    if depth is None or (width is not None and width < BALANCE * 2**depth):
        return {"width": width * 2}
    return {"depth": depth + 1}
