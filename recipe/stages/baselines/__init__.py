"""Stage 2, set up the end-to-end training/evaluation skeleton and get dumb baselines.

"Gain trust in its correctness via a series of experiments" -- each one a check with a hypothesis, numbers
and a verdict, so a wiring bug in the model, the data pipeline or the loss shows up here, before any
compute is spent. The stage trains the config's model briefly, several times over, and compares:

===============================  =====================================================================
check                            experiment
===============================  =====================================================================
fixed_seed                       the short run's first steps, re-run with the same seed and another
output_layer                     a fresh model's first forward pass: logits, not probabilities
loss_at_init                     val loss before any step vs -log(1/C) / the priors' cross-entropy / var
init_well                        the same with and without the final bias from the data; first steps
input_independent                the short run again with every input zeroed (a forward pre-hook)
dumb_baselines                   majority class / mean target and a linear model (the bar to beat)
human_metric                     val accuracy (MAE) next to the loss, beside stages.baselines.human_baseline
overfit_one_batch                a few train examples to ~0 loss; a loss still falling is retried at 10x the lr,
                                 one that flattens out grows the model a rung at a time
training_loss_decreases          the short run's smoothed loss, first vs last window
batch_independence               d(outputs of i)/d(input j) = 0 for j != i (eval mode with batch norm)
visualise_before_net             a pre-hook grabs the exact training batch entering the net; decoded, drawn
prediction_dynamics              predictions on fixed val examples after every epoch of the short run
augmentation_preserves_labels    (data.augment set) a clean-trained model on the val inputs the augmentation
                                 changed; flips refused for data that is not mirror-symmetric
finite_loss                      the NaN guard of every run above; a diverged run FAILs with its message
===============================  =====================================================================

Before any of them, the model audit (:mod:`recipe.checks.audit`: trainable_parameters, eval_deterministic,
batchnorm_train_mode) looks at the model itself on one training batch. When several checks fail, the confirmed
cause leads (:mod:`recipe.diagnosis`, through :func:`recipe.stages.ending.finish`) and the checks it explains are
marked as its likely consequences: one bug tends to fail many checks.

The stage's rooms: :mod:`.lab` (the shared state, the training helpers, the frozen :class:`ShortRun`),
:mod:`.experiments` (one function per check, in the ordered table ``EXPERIMENTS``), and the checks that judge
them in :mod:`recipe.checks.skeleton`.

The short run (``stages.baselines.short_steps`` steps on the whole training split, per-epoch validation)
serves fixed_seed, loss_at_init, training_loss_decreases, visualise_before_net, prediction_dynamics and
is the "real inputs" side of input_independent and dumb_baselines. Training runs with curves are MLflow
grandchild runs (tag ``recipe.kind=ablation``): short_run, zero_input, linear_baseline, overfit_one_batch
and clean_for_augmentation. The stage's own run gets ``plots/*.png``, ``baselines/timings.json`` and, for
a check whose experiment crashed, ``baselines/errors/<check>.txt``; the pipeline adds checks.json.

Metrics (StageResult and MLflow): ``val/loss``, ``val/accuracy`` (``val/mae``, ``val/mse``), ``train/loss``
of the short run; ``baseline/majority_accuracy``, ``baseline/linear_accuracy`` (``baseline/mean_mae``,
``baseline/linear_mae``, ...) -- the bar every later stage must beat; ``skeleton/*`` behind each check;
``time/*_s``. The config is handed on unchanged, except that a model grown to overfit one batch is
handed on grown (the notes say so).
"""

from __future__ import annotations

import math
import time
import traceback

from recipe import tracking
from recipe.checks import skeleton as sk
from recipe.checks.base import Finding
from recipe.diagnosis import LossTrend, loss_trend
from recipe.report import StageResult
from recipe.stages.base import StageContext
from recipe.stages.baselines.experiments import EXPERIMENTS, Experiment
from recipe.stages.baselines.lab import KIND, STAGE, Lab, NeedsShortRun, ShortRun, _clip, diverse
from recipe.stages.ending import finish
from recipe.stages.model_audit import audit_for

SHORT_RUN_KEYS = ("val/loss", "val/accuracy", "val/mae", "val/mse", "train/loss")  # the stage's headline numbers


def run(ctx: StageContext) -> StageResult:
    """Train the short run, then every experiment of ``EXPERIMENTS`` in order; see the module docstring."""
    start = time.perf_counter()
    lab = Lab(ctx)
    lab.notes += _target_notes(lab)
    timings: dict[str, float] = {}
    # the audit builds the model first: one that cannot be built is a config error, not 13 failed checks
    audit = _timed(timings, "audit", lambda: audit_for(lab.short_cfg, lab.data))
    short, error = _timed(timings, "short_run", lambda: _guarded_short_run(lab))
    findings = audit + [
        _timed(timings, name, lambda name=name, fn=fn: _judge(name, fn, lab, short, error))
        for name, fn in EXPERIMENTS.items()
    ]
    lab.plot("plots/baselines.png", lambda: _baselines_figure(lab))
    timings["total"] = time.perf_counter() - start
    tracking.log_dict({k: round(v, 3) for k, v in timings.items()}, "baselines/timings.json")
    trend = loss_trend(short.smooth_losses, short.init_loss) if short is not None else None
    return finish_stage(lab, findings, _metrics(short, timings), {"plots": tracking.artifact_uri("plots")}, trend)


def _target_notes(lab: Lab) -> list[str]:
    """What a standardised regression target means for the numbers (none for classification or raw targets)."""
    if not lab.data.target_scale:
        return []
    robust = lab.cfg.data.target_scaling == "robust"
    centre, spread = ("median", "IQR / 1.349") if robust else ("mean", "std")
    return [
        f"regression targets are standardised with the train {centre} {lab.data.target_shift:.6g} and "
        f"{spread} {lab.data.target_scale:.6g}: losses are in standardised units, MAE and MSE metrics in "
        "the target's units (data.standardize_target=false trains on raw targets)"
    ]


def _metrics(short: ShortRun | None, timings: dict[str, float]) -> dict[str, float]:
    """The short run's headline numbers (``SHORT_RUN_KEYS``, when it ran) and ``time/<step>_s`` (seconds)."""
    metrics = {k: short.metrics[k] for k in SHORT_RUN_KEYS if short is not None and k in short.metrics}
    metrics.update({f"time/{k}_s": v for k, v in timings.items()})
    return metrics


def finish_stage(
    lab: Lab,
    findings: list[Finding],
    metrics: dict[str, float],
    artifacts: dict[str, str],
    trend: LossTrend | None = None,
) -> StageResult:
    """The StageResult: every check counts (no gates), the config as the overfit-one-batch check left it;
    ``trend``: the short run's training-loss trend, for the diagnosis's learning-rate direction."""
    notes = lab.notes + lab.figures.close()
    return finish(STAGE, findings, lab.handed_on, metrics=metrics, artifacts=artifacts, notes=notes, trend=trend)


def _timed(timings: dict[str, float], name: str, fn):
    """``fn()``, its wall time in seconds recorded as ``timings[name]`` (also when it raises)."""
    t = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = time.perf_counter() - t


def _guarded_short_run(lab: Lab) -> tuple[ShortRun | None, str]:
    """The short run, or (None, the error) when it raised (traceback in baselines/errors/short_run.txt)."""
    try:
        return lab.short_run(), ""
    except Exception as e:
        error = _clip(f"{type(e).__name__}: {e}")
        tracking.log_text(traceback.format_exc(), "baselines/errors/short_run.txt")
        lab.notes.append(f"the short run raised {error}; the checks that need it fail")
        return None, error


def _judge(name: str, fn: Experiment, lab: Lab, short: ShortRun | None, error: str) -> Finding:
    """Run one experiment; a crash in it (the user's model, usually) is that check's FAIL, not the stage's."""
    try:
        found = fn(lab, short)
    except NeedsShortRun:
        found = sk.failed(
            name,
            f"needs the short run, which raised {error}",
            "fix the error that stopped the short run first (traceback in baselines/errors/short_run.txt)",
        )
    except Exception as e:
        tracking.log_text(traceback.format_exc(), f"baselines/errors/{name}.txt")
        found = sk.failed(name, f"the experiment raised {_clip(f'{type(e).__name__}: {e}')}")
    return found


def _baselines_figure(lab: Lab):
    """The bar chart of every run's val metric next to the dumb baseline's, drawn after all experiments."""
    from recipe.plots import skeleton as plots

    m, runs = lab.task.metric, lab.runs
    value = {
        k: runs[k].metrics.get(f"val/{m}", math.nan) if k in runs else math.nan
        for k in ("zero_input", "linear_baseline", "short_run")
    }
    bars = {
        lab.task.dumb_name.split()[0]: lab.dumb()[lab.task.dumb_key],
        "zero input": value["zero_input"],
        "linear": value["linear_baseline"],
        "model": value["short_run"],
    }
    if "linear_baseline" not in runs:
        return None
    return plots.baselines_figure(bars, m, lab.bc.human_baseline)


__all__ = ["EXPERIMENTS", "KIND", "STAGE", "Lab", "ShortRun", "diverse", "run"]
