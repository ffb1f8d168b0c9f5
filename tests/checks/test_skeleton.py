"""Stage 2's check functions on hand-made numbers and tiny models: every threshold, both sides of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recipe.checks import skeleton as sk
from recipe.report import Verdict
from recipe.tasks import InitLoss
from tests.stages.buggy_models import BatchMeanSub, Clean, IgnoreInput, MixBatch

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL


# --- loss at init --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observed, verdict, words",
    [
        (2.31, PASS, ""),
        (2.25, PASS, ""),
        (2.50, WARN, "too high"),
        (2.00, FAIL, "too low"),
        (4.40, FAIL, "final layer's weights are initialised too large"),
        (math.nan, FAIL, "not a finite number"),
    ],
)
def test_loss_at_init_classification_thresholds(observed, verdict, words):
    e = InitLoss(math.log(10), "-log(1/10) = 2.303 nats", math.log(10))
    f = sk.loss_at_init("classification", observed, e, warn=0.1, fail=0.3)
    assert f.verdict is verdict and words in f.check.advice
    assert "2.303 nats" in f.check.hypothesis
    assert f.metrics["skeleton/expected_loss_at_init"] == pytest.approx(2.302585)


@pytest.mark.parametrize("observed, verdict", [(105.0, PASS), (80.0, WARN), (150.0, FAIL)])
def test_loss_at_init_regression_is_relative(observed, verdict):
    e = InitLoss(100.0, "100", 200.0)
    assert sk.loss_at_init("regression", observed, e, warn=0.1, fail=0.3).verdict is verdict


# --- fixed seed --------------------------------------------------------------------------------------------


def test_fixed_seed_same_losses_pass_and_other_seed_differs():
    a = [2.3, 2.2, 2.1]
    f = sk.fixed_seed((a, list(a)), [2.3, 2.25, 2.0], 0, other_seed=1, tol=1e-6)
    assert f.verdict is PASS and f.metrics["skeleton/seed_same_max_rel_diff"] == 0


def test_fixed_seed_different_losses_fail_at_the_first_differing_step():
    f = sk.fixed_seed(([2.3, 2.2, 2.1], [2.3, 2.2, 2.15]), [2.0, 2.0, 2.0], 0, other_seed=1, tol=1e-6)
    assert f.verdict is FAIL and "first differing at step 3" in f.check.observed
    assert "trainer.deterministic" in f.check.advice


def test_fixed_seed_other_seed_identical_warns():
    a = [2.3, 2.2]
    f = sk.fixed_seed((a, a), a, 0, other_seed=1, tol=1e-6)
    assert f.verdict is WARN and "does not reach the model's init or the data order" in f.check.advice


def test_fixed_seed_nan_in_both_runs_counts_as_equal():
    f = sk.fixed_seed(([2.3, math.nan], [2.3, math.nan]), [2.1, 1.0], 0, other_seed=1, tol=1e-6)
    assert f.verdict is PASS


# --- init well ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "with_bias, without, used, verdict",
    [
        (0.80, 1.10, True, PASS),
        (2.303, 2.305, False, PASS),  # balanced classes: the bias changes nothing, leaving it off is fine
        (0.80, 1.10, False, WARN),  # imbalanced and off: say to turn it on
        (1.50, 1.10, True, WARN),  # the bias made it worse: it went to the wrong layer
    ],
)
def test_init_well(with_bias, without, used, verdict):
    f = sk.init_well("classification", with_bias, without, used=used, warn=0.1, steps=50)
    assert f.verdict is verdict
    if verdict is WARN and not used:
        assert "set model.init_bias=true" in f.check.advice


# --- input-independent baseline ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "real, accuracy, verdict",
    [
        (0.35, 0.90, PASS),
        (2.25, 0.29, PASS),  # a slow learner: the loss barely moved, the accuracy is far above chance
        (2.29, 0.12, FAIL),  # within chance (0.1 + 0.05) on both
        (2.40, 0.10, FAIL),
        (math.nan, 0.90, FAIL),
    ],
)
def test_input_independent(real, accuracy, verdict):
    f = sk.input_independent(
        "classification",
        {"val/loss": real, "val/accuracy": accuracy},
        {"val/loss": 2.30, "val/accuracy": 0.1},
        margin=0.1,
        steps=160,
        chance=0.05,
    )
    assert f.verdict is verdict
    if verdict is FAIL and math.isfinite(real):
        assert "not using its input" in f.check.advice and "labels belong to their inputs" in f.check.advice


# --- dumb baselines and the human metric -------------------------------------------------------------------


@pytest.mark.parametrize(
    "mine, linear, require, verdict",
    [
        (0.95, 0.90, False, PASS),
        (0.88, 0.94, False, PASS),  # a short run need not beat linear...
        (0.88, 0.94, True, WARN),  # ...unless asked to
        (0.12, 0.94, False, WARN),  # ahead within chance of the majority class (0.1 + 0.04): slow, not shown broken
        (0.10, 0.94, False, FAIL),  # no better than the majority class at all
    ],
)
def test_dumb_baselines(mine, linear, require, verdict):
    f = sk.dumb_baselines(
        "classification",
        {"val/accuracy": mine},
        {"baseline/majority_accuracy": 0.1},
        linear={"val/accuracy": linear, "val/loss": 0.3},
        steps=160,
        require_linear=require,
        margin=0.04,
    )
    assert f.verdict is verdict
    assert f.metrics["baseline/linear_accuracy"] == linear and f.metrics["baseline/majority_accuracy"] == 0.1
    if verdict is PASS and mine < linear:
        assert "not above linear yet" in f.check.observed


def test_dumb_baselines_regression_lower_mae_is_better():
    dumb = {"baseline/mean_mae": 70.0, "baseline/mean_mse": 6600.0}
    linear = {"val/mae": 44.0, "val/mse": 3000.0}
    ok = sk.dumb_baselines(
        "regression", {"val/mae": 50.0}, dumb, linear=linear, steps=150, require_linear=False, margin=5.0
    )
    slow = sk.dumb_baselines(
        "regression", {"val/mae": 68.0}, dumb, linear=linear, steps=150, require_linear=False, margin=5.0
    )
    bad = sk.dumb_baselines(
        "regression", {"val/mae": 71.0}, dumb, linear=linear, steps=150, require_linear=False, margin=5.0
    )
    assert ok.verdict is PASS and slow.verdict is WARN and bad.verdict is FAIL  # ahead within 5.0; behind
    assert ok.metrics["baseline/linear_mae"] == 44.0 and ok.metrics["baseline/mean_mae"] == 70.0


@pytest.mark.parametrize(
    "human, verdict, words",
    [
        (None, PASS, "no human baseline given"),
        (0.98, PASS, "human 0.98"),
        (98.0, WARN, "between 0 and 1"),
        (0.80, WARN, "suspicious"),
    ],
)
def test_human_metric(human, verdict, words):
    f = sk.human_metric("classification", {"val/accuracy": 0.9, "val/loss": 0.3}, human, steps=160)
    assert f.verdict is verdict and words in f.check.observed + f.check.advice
    assert "0.9" in f.check.observed and "loss 0.3" in f.check.observed  # the metric next to the loss


# --- overfit one batch -------------------------------------------------------------------------------------


def test_overfit_one_batch_reached_after_growing_says_so():
    attempts = [
        sk.OverfitAttempt("mlp width=2 depth=1", 2.3, 1.0, 0.9, 500, False),
        sk.OverfitAttempt("mlp width=4 depth=1", 2.3, 0.01, 0.01, 120, True),
    ]
    f = sk.overfit_one_batch(attempts, 8, 0.01, budget=500)
    assert f.verdict is PASS and "capacity raised 1 rung(s)" in f.check.observed
    assert f.metrics["skeleton/overfit_grown"] == 1


def test_overfit_one_batch_not_reached_fails_with_the_reason_it_could_not_grow():
    f = sk.overfit_one_batch(
        [sk.OverfitAttempt("Net", 2.3, 2.0, 2.0, 500, False)], 8, 0.01, budget=500, grow_error="no knob"
    )
    assert f.verdict is FAIL and "cannot memorise 8 examples" in f.check.advice and "no knob" in f.check.advice


# --- training loss decreases -------------------------------------------------------------------------------


def test_training_loss_decreases_pass_and_flat_fail():
    falling = list(np.linspace(2.3, 0.5, 100))
    assert (
        sk.training_loss_decreases("classification", falling, 0.1, diverged="", steps=100, init_loss=2.3).verdict
        is PASS
    )
    flat = [2.3] * 100
    f = sk.training_loss_decreases("classification", flat, 0.1, diverged="", steps=100, init_loss=2.3)
    assert f.verdict is FAIL and "not going down" in f.check.advice
    slow = list(np.linspace(2.3, 2.25, 100))
    f = sk.training_loss_decreases("classification", slow, 0.1, diverged="", steps=100, init_loss=2.3)
    assert f.verdict is WARN and "learning rate may be too low" in f.check.advice


def test_a_loss_that_explodes_then_falls_back_has_not_decreased():
    exploded = [1e25] * 10 + list(np.geomspace(1e25, 1e20, 90))
    f = sk.training_loss_decreases("classification", exploded, 0.1, diverged="", steps=100, init_loss=2.3)
    assert f.verdict is FAIL and "loss at init 2.3" in f.check.observed


def test_training_loss_decreases_diverged_and_too_short():
    f = sk.training_loss_decreases(
        "classification", [2.3], 0.1, diverged="training loss became nan", steps=1, init_loss=2.3
    )
    assert f.verdict is FAIL and "diverged: training loss became nan" in f.check.observed
    assert (
        sk.training_loss_decreases("classification", [2.3, 2.2], 0.1, diverged="", steps=2, init_loss=2.3).verdict
        is FAIL
    )


# --- batch independence ------------------------------------------------------------------------------------


def _x(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_a_per_example_model_has_no_cross_batch_gradient():
    torch.manual_seed(0)
    dep = sk.batch_dependence(Clean((1, 4, 4), 3), _x())
    assert not dep.eval_mode and (dep.own > 0).all() and dep.leak.max() == 0
    assert sk.batch_independence(dep, 1e-6).verdict is PASS


@pytest.mark.parametrize("bug", [MixBatch, BatchMeanSub])
def test_mixing_models_fail_and_name_the_examples(bug):
    torch.manual_seed(0)
    dep = sk.batch_dependence(bug((1, 4, 4), 3), _x())
    f = sk.batch_independence(dep, 1e-6, names=["a.png", "b.png", "c.png", "d.png", "e.png"])
    assert f.verdict is FAIL
    assert "a.png → b.png" in f.check.observed and "view()/reshape()" in f.check.advice


def test_batchnorm_models_are_checked_in_eval_mode_and_the_mode_is_restored():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    dep = sk.batch_dependence(model, _x())
    assert dep.eval_mode and dep.leak.max() == 0 and model.training
    f = sk.batch_independence(dep, 1e-6)
    assert f.verdict is PASS and "eval mode: the model has batch norm" in f.check.hypothesis
    # in train mode batch norm mixes the batch: the measurement sees it
    assert sk.batch_dependence(model, _x(), eval_mode=False).leak.max() > 1e-3


def test_an_input_that_reaches_no_output_warns():
    dep = sk.batch_dependence(IgnoreInput((1, 4, 4), 3), _x())
    f = sk.batch_independence(dep, 1e-6)
    assert f.verdict is WARN and "no gradient from their own outputs" in f.check.observed


# --- visualise just before the net -------------------------------------------------------------------------


def test_input_stats_catch_double_normalisation():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(64, 1, 8, 8, generator=g)  # data units, 0..1
    mean, std = pixels.mean().item(), pixels.std().item()
    ok = sk.visualise_before_net(
        sk.input_stats(pixels, [mean], [std]), True, [], mean_tol=0.25, std_factor=1.5, shape=(64, 1, 8, 8)
    )
    assert ok.verdict is PASS
    twice = (pixels - mean) / std  # what decoding a doubly normalised batch gives back
    f = sk.visualise_before_net(
        sk.input_stats(twice, [mean], [std]), True, [], mean_tol=0.25, std_factor=1.5, shape=(64, 1, 8, 8)
    )
    assert f.verdict is WARN and "normalised twice" in f.check.advice
    assert sk.visualise_before_net(None, True, [], mean_tol=0.25, std_factor=1.5).verdict is FAIL


def test_input_stats_on_a_table_allow_for_the_batch_size():
    g = torch.Generator().manual_seed(0)
    rows = 100 + 10 * torch.randn(32, 5, generator=g)  # a batch in data units; the split: mean 100, std 10
    ok = sk.visualise_before_net(
        sk.input_stats(rows, [100.0] * 5, [10.0] * 5), False, [], mean_tol=0.25, std_factor=1.5, shape=(32, 5)
    )
    assert ok.verdict is PASS and "mean within 0.6 std" in ok.check.expected  # 0.25 + 2/sqrt(32)
    twice = (rows - 100) / 10
    assert (
        sk.visualise_before_net(
            sk.input_stats(twice, [100.0] * 5, [10.0] * 5), False, [], mean_tol=0.25, std_factor=1.5, shape=(32, 5)
        ).verdict
        is WARN
    )


# --- prediction dynamics -----------------------------------------------------------------------------------


def test_prediction_dynamics():
    y = torch.tensor([0, 1])
    start = torch.full((2, 2), 0.5)
    moved = [(-1, start), (0, torch.tensor([[0.9, 0.1], [0.2, 0.8]]))]
    f = sk.prediction_dynamics("classification", moved, y)
    assert f.verdict is PASS and "0.500 at init → 0.850" in f.check.observed
    assert sk.prediction_dynamics("classification", [(-1, start), (0, start)], y).verdict is WARN
    assert sk.prediction_dynamics("classification", [(-1, start)], y).verdict is FAIL


# --- augmentation preserves labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "augmented, verdict", [(0.85, PASS), (0.45, WARN), (0.12, FAIL)]
)  # clean 0.9, majority 0.1: 94%, 44%, 3% of the skill kept
def test_augmentation_preserves_labels(augmented, verdict):
    f = sk.augmentation_preserves_labels(
        "classification", ["crop"], 0.9, augmented=augmented, dumb=0.1, warn=0.5, fail=0.2, steps=160
    )
    assert f.verdict is verdict and "[crop]" in f.check.hypothesis


def test_augmentation_check_skips_without_augmentation_and_is_inconclusive_without_skill():
    skipped = sk.augmentation_preserves_labels(
        "classification", [], math.nan, augmented=math.nan, dumb=math.nan, warn=0.5, fail=0.2, steps=0
    )
    assert skipped.verdict is PASS and "skipped" in skipped.check.observed
    weak = sk.augmentation_preserves_labels(
        "classification", ["crop"], 0.12, augmented=0.1, dumb=0.1, warn=0.5, fail=0.2, steps=160
    )
    assert weak.verdict is WARN and "inconclusive" in weak.check.advice


# --- finite loss -------------------------------------------------------------------------------------------


def test_finite_loss_names_the_diverged_run_with_the_guards_message():
    assert sk.finite_loss({"short_run": "", "zero_input": ""}).verdict is PASS
    f = sk.finite_loss({"short_run": "training loss became nan at epoch 0, step 2", "zero_input": ""})
    assert f.verdict is FAIL and f.check.observed == "short_run: training loss became nan at epoch 0, step 2"


@pytest.mark.parametrize(
    "paired, verdict",
    [
        ((0.032, 0.012), PASS),  # attrition: a 7% lower loss, 2.7 paired se: the inputs are used
        ((0.032, 0.020), WARN),  # the same gain within noise: a short run shows too little, no evidence of a bug
        ((0.0176, 0.0160), WARN),  # attrition, mlp_plr at 150 steps: 0.4269 vs 0.4445, 1.1 se
        ((-0.05, 0.01), FAIL),  # shuffled labels: real inputs do worse than zeros
        ((-0.002, 0.01), FAIL),  # no better than zeros at all, even within noise: no sign the input is used
        ((0.0, 0.0), FAIL),  # an input that never reaches the output: the two runs are identical
        (None, FAIL),  # no paired numbers, no noise estimate: the margins decide
    ],
)
def test_input_independent_takes_a_small_gain_beyond_paired_noise(paired, verdict):
    f = sk.input_independent(
        "classification",
        {"val/loss": 0.4121, "val/accuracy": 0.864},
        {"val/loss": 0.4445, "val/accuracy": 0.837},
        margin=0.1,
        steps=165,
        chance=0.075,
        paired=paired,
    )
    assert f.verdict is verdict


def test_dumb_baselines_warn_when_a_linear_model_finds_no_signal_either():
    # attrition after 165 steps: 0.864 vs a 0.837 majority, linear 0.869; 2 standard errors are 0.05
    args = {"steps": 165, "require_linear": False, "margin": 0.05}
    weak = sk.dumb_baselines(
        "classification",
        {"val/accuracy": 0.864},
        {"baseline/majority_accuracy": 0.837},
        linear={"val/accuracy": 0.869, "val/loss": 0.33},
        **args,
    )
    assert weak.verdict is WARN and "no evidence of a bug" in weak.check.advice
    strong = sk.dumb_baselines(
        "classification",
        {"val/accuracy": 0.85},
        {"baseline/majority_accuracy": 0.837},
        linear={"val/accuracy": 0.95, "val/loss": 0.2},
        **args,
    )
    # a linear model finds the signal this short run has not caught up with: slow, no evidence of a bug
    assert strong.verdict is WARN and "no evidence of a bug" in strong.check.advice and "0.95" in strong.check.advice


@pytest.mark.parametrize(
    "mine, verdict",
    [
        (0.85, WARN),  # ahead of the majority class within noise (2 se = 0.05): a slow model, no bug shown
        (0.837, FAIL),  # control: exactly the majority class, what a model that ignores its input predicts
        (0.80, FAIL),  # control: behind it (labels shuffled, memorised noise)
        (math.nan, FAIL),
    ],
)
def test_dumb_baselines_fail_only_a_model_no_better_than_the_majority_class(mine, verdict):
    f = sk.dumb_baselines(
        "classification",
        {"val/accuracy": mine},
        {"baseline/majority_accuracy": 0.837},
        linear={"val/accuracy": 0.95, "val/loss": 0.2},
        steps=150,
        require_linear=False,
        margin=0.05,
    )
    assert f.verdict is verdict, f.check.observed


def test_a_batch_without_the_rare_one_hot_levels_is_not_off_scale():
    train_std = np.r_[np.ones(3), np.full(20, 0.15)]  # 3 numbers, 20 rare one-hot levels
    batch_std = np.r_[np.ones(3), np.zeros(17), np.full(3, 0.15)]  # most levels absent from a batch of 32
    stats = sk.InputStats(np.zeros(23), batch_std, np.zeros(23), train_std)
    assert stats.std_factor == pytest.approx(1.0)
    blank = sk.InputStats(np.zeros(23), np.zeros(23), np.zeros(23), train_std)
    assert math.isinf(blank.std_factor)  # inputs zeroed on the way in
