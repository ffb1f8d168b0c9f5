"""What a stage receives: the StageContext.

A stage is a module exposing ``run(ctx: StageContext) -> StageResult``. It reads only the
StageResults of the stages before it (``ctx.results``), never their internals, and starts
from ``ctx.cfg``: the config the previous stage handed on. It runs inside its own MLflow
child run (started by the pipeline), so it logs with ``recipe.tracking`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recipe.config import RecipeConfig
from recipe.report import StageResult

if TYPE_CHECKING:
    from recipe.data import DataBundle, Manifest

TrialMap = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


def map_in_process(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """The default trial map: ``[fn(x) for x in items]``, one after another in this process."""
    return [fn(x) for x in items]


@dataclass
class StageContext:
    """What a stage's ``run`` gets: where it starts, the earlier stages' results, its scratch folder, how to run
    independent trials, and the data (loaded once per flow run, on first use)."""

    cfg: RecipeConfig  # where this stage starts: the config handed on by the previous stage
    input_cfg: RecipeConfig  # the config the user gave; its hash names the recipe in MLflow
    results: dict[str, StageResult] = field(default_factory=dict)  # earlier stages, by name
    workdir: Path = field(default_factory=lambda: Path("."))  # scratch space of this flow run
    # How to run independent trials: map(fn, items) -> results in order. ``fn`` is a picklable module-level
    # function and the items small picklable specs, so a flow can run them as Prefect tasks on a process pool
    # or a Dask cluster (flows/trials.py); the default runs them here, one after another.
    map: TrialMap = field(default=map_in_process, repr=False)
    # --fresh: the user asked to recompute everything, so stored work (a tune study's finished trials) is not resumed
    fresh: bool = False
    # A budgeted run (budget.minutes): the wall-clock time (time.time(), seconds) by which the stage's training
    # runs should be done (its share of the budget, recipe.budget); a stage that can stop early (tune's search)
    # starts no run it expects to end past it. None: no deadline (epoch-sized runs, --plan replays).
    deadline: float | None = None
    # With a deadline: seconds of the stage's own work outside its training runs still to come after them
    # (recipe.budget.fixed_work: squeeze's scoring, test table and registry), which its runs must leave time for.
    fixed_s: float = 0.0
    _manifest: Manifest | None = field(default=None, repr=False)
    _data: DataBundle | None = field(default=None, repr=False)

    def manifest(self) -> Manifest:
        """The tolerant manifest (bad samples are rows, not errors), built once per flow run."""
        if self._manifest is None:
            from recipe.data import build_manifest

            self._manifest = build_manifest(self.cfg)
        return self._manifest

    def data(self) -> DataBundle:
        """The strict, trainable data, loaded once per flow run."""
        if self._data is None:
            from recipe.data import load_data

            self._data = load_data(self.cfg)
            self._manifest = self._data.manifest
        return self._data

    def previous(self, stage: str) -> StageResult:
        """The result of the earlier ``stage``; raises RuntimeError (naming those there are) when it did not run."""
        try:
            return self.results[stage]
        except KeyError:
            raise RuntimeError(
                f"stage result {stage!r} is not available; earlier stages: {list(self.results)}"
            ) from None
