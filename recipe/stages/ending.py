"""How every stage ends: one StageResult builder, one checkpoint publisher, one guarded figure logger.

- :func:`finish` reads the findings together (:func:`recipe.diagnosis.diagnose`: the confirmed cause leads, the
  checks it explains are marked as its consequences, the learning-rate advice gets one direction), merges the
  findings' metrics into the stage's, takes the verdict as the worst of the gated checks (all checks when the stage
  names no gates) and builds the :class:`~recipe.report.StageResult`.
- :func:`publish_checkpoint` copies the weights a stage hands on into its work folder and logs them as the
  ``checkpoint/<name>`` artifact of the active MLflow run.
- :class:`Figures` draws and logs figures; a plotting error becomes a note (traceback in ``plots/errors.txt``),
  never a failed stage: the figures illustrate the checks, they do not decide them.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from recipe import tracking
from recipe.checks.base import Finding
from recipe.config import RecipeConfig
from recipe.diagnosis import LossTrend, diagnose
from recipe.report import StageResult, Verdict


def finish(
    stage: str,
    findings: Sequence[Finding],
    config: RecipeConfig,
    *,
    gates: Iterable[str] | None = None,
    metrics: dict[str, float] | None = None,
    notes: Sequence[str] = (),
    artifacts: dict[str, str] | None = None,
    checkpoint_uri: str | None = None,
    trend: LossTrend | None = None,
) -> StageResult:
    """The stage's result: its checks in ``findings`` order after :func:`recipe.diagnosis.diagnose` (``trend``: the
    stage's training-loss trend, which decides the learning rate's direction when its checks disagree; the
    diagnosis's one-line summary leads the notes), ``metrics`` updated with every finding's metrics (a finding's
    value wins over the same key in ``metrics``), the verdict the worst of the checks named in ``gates`` (every
    check when None; PASS when no gated check is present), handing on ``config``."""
    findings, diagnosis = diagnose(findings, trend=trend)
    if diagnosis:
        notes = [diagnosis.sentence(), *notes]
    merged = dict(metrics or {})
    for f in findings:
        merged.update(f.metrics)
    checks = [f.check for f in findings]
    gated = [c.verdict for c in checks if gates is None or c.name in set(gates)]
    return StageResult(
        stage,
        Verdict.worst(gated),
        checks,
        merged,
        config,
        notes=list(notes),
        artifacts=dict(artifacts or {}),
        checkpoint_uri=checkpoint_uri,
        diagnosis=diagnosis.to_dict() if diagnosis else None,
    )


def publish_checkpoint(weights: Path, workdir: Path, name: str) -> tuple[Path, str]:
    """Copy ``weights`` to ``workdir / name`` and log it as ``checkpoint/<name>`` in the active MLflow run;
    returns (the local copy, its artifact URI). Raises OSError when the file cannot be copied."""
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / name
    if Path(weights).resolve() != local.resolve():
        shutil.copyfile(weights, local)
    tracking.log_artifact(local, "checkpoint")
    return local, tracking.artifact_uri(f"checkpoint/{name}")


class Figures:
    """Draw and log figures for one stage; ``notes`` collects the ones that could not be drawn.

    ``enabled=False`` draws nothing (e.g. ``stages.baselines.plots=false``)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.notes: list[str] = []
        self._errors: list[str] = []

    def log(self, path: str, make: Callable[[], Any]) -> None:
        """Log the figure ``make()`` returns as ``path`` (None: nothing to draw). An exception from ``make``
        or from logging becomes a note and its traceback goes to ``plots/errors.txt`` (see :meth:`close`)."""
        if not self.enabled:
            return
        try:
            fig = make()
            if fig is not None:
                tracking.log_figure(fig, path)
        except Exception as e:
            self.notes.append(f"{path} could not be drawn ({type(e).__name__}: {e}); see plots/errors.txt")
            self._errors.append(f"{path}\n{traceback.format_exc()}")

    def close(self) -> list[str]:
        """Log the collected tracebacks (if any) as ``plots/errors.txt``; returns the notes."""
        if self._errors:
            tracking.log_text("\n".join(self._errors), "plots/errors.txt")
            self._errors = []
        return self.notes


__all__ = ["Figures", "finish", "publish_checkpoint"]
