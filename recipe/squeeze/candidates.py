"""Squeeze's candidates: one or more trained networks scored as one model on a split.

A candidate's output on a sample is the ensemble of its networks: for classification the log of the mean of
the members' softmax probabilities (so the task's cross-entropy of it is the ensemble's log loss), for
regression the mean prediction; a weighted ensemble (:mod:`recipe.squeeze.weighted`) takes the weighted mean
instead. One network is a one-member ensemble. Scores and per-sample losses come from
the task object, so the paired noise rule of :mod:`recipe.checks.ablation` compares any two candidates.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recipe.checks.ablation import CandidateResult
from recipe.config import RecipeConfig
from recipe.tasks import Task

LATENCY_BATCH = 256  # examples per timed forward pass
LATENCY_REPEATS = 5


@dataclass
class Squeezed:
    """A candidate: its networks (eval mode, CPU) with their configs, how it was made, and its val scores."""

    name: str  # "reference", "ensemble", "swa", ...
    what: str  # in words, for the report and the card
    nets: list[nn.Module]
    cfgs: list[RecipeConfig]
    result: CandidateResult = field(default_factory=lambda: CandidateResult("", ""))
    run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    weights: list[float] | None = None  # one per network (a weighted ensemble); None: a plain average

    @property
    def n_nets(self) -> int:
        return len(self.nets)

    @property
    def params(self) -> int:
        return sum(p.numel() for net in self.nets for p in net.parameters())

    @property
    def cost(self) -> tuple[int, int]:
        """Inference cost, for preferring the cheaper of two candidates: (networks, parameters)."""
        return self.n_nets, self.params


@torch.no_grad()
def ensemble_outputs(
    nets: list[nn.Module], x: Tensor, task: Task, batch_size: int = 512, weights: list[float] | None = None
) -> Tensor:
    """(N, K) log mean probabilities (classification) or (N, 1) mean predictions of ``nets`` on inputs ``x``;
    with ``weights`` (one per net, normalised here) the weighted mean. Raises ValueError when ``weights`` does
    not have one non-negative entry per net, with a positive sum."""
    if weights is None:
        w = torch.full((len(nets),), 1.0 / max(1, len(nets)))
    else:
        if len(weights) != len(nets) or min(weights, default=0.0) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"ensemble weights must be {len(nets)} non-negative numbers with a positive sum, got {weights}"
            )
        w = torch.tensor(weights, dtype=torch.float32) / float(sum(weights))
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        per = [net.eval()(xb).float() for net in nets]
        if task.classifier:
            probs = torch.stack([p.softmax(-1) for p in per])
            outs.append(torch.einsum("m,mnk->nk", w, probs).clamp_min(1e-12).log())
        else:
            outs.append(torch.einsum("m,mnk->nk", w, torch.stack([p.reshape(len(xb), -1) for p in per])))
    return torch.cat(outs) if outs else torch.zeros((0, 1))


def score(
    name: str,
    group: str,
    outputs: Tensor,
    y: Tensor,
    task: Task,
    *,
    train: tuple[Tensor, Tensor] | None = None,
    **extra: Any,
) -> CandidateResult:
    """A :class:`CandidateResult` from ``outputs`` on the val split (targets ``y``); ``train`` = (outputs,
    targets) on the training split adds the train-side numbers."""
    scores = task.scores(outputs, y).double().numpy()
    losses = task.loss(outputs, y, reduction="none").double().numpy()
    result = CandidateResult(
        name,
        group,
        val_metric=task.summarise(scores)[task.metric],
        val_loss=float(losses.mean()),
        scores=scores,
        loss_scores=losses,
        **extra,
    )
    if train is not None:
        out_t, y_t = train
        t_scores = task.scores(out_t, y_t).double().numpy()
        result.train_metric = task.summarise(t_scores)[task.metric]
        result.train_loss = float(task.loss(out_t, y_t).item())
    return result


def evaluate(c: Squeezed, data: Any, task: Task, split: str = "val") -> np.ndarray:
    """Score ``c`` on ``split`` of ``data`` (a DataBundle), store it as ``c.result`` (val) and return the outputs."""
    x, y = data.tensors(split)
    out = ensemble_outputs(c.nets, x, task, weights=c.weights)
    if split == "val":
        xt, yt = data.tensors("train")
        train = (ensemble_outputs(c.nets, xt, task, weights=c.weights), yt)
        c.result = score(c.name, c.name, out, y, task, train=train, run_id=c.run_id)
    return out.numpy()


def latency_ms(nets: list[nn.Module], x: Tensor, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall-clock milliseconds to predict ``LATENCY_BATCH`` examples of ``x`` with every net (CPU)."""
    xb = x[:LATENCY_BATCH]
    times = []
    with torch.no_grad():
        for net in nets:
            net.eval()(xb)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for net in nets:
                net(xb)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
