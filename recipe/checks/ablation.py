"""Ablation bookkeeping: one change at a time against a reference, keep what helps beyond noise, combine.

Pure functions on :class:`CandidateResult` records (no training, no MLflow), so every rule is testable on
made-up numbers. The regularize stage uses them; tune and squeeze can too.

The rules
---------
* **Beyond noise.** Every candidate is evaluated on the same validation samples as the reference, so the
  comparison is paired: with ``d_i`` the per-sample gain, the gain is ``mean(d)`` and its standard error
  ``std(d) / sqrt(n)``. Two criteria:

  - ``metric``: ``d_i`` is correct-minus-correct (classification; the McNemar view: only samples the two
    models disagree on count) or reference minus candidate absolute error (regression).
  - ``loss`` (the regularize stage's default): ``d_i`` is the reference's minus the candidate's per-sample
    validation loss ("give up some training loss to improve the validation loss"), and the metric must not
    get worse beyond noise. On a small, nearly solved validation set accuracy moves by whole samples and
    almost nothing is ever beyond noise; the loss, a finer score of the same predictions, still resolves.

  A candidate is **kept** when ``gain > max(min_delta, noise_z * se)``; with the default ``noise_z = 1`` a
  gain of one standard error. Without per-sample scores the gain is the difference of the aggregate values
  and only ``min_delta`` applies. The noise is that of the validation sample; training noise (another seed)
  is not measured.
* **One value per kind.** Candidates of one ``group`` (several weight decays) are alternatives: the kept one
  with the largest gain represents the group.
* **Combine.** The representatives' changes are merged (in order of gain; a key two groups set differently
  keeps the first and the clash is noted), trained together and compared again.
* **Verify.** The combination is chosen when it beats the best single kept change on the criterion, beyond
  noise (the same paired rule, with that change as the reference): what the other changes add on top of it
  must be real. Otherwise that single change is chosen (fewer changes for the same result). With nothing
  kept, the reference stays.

The dumb-baseline bar (:func:`baseline_bar_check`) reads the baselines stage's metrics defensively: a missing
key means no bar, and the check says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recipe.checks.base import CheckBuilder, Finding, finding, fmt
from recipe.checks.curves import diagnose_curves
from recipe.report import Verdict
from recipe.tasks import Task, task_for

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL

# What to do when a gated check does not pass, keyed "<check>.<outcome>"; ``{fields}`` are filled by the check.
ADVICE = {
    "improves_on_reference.nothing_helped": (
        "no regulariser helped at this budget: if the reference hardly overfits (small gap), grow the "
        "model or train longer first (stages.regularize.epochs); else try stronger settings (more "
        "augmentation, larger weight decay) or, best of all, more data"
    ),
    "beats_baselines.no_stage": "run the baselines stage (flows run recipe --stage baselines) to get the bar",
    "beats_baselines.lost": (
        "the model does not beat the {lost} baseline on validation: look for a bug in the "
        "data pipeline or the model before tuning anything (curves, predictions, the baselines "
        "stage's checks)"
    ),
    "beats_baselines.no_metrics": "the baselines stage logged no baseline metrics: nothing to compare with",
    "beats_baselines.within_noise": (
        "the model is level with the {lost} baseline within validation noise: no evidence of a bug, and none "
        "that it is better; more validation data, or the later stages (regularize, tune), separate them"
    ),
    "beats_baselines.behind_search": (
        "the search's best trial trails the {lost} baseline beyond noise: its trials are short runs that rank "
        "configs (stages.tune.epochs, or what budget.minutes left them), not the final model, and the stages before "
        "judged the full-length model against this bar; squeeze trains the chosen config in full and is judged "
        "on test. If the trials are far behind, give them more epochs (stages.tune.epochs or budget.minutes)"
    ),
    "beats_baselines.behind_still_learning": (
        "the model trails the {lost} baseline beyond noise while its train and val losses were both still falling "
        "at the end (curves_train_longer): it is under-trained at these epochs (stages.regularize.epochs, or what "
        "budget.minutes left them), not shown to be broken; tune and squeeze train on from here, and squeeze "
        "judges the final model against this bar on test"
    ),
    "beats_baselines.behind_linear": (
        "the model trails the {lost} baseline beyond noise; here that is expected of an unregularised model on a "
        "small data set (the regularize stage must close it), a bug only if the curves also look wrong"
    ),
}


@dataclass
class CandidateResult:
    """One trained (or skipped) variant and how it scored."""

    name: str
    group: str  # the kind of change; candidates of one group are alternatives ("weight_decay")
    changes: dict[str, Any] = field(default_factory=dict)  # dotted config overrides on top of the reference
    val_metric: float = math.nan  # accuracy (higher is better) or MAE (lower is better)
    train_metric: float = math.nan  # the same metric on the training split, eval mode, no augmentation
    val_loss: float = math.nan
    train_loss: float = math.nan
    scores: np.ndarray | None = None  # per validation sample: 1/0 correct, or the absolute error
    loss_scores: np.ndarray | None = None  # per validation sample: the loss
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    run_id: str | None = None
    seconds: float = 0.0
    epochs: int = 0

    @property
    def ok(self) -> bool:
        """Trained and scored: status "ok" and a finite val metric."""
        return self.status == "ok" and math.isfinite(self.val_metric)

    def gap(self, higher_is_better: bool, criterion: str = "metric") -> float:
        """How much better the model does on training than on validation data, in metric or loss units."""
        if criterion == "loss":
            return self.val_loss - self.train_loss
        d = self.train_metric - self.val_metric
        return d if higher_is_better else -d


CRITERIA = ("metric", "loss")


@dataclass(frozen=True)
class Decision:
    """Whether one candidate is kept against its reference, with the gain and noise the rule compared."""

    name: str
    kept: bool
    gain: float  # improvement over the reference on the criterion (positive is better)
    se: float  # paired standard error of the gain (nan without per-sample scores)
    reason: str
    metric_gain: float = math.nan  # the metric's own gain and standard error (equal to the above for "metric")
    metric_se: float = math.nan


def paired_gain(
    ref_scores: np.ndarray | None,
    cand_scores: np.ndarray | None,
    higher_is_better: bool,
    ref_metric: float = math.nan,
    cand_metric: float = math.nan,
) -> tuple[float, float]:
    """``(gain, standard error)`` of a candidate over the reference on the same samples (see the module doc)."""
    if ref_scores is None or cand_scores is None or len(ref_scores) != len(cand_scores) or len(ref_scores) == 0:
        gain = cand_metric - ref_metric if higher_is_better else ref_metric - cand_metric
        return float(gain), math.nan
    d = np.asarray(cand_scores, dtype=np.float64) - np.asarray(ref_scores, dtype=np.float64)
    if not higher_is_better:
        d = -d
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(d.mean()), se


def decide(
    reference: CandidateResult,
    candidate: CandidateResult,
    *,
    higher_is_better: bool,
    noise_z: float = 1.0,
    min_delta: float = 0.0,
    criterion: str = "metric",
) -> Decision:
    """Keep ``candidate`` when it beats ``reference`` beyond noise on ``criterion`` (the module docstring's rule);
    a candidate that did not train is dropped. Raises ValueError for a criterion not in ``CRITERIA``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if not candidate.ok:
        why = candidate.note or candidate.status
        return Decision(candidate.name, False, math.nan, math.nan, f"{candidate.status}: {why}")
    m_gain, m_se = paired_gain(
        reference.scores, candidate.scores, higher_is_better, reference.val_metric, candidate.val_metric
    )
    if criterion == "metric":
        gain, se, what = m_gain, m_se, "metric gain"
    else:
        gain, se = paired_gain(
            reference.loss_scores, candidate.loss_scores, False, reference.val_loss, candidate.val_loss
        )
        what = "val loss gain"
    bar = max(min_delta, noise_z * se) if math.isfinite(se) else min_delta
    kept = gain > bar
    how = f"{what} {fmt(gain)}" + (
        f" vs {fmt(noise_z)} x se {fmt(se)}" if math.isfinite(se) else " (no noise estimate)"
    )
    if min_delta > 0:
        how += f", min_delta {fmt(min_delta)}"
    if criterion == "loss":
        worse = m_gain < -(noise_z * m_se if math.isfinite(m_se) else 0.0)
        if kept and worse:
            kept = False
            how += f"; but the metric got worse beyond noise ({fmt(m_gain)} vs se {fmt(m_se)})"
    reason = ("beyond noise: " if kept else "within noise or worse: ") + how
    return Decision(candidate.name, kept, gain, se, reason, m_gain, m_se)


def pick_per_group(candidates: Sequence[CandidateResult], decisions: Mapping[str, Decision]) -> list[CandidateResult]:
    """The kept candidate with the largest gain of each group, best first."""
    best: dict[str, CandidateResult] = {}
    for c in candidates:
        d = decisions.get(c.name)
        if d is None or not d.kept:
            continue
        if c.group not in best or d.gain > decisions[best[c.group].name].gain:
            best[c.group] = c
    return sorted(best.values(), key=lambda c: -decisions[c.name].gain)


def combine_changes(picked: Sequence[CandidateResult]) -> tuple[dict[str, Any], list[str]]:
    """Merge the picked candidates' changes in order; a key set differently by a later one keeps the first value."""
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    notes = []
    for c in picked:
        clash = [k for k, v in c.changes.items() if k in merged and merged[k] != v]
        if clash:
            notes.append(
                f"{c.name} left out of the combination: it sets {', '.join(clash)} differently from "
                f"{', '.join(sorted({owner[k] for k in clash}))}"
            )
            continue
        for k, v in c.changes.items():
            merged[k] = v
            owner[k] = c.name
    return merged, notes


@dataclass(frozen=True)
class Choice:
    """The verified winner of an ablation (:func:`choose`) and why; ``combined_used`` when it is the combination."""

    chosen: CandidateResult
    reason: str
    combined_used: bool = False


def choose(
    reference: CandidateResult,
    picked: Sequence[CandidateResult],
    combined: CandidateResult | None,
    *,
    higher_is_better: bool,
    criterion: str = "metric",
    noise_z: float = 1.0,
    min_delta: float = 0.0,
) -> Choice:
    """The verified winner: the combination if it beats the best single kept change on ``criterion`` beyond
    noise, else that change, else the reference."""
    if not picked:
        return Choice(reference, "no candidate beat the reference beyond noise: the reference stays")
    best = picked[0]
    if combined is None:
        return Choice(best, f"{best.name} is the only kept change")
    if not combined.ok:
        return Choice(best, f"the combination did not train ({combined.note or combined.status}): keeping {best.name}")
    d = decide(
        best, combined, higher_is_better=higher_is_better, noise_z=noise_z, min_delta=min_delta, criterion=criterion
    )
    what = "val loss" if criterion == "loss" else "val metric"
    c_val, b_val = (combined.val_loss, best.val_loss) if criterion == "loss" else (combined.val_metric, best.val_metric)
    if d.kept:
        return Choice(
            combined,
            f"the combination ({what} {fmt(c_val)}) beats the best single change {best.name} "
            f"({fmt(b_val)}) beyond noise (gain {fmt(d.gain)}, se {fmt(d.se)})",
            combined_used=True,
        )
    return Choice(
        best,
        f"the combination ({what} {fmt(c_val)}) does not beat the best single change {best.name} "
        f"({fmt(b_val)}) beyond noise (gain {fmt(d.gain)}, se {fmt(d.se)}): keeping that one change",
    )


def table_rows(
    reference: CandidateResult,
    candidates: Sequence[CandidateResult],
    decisions: Mapping[str, Decision],
    chosen: str,
    higher_is_better: bool,
    criterion: str = "metric",
) -> list[dict[str, Any]]:
    """One row per candidate (reference first): what changed, val loss and metric, the gain ± se on the
    criterion, train metric, the gap (in the criterion's units), kept or not."""
    rows = []
    singles = [c for c in candidates if c.name != COMBINED]
    used = {c.name for c in pick_per_group(singles, decisions)}
    for c in [reference, *candidates]:
        d = decisions.get(c.name)
        rows.append(
            {
                "name": c.name,
                "changes": ", ".join(f"{k}={v}" for k, v in c.changes.items()) or "(none)",
                "status": c.status,
                "val_metric": c.val_metric,
                "val_loss": c.val_loss,
                "criterion": criterion,
                "gain": d.gain if d else (0.0 if c is reference else math.nan),
                "se": d.se if d else math.nan,
                "metric_gain": d.metric_gain if d else math.nan,
                "metric_se": d.metric_se if d else math.nan,
                "train_metric": c.train_metric,
                "train_loss": c.train_loss,
                "gap": c.gap(higher_is_better, criterion),
                "epochs": c.epochs,
                "seconds": c.seconds,
                "kept": "reference" if c is reference else ("kept" if d and d.kept else _unkept(c.name, chosen)),
                "chosen": c.name == chosen,
                "decision": _decision(c, d, reference, chosen, used),
                "note": c.note if c.status != "ok" else "; ".join(x for x in (d.reason if d else "", c.note) if x),
                "run_id": c.run_id,
            }
        )
    return rows


COMBINED = "combined"  # the name of the candidate that combines the kept changes (recipe.stages.regularize)


def _unkept(name: str, chosen: str) -> str:
    """The ``kept`` cell of a candidate that did not beat the reference: ``chosen`` when it was chosen anyway
    (squeeze's rule may choose within noise of the reference), else ``dropped``."""
    return "chosen" if name == chosen else "dropped"


def _decision(c: CandidateResult, d: Decision | None, reference: CandidateResult, chosen: str, used: set[str]) -> str:
    """What became of a candidate, in the table's words. ``kept`` alone only for what is handed on: a change that
    beat the reference but went into the combination, lost to a better value of its kind, or lost to another change
    says so (a table that marked every change that beat the reference "kept" read as if all of them were used)."""
    if c is reference:
        return "reference" + (" (chosen)" if c.name == chosen else "")
    if c.name == chosen:  # squeeze's rule may choose a candidate level with the reference
        return "kept (chosen)" if d is not None and d.kept else "chosen (within noise of the reference)"
    if d is None or not d.kept:
        return "dropped"
    if c.name == COMBINED:
        return "beat the reference, not the best single change: not chosen"
    if c.name not in used:
        return "beat the reference; a better value of its kind was used"
    if chosen == COMBINED:
        return "beat the reference: part of combined (chosen)"
    return "beat the reference; not chosen"


def markdown_table(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str:
    """The candidate table as Markdown (the stage logs it and puts it in its notes)."""
    crit = rows[0].get("criterion", "metric") if rows else "metric"
    gain_of = "val loss" if crit == "loss" else f"val {metric}"
    gap_of = "loss" if crit == "loss" else metric
    head = (
        f"| candidate | changes | val loss | val {metric} | gain ± se ({gain_of}) | train {metric} | "
        f"gap ({gap_of}) | decision |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['changes']} | - | - | - | - | - | {r['status']}: {r['note']} |")
            continue
        gain = "-" if r["kept"] == "reference" else f"{_num(r['gain'])} ± {_num(r['se'])}"
        decision = r.get("decision") or (r["kept"] + (" (chosen)" if r["chosen"] else ""))
        lines.append(
            f"| {r['name']} | {r['changes']} | {_num(r['val_loss'])} | {_num(r['val_metric'])} | {gain} | "
            f"{_num(r['train_metric'])} | {_num(r['gap'])} | {decision} |"
        )
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


# --- the regularize stage's judgements -----------------------------------------------------------------------


def improves_on_reference(
    ref: CandidateResult,
    chosen: CandidateResult,
    choice: Choice,
    *,
    decisions: dict[str, Decision],
    metric: str,
    criterion: str,
    ref_history: Sequence[dict],
    init_loss: float | None,
) -> Finding:
    """PASS when ``choice`` picked a candidate over the reference (it beat it beyond noise on ``criterion``,
    "loss" or "metric"; ``decisions`` must hold the chosen one's, else KeyError); WARN when nothing helped, with
    what the reference's curves say about why (:func:`_reference_curves`). Source: the recipe's "regularize"
    (seeds/004): trade training fit for validation performance, kept only when the gain is beyond noise."""
    what = "val loss" if criterion == "loss" else f"val {metric}"
    guard = f" without a worse val {metric}" if criterion == "loss" else ""
    check = CheckBuilder(
        "improves_on_reference", f"a regulariser improves the {what} of the unregularised reference beyond noise{guard}"
    )
    if chosen is ref:
        observed = (
            f"nothing helped: {choice.reason}; the reference's curves: {_reference_curves(ref_history, init_loss)}"
        )
        return check(WARN, observed, "a candidate beyond noise", ADVICE["improves_on_reference.nothing_helped"])
    d = decisions[chosen.name]
    observed = (
        f"{chosen.name}: val loss {fmt(chosen.val_loss)} vs reference {fmt(ref.val_loss)}, val {metric} "
        f"{fmt(chosen.val_metric)} vs {fmt(ref.val_metric)}; {what} gain {fmt(d.gain)} (paired se {fmt(d.se)})"
    )
    return check(PASS, observed, "gain > noise_z x se")


def _reference_curves(history: Sequence[dict], init_loss: float | None) -> str:
    """What :func:`~recipe.checks.curves.diagnose_curves` warns about in the reference's per-epoch rows
    (``history``: "train/loss" and "val/loss"; ``init_loss``: the expected loss at init, nats or MSE), as text."""
    diag = diagnose_curves(
        [h["train/loss"] for h in history], [h.get("val/loss", math.nan) for h in history], reference_loss=init_loss
    )
    warned = [f"{f.name}: {f.check.observed}" for f in diag if f.verdict is not PASS]
    return " | ".join(warned) if warned else "no curve finding explains it"


def gap_shrinks(ref: CandidateResult, chosen: CandidateResult, higher: bool, *, metric: str, criterion: str) -> Finding:
    """PASS when the chosen candidate's train-validation gap (in the criterion's units: val - train loss, or
    the metric's train/val difference oriented by ``higher``) is smaller than the reference's; else WARN.
    Source: seeds/004, "give up some of the training accuracy" to gain validation accuracy."""
    g_ref, g_new = ref.gap(higher, criterion), chosen.gap(higher, criterion)
    shrinks = chosen is not ref and g_new < g_ref
    unit = (
        "loss (val - train)"
        if criterion == "loss"
        else f"{metric} (train - val)"
        if higher
        else f"{metric} (val - train)"
    )
    observed = f"{unit} gap {fmt(g_ref)} (reference) -> {fmt(g_new)} ({chosen.name})"
    return finding(
        "gap_shrinks",
        "the chosen regularisation narrows the train-validation gap",
        observed,
        "a smaller gap than the reference's",
        PASS if shrinks else WARN,
        "the gap did not shrink: the gain (if any) came from fitting better, not from generalising better; "
        "check the candidate curves (plots/regularize_curves.png)",
    )


def candidate_finding(
    c: CandidateResult, d: Decision | None, ref: CandidateResult, *, metric: str, higher: bool, criterion: str
) -> Finding:
    """An advisory row per candidate (``candidate_<name>``, always PASS, or WARN when it failed to train): kept
    or dropped by ``d`` (:func:`decide`), its val loss/metric and gap against the reference's."""
    if c.status == "skipped":
        return finding(f"candidate_{c.name}", f"{c.group} helps", f"skipped: {c.note}", "tried when configured", PASS)
    changes = ", ".join(f"{k}={v}" for k, v in c.changes.items())
    what = "val loss" if criterion == "loss" else f"val {metric}"
    hypothesis = f"{changes} improves the {what} of the reference beyond noise"
    if not c.ok or d is None:
        return finding(
            f"candidate_{c.name}",
            hypothesis,
            f"{c.status}: {c.note}",
            "a trained candidate",
            WARN,
            "see the candidate's nested MLflow run",
        )
    observed = (
        f"{'kept' if d.kept else 'dropped'}: val loss {fmt(c.val_loss)} vs {fmt(ref.val_loss)}, val {metric} "
        f"{fmt(c.val_metric)} vs {fmt(ref.val_metric)} ({d.reason}); gap {fmt(c.gap(higher, criterion))} vs "
        f"{fmt(ref.gap(higher, criterion))}"
    )
    if c.note:
        observed += f"; {c.note}"
    return finding(f"candidate_{c.name}", hypothesis, observed, "gain > noise_z x se to keep", PASS)


# --- the dumb-baseline bar -----------------------------------------------------------------------------------


def baseline_keys(task: str | Task) -> tuple[tuple[str, str], ...]:
    """(label, metric key) of the dumb baselines the baselines stage logs for ``task``: the dumbest predictor
    and the linear model, both in the task's headline metric."""
    task = task_for(task)
    return (task.dumb_name, task.dumb_key), ("linear", f"baseline/linear_{task.metric}")


def bar_noise(
    task: str | Task, value: float, bar: float, n: int, *, second: float = math.nan, bar_second: float = math.nan
) -> float:
    """An upper bound on the paired standard error of ``value - bar`` (two models' metrics on the same ``n``
    validation samples) when only their aggregates are at hand -- the rule of :func:`paired_gain` without the
    per-sample scores. Accuracy: the per-sample difference ``d`` is non-zero only where exactly one model is
    right, so ``E[d^2] <= err_a + err_b``. MAE: ``d = |e_b| - |e_a|`` and ``E[d^2] <= mse_a + mse_b``
    (``second``/``bar_second``: the two MSEs, in target units). ``sqrt((E[d^2] - (E d)^2) / n)``; NaN when
    ``n < 2`` or a needed MSE is missing. Overestimating the noise only makes a FAIL rarer."""
    task = task_for(task)
    if n < 2 or not (math.isfinite(value) and math.isfinite(bar)):
        return math.nan
    if task.higher_is_better:
        second_moment = (1 - value) + (1 - bar)
    elif math.isfinite(second) and math.isfinite(bar_second):
        second_moment = second + bar_second
    else:
        return math.nan
    return math.sqrt(max(second_moment - (value - bar) ** 2, 0.0) / n)


@dataclass(frozen=True)
class BarEvidence:
    """What :func:`baseline_bar_check` may know beyond the aggregate metric: the number of validation samples,
    the model's per-sample scores there and the dumb baseline's on the same samples (paired, exact), and the
    model's MSE (regression: bounds the noise against the linear baseline's logged MSE)."""

    n: int = 0
    scores: np.ndarray | None = None
    dumb_scores: np.ndarray | None = None
    mse: float = math.nan


def bar_evidence(evaluation: Any, data: Any) -> BarEvidence:
    """:class:`BarEvidence` from a model's validation :class:`recipe.fit.Evaluation` (scores, targets, metrics)
    and its DataBundle: the dumb baseline's per-sample scores on the same samples are exact (the train majority
    class, or the train target mean), so that comparison is paired."""
    import torch

    task = task_for(data)
    scores, targets = np.asarray(evaluation.scores, np.float64), np.asarray(evaluation.targets)
    if task.classifier:
        dumb = (targets == int(np.argmax(data.class_counts))).astype(np.float64) if data.class_counts else None
    else:
        y = torch.as_tensor(targets, dtype=torch.float64)
        dumb = task.scores(torch.full_like(y, float(data.target_mean or 0.0)), y).double().numpy()
    return BarEvidence(len(scores), scores, dumb, float(evaluation.metrics.get("mse", math.nan)))


def baseline_bar_check(
    value: float,
    task: str | Task,
    baselines: Mapping[str, float] | None,
    *,
    what: str = "val accuracy",
    name: str = "beats_baselines",
    evidence: BarEvidence | None = None,
    noise_z: float = 2.0,
    behind_linear: str | None = None,
) -> Finding:
    """Whether ``value`` (a validation metric: accuracy, or MAE in target units) beats every dumb baseline the
    baselines stage measured (:func:`baseline_keys`), judged by the paired noise rule: a bar not beaten by less
    than ``noise_z`` paired standard errors (:func:`paired_gain` with the dumb baseline's per-sample scores in
    ``evidence``, else the bound :func:`bar_noise`) WARNs -- one validation sample is no evidence --; beyond
    that it FAILs for the dumb baseline (a model that learned nothing) and for the linear one, unless
    ``behind_linear`` names the :data:`ADVICE` of a WARN instead (an unregularised model may trail a linear one on
    a small data set: ``beats_baselines.behind_linear``; a search's short trials rank configs). ``baselines``
    is that stage's metrics (None: WARN). A missing or non-finite key means no bar for that baseline, and the
    observation says so; with no bar at all the check warns. Source: the recipe's "dumb baselines" (seeds/004),
    the bar every later model must clear, and "add significant digits to your eval"."""
    task = task_for(task)
    evidence = evidence or BarEvidence()
    labels = ", ".join(label for label, _ in baseline_keys(task))
    check = CheckBuilder(name, f"the model's {what} beats the dumb baselines ({labels}) beyond validation noise")
    expected = f"not worse than any dumb baseline by more than {fmt(noise_z)} paired standard errors"
    if baselines is None:
        observed = f"{what} {fmt(value)}; no baselines stage result: no bar to beat"
        return check(WARN, observed, expected, ADVICE["beats_baselines.no_stage"])
    parts, missing, lost, close = _bars(value, task, baselines, evidence, noise_z)
    observed = f"{what} {fmt(value)} vs " + ("; ".join(parts) if parts else "nothing")
    if missing:
        observed += "; " + "; ".join(missing)
    fatal = [label for label in lost if behind_linear is None or label != "linear"]
    if fatal:
        return check(FAIL, observed, expected, ADVICE["beats_baselines.lost"].format(lost=", ".join(fatal)))
    if lost or close:
        behind = ", ".join([*lost, *close])
        key = behind_linear if lost else "beats_baselines.within_noise"  # lost here: linear, which WARNs
        return check(WARN, observed, expected, ADVICE[key].format(lost=behind))
    if not parts:
        return check(WARN, observed, expected, ADVICE["beats_baselines.no_metrics"])
    return check(PASS, observed, expected)


def _bars(
    value: float, task: Task, baselines: Mapping[str, float], evidence: BarEvidence, noise_z: float
) -> tuple[list[str], list[str], list[str], list[str]]:
    """``value`` against each baseline of :func:`baseline_keys`: the texts of the bars there are ("linear 0.91",
    "linear 0.91 NOT beaten (behind by 0.02 = 3 se)", or "linear 1 level (a tie ...)"), of the baselines with no usable bar, the labels of
    those behind beyond ``noise_z`` paired standard errors, and of those behind within noise."""
    parts, missing, lost, close = [], [], [], []
    dumb_label = task.dumb_name
    for label, key in baseline_keys(task):
        bar = baselines.get(key)
        if bar is None or not isinstance(bar, (int, float)) or not math.isfinite(bar):
            missing.append(f"{label} ({key} missing: no bar)")
            continue
        if task.better(value, bar):
            parts.append(f"{label} {fmt(bar)}")
            continue
        if label == dumb_label and evidence.scores is not None and evidence.dumb_scores is not None:
            _, se = paired_gain(evidence.dumb_scores, evidence.scores, task.higher_is_better)
        else:
            bar_mse = baselines.get(key.replace(task.metric, "mse")) if not task.higher_is_better else math.nan
            se = bar_noise(task, value, bar, evidence.n, second=evidence.mse, bar_second=float(bar_mse or math.nan))
        behind = abs(value - bar)
        if behind == 0:  # a tie (both perfect, or both at the same value): level, never "NOT beaten"
            parts.append(f"{label} {fmt(bar)} level (a tie: no evidence either way)")
            close.append(label)
        elif math.isfinite(se) and se > 0 and behind <= noise_z * se:
            parts.append(
                f"{label} {fmt(bar)} not beaten, within noise (behind by {fmt(behind)} = {behind / se:.2g} se)"
            )
            close.append(label)
        else:
            how = f" (behind by {fmt(behind)} = {behind / se:.2g} se)" if math.isfinite(se) and se > 0 else ""
            parts.append(f"{label} {fmt(bar)} NOT beaten{how}")
            lost.append(label)
    return parts, missing, lost, close
