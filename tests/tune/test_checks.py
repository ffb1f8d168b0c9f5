"""The tune stage's rules on made-up numbers: the seed-and-validation noise bar, range edges."""

import math

import numpy as np
import optuna
from optuna.distributions import FloatDistribution

from recipe.config import RecipeConfig
from recipe.report import Verdict
from recipe.tune import checks
from recipe.tune.space import resolve
from recipe.tune.trial import TrialResult


def result(loss, acc, losses):
    losses = np.asarray(losses, dtype=float)
    return TrialResult(
        "r", "complete", value=loss, val_metric=acc, val_losses=losses, val_scores=(losses < 1).astype(float)
    )


def test_a_gain_must_beat_seed_and_validation_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.5, 200)
    handed = [result(1.00, 0.80, base), result(1.10, 0.79, base + 0.1)]
    better = [result(0.70, 0.85, base - 0.3), result(0.72, 0.85, base - 0.28)]
    ng = checks.noise_gain(handed, better, higher_is_better=True, noise_z=1.0)
    assert ng.kept and math.isclose(ng.gain, 0.34) and ng.se_seed > 0 and ng.se_val >= 0
    # the same mean gain, but one seed says the opposite: within seed noise
    noisy = [result(0.40, 0.85, base - 0.6), result(1.18, 0.79, base + 0.18)]
    ng = checks.noise_gain(handed, noisy, higher_is_better=True, noise_z=1.0)
    assert not ng.kept and "within noise" in ng.reason and ng.se_seed > ng.gain
    assert not checks.noise_gain(handed, [TrialResult("x", "failed")] * 2, higher_is_better=True, noise_z=1.0).kept


def test_a_best_value_at_the_edge_of_its_range_warns_which_way_to_widen():
    cfg = RecipeConfig().with_overrides({"optim.lr": 1e-3})
    space = resolve(cfg, cfg.stages.tune.space)
    dist = FloatDistribution(1e-4, 1e-2, log=True)

    def trial(lr, dropout):
        return optuna.trial.create_trial(
            params={"lr": lr, "dropout": dropout},
            value=1.0,
            distributions={"lr": dist, "dropout": FloatDistribution(0, 0.5)},
        )

    f = checks.edge_check(trial(9e-3, 0.2), space)
    assert f.verdict is Verdict.WARN and "top" in f.check.observed and "space.lr.high" in f.check.observed
    f = checks.edge_check(trial(1.1e-4, 0.0), space)  # dropout 0 is its natural floor, not an edge to widen
    assert f.verdict is Verdict.WARN and "lr" in f.check.observed and "bottom" in f.check.observed
    assert "dropout = 0 sits at its natural floor" in f.check.observed
    assert checks.edge_check(trial(1e-3, 0.2), space).verdict is Verdict.PASS


def _tune_bar(best_val_accuracy, n_val=450, majority=0.0998, linear=0.8226):
    """The tune stage's bar (recipe.stages.tune._bar); by default on Fashion-MNIST's numbers."""
    from types import SimpleNamespace

    from recipe.stages import tune

    baselines = SimpleNamespace(metrics={"baseline/majority_accuracy": majority, "baseline/linear_accuracy": linear})
    ctx = SimpleNamespace(results={"baselines": baselines})
    data = SimpleNamespace(task="classification", split_sizes={"val": n_val})
    out = SimpleNamespace(metrics={"tune/best_val_accuracy": best_val_accuracy})
    return tune._bar(ctx, data, out)


def test_tune_trailing_the_linear_baseline_warns_and_trailing_the_majority_class_fails():
    # a budgeted search of 2-epoch trials (Fashion-MNIST at budget.minutes=10, split seed 1): 0.7317 against the
    # linear baseline's 0.8226 on 451 val images, 2.9 se behind -- short trials, no evidence of a bug
    behind_linear = _tune_bar(0.7317, n_val=451)
    assert behind_linear.verdict == Verdict.WARN, behind_linear
    assert "NOT beaten" in behind_linear.check.observed and "short runs that rank configs" in behind_linear.check.advice
    # a search behind even the majority class beyond noise is a bug whatever the trials' length (a binary table
    # with attrition's 84% majority class on 221 val rows)
    learned_nothing = _tune_bar(0.60, n_val=221, majority=0.84, linear=0.86)
    assert learned_nothing.verdict == Verdict.FAIL and "majority class" in learned_nothing.check.advice
    assert _tune_bar(0.86).verdict == Verdict.PASS
