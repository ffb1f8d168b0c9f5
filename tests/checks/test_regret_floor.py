"""The test-noise floor of the selection regret (recipe.squeeze.selection.regret_noise_floor) on made-up
per-sample test scores whose bootstrap answer is known in closed form.

Two candidates that disagree on ``k`` of ``n`` rows, half each way, are level on the split; the bootstrap
difference of their means is then about normal with mean 0 and sd ``sqrt(k) / n``, and the floor is
E[max(0, D)] = sd / sqrt(2 pi) (0.399 sd). Candidates far apart (or identical) have a floor of about 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recipe.squeeze.selection import regret_noise_floor
from recipe.tasks import CLASSIFICATION, REGRESSION

N = 1000


def _level_pair(k: int, *, errors: bool = False) -> dict[str, np.ndarray]:
    """Two candidates right on the same rows except ``k``: A alone on k/2, B alone on the other k/2 (1/0 scores;
    ``errors``: absolute errors 0/1 instead, lower is better)."""
    a, b = np.ones(N), np.ones(N)
    a[: k // 2] = 0.0
    b[k // 2 : k] = 0.0
    return {"a": 1 - a, "b": 1 - b} if errors else {"a": a, "b": b}


def _apart() -> dict[str, np.ndarray]:
    good, bad = np.ones(N), np.ones(N)
    bad[: N // 3] = 0.0  # 33 points behind, on rows where the good one is right
    return {"good": good, "bad": bad}


@pytest.mark.parametrize(
    ("scores", "task", "expected", "tol"),
    [
        (_level_pair(100), CLASSIFICATION, math.sqrt(100) / N / math.sqrt(2 * math.pi), 0.1),  # 0.0040
        (_level_pair(400), CLASSIFICATION, math.sqrt(400) / N / math.sqrt(2 * math.pi), 0.1),  # twice the noise
        (_level_pair(100, errors=True), REGRESSION, math.sqrt(100) / N / math.sqrt(2 * math.pi), 0.1),  # MAE
        (_apart(), CLASSIFICATION, 0.0, 0.0),  # the best never changes on a resample
        ({"a": np.r_[np.ones(500), np.zeros(500)]}, CLASSIFICATION, 0.0, 0.0),  # one candidate
        ({"a": np.ones(N), "same": np.ones(N)}, CLASSIFICATION, 0.0, 0.0),  # identical candidates
    ],
    ids=["level-k100", "level-k400", "level-mae", "far-apart", "one-candidate", "identical"],
)
def test_the_floor_is_the_bootstrap_overshoot_of_the_best_on_test(scores, task, expected, tol):
    floor = regret_noise_floor(scores, task, n_boot=4000, seed=0)
    assert floor >= 0.0
    assert floor == pytest.approx(expected, rel=tol, abs=1e-12)


def test_the_floor_is_deterministic_for_a_seed():
    s = _level_pair(100)
    assert regret_noise_floor(s, CLASSIFICATION, seed=3) == regret_noise_floor(s, CLASSIFICATION, seed=3)


@pytest.mark.parametrize(
    ("scores", "n_boot", "message"),
    [
        ({}, 100, "at least one candidate"),
        ({"a": np.ones(3), "b": np.ones(4)}, 100, r"same, non-empty test rows \(a 3, b 4\)"),
        ({"a": np.ones(0)}, 100, "non-empty"),
        ({"a": np.ones(3)}, 0, "n_boot >= 1"),
    ],
)
def test_bad_input_is_named(scores, n_boot, message):
    with pytest.raises(ValueError, match=message):
        regret_noise_floor(scores, CLASSIFICATION, n_boot=n_boot)
