"""Learning-curve diagnosis: name what the loss curves show, with the numbers behind each finding.

Pure functions on per-epoch train / validation losses (and optionally the per-step smoothed training loss),
reusable by every stage. Each finding is a :class:`~recipe.checks.base.Finding` whose check is PASS when the
curves do not show the problem and WARN, with advice, when they do:

=========================== =================================================================================
check                       what the curves show (thresholds in :class:`CurveThresholds`)
=========================== =================================================================================
curves_lr_too_low           the training loss falls slowly and steadily: under ``slow_drop`` of its start
                            gone, the first ``early_frac`` of the run giving under ``slow_early_share`` of the
                            fall, still falling at the end: the learning rate is too low
curves_plateau              a fast early drop, then a plateau at a high level: the first part of the run gave
                            over ``plateau_early_share`` of the fall, the second half moved under
                            ``plateau_flat`` of the start, and the loss stayed above ``plateau_level`` of it: the
                            learning rate is too high for the end of training (lower it or decay it)
curves_overfitting          validation diverges from training: the validation loss reached its minimum before
                            the last ``tail_frac`` of the run and sits there (median of the tail) over
                            ``overfit_rise`` above it, while the training loss kept falling
curves_underfitting         training and validation are close (gap under ``underfit_gap`` of the training loss)
                            and both poor (the training target was not met, or the training loss is above
                            ``underfit_level`` of its start): the model is too small or trains too little
curves_train_longer         both curves still improve at the end: over the last ``tail_frac`` of the run
                            (a line fit) each still made over ``still_improving`` of its total fall
=========================== =================================================================================

"Start" is ``reference_loss`` when given (the loss at init, e.g. ln(10) for ten balanced classes), else the
first value of the curve. The shape findings (lr too low, plateau) read the per-step smoothed loss when it
is given (finer than epochs, and it starts at the loss at init), else the per-epoch training loss.

The overfit stage expects overfitting (that is its goal): with ``expect_overfit=True`` that finding is a
PASS that still reports the numbers.

:func:`update_ratio_check` judges the update-to-weight ratios the ``UpdateRatio`` callback records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recipe.checks.base import Finding, finding, fmt
from recipe.report import Verdict

PASS, WARN = Verdict.PASS, Verdict.WARN

CHECKS = ("curves_lr_too_low", "curves_plateau", "curves_overfitting", "curves_underfitting", "curves_train_longer")


@dataclass(frozen=True)
class CurveThresholds:
    """The numbers behind each finding (see the module docstring); every default is given here."""

    min_points: int = 4  # fewer epochs (or steps) than this: the shape is not judged
    early_frac: float = 0.2  # "early": the first fifth of the run
    slow_drop: float = 0.5  # lr too low: less than half of the starting loss gone ...
    slow_early_share: float = 0.5  # ... with the early fifth giving less than half of the fall
    plateau_early_share: float = 0.8  # plateau: the early fifth gave at least 80% of the fall ...
    plateau_flat: float = 0.05  # ... the second half moved less than 5% of the starting loss ...
    plateau_level: float = 0.2  # ... and the loss stayed above 20% of its start
    overfit_rise: float = 0.1  # overfitting: the val tail is 10% or more above the val minimum
    underfit_gap: float = 0.1  # underfitting: val within 10% of train ...
    underfit_level: float = 0.3  # ... and train above 30% of its start (when the target is not known)
    tail_frac: float = 0.2  # "the end": the last fifth of the run, at least 3 points
    still_improving: float = 0.03  # train longer: the tail still gave both curves 3% or more of their total fall


def _clean(values: Sequence[float] | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    a = np.asarray([float(v) for v in values], dtype=np.float64)
    return a[np.isfinite(a)]


def _tail(n: int, frac: float) -> int:
    return int(min(n, max(3, math.ceil(frac * n))))


def tail_change(values: Sequence[float], frac: float = 0.2) -> float:
    """Relative change over the last ``frac`` of a curve (at least 3 points) from a least-squares line:
    negative when it falls. ``slope * (points - 1) / mean``."""
    a = _clean(values)
    if len(a) < 3:
        return math.nan
    t = a[-_tail(len(a), frac) :]
    slope = np.polyfit(np.arange(len(t)), t, 1)[0]
    level = abs(float(t.mean())) or 1.0
    return float(slope * (len(t) - 1) / level)


def _shape(curve: np.ndarray, start: float, th: CurveThresholds) -> dict[str, float]:
    """The numbers both shape findings use: total fall, early share, late flatness, level."""
    n = len(curve)
    end = float(curve[-1])
    fall = start - end
    k = max(0, min(n - 1, math.ceil(th.early_frac * n) - 1))
    early_share = (start - float(curve[k])) / fall if fall > 0 else math.nan
    half = curve[n // 2 :]
    scale = abs(start) or 1.0  # changes are fractions of the starting loss: near zero, relative changes explode
    t = curve[-_tail(n, th.tail_frac) :]
    tail = float(np.polyfit(np.arange(len(t)), t, 1)[0] * (len(t) - 1)) / scale if len(t) >= 2 else math.nan
    return {
        "start": start,
        "end": end,
        "drop": fall / scale,
        "early_share": early_share,
        "early_at": k + 1,
        "late_change": float(half.max() - half.min()) / scale,
        "level": end / start if start else math.nan,
        "tail": tail,
    }


def _not_judged(name: str, hypothesis: str, why: str) -> Finding:
    return finding(name, hypothesis, f"not judged: {why}", "a curve long enough to judge", PASS)


HYPOTHESES = {
    "curves_lr_too_low": "the training loss does not fall slowly and steadily (a too-low learning rate)",
    "curves_plateau": "the training loss does not drop fast and then plateau high (a too-high learning rate)",
    "curves_overfitting": "validation loss does not turn up while training loss keeps falling",
    "curves_underfitting": "training and validation are not both poor and close together",
    "curves_train_longer": "training has converged: the curves are not both still improving at the end",
}


def diagnose_curves(
    train: Sequence[float],
    val: Sequence[float] | None = None,
    *,
    steps: Sequence[float] | None = None,
    reference_loss: float | None = None,
    train_target_met: bool | None = None,
    expect_overfit: bool = False,
    thresholds: CurveThresholds | None = None,
    unit: str = "epoch",
) -> list[Finding]:
    """The five curve findings (see the module docstring), in the order of ``CHECKS``; each PASS or WARN, never
    FAIL, and "not judged" (PASS) when a curve is too short. Non-finite values are dropped. Source: "look at
    learning curves" (seeds/001, step 6) and the recipe's "regularize" / "tune" readings (seeds/004).

    Args:
        train: per-epoch training loss (nats, or squared target units).
        val: per-epoch validation loss, same length (None: the validation findings are not judged).
        steps: per-step smoothed training loss; used for the two shape findings when it has enough points.
        reference_loss: the loss at init the falls are measured from (default: the first value of the curve).
        train_target_met: whether the stage's training target was reached (decides "poor" for underfitting).
        expect_overfit: report overfitting as PASS (the overfit stage wants it).
        thresholds: :class:`CurveThresholds` (defaults as documented there).
        unit: the word for one point of ``train`` / ``val`` in the texts ("epoch").
    """
    th = thresholds or CurveThresholds()
    tr, va = _clean(train), _clean(val)
    shape = _shape_findings(tr, _clean(steps), reference_loss, th, unit)
    return shape + _fit_findings(tr, va, reference_loss, train_target_met, expect_overfit, th, unit)


def _shape_findings(
    tr: np.ndarray, st: np.ndarray, reference_loss: float | None, th: CurveThresholds, unit: str
) -> list[Finding]:
    """lr too low and plateau, read on the per-step curve ``st`` when it has at least max(min_points, 10)
    points, else on the per-epoch training curve ``tr``."""
    curve, what = (st, "step") if len(st) >= max(th.min_points, 10) else (tr, unit)
    if len(curve) < th.min_points:
        why = f"only {len(curve)} {what}s of training loss"
        return [_not_judged(n, HYPOTHESES[n], why) for n in ("curves_lr_too_low", "curves_plateau")]
    start = float(reference_loss) if reference_loss is not None else float(curve[0])
    s = _shape(curve, start, th)
    return [_lr_too_low(s, th, what, len(curve)), _plateau(s, th, what, len(curve))]


def _fit_findings(
    tr: np.ndarray,
    va: np.ndarray,
    reference_loss: float | None,
    target_met: bool | None,
    expect_overfit: bool,
    th: CurveThresholds,
    unit: str,
) -> list[Finding]:
    """Overfitting, underfitting and train longer: training against validation, both cut to the shorter."""
    n = min(len(tr), len(va))
    if len(va) == 0 or n < th.min_points:
        why = "no validation curve" if len(va) == 0 else f"only {n} {unit}s"
        return [_not_judged(name, HYPOTHESES[name], why) for name in CHECKS[2:]]
    tr, va = tr[:n], va[:n]
    start = float(reference_loss) if reference_loss is not None else float(tr[0])
    return [
        _overfitting(tr, va, th, expect_overfit, unit),
        _underfitting(tr, va, start, target_met, th),
        _train_longer(tr, va, th, unit),
    ]


def _lr_too_low(s: dict[str, float], th: CurveThresholds, unit: str, n: int) -> Finding:
    slow = s["drop"] < th.slow_drop and not s["early_share"] >= th.slow_early_share and s["tail"] < 0
    observed = (
        f"loss {fmt(s['start'])} -> {fmt(s['end'])} ({s['drop']:.0%} gone) over {n} {unit}s; the first "
        f"{s['early_at']} gave {_pct(s['early_share'])} of the fall; {_falling(s['tail'])} at the end"
    )
    expected = f">= {th.slow_drop:.0%} gone, or most of the fall early (>= {th.slow_early_share:.0%})"
    return finding(
        "curves_lr_too_low",
        HYPOTHESES["curves_lr_too_low"],
        observed,
        expected,
        WARN if slow else PASS,
        "the loss falls too slowly: raise the learning rate (try 3-10x, or the LR finder's suggestion)",
        metrics={"curves/train_drop": s["drop"], "curves/early_share": s["early_share"]},
    )


def _plateau(s: dict[str, float], th: CurveThresholds, unit: str, n: int) -> Finding:
    plateau = (
        s["early_share"] >= th.plateau_early_share
        and s["late_change"] < th.plateau_flat
        and (s["level"] > th.plateau_level)
    )
    observed = (
        f"the first {s['early_at']} of {n} {unit}s gave {_pct(s['early_share'])} of the fall; the second half "
        f"moved {s['late_change']:.1%} of the start; the loss ended at {_pct(s['level'])} of it ({fmt(s['end'])})"
    )
    expected = (
        f"no plateau above {th.plateau_level:.0%} of the start after an early drop "
        f"(early share < {th.plateau_early_share:.0%} or late change >= {th.plateau_flat:.0%} of the start)"
    )
    return finding(
        "curves_plateau",
        HYPOTHESES["curves_plateau"],
        observed,
        expected,
        WARN if plateau else PASS,
        "a fast early drop, then a plateau: the learning rate is too high for the later steps; lower it, or "
        "decay it (schedule.name=cosine or plateau) once the rest of the recipe is done",
        metrics={"curves/late_change": s["late_change"], "curves/end_level": s["level"]},
    )


def _overfitting(tr: np.ndarray, va: np.ndarray, th: CurveThresholds, expect: bool, unit: str) -> Finding:
    k = int(np.argmin(va))
    n_tail = _tail(len(va), th.tail_frac)
    tail = va[-n_tail:]
    level = float(np.median(tail))  # the median: one noisy epoch is not a trend
    rise = level / float(va[k]) - 1 if va[k] > 0 else math.inf
    train_fell = tr[-1] < tr[k]
    before_tail = k < len(va) - n_tail  # a minimum inside the tail is recent: nothing has diverged yet
    over = rise >= th.overfit_rise and train_fell and before_tail
    observed = (
        f"val loss {fmt(va[k])} at its minimum ({unit} {k}) -> median {fmt(level)} over the last "
        f"{n_tail} ({rise:+.0%}) while train loss went {fmt(tr[k])} -> {fmt(tr[-1])}"
    )
    if over and expect:
        observed += "; expected in this stage, which fits the training set on purpose"
    verdict = WARN if over and not expect else PASS
    return finding(
        "curves_overfitting",
        HYPOTHESES["curves_overfitting"],
        observed,
        f"val loss within {th.overfit_rise:.0%} of its minimum at the end",
        verdict,
        f"the model overfits from {unit} {k}: regularize (more data, augmentation, weight decay, dropout) or stop "
        f"early on validation loss (around {unit} {k})",
        metrics={"curves/val_rise": rise, "curves/val_best_epoch": float(k)},
    )


def _underfitting(
    tr: np.ndarray, va: np.ndarray, start: float, target_met: bool | None, th: CurveThresholds
) -> Finding:
    gap = float((va[-1] - tr[-1]) / abs(tr[-1])) if tr[-1] else math.inf
    level = float(tr[-1] / start) if start else math.nan
    poor = (not target_met) if target_met is not None else level > th.underfit_level
    close = abs(gap) < th.underfit_gap
    why_poor = (
        "the training target was " + ("met" if target_met else "not met")
        if target_met is not None
        else f"train loss at {level:.0%} of its start {fmt(start)}"
    )
    rel = f"{gap:+.0%} of train" if abs(gap) < 10 else f"val {fmt(va[-1] / tr[-1])}x train"
    observed = f"train {fmt(tr[-1])}, val {fmt(va[-1])} (gap {rel}); {why_poor}"
    good_fit = "the target met" if target_met is not None else f"train <= {th.underfit_level:.0%} of the start"
    expected = f"a good training fit ({good_fit}), or val clearly above train (gap >= {th.underfit_gap:.0%})"
    return finding(
        "curves_underfitting",
        HYPOTHESES["curves_underfitting"],
        observed,
        expected,
        WARN if (poor and close) else PASS,
        "train and validation are close and both poor: the model underfits; make it bigger (capacity ladder), "
        "train longer, or raise the learning rate before regularizing anything",
        metrics={"curves/gap": gap, "curves/train_level": level},
    )


def _tail_share(curve: np.ndarray, frac: float) -> float:
    """The fall of the line fit over the last ``frac`` of the curve, as a share of the curve's total fall (its
    first value minus its minimum): how much progress is still being made at the end."""
    t = curve[-_tail(len(curve), frac) :]
    total = float(curve[0] - curve.min())
    if len(t) < 2 or total <= 0:
        return 0.0
    return float(-np.polyfit(np.arange(len(t)), t, 1)[0] * (len(t) - 1)) / total


def _train_longer(tr: np.ndarray, va: np.ndarray, th: CurveThresholds, unit: str) -> Finding:
    ct, cv = _tail_share(tr, th.tail_frac), _tail_share(va, th.tail_frac)
    both = ct >= th.still_improving and cv >= th.still_improving
    k = _tail(len(tr), th.tail_frac)
    observed = f"the last {k} {unit}s still gave {ct:.1%} of the train loss's total fall and {cv:.1%} of the val loss's"
    return finding(
        "curves_train_longer",
        HYPOTHESES["curves_train_longer"],
        observed,
        f"not both still making {th.still_improving:.0%} or more of their fall",
        WARN if both else PASS,
        "both curves are still improving: train longer (raise budget.epochs) before judging this model",
        metrics={"curves/train_tail_share": ct, "curves/val_tail_share": cv},
    )


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.0%}"


def _falling(change: float) -> str:
    if not math.isfinite(change):
        return "n/a"
    what = "still falling" if change < 0 else "flat or rising"
    return f"{what} ({change:+.2%} of the start over the last fifth)"


# --- update-to-weight ratios ----------------------------------------------------------------------------------


def update_ratio_check(
    history: Sequence[tuple[int, dict[str, float]]],
    low: float = -4.0,
    high: float = -2.0,
    last_frac: float = 1.0,
    max_listed: int = 6,
) -> Finding:
    """Judge per-layer update-to-weight ratios (``history``: (step, layer -> log10 of ||dW|| / ||W||) rows from
    the ``UpdateRatio`` callback). Each layer's value is :func:`layer_medians` over the last ``last_frac`` of the
    rows. Around -3 is healthy; below ``low`` the layer barely learns (learning rate too low for it), above
    ``high`` it is thrashed (too high): WARN naming up to ``max_listed`` such layers; PASS when nothing was
    recorded. Source: "track ratio of weight update / weight magnitude" (seeds/001)."""
    name = "update_ratio"
    hypothesis = f"every layer's update/weight ratio is near 1e-3 (log10 within [{low:g}, {high:g}])"
    if not history:
        return finding(name, hypothesis, "not measured: no update ratios recorded", "ratios recorded", PASS)
    medians = layer_medians(history, last_frac)
    off = {k: v for k, v in medians.items() if not low <= v <= high}
    observed = (
        f"{len(medians)} layers, median log10 ratio from {min(medians.values()):.2f} to {max(medians.values()):.2f}"
    )
    if off:
        listed = ", ".join(f"{k} {v:.2f}" for k, v in list(off.items())[:max_listed])
        more = f" and {len(off) - max_listed} more" if len(off) > max_listed else ""
        observed += f"; outside the range: {listed}{more}"
    advice = [RATIO_ADVICE["high"]] if any(v > high for v in off.values()) else []
    advice += [RATIO_ADVICE["low"]] if any(v < low for v in off.values()) else []
    metrics = {f"update_ratio/{k}": v for k, v in medians.items() if math.isfinite(v)}
    expected = f"log10 ratio in [{low:g}, {high:g}] for every layer"
    return finding(name, hypothesis, observed, expected, WARN if off else PASS, "; ".join(advice), metrics=metrics)


# What to do about layers whose update ratio is above / below the range, in this order.
RATIO_ADVICE = {
    "high": "layers above the range are updated too hard: lower the learning rate",
    "low": "layers below it barely move: raise the learning rate, or check their init / gradient flow",
}


def layer_medians(history: Sequence[tuple[int, dict[str, float]]], last_frac: float = 1.0) -> dict[str, float]:
    """layer -> the median of its finite log10 update ratios over the last ``last_frac`` of the rows (at least
    one), for the layers of the last row; -inf for a layer with none. Single steps are noisy, and once the loss
    has converged every ratio sinks, which says nothing about the learning rate: hence the default, the whole
    run. ``history`` must not be empty (IndexError)."""
    rows = list(history)[-max(1, math.ceil(len(history) * last_frac)) :]
    medians = {}
    for layer in rows[-1][1]:
        vals = [r[layer] for _, r in rows if layer in r and math.isfinite(r[layer])]
        medians[layer] = float(np.median(vals)) if vals else -math.inf
    return medians
