"""The task objects own every task-specific idea: loss, scores, metric direction, baselines, init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recipe.tasks import CLASSIFICATION, REGRESSION, Classification, Regression, task_for


def test_task_for_names_bundles_and_tasks():
    class Bundle:
        task = "regression"

    assert isinstance(task_for("classification"), Classification)
    assert task_for(Bundle()) is REGRESSION and task_for(REGRESSION) is REGRESSION
    with pytest.raises(ValueError, match="task must be 'classification' or 'regression', got 'ranking'"):
        task_for("ranking")


def test_losses_reduce_like_torch_and_regression_never_broadcasts():
    pred, y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    per = CLASSIFICATION.loss(pred, y, reduction="none")
    assert per.shape == (3,) and torch.allclose(per.mean(), CLASSIFICATION.loss(pred, y))
    assert torch.allclose(per, nn.functional.cross_entropy(pred, y, reduction="none"))
    out, t = torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 4.0])  # (N, 1) against (N,): no (N, N) loss
    assert REGRESSION.loss(out, t, reduction="none").tolist() == [1.0, 4.0]
    assert float(REGRESSION.loss(out, t)) == 2.5


def test_scores_metrics_and_direction():
    pred, y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    assert CLASSIFICATION.scores(pred, y).tolist() == [1.0, 1.0, 0.0]
    assert CLASSIFICATION.summarise(np.array([1.0, 0.0])) == {"accuracy": 0.5}
    assert REGRESSION.summarise(np.array([1.0, 3.0])) == {"mae": 2.0, "mse": 5.0}
    assert math.isnan(REGRESSION.summarise(np.zeros(0))["mae"])
    assert CLASSIFICATION.better(0.9, 0.8) and not REGRESSION.better(0.9, 0.8)
    assert CLASSIFICATION.ahead(0.5, 0.1) == pytest.approx(0.6) and REGRESSION.ahead(0.5, 0.1) == pytest.approx(0.4)
    assert REGRESSION.gain(1.0, 3.0) == 2.0 and CLASSIFICATION.gain(1.0, 3.0) == -2.0


def test_expected_init_loss_balanced_classes_is_log_c():
    y = torch.arange(10).repeat(5)
    e = CLASSIFICATION.expected_init_loss(y, init_bias=True, class_counts=[7] * 10)
    assert e.value == pytest.approx(math.log(10)) and e.uniform == pytest.approx(math.log(10))
    assert "-log(1/10) = 2.303 nats" in e.formula


def test_expected_init_loss_with_prior_bias_is_the_cross_entropy_under_the_priors():
    counts = [70, 20, 10]
    y = torch.tensor([0] * 7 + [1] * 2 + [2])  # val in the train proportions: the priors' entropy
    e = CLASSIFICATION.expected_init_loss(y, init_bias=True, class_counts=counts)
    p = np.array(counts) / 100
    assert e.value == pytest.approx(-(p * np.log(p)).sum(), abs=1e-6)
    assert "cross-entropy of the val labels under the train class priors" in e.formula
    # without the prior bias, predictions are uniform: -log(1/3)
    assert CLASSIFICATION.expected_init_loss(y, init_bias=False, class_counts=counts).value == pytest.approx(
        math.log(3)
    )


def test_expected_init_loss_regression_is_the_variance_around_the_train_mean():
    y = torch.tensor([1.0, 3.0, 5.0, 7.0])
    e = REGRESSION.expected_init_loss(y, init_bias=True, target_mean=4.0)
    assert e.value == pytest.approx(5.0)  # mean of (-3, -1, 1, 3)^2
    assert REGRESSION.expected_init_loss(y, init_bias=False, target_mean=4.0).value == pytest.approx(21.0)


def test_a_model_with_the_final_bias_from_the_data_starts_at_the_expected_loss():
    """The formula and the init agree: a zero-weight final layer with init_final_bias gives exactly the expected
    loss on the val labels (classification: the priors' cross-entropy; regression: the variance)."""

    class Data:
        class_counts, target_mean = [60, 30, 10], 2.0

    model = nn.Sequential(nn.Linear(4, 3))
    nn.init.zeros_(model[0].weight)
    CLASSIFICATION.init_final_bias(model, Data())
    y = torch.tensor([0, 0, 1, 2, 0, 1])
    with torch.no_grad():
        loss = float(CLASSIFICATION.loss(model(torch.randn(6, 4)), y))
    assert loss == pytest.approx(CLASSIFICATION.expected_init_loss(y, init_bias=True, class_counts=[60, 30, 10]).value)
    reg = nn.Sequential(nn.Linear(4, 1))
    nn.init.zeros_(reg[0].weight)
    REGRESSION.init_final_bias(reg, Data())
    t = torch.tensor([1.0, 2.0, 4.0])
    with torch.no_grad():
        loss = float(REGRESSION.loss(reg(torch.randn(3, 4)), t))
    assert loss == pytest.approx(REGRESSION.expected_init_loss(t, init_bias=True, target_mean=2.0).value)


def test_dumb_baseline_and_chance_margin():
    y = torch.tensor([0] * 6 + [1] * 3 + [2])
    dumb = CLASSIFICATION.dumb_baseline(y, class_counts=[50, 30, 20])
    assert dumb["baseline/majority_accuracy"] == pytest.approx(0.6)
    assert CLASSIFICATION.chance_margin(y) == pytest.approx(2 * math.sqrt(0.6 * 0.4 / 10))
    reg = REGRESSION.dumb_baseline(torch.tensor([1.0, 3.0]), target_mean=2.0)
    assert reg == {"baseline/mean_mae": 1.0, "baseline/mean_mse": 1.0}
    assert isinstance(task_for("regression"), Regression)


def test_a_regression_bundle_reports_in_the_targets_units_while_the_loss_stays_standardised():
    from types import SimpleNamespace

    task = task_for(SimpleNamespace(task="regression", target_scale=60_000.0))
    pred, y = torch.tensor([[0.5], [-1.0]]), torch.tensor([0.0, 0.0])  # standardised outputs and targets
    assert task.scores(pred, y).tolist() == [30_000.0, 60_000.0]  # |error| x the train std
    assert task.loss(pred, y).item() == pytest.approx((0.25 + 1.0) / 2)  # what is minimised: standardised MSE
    assert task.summarise(task.scores(pred, y).numpy())["mae"] == pytest.approx(45_000.0)
    assert task.dumb_baseline(torch.tensor([1.0, -1.0]), target_mean=0.0)["baseline/mean_mae"] == 60_000.0
    assert task_for(SimpleNamespace(task="regression", target_scale=None)).scale == 1.0
