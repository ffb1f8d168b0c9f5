"""What a stage receives: the StageContext.

A stage is a module exposing ``run(ctx: StageContext) -> StageResult``. It reads only the
StageResults of the stages before it (``ctx.results``), never their internals, and starts
from ``ctx.cfg``: the config the previous stage handed on. It runs inside its own MLflow
child run (started by the pipeline), so it logs with ``recipe.tracking`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recipe.config import RecipeConfig
from recipe.report import StageResult

if TYPE_CHECKING:
    from recipe.data import DataBundle, Manifest


@dataclass
class StageContext:
    cfg: RecipeConfig  # where this stage starts: the config handed on by the previous stage
    input_cfg: RecipeConfig  # the config the user gave; its hash names the recipe in MLflow
    results: dict[str, StageResult] = field(default_factory=dict)  # earlier stages, by name
    workdir: Path = field(default_factory=lambda: Path("."))  # scratch space of this flow run
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
        try:
            return self.results[stage]
        except KeyError:
            raise RuntimeError(
                f"stage result {stage!r} is not available; earlier stages: {list(self.results)}"
            ) from None
