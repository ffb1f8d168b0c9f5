"""The tune stage's checks: pure functions of trial results and the study (no training, no MLflow).

The noise rule
--------------
After the search, the best trial's config and the handed-on config are each retrained with the same seeds
``s_1..s_k``, evaluated on the same validation samples. With ``g_j`` the handed-on minus the best validation loss
at seed ``s_j`` (positive: the best is better):

- the **gain** is ``mean(g)``;
- the **seed noise** ``se_seed = std(g) / sqrt(k)`` (paired by seed; nan with one seed);
- the **validation-sampling noise** ``se_val`` is the paired standard error over validation samples of the
  seed-averaged per-sample losses (:func:`recipe.checks.ablation.paired_gain`, the regularize stage's rule);
- the best **beats** the handed-on config when ``gain > noise_z * sqrt(se_seed^2 + se_val^2)``, and its
  validation metric is not worse beyond the same kind of noise.

Independent noise sources add in quadrature; both are estimated, so the bar is conservative when they overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from recipe.checks.ablation import paired_gain
from recipe.checks.base import Finding, finding, fmt, plural
from recipe.report import Verdict
from recipe.tune.space import Space
from recipe.tune.study import ORPHANED
from recipe.tune.trial import TrialResult

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
EDGE = 0.1  # a best value in the outer tenth of its range (log space for log ranges) is "at the edge"
FAILED_WARN = 0.25  # share of failed or diverged trials above which the space is suspect


@dataclass(frozen=True)
class NoiseGain:
    """The noise rule's verdict on the best trial vs the handed-on config (see the module docstring):
    ``gain`` and its standard errors ``se_seed`` (paired over seeds) and ``se_val`` (over validation samples) in
    val-loss units, the same for the val metric (``metric_gain``, ``metric_se``), whether the best config is
    ``kept`` (beats the handed-on one beyond ``noise_z`` combined standard errors) and the ``reason`` in words."""

    gain: float  # val loss, handed-on minus best, mean over seeds (positive: the best is better)
    se_seed: float
    se_val: float
    metric_gain: float  # the same for the val metric (positive: better)
    metric_se: float
    kept: bool
    reason: str

    @property
    def se(self) -> float:
        return _quad(self.se_seed, self.se_val)


def _quad(*xs: float) -> float:
    finite = [x for x in xs if math.isfinite(x)]
    return math.sqrt(sum(x * x for x in finite)) if finite else math.nan


def _seed_se(g: np.ndarray) -> float:
    return float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else math.nan


def noise_gain(
    handed: Sequence[TrialResult], best: Sequence[TrialResult], *, higher_is_better: bool, noise_z: float
) -> NoiseGain:
    """The module docstring's rule on retrainings paired by position (seed). Retrainings that failed drop their
    pair; with no pair left nothing is kept."""
    pairs = [(h, b) for h, b in zip(handed, best, strict=False) if h.ok and b.ok]
    if not pairs:
        return NoiseGain(
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            False,
            "no seed retrained both configs: nothing to compare",
        )
    g = np.array([h.value - b.value for h, b in pairs])
    mg = np.array([(b.val_metric - h.val_metric) * (1 if higher_is_better else -1) for h, b in pairs])
    se_val = m_se_val = math.nan
    if all(h.val_losses is not None and b.val_losses is not None for h, b in pairs):
        h_l = np.mean([h.val_losses for h, _ in pairs], axis=0)
        b_l = np.mean([b.val_losses for _, b in pairs], axis=0)
        _, se_val = paired_gain(h_l, b_l, higher_is_better=False)
        h_s = np.mean([h.val_scores for h, _ in pairs], axis=0)
        b_s = np.mean([b.val_scores for _, b in pairs], axis=0)
        _, m_se_val = paired_gain(h_s, b_s, higher_is_better=higher_is_better)
    gain, se_seed = float(g.mean()), _seed_se(g)
    m_gain, m_se = float(mg.mean()), _quad(_seed_se(mg), m_se_val)
    se = _quad(se_seed, se_val)
    bar = noise_z * se if math.isfinite(se) else 0.0
    kept = gain > bar and gain > 0
    how = (
        f"val loss gain {fmt(gain)} over {plural(len(pairs), 'seed')} vs {fmt(noise_z)} x se {fmt(se)} "
        f"(seed {fmt(se_seed)}, validation sampling {fmt(se_val)})"
    )
    if kept and m_gain < -(noise_z * m_se if math.isfinite(m_se) else 0.0):
        kept = False
        how += f"; but the metric got worse beyond noise ({fmt(m_gain)} vs se {fmt(m_se)})"
    return NoiseGain(gain, se_seed, se_val, m_gain, m_se, kept, ("beyond noise: " if kept else "within noise: ") + how)


def trials_check(
    trials: Sequence[FrozenTrial], n_trials: int, reaped: int, deadline_stopped: bool = False
) -> tuple[Finding, Finding]:
    """(``trials_ran``, a gate: FAIL when no trial completed; ``budget_used``: completed vs asked). With
    ``deadline_stopped`` (a budgeted run's deadline stopped the search, :func:`recipe.stages.tune.over_deadline`)
    fewer than ``n_trials`` pass: the budget gave the stage the trials it ran, and its ``budget`` check says so."""
    counted = [t for t in trials if not t.user_attrs.get(ORPHANED) and t.state.is_finished()]
    n = {s: sum(t.state == s for t in counted) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    diverged = sum(t.user_attrs.get("state") == "diverged" for t in counted)
    observed = (
        f"{n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned, {n[TrialState.FAIL]} failed "
        f"({diverged} diverged) of {len(counted)} finished"
    )
    metrics = {
        "tune/n_complete": float(n[TrialState.COMPLETE]),
        "tune/n_pruned": float(n[TrialState.PRUNED]),
        "tune/n_failed": float(n[TrialState.FAIL]),
        "tune/n_diverged": float(diverged),
        "tune/n_trials": float(len(counted)),
        "tune/n_orphaned": float(reaped),
    }
    ran = finding(
        "trials_ran",
        "at least one trial trains to completion",
        observed,
        ">= 1 complete",
        PASS if n[TrialState.COMPLETE] else FAIL,
        "every trial failed, diverged or was pruned: look at a failed trial's run (recipe.trial_note) and "
        "narrow the space around the handed-on config",
        metrics=metrics,
    )
    note = f" ({reaped} left running by an interrupted run were marked failed and not counted)" if reaped else ""
    if deadline_stopped and len(counted) < n_trials:
        note += ": the budget's deadline stopped the search (the budget check says why)"
    used = finding(
        "budget_used",
        "the study ran the trials it was asked for",
        f"{len(counted)} of {n_trials} trials{note}",
        f"{n_trials}" + (", or fewer when the budget's deadline stops the search" if deadline_stopped else ""),
        PASS if len(counted) >= n_trials or deadline_stopped else WARN,
        "stages.tune.timeout_s stopped the search early: raise it, lower stages.tune.epochs, or run "
        "again (the study resumes where it stopped)",
    )
    return ran, used


def failed_share_check(trials: Sequence[FrozenTrial]) -> Finding:
    """Finding ``failed_share``: the share of finished, non-orphaned trials that failed or diverged; WARN
    above ``FAILED_WARN`` (25%), naming up to four of them and their params. A search space that reaches configs
    that do not train has bad boundaries (Deep Learning Tuning Playbook: infeasible and diverging trials mark
    them). Its metrics: ``tune/failed_share`` (0..1)."""
    counted = [t for t in trials if not t.user_attrs.get(ORPHANED) and t.state.is_finished()]
    bad = [t for t in counted if t.state == TrialState.FAIL]
    share = len(bad) / len(counted) if counted else 0.0
    listed = "; ".join(f"#{t.number} {t.user_attrs.get('state', 'failed')} {_params(t.params)}" for t in bad[:4])
    return finding(
        "failed_share",
        "few trials fail or diverge (the space holds configs that train)",
        f"{fmt(100 * share)}% of {len(counted)} failed or diverged" + (f": {listed}" if listed else ""),
        f"<= {fmt(100 * FAILED_WARN)}%",
        PASS if share <= FAILED_WARN else WARN,
        "the space reaches configs that do not train: look at the failed trials' params (often the top "
        "of the learning-rate range) and narrow that range",
        metrics={"tune/failed_share": share},
    )


def edge_check(best: FrozenTrial | None, space: Space) -> Finding:
    """The Tuning Playbook's rule: a best value near the edge of its range means the optimum may lie outside it."""
    hypothesis = "the best trial's value of each searched parameter lies inside its range, not at an edge"
    if best is None:
        return finding("range_edges", hypothesis, "no completed trial", "-", WARN, "no best trial to look at")
    edges, notes = [], []
    for d in space.dims:
        if not d.numeric or d.name not in best.params:
            continue
        v, p = best.params[d.name], d.position(best.params[d.name])
        dist = d.distribution
        floor = (not dist.log and dist.low == 0) or (isinstance(v, int) and dist.low == 1)
        if p <= EDGE and not floor:
            edges.append(
                f"{d.name} = {v:.4g} is at the bottom of {dist.low:.4g} .. {dist.high:.4g}: widen it "
                f"downwards (stages.tune.space.{d.name}.low)"
            )
        elif p >= 1 - EDGE:
            edges.append(
                f"{d.name} = {v:.4g} is at the top of {dist.low:.4g} .. {dist.high:.4g}: widen it upwards "
                f"(stages.tune.space.{d.name}.high)"
            )
        elif p <= EDGE:
            notes.append(f"{d.name} = {v:.4g} sits at its natural floor")
    inside = [d.name for d in space.dims if d.numeric and d.name in best.params]
    observed = "; ".join(edges) if edges else f"{', '.join(inside) or 'no numeric parameter'} inside their ranges"
    if notes:
        observed += " (" + "; ".join(notes) + ")"
    return finding(
        "range_edges",
        hypothesis,
        observed,
        f"best values away from the outer {int(EDGE * 100)}% of each range",
        WARN if edges else PASS,
        "the best lies at the edge of the searched range, so a better value may lie beyond it: widen "
        "the range that way and tune again (Deep Learning Tuning Playbook, 'axis plots')",
        metrics={"tune/params_at_edge": float(len(edges))},
    )


def importance_check(study: optuna.Study, space: Space) -> tuple[Finding, dict[str, float]]:
    """Optuna's parameter importances (PED-ANOVA by default) over the completed trials; advisory."""
    hypothesis = "the search says which parameters matter (Optuna's importance evaluator)"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = [d.name for d in space.dims if all(d.name in t.params for t in complete)]
    if len(complete) < 3 or len(names) < 2:
        return finding(
            "importances",
            hypothesis,
            f"{len(complete)} complete trials, {len(names)} parameters",
            ">= 3 trials and 2 parameters",
            WARN,
            "too few trials for importances",
        ), {}
    try:
        imp = optuna.importance.get_param_importances(study, params=names)
    except Exception as e:  # an evaluator that cannot fit this study (e.g. every value equal)
        return finding(
            "importances",
            hypothesis,
            f"not computed: {type(e).__name__}: {e}",
            "importances",
            WARN,
            "look at the slice plots instead",
        ), {}
    observed = ", ".join(f"{k} {v:.2f}" for k, v in imp.items())
    return finding(
        "importances",
        hypothesis,
        observed,
        "importances",
        PASS,
        metrics={f"tune/importance/{k}": float(v) for k, v in imp.items()},
    ), dict(imp)


def improvement_check(ng: NoiseGain, edges: Finding, n_complete: int, n_dims: int) -> Finding:
    """The gate: PASS when the best beats the handed-on config beyond noise; WARN otherwise, saying whether a
    wider space or a bigger budget is the likely next step."""
    hypothesis = "the best trial's config beats the handed-on config beyond seed and validation noise"
    metrics = {
        "tune/gain": ng.gain,
        "tune/se_seed": ng.se_seed,
        "tune/se_val": ng.se_val,
        "tune/se": ng.se,
        "tune/metric_gain": ng.metric_gain,
    }
    if ng.kept:
        return finding("improves_beyond_noise", hypothesis, ng.reason, "gain > noise_z x se", PASS, metrics=metrics)
    if edges.verdict is WARN:
        advice = f"nothing beat the handed-on config; the best sits at a range edge, so widen the space first: {edges.check.observed}"
    elif n_complete < 10 * max(1, n_dims):
        advice = (
            f"nothing beat the handed-on config beyond noise; {n_complete} complete trials over {n_dims} "
            f"parameters is a small budget: raise stages.tune.n_trials (the study resumes), or search fewer "
            f"parameters"
        )
    else:
        advice = (
            "nothing beat the handed-on config beyond noise with a fair budget inside the ranges: it is near "
            "the best this space offers; move on (squeeze) or change the model"
        )
    return finding("improves_beyond_noise", hypothesis, ng.reason, "gain > noise_z x se", WARN, advice, metrics=metrics)


def _params(params: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
