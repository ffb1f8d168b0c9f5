"""The classical baseline and the bootstrap intervals squeeze reports test scores with."""

from __future__ import annotations

import numpy as np
import pytest

from recipe.classical import bootstrap_ci, fit_classical, flat
from recipe.config import RecipeConfig
from recipe.data import load_data


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.random(100) < 0.9)
    large = bootstrap_ci(rng.random(10_000) < 0.9)
    assert small.low < small.value < small.high and large.low < large.value < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5  # width ~ 1/sqrt(N)
    assert abs(small.value - 0.9) < 0.1 and small.level == 0.95


def test_bootstrap_of_constant_scores_is_a_point_and_empty_scores_are_an_error():
    assert bootstrap_ci(np.ones(50)) == bootstrap_ci(np.ones(50))
    iv = bootstrap_ci(np.ones(50))
    assert (iv.value, iv.low, iv.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="at least one score"):
        bootstrap_ci(np.array([]))


def test_the_rbf_svm_on_digits_is_a_strong_bar(monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    data = load_data(RecipeConfig())
    c = fit_classical(data)
    x, y = flat(data, "val")
    acc = c.scores(x, y, "classification").mean()
    assert c.name == "rbf_svm" and set(c.best_params) == {"C", "gamma"}
    assert acc > 0.95  # the classic result: an RBF SVM reaches ~98% on digits


def test_gradient_boosted_trees_for_tables(monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    data = load_data(RecipeConfig(data={"source": "csv", "name": "diabetes"}))
    c = fit_classical(data)
    x, y = flat(data, "val")
    mae = c.scores(x, y, data).mean()  # the bundle: MAE in the target's units
    assert c.name == "gradient_boosted_trees" and 20 < mae < 80  # diabetes: MAE ~45 for good models
