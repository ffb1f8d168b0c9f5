"""Ablation bookkeeping on made-up candidates: keep beyond noise, one value per kind, combine, verify; and the
dumb-baseline bar read defensively."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recipe.checks.ablation import (
    CandidateResult,
    baseline_bar_check,
    choose,
    combine_changes,
    decide,
    markdown_table,
    paired_gain,
    pick_per_group,
    table_rows,
)
from recipe.report import Verdict

N = 400


def correct(n_wrong: int, first: int = 0) -> np.ndarray:
    """Per-sample 1/0 scores on N validation samples with ``n_wrong`` mistakes starting at index ``first``."""
    s = np.ones(N)
    s[first : first + n_wrong] = 0
    return s


def cand(
    name: str, scores: np.ndarray | None, group: str | None = None, train: float = 1.0, **changes
) -> CandidateResult:
    val = float(scores.mean()) if scores is not None else math.nan
    return CandidateResult(name, group or name, changes, val_metric=val, train_metric=train, scores=scores)


REF = cand("reference", correct(20))  # 95% val accuracy, 100% train


@pytest.mark.parametrize(
    "scores, kept",
    [
        (correct(20), False),  # identical: no gain
        (correct(10), True),  # 10 fewer mistakes, all on samples the reference got wrong: se ~0.8%, gain 2.5%
        (correct(19), False),  # one sample better: gain 0.25% vs se 0.25%, not beyond it
        (correct(30), False),  # worse
        (correct(18, first=10), False),  # 2 fewer mistakes but 8 new ones elsewhere: within noise
    ],
)
def test_kept_only_beyond_paired_noise(scores, kept):
    d = decide(REF, cand("x", scores), higher_is_better=True)
    assert d.kept is kept
    assert ("beyond noise" if kept else "within noise or worse") in d.reason


def test_the_paired_standard_error_counts_only_disagreements():
    gain, se = paired_gain(correct(20), correct(10), higher_is_better=True)
    assert gain == pytest.approx(10 / N)
    d = np.r_[np.ones(10), np.zeros(N - 10)]
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(N))


def test_lower_is_better_for_regression_errors():
    ref = CandidateResult("reference", "reference", val_metric=1.0, scores=np.full(N, 1.0))
    better = CandidateResult("wd", "wd", val_metric=0.8, scores=np.full(N, 0.8) + np.linspace(-0.1, 0.1, N))
    d = decide(ref, better, higher_is_better=False)
    assert d.kept and d.gain == pytest.approx(0.2)


def test_min_delta_and_noise_z_raise_the_bar():
    c = cand("x", correct(10))
    assert not decide(REF, c, higher_is_better=True, min_delta=0.05).kept
    assert not decide(REF, c, higher_is_better=True, noise_z=5).kept
    assert decide(REF, c, higher_is_better=True, noise_z=0).kept


def test_without_per_sample_scores_only_min_delta_applies():
    ref = CandidateResult("reference", "reference", val_metric=0.90)
    c = CandidateResult("x", "x", val_metric=0.92)
    d = decide(ref, c, higher_is_better=True, min_delta=0.01)
    assert d.kept and math.isnan(d.se) and "no noise estimate" in d.reason


@pytest.mark.parametrize("status", ["skipped", "failed"])
def test_skipped_and_failed_candidates_are_never_kept(status):
    c = CandidateResult("pretrained", "pretrained", status=status, note="no checkpoint given")
    d = decide(REF, c, higher_is_better=True)
    assert not d.kept and d.reason == f"{status}: no checkpoint given"


def test_one_value_per_kind_best_gain_first():
    cands = [
        cand("wd_small", correct(15), "weight_decay"),
        cand("wd_big", correct(8), "weight_decay"),
        cand("crop", correct(12), "augment"),
        cand("dropout", correct(20), "dropout"),
    ]
    decisions = {c.name: decide(REF, c, higher_is_better=True) for c in cands}
    picked = pick_per_group(cands, decisions)
    assert [c.name for c in picked] == ["wd_big", "crop"]


def test_combining_merges_changes_and_reports_clashes():
    a = CandidateResult("wd", "weight_decay", {"optim.name": "adamw", "optim.weight_decay": 0.1})
    b = CandidateResult("crop", "augment", {"data.augment": ["crop"]})
    c = CandidateResult("sgd_thing", "other", {"optim.name": "sgd"})
    merged, notes = combine_changes([a, b, c])
    assert merged == {"optim.name": "adamw", "optim.weight_decay": 0.1, "data.augment": ["crop"]}
    assert len(notes) == 1 and "sgd_thing left out" in notes[0] and "optim.name" in notes[0] and "wd" in notes[0]


@pytest.mark.parametrize(
    "picked, combined, expected",
    [
        ([], None, "reference"),
        (["crop"], None, "crop"),
        (["crop", "wd"], 2, "combined"),  # 8 fewer mistakes than the best single (10): beyond noise
        (["crop", "wd"], 10, "crop"),  # a tie: fewer changes for the same result
        (["crop", "wd"], 9, "crop"),  # one sample better: not shown to be real
        (["crop", "wd"], 16, "crop"),
        (["crop", "wd"], "failed", "crop"),
    ],
)
def test_choose_verifies_the_combination(picked, combined, expected):
    singles = {"crop": cand("crop", correct(10)), "wd": cand("wd", correct(14))}
    comb = None
    if combined == "failed":
        comb = CandidateResult("combined", "combined", status="failed", note="boom")
    elif combined is not None:
        comb = cand("combined", correct(combined))
    choice = choose(REF, [singles[p] for p in picked], comb, higher_is_better=True)
    assert choice.chosen.name == expected
    assert choice.combined_used is (expected == "combined")
    assert choice.reason


def test_the_table_has_a_row_per_candidate_and_a_decision():
    cands = [
        cand("crop", correct(10), train=0.99),
        CandidateResult("pretrained", "pretrained", status="skipped", note="no checkpoint given"),
    ]
    decisions = {c.name: decide(REF, c, higher_is_better=True) for c in cands}
    rows = table_rows(REF, cands, decisions, chosen="crop", higher_is_better=True)
    assert [(r["name"], r["kept"], r["chosen"]) for r in rows] == [
        ("reference", "reference", False),
        ("crop", "kept", True),
        ("pretrained", "dropped", False),
    ]
    assert rows[1]["gap"] == pytest.approx(0.99 - 0.975) and rows[0]["gap"] == pytest.approx(0.05)
    md = markdown_table(rows)
    assert "| crop | changes" not in md and "kept (chosen)" in md and "skipped: no checkpoint given" in md


def test_the_table_keeps_kept_for_what_is_handed_on_and_says_what_became_of_the_rest():
    """Two kinds beat the reference and their combination is chosen: only the combination reads "kept"; the two
    singles say they are part of it, a weaker weight decay says a better one of its kind was used."""
    cands = [
        cand("crop", correct(10), group="augment"),
        cand("wd_1e-4", correct(12), group="weight_decay"),
        cand("wd_1e-5", correct(14), group="weight_decay"),
        cand("dropout", correct(20), group="dropout"),
        cand("combined", correct(4), group="combined"),
    ]
    decisions = {c.name: decide(REF, c, higher_is_better=True) for c in cands}
    rows = table_rows(REF, cands, decisions, chosen="combined", higher_is_better=True)
    by_name = {r["name"]: r["decision"] for r in rows}
    assert by_name == {
        "reference": "reference",
        "crop": "beat the reference: part of combined (chosen)",
        "wd_1e-4": "beat the reference: part of combined (chosen)",
        "wd_1e-5": "beat the reference; a better value of its kind was used",
        "dropout": "dropped",
        "combined": "kept (chosen)",
    }
    md = markdown_table(rows)
    assert md.count("kept (chosen)") == 1 and "| dropout |" in md
    single = table_rows(REF, cands[:4], decisions, chosen="crop", higher_is_better=True)
    assert [r["decision"] for r in single][1:3] == ["kept (chosen)", "beat the reference; not chosen"]


# --- the dumb-baseline bar -----------------------------------------------------------------------------------

FULL = {"baseline/majority_accuracy": 0.1, "baseline/linear_accuracy": 0.95}


@pytest.mark.parametrize(
    "value, task, baselines, verdict, text",
    [
        (0.97, "classification", FULL, Verdict.PASS, "linear 0.95"),
        (0.94, "classification", FULL, Verdict.FAIL, "linear 0.95 NOT beaten"),
        # both perfect: a tie is level within noise (WARN), never "NOT beaten"
        (1.0, "classification", {**FULL, "baseline/linear_accuracy": 1.0}, Verdict.WARN, "linear 1 level (a tie"),
        (0.97, "classification", {"baseline/majority_accuracy": 0.1}, Verdict.PASS, "linear_accuracy missing"),
        (0.97, "classification", {}, Verdict.WARN, "missing: no bar"),
        (0.97, "classification", None, Verdict.WARN, "no baselines stage result"),
        (10.0, "regression", {"baseline/mean_mae": 50.0, "baseline/linear_mae": 40.0}, Verdict.PASS, "linear 40"),
        (45.0, "regression", {"baseline/mean_mae": 50.0, "baseline/linear_mae": 40.0}, Verdict.FAIL, "NOT beaten"),
    ],
)
def test_baseline_bar(value, task, baselines, verdict, text):
    f = baseline_bar_check(value, task, baselines)
    assert f.verdict is verdict
    assert text in f.check.observed
    assert bool(f.check.advice) == (verdict is not Verdict.PASS)


# --- the loss criterion --------------------------------------------------------------------------------------


def with_losses(c: CandidateResult, losses: np.ndarray, train_loss: float = 0.01) -> CandidateResult:
    c.loss_scores, c.val_loss, c.train_loss = losses, float(losses.mean()), train_loss
    return c


def losses(high: int, value: float = 3.0) -> np.ndarray:
    """N per-sample losses: ``high`` confidently wrong samples at ``value``, the rest near zero."""
    a = np.full(N, 0.01)
    a[:high] = value
    return a


@pytest.mark.parametrize(
    "cand_losses, cand_scores, kept, why",
    [
        (losses(8, 1.0), correct(20), True, "beyond noise"),  # same accuracy, much less confident mistakes
        (losses(20), correct(20), False, "within noise"),  # the same
        (losses(8, 1.0), correct(30), False, "metric got worse beyond noise"),  # better loss bought with accuracy
    ],
)
def test_the_loss_criterion_with_a_metric_guard(cand_losses, cand_scores, kept, why):
    ref = with_losses(cand("reference", correct(20)), losses(20))
    c = with_losses(cand("x", cand_scores), cand_losses)
    d = decide(ref, c, higher_is_better=True, criterion="loss")
    assert d.kept is kept and why in d.reason
    assert d.gain == pytest.approx(ref.val_loss - c.val_loss)
    assert d.metric_gain == pytest.approx(c.val_metric - ref.val_metric)


def test_the_loss_criterion_chooses_and_measures_the_gap_in_loss():
    ref = with_losses(cand("reference", correct(20)), losses(20), train_loss=0.001)
    a = with_losses(cand("a", correct(20)), losses(10, 1.0), train_loss=0.05)
    comb = with_losses(cand("combined", correct(20)), losses(6, 1.0), train_loss=0.08)
    choice = choose(ref, [a], comb, higher_is_better=True, criterion="loss")
    assert choice.chosen is comb and "val loss" in choice.reason
    assert a.gap(True, "loss") == pytest.approx(a.val_loss - 0.05)
    rows = table_rows(ref, [a], {"a": decide(ref, a, higher_is_better=True, criterion="loss")}, "a", True, "loss")
    assert rows[1]["criterion"] == "loss" and "gain ± se (val loss)" in markdown_table(rows)


def test_an_unknown_criterion_is_an_error():
    with pytest.raises(ValueError, match="unknown criterion"):
        decide(REF, cand("x", correct(10)), higher_is_better=True, criterion="vibes")


def test_a_baseline_missed_by_one_validation_sample_warns_instead_of_failing():
    from recipe.checks.ablation import BarEvidence

    bars = {"baseline/majority_accuracy": 0.7186, "baseline/linear_accuracy": 0.7814}
    n = 668  # the credit table's validation split: 0.0015 is one sample
    near = baseline_bar_check(0.7799, "classification", bars, evidence=BarEvidence(n=n))
    assert near.verdict is Verdict.WARN and "within noise" in near.check.observed
    far = baseline_bar_check(0.70, "classification", bars, evidence=BarEvidence(n=n))
    assert far.verdict is Verdict.FAIL and "linear 0.7814 NOT beaten (behind by" in far.check.observed
    overfit_stage = baseline_bar_check(
        0.70, "classification", bars, evidence=BarEvidence(n=n), behind_linear="beats_baselines.behind_linear"
    )
    assert overfit_stage.verdict is Verdict.WARN  # an unregularised model may trail a linear one
    no_noise = baseline_bar_check(0.7799, "classification", bars)  # no sample count: the old strict bar
    assert no_noise.verdict is Verdict.FAIL


def test_the_dumb_bar_is_paired_on_the_same_samples():
    from recipe.checks.ablation import BarEvidence, bar_noise

    majority = np.r_[np.ones(80), np.zeros(20)]  # the dumb baseline is right on the first 80 samples
    model = majority.copy()
    model[:6] = 0  # the model loses 6 of them and wins none back: consistently worse
    bars = {"baseline/majority_accuracy": 0.8}
    paired = baseline_bar_check(
        0.74,
        "classification",
        bars,
        evidence=BarEvidence(100, model, majority),
        behind_linear="beats_baselines.behind_linear",
    )
    assert paired.verdict is Verdict.FAIL  # 6 of 6 disagreements against it: 0.06 behind, 2.5 paired se
    assert bar_noise("classification", 0.74, 0.8, 100) > 0.06 / 2  # the aggregate bound alone would not say so
    assert math.isnan(bar_noise("regression", 10.0, 9.0, 100))  # MAE needs the MSEs
    assert bar_noise("regression", 10.0, 9.0, 100, second=150.0, bar_second=120.0) == pytest.approx(
        math.sqrt((270 - 1) / 100)
    )
