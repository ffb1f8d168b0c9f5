"""The test split, read once: a fixed list of models scored with bootstrap intervals, and a ledger of reads.

Everything before squeeze chose on validation data; the test split is the one unbiased estimate, and only
while it is read once (Karpathy's recipe and every textbook on model selection). The stage scores a fixed list
here -- the champion, the best single network, the ensemble, the distilled student, the majority (mean) and
linear baselines and the tuned classical baseline -- and tags its run ``recipe.test_read``; a later squeeze on
the same data (fingerprint) finds that tag and says its numbers are no longer unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mlflow import MlflowClient

from recipe import tracking
from recipe.classical import Interval, bootstrap_ci, fit_classical, flat
from recipe.config import RecipeConfig
from recipe.fit import fit
from recipe.squeeze.candidates import Squeezed, ensemble_outputs
from recipe.tasks import Task

TAG_TEST_READ = "recipe.test_read"


@dataclass
class TestRow:
    """One model's test score: per-sample scores and their mean with a bootstrap interval."""

    model: str
    kind: str  # champion | single | ensemble | student | majority | linear | classical
    scores: np.ndarray
    interval: Interval
    params: int | None = None
    latency_ms: float | None = None

    def as_dict(self, metric: str) -> dict[str, Any]:
        """One row of the test-score table: value with its bootstrap interval (``low``/``high``, in ``metric``'s
        units), the number of test samples ``n``, and the parameter count and latency (median ms to predict a batch of
        ``recipe.squeeze.candidates.LATENCY_BATCH`` examples on the CPU, 3 decimals) when known."""
        row = {
            "model": self.model,
            "kind": self.kind,
            "metric": metric,
            "value": self.interval.value,
            "low": self.interval.low,
            "high": self.interval.high,
            "n": int(len(self.scores)),
        }
        if self.params is not None:
            row["params"] = self.params
        if self.latency_ms is not None:
            row["latency_ms"] = round(self.latency_ms, 3)
        return row


def previous_reads(experiment: str, fingerprint: str, current_run: str) -> list[Any]:
    """Earlier squeeze runs that read this data's test split (latest first)."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=(f"tags.`{TAG_TEST_READ}` = 'true' and tags.`{tracking.TAG_FINGERPRINT}` = '{fingerprint}'"),
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    return [r for r in runs if r.info.run_id != current_run]


def model_row(c: Squeezed, kind: str, data: Any, task: Task, n_boot: int, seed: int) -> TestRow:
    """A candidate's test row (scores of its ensembled outputs)."""
    x, y = data.tensors("test")
    scores = task.scores(ensemble_outputs(c.nets, x, task, weights=c.weights), y).double().numpy()
    return TestRow(
        f"{c.name}: {c.what}", kind, scores, bootstrap_ci(scores, n_resamples=n_boot, seed=seed), params=c.params
    )


def dumb_row(data: Any, task: Task, n_boot: int, seed: int) -> TestRow:
    """The train majority class (classification) or the train mean target (regression), on test."""
    _, y = data.tensors("test")
    if task.classifier:
        pred = torch.full((len(y), len(data.class_counts)), -1e9)
        pred[:, int(np.argmax(data.class_counts))] = 0.0
    else:
        pred = torch.full((len(y), 1), float(data.target_mean or 0.0))
    scores = task.scores(pred, y).double().numpy()
    return TestRow(task.dumb_name, "majority", scores, bootstrap_ci(scores, n_resamples=n_boot, seed=seed))


def linear_row(cfg: RecipeConfig, data: Any, task: Task, n_boot: int, seed: int) -> TestRow:
    """The linear baseline of stage 2 retrained (same settings: Adam at stages.baselines.linear_lr, about
    stages.baselines.linear_steps steps, no augmentation) and scored on test."""
    from recipe.stages.baselines.experiments import linear_config

    steps = cfg.stages.baselines.linear_steps
    steps_per_epoch = max(1, math.ceil(data.split_sizes.get("train", 1) / cfg.data.batch_size))
    lin = linear_config(cfg, data, epochs=max(5, math.ceil(steps / steps_per_epoch)))
    r = fit(lin, data, evaluate=False, log=False, validate=False)
    x, y = data.tensors("test")
    scores = task.scores(ensemble_outputs([r.model.cpu()], x, task), y).double().numpy()
    return TestRow(
        "linear baseline (stage 2's, retrained)", "linear", scores, bootstrap_ci(scores, n_resamples=n_boot, seed=seed)
    )


def classical_row(data: Any, task: Task, n_boot: int, seed: int) -> TestRow:
    """The tuned classical baseline (:mod:`recipe.classical`), fitted on train, scored on test."""
    c = fit_classical(data, seed=seed)
    x, y = flat(data, "test")
    scores = c.scores(x, y, task)
    grid = ", ".join(f"{k}={v}" for k, v in c.best_params.items())
    return TestRow(
        f"{c.name} ({grid}; {c.seconds:.1f} s)",
        "classical",
        scores,
        bootstrap_ci(scores, n_resamples=n_boot, seed=seed),
    )


def guarded(rows: list[TestRow], notes: list[str], what: str, make: Callable[[], TestRow]) -> None:
    """Append ``make()``; a baseline that cannot be computed becomes a note, not a failed stage."""
    try:
        rows.append(make())
    except Exception as e:
        notes.append(f"{what} could not be scored on test ({type(e).__name__}: {e})")
