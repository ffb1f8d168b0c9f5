"""The two supervised tasks the recipe trains, each as one object that owns every task-specific idea.

Think of scikit-learn's classifier/regressor split: code elsewhere asks the task (``task.loss(...)``,
``task.metric``, ``task.better(a, b)``, ``task.dumb_baseline(...)``) instead of branching on its name.

=================  ======================================  ========================================
idea               :class:`Classification`                 :class:`Regression`
=================  ======================================  ========================================
loss               cross-entropy of logits (nats)          mean squared error (target units²)
per-sample score   1.0 correct / 0.0 wrong                 absolute error (target units)
headline metric    ``accuracy``, higher is better          ``mae``, lower is better
dumb baseline      the train majority class                the train target mean
final-bias init    log class priors                        the train target mean
loss at init       val labels' cross-entropy under priors  val targets' variance around train mean
=================  ======================================  ========================================

Pick one with :func:`task_for` from a name ("classification" / "regression") or from anything with a
``task`` attribute (a :class:`~recipe.data.DataBundle`, a manifest).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recipe.models.init import MIN_PRIOR
from recipe.models.init import init_final_bias as _write_final_bias

Reduction = Literal["mean", "sum", "none"]


@dataclass(frozen=True)
class InitLoss:
    """The loss a correctly wired model should show before its first step, and why."""

    value: float
    formula: str  # "-log(1/10) = 2.303 nats", for the hypothesis text
    uniform: float  # classification: -log(1/C); regression: the mean squared target (outputs at 0)


class Task(ABC):
    """What differs between classification and regression; subclasses are stateless singletons."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the headline metric, reported next to the loss: "accuracy" or "mae"
    higher_is_better: ClassVar[bool]
    loss_unit: ClassVar[str]  # "nats" or "MSE"
    dumb_name: ClassVar[str]  # the dumbest predictor, in words: "majority class" / "mean target"
    dumb_key: ClassVar[str]  # its headline metric's key in :meth:`dumb_baseline`
    prior_name: ClassVar[str]  # what a model without inputs can learn: "priors" / "mean"
    bias_source: ClassVar[str]  # what the final bias is set from: "class log-priors" / "target mean"
    metric_keys: ClassVar[tuple[str, ...]]  # the keys :meth:`summarise` returns
    classifier: ClassVar[bool]  # outputs are logits over classes and targets class indices (sklearn's is_classifier)

    # --- losses and scores -------------------------------------------------------------------------------

    @abstractmethod
    def loss(self, pred: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
        """The training loss of model outputs ``pred`` (N, C) or (N, 1) / (N,) against targets ``y`` (N,).

        ``reduction`` as in torch: "mean" (a scalar, what the trainer minimises), "sum", or "none" (N,)."""

    @abstractmethod
    def scores(self, pred: Tensor, y: Tensor) -> Tensor:
        """Per-sample scores (N,), float: 1.0 / 0.0 correct (classification) or the absolute error."""

    @abstractmethod
    def batch_sums(self, pred: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Sums over a batch of the per-sample quantities behind :meth:`summarise` (for running metrics)."""

    @abstractmethod
    def summarise(self, scores: np.ndarray) -> dict[str, float]:
        """The metrics (``metric_keys``) of per-sample ``scores``; NaN when there are none."""

    @abstractmethod
    def outputs(self, pred: Tensor) -> Tensor:
        """Model outputs as a human reads them: class probabilities (softmax), or the values unchanged."""

    # --- direction ------------------------------------------------------------------------------------------

    def better(self, a: float, b: float) -> bool:
        """Whether headline-metric value ``a`` beats ``b`` (strictly)."""
        return a > b if self.higher_is_better else a < b

    def gain(self, a: float, b: float) -> float:
        """How much ``a`` beats ``b`` in the metric's units (negative when it is worse)."""
        return a - b if self.higher_is_better else b - a

    def ahead(self, value: float, margin: float) -> float:
        """``value`` moved ``margin`` in the better direction: the bar a value must beat to win by ``margin``."""
        return value + margin if self.higher_is_better else value - margin

    @property
    def beats(self) -> str:
        """ ">" or "<": how a better metric value compares, for expected-value texts."""
        return ">" if self.higher_is_better else "<"

    # --- baselines and init -------------------------------------------------------------------------------

    @abstractmethod
    def dumb_baseline(
        self, y_val: Tensor, *, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> dict[str, float]:
        """Val metrics (``baseline/...``) of the dumbest predictor fitted on the training split."""

    @abstractmethod
    def chance_margin(self, y_val: Tensor, *, target_mean: float | None = None, k: float = 2.0) -> float:
        """``k`` standard errors of the dumb baseline's val metric: by how much a model must beat it to beat it
        for real, not by a lucky example or two."""

    @abstractmethod
    def expected_init_loss(
        self, y_val: Tensor, *, init_bias: bool, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> InitLoss:
        """The val loss at init when the outputs are (about) the final bias alone.

        Source: the recipe's "verify loss @ init" and "init well" (Karpathy, "A Recipe for Training Neural
        Networks", 2019, seeds/004): with a softmax, -log(1/C) at uniform outputs; with the final bias set
        from the data, the loss that bias alone gives. This is the one formula every stage uses."""

    @abstractmethod
    def final_bias(self, data: Any) -> dict[str, Any]:
        """The keyword argument of :func:`recipe.models.init_final_bias` for ``data`` (a DataBundle)."""

    def init_final_bias(self, model: nn.Module, data: Any) -> nn.Module:
        """Set ``model``'s final bias from ``data``'s training split ("init well"); returns the model.

        Raises ValueError when the model's last nn.Linear has no bias or does not match the classes."""
        return _write_final_bias(model, **self.final_bias(data))

    def init_loss_of(self, data: Any, *, init_bias: bool = True) -> InitLoss:
        """:meth:`expected_init_loss` for a DataBundle: its val labels and training-split statistics."""
        y_val = torch.cat([y.cpu() for _, y in data.batches("val")]) if data.split_sizes.get("val") else torch.zeros(0)
        return self.expected_init_loss(
            y_val, init_bias=init_bias, class_counts=data.class_counts, target_mean=data.target_mean
        )

    def init_loss_deviation(self, observed: float, expected: float) -> float:
        """Observed minus expected loss at init, in the unit the check's tolerances use."""
        return observed - expected

    def loss_drop(self, new: float, old: float) -> float:
        """How much lower loss ``new`` is than ``old``, in the unit of :meth:`init_loss_deviation`."""
        return old - new

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Classification(Task):
    """Classification over K classes: outputs are logits (N, K), targets class indices (N,), the loss is
    cross-entropy in nats and the headline metric accuracy (0..1)."""

    name = "classification"
    metric = "accuracy"
    higher_is_better = True
    loss_unit = "nats"
    dumb_name = "majority class"
    dumb_key = "baseline/majority_accuracy"
    prior_name = "priors"
    bias_source = "class log-priors"
    metric_keys = ("accuracy",)
    classifier = True

    def loss(self, pred: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
        return F.cross_entropy(pred, y, reduction=reduction)

    def scores(self, pred: Tensor, y: Tensor) -> Tensor:
        return (pred.argmax(-1) == y).float()

    def batch_sums(self, pred: Tensor, y: Tensor) -> dict[str, Tensor]:
        return {"accuracy": (pred.argmax(dim=-1) == y).sum()}

    def summarise(self, scores: np.ndarray) -> dict[str, float]:
        return {"accuracy": float(scores.mean()) if len(scores) else math.nan}

    def outputs(self, pred: Tensor) -> Tensor:
        return pred.softmax(dim=-1)

    def dumb_baseline(
        self, y_val: Tensor, *, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> dict[str, float]:
        """Val accuracy of always predicting the training split's majority class (``class_counts`` per class),
        and that class's index: Karpathy's "input-independent baseline" (seeds/004). Raises ValueError when
        ``class_counts`` is empty."""
        majority = int(np.argmax(class_counts))
        return {
            self.dumb_key: float((y_val.long() == majority).float().mean()),
            "baseline/majority_class": float(majority),
        }

    def chance_margin(self, y_val: Tensor, *, target_mean: float | None = None, k: float = 2.0) -> float:
        """``k`` binomial standard errors of an accuracy near the majority rate of ``y_val`` (N,):
        ``k * sqrt(p (1 - p) / N)``, in accuracy units; 0 when ``y_val`` is empty."""
        n = len(y_val)
        if n == 0:
            return 0.0
        p = float(np.max(np.bincount(y_val.long().cpu().numpy()))) / n  # a majority-like rate; conservative
        return k * math.sqrt(p * (1 - p) / n)

    def expected_init_loss(
        self, y_val: Tensor, *, init_bias: bool, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> InitLoss:
        """Without the prior bias: -log(1/C), uniform predictions. With it: the cross-entropy of the val labels
        under the train priors (= the priors' entropy when val has the train proportions; = -log(1/C) for
        balanced classes), with the priors clamped exactly as :func:`recipe.models.init_final_bias` writes."""
        c = len(class_counts)
        uniform = math.log(c)
        if not init_bias:
            text = f"-log(1/{c}) = {uniform:.3f} nats (model.init_bias=false: uniform predictions)"
            return InitLoss(uniform, text, uniform)
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        priors = (counts / counts.sum()).clamp_min(MIN_PRIOR)
        log_q = priors.log() - priors.log().logsumexp(0)
        value = float(-log_q[y_val.long().cpu()].mean()) if len(y_val) else float("nan")
        entropy = float(-(priors * priors.log()).sum())
        if entropy >= uniform - 0.01:  # balanced: the prior bias is ~uniform
            text = (
                f"-log(1/{c}) = {uniform:.3f} nats (balanced classes; under the train priors the val "
                f"labels give {value:.3f})"
            )
        else:
            text = (
                f"{value:.3f} nats, the cross-entropy of the val labels under the train class priors "
                f"(bias = log priors; -log(1/{c}) = {uniform:.3f} without it)"
            )
        return InitLoss(value, text, uniform)

    def final_bias(self, data: Any) -> dict[str, Any]:
        counts = data.class_counts
        return {"class_priors": [c / sum(counts) for c in counts]}


class Regression(Task):
    """Regression on targets the pipeline standardised with the training split's mean and std (``scale`` is that
    std): the loss is the MSE the model minimises, in standardised units; scores, MAE and MSE metrics, baselines
    and chance margins are reported in the target's own units (multiplied back by ``scale``). ``scale=1``: the
    targets are the user's own (a task picked by name)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    name = "regression"
    metric = "mae"
    higher_is_better = False
    loss_unit = "MSE"
    dumb_name = "mean target"
    dumb_key = "baseline/mean_mae"
    prior_name = "mean"
    bias_source = "target mean"
    metric_keys = ("mae", "mse")
    classifier = False

    def loss(self, pred: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
        # Reshaping to the targets' shape avoids silent (N, 1) - (N,) -> (N, N) broadcasting.
        return F.mse_loss(pred.float().reshape(y.shape), y.float(), reduction=reduction)

    def scores(self, pred: Tensor, y: Tensor) -> Tensor:
        return (pred.float().reshape(y.shape) - y.float()).abs() * self.scale

    def batch_sums(self, pred: Tensor, y: Tensor) -> dict[str, Tensor]:
        err = (pred.float().reshape(y.shape) - y.float()) * self.scale
        return {"mse": (err * err).sum(), "mae": err.abs().sum()}

    def summarise(self, scores: np.ndarray) -> dict[str, float]:
        n = len(scores)
        return {"mae": float(scores.mean()) if n else math.nan, "mse": float((scores**2).mean()) if n else math.nan}

    def outputs(self, pred: Tensor) -> Tensor:
        return pred

    def dumb_baseline(
        self, y_val: Tensor, *, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> dict[str, float]:
        """Val MAE and MSE, in the target's units (squared for MSE), of always predicting the training mean
        ``target_mean`` (0 when None): Karpathy's "input-independent baseline" (seeds/004)."""
        err = (y_val.double() - float(target_mean or 0.0)) * self.scale
        return {self.dumb_key: float(err.abs().mean()), "baseline/mean_mse": float((err**2).mean())}

    def chance_margin(self, y_val: Tensor, *, target_mean: float | None = None, k: float = 2.0) -> float:
        """``k`` standard errors of the mean absolute deviation of ``y_val`` (N,) from ``target_mean``, in the
        target's units: ``k * std(|y - mean|) / sqrt(N)``; 0 when ``y_val`` is empty."""
        n = len(y_val)
        if n == 0:
            return 0.0
        dev = (y_val.double().cpu() - float(target_mean or 0.0)).abs() * self.scale
        return k * float(dev.std(correction=0)) / math.sqrt(n)

    def expected_init_loss(
        self, y_val: Tensor, *, init_bias: bool, class_counts: Sequence[int] = (), target_mean: float | None = None
    ) -> InitLoss:
        """With the bias at the train target mean: the mean squared deviation of the val targets from it (their
        variance); without it the outputs are ~0 and the loss is the mean squared target."""
        y = y_val.double().cpu()
        mean_sq = float((y**2).mean()) if len(y) else float("nan")
        if not init_bias or target_mean is None:
            text = f"{mean_sq:.4g}, the mean squared val target (model.init_bias=false: outputs ~0)"
            return InitLoss(mean_sq, text, mean_sq)
        value = float(((y - target_mean) ** 2).mean()) if len(y) else float("nan")
        text = f"{value:.4g}, the val targets' variance around the train mean {target_mean:.4g} (bias = target mean)"
        return InitLoss(value, text, mean_sq)

    def init_loss_deviation(self, observed: float, expected: float) -> float:
        """A fraction of the expected MSE: the target's scale is arbitrary."""
        if expected > 0:
            return observed / expected - 1
        return 0.0 if observed == expected else math.inf

    def loss_drop(self, new: float, old: float) -> float:
        """A fraction of ``old`` (0 when ``old`` is not positive)."""
        return (old - new) / old if old > 0 else 0.0

    def final_bias(self, data: Any) -> dict[str, Any]:
        return {"target_mean": data.target_mean}


CLASSIFICATION, REGRESSION = Classification(), Regression()
TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION)}


def task_for(name_or_bundle: str | Task | Any) -> Task:
    """The task object for a name ("classification" / "regression"), a Task, or anything with ``.task`` (a
    DataBundle with standardised regression targets gives a :class:`Regression` that reports in their units).

    Raises ValueError for another name."""
    if isinstance(name_or_bundle, Task):
        return name_or_bundle
    name = name_or_bundle if isinstance(name_or_bundle, str) else getattr(name_or_bundle, "task", name_or_bundle)
    if isinstance(name, Task):
        return name
    scale = getattr(name_or_bundle, "target_scale", None)
    if name == "regression" and scale:  # a DataBundle with standardised targets: metrics in the target's units
        return Regression(scale=scale)
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"task must be 'classification' or 'regression', got {name!r}") from None


__all__ = ["CLASSIFICATION", "REGRESSION", "TASKS", "Classification", "InitLoss", "Regression", "Task", "task_for"]
