"""The recipe's stages, in order. Each is a module with ``run(ctx: StageContext) -> StageResult``.

Only implemented stages are listed; the list grows as stages land.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ORDER: tuple[str, ...] = ("inspect", "baselines", "overfit", "regularize", "tune", "squeeze")

DESCRIPTIONS = {
    "inspect": "become one with the data: validate, look, fix the splits",
    "baselines": "end-to-end skeleton and dumb baselines: the checks that catch silent bugs",
    "overfit": "a model big enough to fit the training set",
    "regularize": "trade training loss for validation loss, one change at a time",
    "tune": "quasi-random search over what matters; the best kept only beyond seed noise",
    "squeeze": "ensembles, longer training, the test split once",
}


class _Stages(dict):
    """name -> stage module, imported on first use (stage modules may import heavy libraries)."""

    def __missing__(self, name: str) -> ModuleType:
        if name not in ORDER:
            raise KeyError(f"unknown stage {name!r}; stages, in order: {', '.join(ORDER)}")
        module = importlib.import_module(f"recipe.stages.{name}")
        self[name] = module
        return module


STAGES: dict[str, ModuleType] = _Stages()


def stage_names() -> list[str]:
    """The stages in the order the recipe runs them (inspect first, squeeze last)."""
    return list(ORDER)
