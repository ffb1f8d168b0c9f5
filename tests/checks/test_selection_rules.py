"""Champion selection rules (recipe/squeeze/selection.py) at their edges, on made-up per-sample val scores.

A candidate right on ``k`` of ``n = 100`` val samples the other gets wrong (equal elsewhere) is ahead by
gain = k/n with paired standard error sqrt(p(1-p)/(n-1)): z = 1.42 at k = 2 (beyond the default noise_z = 1,
within 1.5), 2.03 at k = 4; one disagreement the other way at k = 2 gives z = 0.58. Each row names its edge.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from recipe.checks import squeeze as judge
from recipe.checks.ablation import CandidateResult
from recipe.config import SqueezeConfig, load_config
from recipe.squeeze import selection
from recipe.tasks import CLASSIFICATION, REGRESSION

N = 100
BASE = np.r_[np.ones(80), np.zeros(N - 80)]  # every candidate right on the first 80 samples


def _cand(name: str, ahead: int = 0, behind: int = 0, loss: float = 0.3) -> CandidateResult:
    """Right on BASE, plus ``ahead`` of the last 20 samples, minus ``behind`` of the first 80 (1/0 scores)."""
    s = BASE.copy()
    s[80 : 80 + ahead] = 1.0
    s[:behind] = 0.0
    return CandidateResult(
        name, name, val_metric=float(s.mean()), val_loss=loss, scores=s, loss_scores=np.full(N, loss) + (1 - s) * 0.01
    )


def _costs(*cands: CandidateResult) -> list[tuple[CandidateResult, tuple[int, int]]]:
    size = {"ensemble": (5, 5000), "snapshots": (3, 3000), "student": (1, 1000)}
    return [(c, size.get(c.name, (1, 1000))) for c in cands]


# (candidates, noise_z, the ensemble_first champion, the student_if_close champion)
CASES = [
    # the ensemble is the best on val: it stays, and a student level with it takes its place at one net's cost
    ([_cand("ensemble", ahead=2), _cand("longer"), _cand("student")], 1.0, "ensemble", "ensemble"),
    ([_cand("ensemble"), _cand("longer"), _cand("student")], 1.0, "ensemble", "student"),
    # a single network ahead by z 1.42: beyond noise_z 1 it wins, within 1.5 the ensemble stays
    ([_cand("ensemble"), _cand("longer", ahead=2), _cand("student")], 1.0, "longer", "longer"),
    ([_cand("ensemble"), _cand("longer", ahead=2), _cand("student")], 1.5, "ensemble", "student"),
    # ahead on the mean but with a disagreement the other way (z 0.58): within noise, the ensemble
    ([_cand("ensemble"), _cand("longer", ahead=2, behind=1), _cand("student")], 1.0, "ensemble", "student"),
    # the ensemble ahead of its student by z 1.42: the student is not close enough at noise_z 1, it is at 1.5
    ([_cand("ensemble", ahead=2), _cand("student")], 1.0, "ensemble", "ensemble"),
    ([_cand("ensemble", ahead=2), _cand("student")], 1.5, "ensemble", "student"),
    # no ensemble trained (members=1): the best val metric, the val loss breaking the tie
    ([_cand("reference", loss=0.4), _cand("longer", loss=0.3)], 1.0, "longer", "longer"),
]


@pytest.mark.parametrize(("cands", "noise_z", "ensemble_first", "student_if_close"), CASES)
def test_the_ensemble_first_and_student_rules_at_their_noise_edges(cands, noise_z, ensemble_first, student_if_close):
    for rule, expected in (("ensemble_first", ensemble_first), ("student_if_close", student_if_close)):
        choice = selection.choose(_costs(*cands), task=CLASSIFICATION, rule=rule, noise_z=noise_z)
        assert choice.champion.name == expected, (rule, choice.reason)
        assert choice.reason.startswith(f"rule {rule}: ") and choice.fits and not choice.excluded


def test_the_metric_decides_and_the_loss_only_breaks_ties():
    # the digits case: lower val loss with lower val accuracy
    low_loss = _cand("longer", loss=0.05)
    accurate = _cand("ensemble", ahead=3, loss=0.08)
    pairs = _costs(low_loss, accurate)
    assert selection.choose(pairs, task=CLASSIFICATION, rule="best_val_metric").champion.name == "ensemble"
    assert selection.choose(pairs, task=CLASSIFICATION, rule="best_val_loss").champion.name == "longer"
    tie = _costs(_cand("swa", loss=0.2), _cand("ema", loss=0.1))
    assert selection.choose(tie, task=CLASSIFICATION, rule="best_val_metric").champion.name == "ema"


def test_the_old_rule_picks_the_cheapest_within_noise_on_the_loss():
    pairs = _costs(_cand("ensemble", ahead=1, behind=1, loss=0.10), _cand("longer", loss=0.10))
    choice = selection.choose(pairs, task=CLASSIFICATION, rule="cheapest_within_noise")
    assert choice.champion.name == "longer" and "cheaper than the best" in choice.reason


@pytest.mark.parametrize(
    ("max_params", "champion", "excluded", "fits"),
    [
        (None, "ensemble", set(), True),
        (5000, "ensemble", set(), True),  # the limit is inclusive
        (4999, "student", {"ensemble"}, True),  # the ensemble out: the student, level with it, is the best left
        (2999, "student", {"ensemble", "snapshots"}, True),
        (999, "student", {"ensemble", "snapshots", "student", "longer"}, False),  # none fits: the smallest
    ],
)
def test_candidates_over_max_params_are_not_eligible_and_the_reason_says_so(max_params, champion, excluded, fits):
    pairs = _costs(_cand("ensemble", ahead=1), _cand("snapshots"), _cand("student", loss=0.2), _cand("longer"))
    choice = selection.choose(pairs, task=CLASSIFICATION, max_params=max_params)
    assert choice.champion.name == champion, choice.reason
    assert set(choice.excluded) == excluded and choice.fits is fits
    if excluded and fits:
        assert f"not eligible, over stages.squeeze.max_params={max_params:,} parameters" in choice.reason
        assert all(name in choice.reason for name in excluded)
    if not fits:
        assert "no candidate has at most stages.squeeze.max_params=999" in choice.reason
        finding = judge.choice(choice.champion, choice.best, choice.reason, metric="accuracy", over_limit=True)
        assert finding.verdict.value == "warn"


def test_regression_chooses_on_the_mae_and_regret_is_in_its_units():
    def reg(name: str, errors: np.ndarray) -> CandidateResult:
        return CandidateResult(
            name, name, val_metric=float(errors.mean()), val_loss=float((errors**2).mean()), scores=errors
        )

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, N)
    ens, single = reg("ensemble", base), reg("longer", base * 0.5)  # the single network halves every error
    choice = selection.choose(_costs(ens, single), task=REGRESSION)
    assert choice.champion.name == "longer" and "beats the ensemble" in choice.reason
    assert selection.regret({"ensemble": 3.0, "longer": 2.5}, "ensemble", REGRESSION) == pytest.approx(0.5)
    assert selection.regret({"ensemble": 0.99, "longer": 0.97}, "longer", CLASSIFICATION) == pytest.approx(0.02)
    assert selection.regret({"ensemble": 0.99}, "ensemble", CLASSIFICATION) == 0.0


def test_bad_rules_and_no_trained_candidate_are_errors_and_the_setting_lists_every_rule():
    with pytest.raises(ValueError, match="unknown selection rule 'best'"):
        selection.choose(_costs(_cand("ensemble")), task=CLASSIFICATION, rule="best")
    failed = CandidateResult("ensemble", "squeeze", status="failed", note="diverged")
    with pytest.raises(ValueError, match="no squeeze candidate trained"):
        selection.choose([(failed, (5, 5))], task=CLASSIFICATION)
    assert set(typing.get_args(SqueezeConfig.model_fields["rule"].annotation)) == set(selection.RULES)
    assert load_config().stages.squeeze.rule == selection.DEFAULT_RULE
    assert load_config(overrides=["stages.squeeze.max_params=50000"]).stages.squeeze.max_params == 50000


def test_choose_champion_follows_the_configured_rule_and_compares_every_candidate_with_the_best():
    pairs = _costs(_cand("ensemble"), _cand("longer", ahead=1, loss=0.05), _cand("student"))
    champ, best, decisions, reason = judge.choose_champion(pairs, task=CLASSIFICATION, criterion="loss", noise_z=1.5)
    assert (champ.name, best.name) == ("ensemble", "longer")  # no weighted ensemble: ensemble_first's choice
    assert reason.startswith("rule weighted: no weighted ensemble; the ensemble (the recipe's prior")
    assert set(decisions) == {"ensemble", "student"}
    champ, *_ = judge.choose_champion(pairs, task=CLASSIFICATION, criterion="loss", noise_z=1.5, max_params=1000)
    assert champ.name == "longer"
