"""Champion selection rules: which of squeeze's candidates becomes the champion, chosen on validation only.

Every rule sees the same thing: for each candidate that trained, its validation result (a
:class:`~recipe.checks.ablation.CandidateResult` with per-sample val scores -- 1/0 correct, or absolute error --
and per-sample val losses) and its inference cost ``(networks, parameters)``. Comparisons between two candidates
are paired on the same val samples (:func:`recipe.checks.ablation.paired_gain`); "beyond noise" means a gain
larger than ``noise_z`` paired standard errors.

The rules (``RULES``; ``stages.squeeze.rule`` picks one, ``bench/selection_regret.py`` measures each one's test
regret over several data sets and split seeds):

* ``weighted`` (the default): the weighted ensemble (:mod:`recipe.squeeze.weighted`: Caruana et al. 2004's
  ensemble selection on the val loss, started from the ensemble -- the recipe's prior that ensembles are "a
  pretty much guaranteed" gain, seeds/004), always; without one, ``ensemble_first``. Its weights already read
  the val split, so it is not compared there again: with seven other candidates, one of them beats it by more
  than one paired standard error by chance alone often enough to cost more than it saves (``weighted_first``).
  In ``bench/selection_regret.py`` (digits, 1,500 real MNIST images, the attrition and credit tables, split
  seeds 0-2) its mean test regret was 0.0034 accuracy against 0.0057 for ``ensemble_first`` on the same
  candidates and 0.0042 for ``ensemble_first`` in the stage before it (the README's table); over 19 runs (seven
  more, held out) 0.0033 raw and 0.0010 once the test-noise floor (:func:`regret_noise_floor`, 0.0023) is taken
  off. Other blends (a start weight chosen leave-one-dataset-out, on val halves, shrinkage, top-k averages, a
  paired test against the ensemble, bagging) did no better (``bench/selection_alternatives.py``).
* ``weighted_first``: the weighted ensemble unless another candidate beats its val metric beyond noise.
* ``ensemble_first`` (the default before): the ensemble is the champion unless another candidate beats it on
  the val metric beyond noise (then the best on the val metric).
* ``student_if_close``: ``ensemble_first``, then the distilled student instead of the ensemble when the ensemble
  does not beat it beyond noise on the val metric ("distillation keeps it at a single network's cost").
* ``best_val_metric``: the best val metric, the lower val loss breaking ties.
* ``best_val_loss``: the lowest val loss.
* ``cheapest_within_noise``: the rule before #24: the cheapest candidate (fewer networks, then fewer parameters)
  that the best on val loss does not beat beyond noise. On 270 val samples nearly everything is within noise, so
  it handed back the weakest network on test (digits: 97.8% while the ensemble scored 99.3%).

In the other rules the task metric decides (accuracy, or MAE), the val loss only breaks ties: loss alone chose a
model with the lower val accuracy; the weighted ensemble's weights are fitted on the val loss, a proper scoring
rule that moves smoothly where accuracy moves one sample at a time. ``max_params`` (``stages.squeeze.max_params``) is the way to ask for a cheaper champion:
candidates with more parameters (all networks together) are not eligible, and the reason says which were left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recipe.checks.ablation import CandidateResult, paired_gain
from recipe.checks.base import fmt
from recipe.tasks import Task

Cost = tuple[int, int]  # (networks, parameters)
Pairs = Sequence[tuple[CandidateResult, Cost]]
DEFAULT_RULE = "weighted"


@dataclass(frozen=True)
class Choice:
    """A rule's choice: the champion, the best candidate on the val metric (the reference of the reason), the
    reason in words, the candidates left out by ``max_params`` (name -> parameters) and whether any fitted it."""

    champion: CandidateResult
    best: CandidateResult
    reason: str
    excluded: dict[str, int] = field(default_factory=dict)
    fits: bool = True  # False: no candidate fits max_params and the smallest was chosen


def metric_gain(a: CandidateResult, b: CandidateResult, task: Task) -> tuple[float, float]:
    """Paired gain of ``a``'s val metric over ``b``'s (positive: ``a`` is better; accuracy points or MAE units)
    and its standard error (nan without per-sample scores)."""
    return paired_gain(b.scores, a.scores, task.higher_is_better, b.val_metric, a.val_metric)


def _beats(a: CandidateResult, b: CandidateResult, task: Task, noise_z: float) -> bool:
    """``a`` beats ``b`` on the val metric beyond ``noise_z`` paired standard errors (without per-sample scores:
    by any margin)."""
    gain, se = metric_gain(a, b, task)
    return gain > (noise_z * se if math.isfinite(se) else 0.0)


def by_metric(c: CandidateResult, task: Task) -> tuple[float, float]:
    """Sort key, best first: the val metric, then the val loss (the tie-breaker)."""
    return (-task.gain(c.val_metric, 0.0), c.val_loss)


def best_on_metric(pairs: Pairs, task: Task) -> CandidateResult:
    return min((c for c, _ in pairs), key=lambda c: by_metric(c, task))


def _named(pairs: Pairs, name: str) -> CandidateResult | None:
    return next((c for c, _ in pairs if c.name == name), None)


def _vs(a: CandidateResult, b: CandidateResult, task: Task) -> str:
    gain, se = metric_gain(a, b, task)
    return (
        f"val {task.metric} {fmt(a.val_metric)} vs {b.name}'s {fmt(b.val_metric)} "
        f"(paired gain {fmt(gain)}, se {fmt(se)})"
    )


def best_val_metric(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    best = best_on_metric(pairs, task)
    return best, f"the best val {task.metric} ({fmt(best.val_metric)}; val loss {fmt(best.val_loss)} breaks ties)"


def best_val_loss(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    best = min((c for c, _ in pairs), key=lambda c: (c.val_loss, by_metric(c, task)))
    return best, f"the lowest val loss ({fmt(best.val_loss)})"


def _prefer(
    pairs: Pairs, name: str, label: str, prior: str, *, task: Task, noise_z: float
) -> tuple[CandidateResult, str]:
    """Candidate ``name`` unless another beats its val metric beyond noise (then the best on the val metric)."""
    best = best_on_metric(pairs, task)
    pref = _named(pairs, name)
    if pref is None:
        chosen, why = best_val_metric(pairs, task=task, noise_z=noise_z)
        return chosen, f"no {label} to prefer; {why}"
    if best is not pref and _beats(best, pref, task, noise_z):
        return best, f"it beats the {label} beyond {fmt(noise_z)} se: {_vs(best, pref, task)}"
    if best is pref:
        return pref, f"the {label}, also the best on val {task.metric} ({fmt(pref.val_metric)})"
    return pref, (
        f"the {label} ({prior}); the best on val, {best.name}, does not beat it beyond {fmt(noise_z)} se: "
        f"{_vs(best, pref, task)}"
    )


def ensemble_first(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    return _prefer(
        pairs, "ensemble", "ensemble", "the recipe's prior: a pretty much guaranteed gain", task=task, noise_z=noise_z
    )


def weighted_first(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    if _named(pairs, "weighted") is None:
        chosen, why = ensemble_first(pairs, task=task, noise_z=noise_z)
        return chosen, f"no weighted ensemble; {why}"
    return _prefer(
        pairs,
        "weighted",
        "weighted ensemble",
        "ensemble selection on the val loss, Caruana et al. 2004: a blend at least as good as each part on val",
        task=task,
        noise_z=noise_z,
    )


def student_if_close(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    chosen, why = ensemble_first(pairs, task=task, noise_z=noise_z)
    student = _named(pairs, "student")
    if chosen.name != "ensemble" or student is None or _beats(chosen, student, task, noise_z):
        return chosen, why
    return student, (
        f"the student distilled from the ensemble, at a single network's cost: the ensemble does not beat it "
        f"beyond {fmt(noise_z)} se ({_vs(chosen, student, task)})"
    )


def cheapest_within_noise(pairs: Pairs, *, task: Task, noise_z: float, criterion: str = "loss") -> tuple[Any, str]:
    from recipe.checks.ablation import decide

    def worse(c: CandidateResult) -> float:
        return c.val_loss if criterion == "loss" else -task.gain(c.val_metric, 0.0)

    best = min((c for c, _ in pairs), key=worse)
    for c, _ in sorted(pairs, key=lambda pair: (pair[1], worse(pair[0]))):  # cheapest first; equal cost: better
        if c is best:
            return c, f"the best on val {criterion}; no cheaper candidate is within noise of it"
        d = decide(c, best, higher_is_better=task.higher_is_better, noise_z=noise_z, criterion=criterion)
        if not d.kept:
            return c, f"cheaper than the best ({best.name}) and within noise of it: {d.reason}"
    return best, f"the best on val {criterion}"


def weighted(pairs: Pairs, *, task: Task, noise_z: float) -> tuple[CandidateResult, str]:
    pref = _named(pairs, "weighted")
    if pref is None:
        chosen, why = ensemble_first(pairs, task=task, noise_z=noise_z)
        return chosen, f"no weighted ensemble; {why}"
    best = best_on_metric(pairs, task)
    score = f"val {task.metric} {fmt(pref.val_metric)}"
    return pref, (
        "its weights are fitted on the val loss, starting from the plain ensemble; "
        + (
            f"{score}, the best on val"
            if best is pref or best.val_metric == pref.val_metric  # level with the best: no other to name
            else f"{score}; the best on val is {best.name} at {fmt(best.val_metric)}: this rule keeps the weighted "
            "ensemble whatever another scores on the val split its weights were fitted on "
            f"(stages.squeeze.rule=best_val_metric would take {best.name})"
        )
    )


Rule = Callable[..., tuple[CandidateResult, str]]
RULES: dict[str, Rule] = {
    "weighted": weighted,
    "weighted_first": weighted_first,
    "ensemble_first": ensemble_first,
    "student_if_close": student_if_close,
    "best_val_metric": best_val_metric,
    "best_val_loss": best_val_loss,
    "cheapest_within_noise": cheapest_within_noise,
}


def choose(
    pairs: Pairs,
    *,
    task: Task,
    rule: str = DEFAULT_RULE,
    noise_z: float = 1.0,
    max_params: int | None = None,
    criterion: str = "loss",
) -> Choice:
    """The champion among ``(val result, (networks, parameters))`` pairs by ``rule`` (a key of :data:`RULES`),
    among the candidates that trained and have at most ``max_params`` parameters (None: no limit).
    ``criterion`` ("loss" or "metric") is what ``cheapest_within_noise`` compares; the other rules use the
    metric, the val loss breaking ties.

    When none fits ``max_params`` the smallest is chosen (``fits`` False, the reason says so). Raises ValueError
    when no candidate trained, or for an unknown rule.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
    ok = [(c, cost) for c, cost in pairs if c.ok]
    if not ok:
        raise ValueError("no squeeze candidate trained: nothing to choose from")
    excluded = {c.name: cost[1] for c, cost in ok if max_params is not None and cost[1] > max_params}
    eligible = [(c, cost) for c, cost in ok if c.name not in excluded]
    if not eligible:
        smallest, params = min(ok, key=lambda pair: (pair[1][1], by_metric(pair[0], task)))
        reason = (
            f"no candidate has at most stages.squeeze.max_params={max_params:,} parameters: the smallest, "
            f"{smallest.name} ({params[1]:,}), instead; raise the limit or shrink the model (model.width, model.depth)"
        )
        return Choice(smallest, best_on_metric(ok, task), reason, excluded, fits=False)
    extra = {"criterion": criterion} if rule == "cheapest_within_noise" else {}
    champion, reason = RULES[rule](eligible, task=task, noise_z=noise_z, **extra)
    reason = f"rule {rule}: {reason}"
    if excluded:
        left = ", ".join(f"{n} ({p:,})" for n, p in excluded.items())
        reason += f"; not eligible, over stages.squeeze.max_params={max_params:,} parameters: {left}"
    return Choice(champion, best_on_metric(ok, task), reason, excluded)


def regret(test_metric: dict[str, float], chosen: str, task: Task) -> float:
    """Test regret of choosing ``chosen``: the best candidate's test metric minus the chosen one's, in the
    metric's units, >= 0 (``test_metric``: candidate name -> test metric)."""
    best = max(test_metric.values(), key=lambda v: task.gain(v, 0.0))
    return task.gain(best, test_metric[chosen])


def regret_noise_floor(
    test_scores: Mapping[str, np.ndarray], task: Task, *, n_boot: int = 2000, seed: int = 0
) -> float:
    """The part of :func:`regret` that test-sampling noise alone accounts for, >= 0, in the metric's units.

    :func:`regret` reads the best candidate as the one with the best metric on *this* test split: the maximum of
    noisy numbers, which overshoots the best candidate's expected metric (the winner's curse; Smith & Winkler,
    "The Optimizer's Curse", Management Science 2006), so even a rule that always chose the candidate with the best
    expected test metric would show a regret above zero. This is that overshoot's bootstrap estimate (Efron &
    Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 10): resample the test rows with replacement
    ``n_boot`` times, the same rows for every candidate (paired), and take the mean over resamples of the best
    candidate's metric minus the best of the candidates' mean metrics. For a metric that is a mean of per-sample
    scores (accuracy, MAE) that is also the expected regret, on resampled test splits, of the candidate with the
    best expected metric: the oracle's floor. ``regret - floor`` is then a noise-corrected regret (it can be
    negative when the chosen candidate is the best on test). The bootstrap's estimate of a maximum's bias
    tends to fall short when candidates are tied in truth, so the corrected number leans high, not low.

    ``test_scores``: candidate name -> per-sample test scores, shape (N,), the same N rows for every candidate
    (1/0 correct, or absolute error: :meth:`recipe.tasks.Task.scores`); the metric is their mean. Deterministic
    for a given ``seed``. Raises ValueError when there is no candidate, the score vectors differ in length or are
    empty, or ``n_boot`` < 1.
    """
    if not test_scores:
        raise ValueError("regret_noise_floor needs at least one candidate's test scores")
    if n_boot < 1:
        raise ValueError(f"regret_noise_floor needs n_boot >= 1, got {n_boot}")
    rows = [np.asarray(v, dtype=np.float64).reshape(-1) for v in test_scores.values()]
    if len({len(r) for r in rows}) != 1 or len(rows[0]) == 0:
        sizes = ", ".join(f"{k} {len(r)}" for k, r in zip(test_scores, rows, strict=True))
        raise ValueError(f"regret_noise_floor: every candidate needs scores on the same, non-empty test rows ({sizes})")
    s = np.stack(rows)  # (C, N)
    s = s if task.higher_is_better else -s  # higher is better from here on
    n = s.shape[1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, N) resamples
    metrics = counts @ s.T / n  # (B, C): each candidate's metric on each resample
    return max(0.0, float(metrics.max(1).mean() - metrics.mean(0).max()))
