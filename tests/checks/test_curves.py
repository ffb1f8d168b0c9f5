"""The learning-curve diagnosis on made-up curves: each shape names its finding, with the numbers behind it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recipe.checks.curves import CHECKS, CurveThresholds, diagnose_curves, tail_change, update_ratio_check
from recipe.report import Verdict

T = np.arange(30, dtype=float)
EXP = np.exp

# name -> (train loss per epoch, val loss per epoch, the findings that must warn; every other one passes)
CURVES = {
    "healthy": (0.05 + 2.25 * EXP(-T / 3), 0.15 + 2.15 * EXP(-T / 3), set()),
    "lr_too_low": (
        2.3 - 0.02 * T,
        2.35 - 0.02 * T,
        {"curves_lr_too_low", "curves_underfitting", "curves_train_longer"},
    ),
    "lr_too_high": (
        1.0 + 1.3 * EXP(-T) + 0.01 * np.sin(T),
        1.05 + 1.3 * EXP(-T),
        {"curves_plateau", "curves_underfitting"},
    ),
    "overfitting": (
        0.01 + 2.29 * EXP(-T / 3),
        0.3 + 2.0 * EXP(-T / 3) + 0.02 * np.maximum(0, T - 10),
        {"curves_overfitting"},
    ),
    "underfitting": (0.9 + 1.4 * EXP(-T / 6), 0.93 + 1.4 * EXP(-T / 6), {"curves_underfitting"}),
    "train_longer": (0.02 + 2.28 * EXP(-T / 15), 0.1 + 2.2 * EXP(-T / 15), {"curves_train_longer"}),
}


def verdicts(findings) -> dict[str, Verdict]:
    return {f.name: f.verdict for f in findings}


@pytest.mark.parametrize("name", list(CURVES))
def test_each_curve_shape_names_its_finding(name):
    train, val, warns = CURVES[name]
    found = diagnose_curves(train, val)
    assert [f.name for f in found] == list(CHECKS)
    assert {n for n, v in verdicts(found).items() if v is Verdict.WARN} == warns
    for f in found:  # advice only where there is something to do
        assert bool(f.check.advice) == (f.verdict is Verdict.WARN)


def test_findings_carry_their_numbers():
    train, val, _ = CURVES["overfitting"]
    f = {x.name: x for x in diagnose_curves(train, val)}["curves_overfitting"]
    assert "at its minimum (epoch" in f.check.observed and "%" in f.check.observed
    assert f.metrics["curves/val_rise"] > 0.1
    assert "stop early" in f.check.advice


def test_the_overfit_stage_expects_overfitting():
    train, val, _ = CURVES["overfitting"]
    f = {x.name: x for x in diagnose_curves(train, val, expect_overfit=True)}["curves_overfitting"]
    assert f.verdict is Verdict.PASS and "expected in this stage" in f.check.observed


def test_a_known_training_target_decides_what_poor_means():
    train, val, _ = CURVES["underfitting"]
    ok = {x.name: x.verdict for x in diagnose_curves(train, val, train_target_met=True)}
    assert ok["curves_underfitting"] is Verdict.PASS
    poor = {x.name: x for x in diagnose_curves(train, val, train_target_met=False)}["curves_underfitting"]
    assert poor.verdict is Verdict.WARN and "not met" in poor.check.observed


def test_the_step_curve_is_used_for_the_shape_when_given():
    train, val, _ = CURVES["healthy"]
    slow_steps = list(2.3 - 0.001 * np.arange(300))  # epochs look fine, the steps show a crawl
    found = {x.name: x for x in diagnose_curves(train, val, steps=slow_steps)}
    assert found["curves_lr_too_low"].verdict is Verdict.WARN
    assert "300 steps" in found["curves_lr_too_low"].check.observed


def test_the_reference_loss_is_the_start():
    # from a loss at init of 2.3, a curve that starts at 0.5 has already done most of its falling
    train = 0.5 - 0.005 * T
    assert verdicts(diagnose_curves(train))["curves_lr_too_low"] is Verdict.WARN
    assert verdicts(diagnose_curves(train, reference_loss=2.3))["curves_lr_too_low"] is Verdict.PASS


@pytest.mark.parametrize(
    "train, val, why",
    [([2.3, 1.0, 0.5], [2.3, 1.1, 0.6], "only 3 epochs"), (list(CURVES["healthy"][0]), None, "no validation curve")],
)
def test_too_little_to_judge_passes_and_says_so(train, val, why):
    found = diagnose_curves(train, val)
    assert all(f.verdict is Verdict.PASS for f in found)
    assert any(why in str(f.check.observed) for f in found)


def test_thresholds_are_settings():
    train, val, _ = CURVES["overfitting"]
    lenient = CurveThresholds(overfit_rise=10.0)
    assert verdicts(diagnose_curves(train, val, thresholds=lenient))["curves_overfitting"] is Verdict.PASS


def test_non_finite_values_are_ignored():
    train, val, warns = CURVES["healthy"]
    train = [*train[:10], math.nan, *train[10:]]
    assert {n for n, v in verdicts(diagnose_curves(train, val)).items() if v is Verdict.WARN} == warns


def test_tail_change_is_a_line_fit_relative_to_the_level():
    assert tail_change([1.0] * 10) == pytest.approx(0.0)
    assert tail_change([10, 10, 10, 10, 10, 3.0, 2.0, 1.0]) < -0.9
    assert math.isnan(tail_change([1.0, 2.0]))


# --- update-to-weight ratios ---------------------------------------------------------------------------------


def ratios(**layers):
    return [(10 * (i + 1), dict(layers)) for i in range(5)]


@pytest.mark.parametrize(
    "history, verdict, named",
    [
        (ratios(conv=-3.0, head=-2.7), Verdict.PASS, []),
        (ratios(conv=-5.1, head=-3.0), Verdict.WARN, ["conv -5.10"]),
        (ratios(conv=-3.0, head=-1.2), Verdict.WARN, ["head -1.20"]),
        ([], Verdict.PASS, []),
    ],
)
def test_update_ratios_far_from_1e_3_are_named(history, verdict, named):
    f = update_ratio_check(history)
    assert f.verdict is verdict
    for n in named:
        assert n in f.check.observed
    if verdict is Verdict.WARN:
        assert ("raise the learning rate" in f.check.advice) == any(float(n.split()[1]) < -4 for n in named)


def test_update_ratio_is_the_median_over_the_run():
    history = [(i, {"conv": -3.0 if i < 8 else -6.0}) for i in range(10)]  # converged at the end: ratios sink
    f = update_ratio_check(history)
    assert f.verdict is Verdict.PASS and f.metrics["update_ratio/conv"] == -3.0


@pytest.mark.parametrize(
    "val",
    [
        0.3 + 2.0 * EXP(-T / 3) + np.where(T == 27, 0.5, 0.0),  # one noisy epoch near the end is not a trend
        np.r_[0.3 + 2.0 * EXP(-T[:25] / 3), [0.31, 0.35, 0.2, 0.33, 0.3]],  # the minimum is recent (in the tail)
    ],
)
def test_noise_at_the_end_is_not_overfitting(val):
    train = 0.01 + 2.29 * EXP(-T / 3)
    assert verdicts(diagnose_curves(train, val))["curves_overfitting"] is Verdict.PASS
