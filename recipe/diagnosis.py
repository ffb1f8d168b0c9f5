"""One cause first: order a stage's findings so the confirmed, specific cause leads and the rest read as its
consequences, and give one direction for the learning rate.

One bug fails many checks: a conv body frozen at its random init fails ``overfit_one_batch`` and slows
``training_loss_decreases``; functional dropout left on in eval fails ``fixed_seed``. Read one by one, each
check's advice is a generic list of possibilities (or the wrong cause). :func:`diagnose` reads them together:

1. **A confirmed cause leads.** A check in :data:`CAUSES` that FAILs has seen the mechanism itself (a frozen
   layer, a random op in eval mode, a softmax output, gradient crossing the batch, a NaN). The most specific one
   (table order) leads with its observed text as the evidence; every non-passing check of :data:`SYMPTOMS` is
   marked as its likely consequence (``Check.consequence_of``) and its advice -- a generic list -- is replaced by a
   pointer to the cause. Other confirmed causes stay as they are (independent bugs). WARN causes never lead:
   a layer never called or batch norm kept frozen explains no failure by itself.
2. **Otherwise the most specific symptom leads**, when two or more symptoms FAIL: the others are marked as its
   possible consequences and keep their own advice (the generic list appears only here, when nothing specific
   was confirmed).
3. **One direction for the learning rate.** When the stage's remaining advice says both "raise" and "lower" the
   learning rate (:data:`LR_RULES`), the evidence decides: a training loss that rose above its start (or became
   NaN) means too high; one that fell without rising means not too high, so the checks that say too low decide
   (and the overruled advice says it that way, not that the fall shows a rate too low). Without a loss curve the
   first rule in :data:`LR_RULES` order that applies wins (a divergence before anything else). The advice that
   lost is rewritten to say so.

Source: the recipe's "one change at a time, debug the first thing that breaks" (seeds/004) and the design's
"Diagnosis: general detectors, one cause first" (DESIGN.md). Pure functions on findings; no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from recipe.checks.base import Finding
from recipe.checks.curves import RATIO_ADVICE
from recipe.report import Verdict

# Checks whose FAIL names a mechanism, most specific first.
CAUSES: tuple[str, ...] = (
    "trainable_parameters",  # recipe.checks.audit: frozen at random init, not in the optimiser, a cut graph
    "eval_deterministic",  # random ops in eval mode, state changed by an eval pass
    "output_layer",  # probabilities into cross-entropy
    "batch_independence",  # gradient crossing between the examples of a batch
    "augmentation_preserves_labels",  # an augmentation that destroys the label
    "batchnorm_train_mode",  # (a WARN: never leads, listed for its rank)
    "finite_loss",  # the NaN guard tripped: a divergence, with its step
)

# Checks that report an effect whose cause they cannot see, most specific first (the fallback lead).
SYMPTOMS: tuple[str, ...] = (
    "fixed_seed",
    "loss_at_init",
    "input_independent",
    "init_well",
    "overfit_one_batch",
    "training_loss_decreases",
    "dumb_baselines",
    "prediction_dynamics",
    "visualise_before_net",
    "human_metric",
    "train_target",
    "capacity_ladder",
    "beats_baselines",
    "lr_finder",
    "update_ratio",
    "curves_lr_too_low",
    "curves_plateau",
    "curves_underfitting",
    "curves_train_longer",
)

# Learning-rate advice: check -> (a phrase of its advice, the direction it gives), in priority order (used when no
# loss curve decides). A test pins every phrase to the advice text it is read from.
LR_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "finite_loss": (("lower optim.lr", "lower"),),
    "update_ratio": ((RATIO_ADVICE["high"], "lower"), (RATIO_ADVICE["low"], "raise")),
    "curves_plateau": (("the learning rate is too high", "lower"),),
    "curves_lr_too_low": (("raise the learning rate", "raise"),),
    "training_loss_decreases": (("optim.lr 3-10x higher", "raise"),),
    "overfit_one_batch": (("a higher learning rate", "raise"),),
    "lr_finder": (("raise stages.overfit.lr_max", "raise"),),
    "curves_underfitting": (("raise the learning rate", "raise"),),
}
RISE = 0.1  # a smoothed training loss more than 10% above its start "rose"
EVIDENCE_CHARS = 200  # the lead's observed text quoted in its consequences' advice, at most


@dataclass(frozen=True)
class LossTrend:
    """Whether a training loss rose above its start (too high a learning rate) or fell without rising, in words."""

    rose: bool
    text: str


def loss_trend(losses: Sequence[float], start: float | None = None, *, rise: float = RISE) -> LossTrend | None:
    """``losses``: a training loss curve (nats or squared target units; the smoothed per-step loss is best);
    ``start``: its value at init (default: its first value). Rose: a non-finite value, or a value more than
    ``rise`` (a fraction) above ``start``. None with fewer than 2 values."""
    if len(losses) < 2:
        return None
    finite = [float(v) for v in losses if math.isfinite(v)]
    if len(finite) < len(losses):
        return LossTrend(True, "the training loss became NaN/inf")
    s = finite[0] if start is None or not math.isfinite(start) else float(start)
    peak = max(finite)
    if peak > s * (1 + rise) and peak > s:
        return LossTrend(True, f"the training loss rose from {s:.4g} to {peak:.4g}")
    return LossTrend(False, f"the training loss fell from {s:.4g} to {finite[-1]:.4g} without rising above its start")


@dataclass(frozen=True)
class Diagnosis:
    """The order :func:`diagnose` found: the leading check (None: nothing to order), whether it is a confirmed
    cause, its evidence (observed text), the checks marked as its consequences, other confirmed causes, and the
    learning-rate direction the stage's advice was reconciled to (with the evidence and the overruled checks)."""

    lead: str | None = None
    confirmed: bool = False
    evidence: str = ""
    consequences: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    lr: str | None = None  # "raise" | "lower"
    lr_evidence: str = ""
    overruled: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.lead is not None or self.lr is not None

    def sentence(self) -> str:
        """One line for the stage's notes and the terminal: the lead first, then the rest."""
        parts = []
        if self.lead and self.confirmed:
            parts.append(f"leading cause: {self.lead} ({_clip(self.evidence)})")
            if self.consequences:
                parts.append(f"likely its consequences: {', '.join(self.consequences)}")
        elif self.lead:
            parts.append(
                f"no specific cause was confirmed; {self.lead} is the most specific failure"
                + (f", the others ({', '.join(self.consequences)}) may follow from it" if self.consequences else "")
            )
        if self.also:
            parts.append(f"also confirmed: {', '.join(self.also)}")
        if self.lr:
            parts.append(f"learning rate: {self.lr} it ({self.lr_evidence})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``diagnosis`` entry (``recipe.report.DiagnosisReport``)."""
        out: dict[str, Any] = {"lead": self.lead, "confirmed": self.confirmed, "evidence": self.evidence}
        out |= {"consequences": list(self.consequences), "also_confirmed": list(self.also)}
        if self.lr:
            out |= {"lr": self.lr, "lr_evidence": self.lr_evidence, "lr_overruled": list(self.overruled)}
        out["summary"] = self.sentence()
        return out


def diagnose(findings: Sequence[Finding], *, trend: LossTrend | None = None) -> tuple[list[Finding], Diagnosis]:
    """The findings in the same order, consequences marked and conflicting learning-rate advice resolved, and the
    :class:`Diagnosis` (see the module docstring). ``trend``: :func:`loss_trend` of the stage's training loss,
    the evidence for the learning rate's direction."""
    out = list(findings)
    diag = _order(out)
    return _reconcile_lr(out, diag, trend)


def _order(out: list[Finding]) -> Diagnosis:
    rank = {n: i for i, n in enumerate(CAUSES)}
    causes = sorted((f for f in out if f.name in rank and f.verdict is Verdict.FAIL), key=lambda f: rank[f.name])
    symptoms = [f for f in out if f.name in SYMPTOMS and f.verdict is not Verdict.PASS]
    if causes:
        lead, confirmed = causes[0], True
    else:
        failed = sorted((f for f in symptoms if f.verdict is Verdict.FAIL), key=lambda f: SYMPTOMS.index(f.name))
        if len(failed) < 2:
            return Diagnosis()
        lead, confirmed = failed[0], False
    marked = []
    for i, f in enumerate(out):
        if f.name in SYMPTOMS and f.verdict is not Verdict.PASS and f is not lead:
            out[i] = _consequence(f, lead, confirmed)
            marked.append(f.name)
    also = tuple(f.name for f in causes[1:])
    return Diagnosis(lead.name, confirmed, str(lead.check.observed), tuple(marked), also)


def _consequence(f: Finding, lead: Finding, confirmed: bool) -> Finding:
    if confirmed:
        advice = f"likely a consequence of {lead.name}, a confirmed cause (see its observed text): fix that first and run again"
    else:
        advice = (
            f"possibly a consequence of {lead.name}, the most specific failure here (no specific cause was "
            f"confirmed): look at it first. Otherwise: {f.check.advice}"
        )
    return replace(f, check=replace(f.check, advice=advice, consequence_of=lead.name))


def directions(f: Finding) -> list[str]:
    """The learning-rate directions ("raise", "lower") a non-passing finding's advice gives (:data:`LR_RULES`)."""
    if f.verdict is Verdict.PASS:
        return []
    return list(dict.fromkeys(d for phrase, d in LR_RULES.get(f.name, ()) if phrase in f.check.advice))


def _reconcile_lr(out: list[Finding], diag: Diagnosis, trend: LossTrend | None) -> tuple[list[Finding], Diagnosis]:
    said = {f.name: directions(f) for f in out}
    said = {k: v for k, v in said.items() if v}
    if not ({"raise", "lower"} <= {d for v in said.values() for d in v}):
        return out, diag
    if trend is not None:
        win = "lower" if trend.rose else "raise"
        evidence = trend.text
    else:
        first = next(n for n in LR_RULES if n in said)
        win = said[first][0]
        evidence = f"{first} is the most direct evidence here"
    lose = "raise" if win == "lower" else "lower"
    winners = [n for n, v in said.items() if win in v]
    overruled = []
    for i, f in enumerate(out):
        if lose not in said.get(f.name, []):
            continue
        overruled.append(f.name)
        out[i] = replace(f, check=replace(f.check, advice=_overruled_advice(f, win, evidence, winners)))
    return out, replace(diag, lr=win, lr_evidence=evidence, overruled=tuple(overruled))


def _overruled_advice(f: Finding, win: str, evidence: str, winners: list[str]) -> str:
    """The advice of a check whose learning-rate direction lost. It must not contain the losing direction's
    phrase (:data:`LR_RULES`), or the stage would still say both."""
    too, lose = ("too high", "raise") if win == "lower" else ("too low", "lower")
    also = [n for n in winners if n != f.name]
    says = "says" if len(also) == 1 else "say"
    said = f", as {', '.join(also)} {says}" if also else ""
    verdict = f"{evidence}, so the learning rate is {too}{said}: {win} it rather than {lose} it"
    if win == "raise" and not evidence.endswith("the most direct evidence here"):
        # a loss that fell shows the rate is not too high, not that it is too low: that is the other checks' word
        # (a new user read "ratios above the range ... so the learning rate is too low" as backwards)
        low = f", and {', '.join(also)} {says} it is too low" if also else ""
        verdict = f"{evidence}: large updates, but no rate too high{low}: {win} it rather than {lose} it"
    if f.name == "update_ratio" and win in directions(f):  # layers on both sides of the range
        kept = RATIO_ADVICE["high" if win == "lower" else "low"]
        other = "below" if win == "lower" else "above"
        return f"{kept}; layers {other} the range: check their init and gradient flow, not the global rate ({verdict})"
    return verdict


def _clip(text: str, n: int = EVIDENCE_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["CAUSES", "LR_RULES", "SYMPTOMS", "Diagnosis", "LossTrend", "diagnose", "directions", "loss_trend"]
