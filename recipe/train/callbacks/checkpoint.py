"""Save checkpoints during fit: the latest every ``every`` epochs, and the best by a metric.

A checkpoint holds everything ``Trainer.fit(resume_from=...)`` needs to continue exactly
(see ``recipe.train.checkpoint``).
"""

from __future__ import annotations

from pathlib import Path

from recipe.train.callbacks.base import Callback
from recipe.train.checkpoint import save_checkpoint


class Checkpoint(Callback):
    """Args:
    directory: where to write ``last.pt`` and ``best.pt``.
    every: write ``last.pt`` every this many epochs (and at the last epoch). Default 1.
    monitor: metric for ``best.pt`` (None: no best). Default "val/loss".
    mode: "min" or "max". Default "min".
    config: a JSON-able dict saved in every checkpoint (the run's whole config). Default None.
    Results: ``last_path``, ``best_path``, ``best``.
    """

    order = 60  # after metrics, schedules and early stopping have updated their state for the epoch

    def __init__(
        self,
        directory: str | Path,
        every: int = 1,
        monitor: str | None = "val/loss",
        mode: str = "min",
        config: dict | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory, self.every, self.monitor, self.mode = Path(directory), every, monitor, mode
        self.config = config

    def before_fit(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.last_path: Path | None = None
        self.best_path: Path | None = None
        self.best: float | None = None

    def after_epoch(self) -> None:
        t = self.trainer
        value = t.metrics.get(self.monitor) if self.monitor else None
        improved = value is not None and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        )
        if improved:
            self.best = float(value)  # before saving, so the saved state knows this epoch was the best
        if (t.epoch + 1) % self.every == 0 or t.epoch + 1 == t.n_epochs:
            self.last_path = save_checkpoint(t, self.directory / "last.pt", config=self.config)
        if improved:
            self.best_path = save_checkpoint(t, self.directory / "best.pt", config=self.config)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
