"""Stage 3, overfit: get a model large enough to fit the training set, before asking it to generalise.

"If we are not able to reach a low error rate with any model at all that may again indicate some issues,
bugs, or misconfiguration." The stage:

1. **Don't be a hero.** Trains a known architecture fit for the data (the config's ``cnn``/``resnet``/custom
   model for images, or ``cnn`` on a CPU and ``resnet18`` on a GPU when the config names a linear model, an
   mlp or a torchvision resnet that a CPU cannot afford; ``mlp`` for tables), with Adam at 3e-4, a constant
   schedule and no regularisation (no augmentation, weight decay, dropout, early stopping or pretrained init).
   Every change from the incoming config is listed in the notes. The model is audited on one batch before
   training (:mod:`recipe.checks.audit`, advisory here: the baselines stage gates on it).
2. **LR finder.** Sweeps the learning rate on the untrained model (``recipe.train.callbacks.lr_finder``) and
   keeps the starting rate when it lies within ``lr_tolerance`` of the suggestion (and below the rate at the
   loss minimum), else takes the suggestion, rounded to one significant digit. The choice is a check and the
   ``overfit.lr_chosen`` param; the sweep is ``plots/lr_finder.png``.
3. **Capacity ladder.** Trains for the budget; when the training target is not reached, grows the model one
   rung (``recipe.models.grow``: width or depth, one at a time) and tries again, at most ``max_rungs`` times,
   and only while a rung helps: a rung that cut the training error by less than ``min_rung_gain`` of the one
   before ends the climb (more capacity is not what is missing). Each rung is a nested MLflow run
   (recipe.kind=candidate).
4. **Verdict.** The stage asks whether the model *can* fit. The target (eval mode, the whole training split,
   no augmentation) is capped by the ceiling that identical training rows with different labels allow
   (inspect's ``data/train_accuracy_ceiling``). Reaching it: PASS. Short of it, the evidence decides: a training
   loss far below the dumb predictor's (``fit_loss_ratio``) or still falling shows a model that fits and a
   budget that ran out -- WARN, with the epochs the last epochs' pace says it would need; a flat loss that left
   the dumb predictor's (below ``stall_loss_ratio`` of it) is a plateau, a noisy table's ceiling -- WARN; a loss
   that stalled near the dumb predictor's is a bug -- FAIL. The validation metric is compared with the dumb baselines by the
   paired noise rule (:func:`recipe.checks.ablation.baseline_bar_check`): behind the dumb one beyond noise
   FAILs; behind the linear one only WARNs here (an unregularised model may trail it on a small table). The
   learning-curve diagnosis, the update-to-weight ratios and the ladder are advisory checks (PASS/WARN).

Hands on: the trained config (chosen lr, grown model, the user's budget) and the final weights, logged as the
``checkpoint/overfit.pt`` artifact (``checkpoint_uri``; ``artifacts["checkpoint_path"]`` is the local copy).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from recipe import tracking
from recipe.checks.ablation import bar_evidence, baseline_bar_check
from recipe.checks.base import Finding, finding, fmt
from recipe.checks.curves import diagnose_curves, update_ratio_check
from recipe.checks.skeleton import still_falling
from recipe.config import OverfitConfig, RecipeConfig
from recipe.data import DataBundle
from recipe.diagnosis import loss_trend
from recipe.fit import FitResult, build_for, bundle_for, describe_model, evaluate_model, fit, with_min_steps
from recipe.models import ModelConfigError, grow
from recipe.report import StageResult, Verdict
from recipe.stages.base import StageContext
from recipe.stages.ending import Figures, finish, publish_checkpoint
from recipe.stages.model_audit import audit_for
from recipe.tasks import task_for
from recipe.train import make_trainer, resolve_device
from recipe.train.callbacks import Callback, LRSuggestion, UpdateRatio, lr_find

STAGE = "overfit"
PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
GATES = ("train_target", "beats_baselines", "finite_loss")  # the checks the verdict is made of


def run(ctx: StageContext) -> StageResult:
    """Don't be a hero, confirm the learning rate, climb the capacity ladder, judge; see the module docstring."""
    s = ctx.cfg.stages.overfit
    device = resolve_device(ctx.cfg.trainer.device)
    cfg, changes, arch = hero_free(ctx.cfg, s, ctx.data().in_shape, device.type)
    data = bundle_for(cfg, ctx.data())
    notes = [f"don't be a hero: changed {c}" for c in changes] or ["the incoming config already is hero-free"]
    cfg = cfg.with_overrides({"budget": with_min_steps(cfg.budget, cfg, data, notes).model_dump(mode="json")})
    figures = Figures()
    findings, metrics = [arch, *audit_for(cfg, data)], {}
    if s.lr_finder:
        lr, lr_finding, lr_metrics = _lr_finder(cfg, data, s, figures)
        findings.append(lr_finding)
        metrics.update(lr_metrics)
        cfg = cfg.with_overrides({"optim.lr": lr}) if lr != cfg.optim.lr else cfg
    tracking.log_params({"overfit.lr_chosen": cfg.optim.lr})
    ceiling = _ceiling(ctx)
    rungs = _ladder(ctx, cfg, data, s, ceiling)
    findings += _judge(ctx, rungs, s, data, ceiling)
    metrics.update(_metrics(rungs))
    _log_figures(rungs, s, figures)
    return _finish(ctx, rungs[-1], findings, metrics, notes + figures.close())


def _ceiling(ctx: StageContext) -> float:
    """The train accuracy identical rows with different labels leave reachable (inspect's metric; 1.0 without)."""
    inspect = ctx.results["inspect"] if "inspect" in ctx.results else None
    value = inspect.metrics.get("data/train_accuracy_ceiling") if inspect is not None else None
    return float(value) if isinstance(value, (int, float)) and 0 < value <= 1 else 1.0


def _judge(
    ctx: StageContext, rungs: list[_Rung], s: OverfitConfig, data: DataBundle, ceiling: float = 1.0
) -> list[Finding]:
    """The gated checks (train_target, beats_baselines, finite_loss) and the advisory ones (ladder, curves,
    update ratios) for the last rung."""
    final = rungs[-1]
    t, task = final.trained, task_for(data)
    baselines = ctx.results["baselines"].metrics if "baselines" in ctx.results else None
    reference = task.init_loss_of(data, init_bias=True).value
    return [
        _target_finding(t, s, len(rungs) - 1, ceiling=ceiling, reference_loss=reference),
        _ladder_finding(rungs, s),
        _finite(t),
        baseline_bar_check(
            t.val.metric,
            task,
            baselines,
            what=f"val {task.metric}",
            evidence=bar_evidence(t.val, t.data),
            behind_linear="beats_baselines.behind_linear",
        ),
        *diagnose_curves(
            [h["train/loss"] for h in t.history],
            [h.get("val/loss", math.nan) for h in t.history],
            steps=t.smooth_losses,
            reference_loss=task.init_loss_of(data, init_bias=final.cfg.model.init_bias).value,
            train_target_met=final.met,
            expect_overfit=True,
        ),
        update_ratio_check(final.update_ratios, s.update_ratio_low, s.update_ratio_high),
    ]


def _metrics(rungs: list[_Rung]) -> dict[str, float]:
    final = rungs[-1]
    t, metric = final.trained, task_for(final.trained.data).metric
    top = {
        "val/loss": t.val.loss,
        f"val/{metric}": t.val.metric,
        "train/loss": t.train.loss,
        f"train/{metric}": t.train.metric,
    }  # the same keys in every stage: one MLflow chart compares them
    return (
        top
        | final.trained.summary("overfit/")
        | {
            "overfit/lr": final.cfg.optim.lr,
            "overfit/rungs": float(len(rungs) - 1),
            "overfit/target_met": float(final.met),
        }
    )


def _finish(
    ctx: StageContext, final: _Rung, findings: list[Finding], metrics: dict[str, float], notes: list[str]
) -> StageResult:
    """Publish the final weights; hand on the trained config with the user's budget (early stopping off)."""
    cfg, t = final.cfg, final.trained
    checkpoint, checkpoint_uri = publish_checkpoint(t.weights_path, ctx.workdir, "overfit.pt")
    handed_on = cfg.with_overrides({"budget": ctx.cfg.budget.model_dump(mode="json") | {"early_stopping": None}})
    notes += [
        f"trained {describe_model(cfg)} with {cfg.optim.name} at lr {cfg.optim.lr:g} for {t.epochs} epochs in "
        f"{t.seconds:.1f} s; {t.stop_reason or 'ran the whole budget'}",
        f"hands on the final weights ({checkpoint.name}) and this config (the budget as given)",
    ]
    artifacts = {"checkpoint_path": str(checkpoint)}
    if ctx.cfg.stages.overfit.lr_finder:
        artifacts["lr_finder"] = tracking.artifact_uri("overfit/lr_finder.json")
    return finish(
        STAGE,
        findings,
        handed_on,
        gates=GATES,
        metrics=metrics,
        notes=notes,
        artifacts=artifacts,
        checkpoint_uri=checkpoint_uri,
        trend=loss_trend(t.smooth_losses),
    )


# --- 1. don't be a hero --------------------------------------------------------------------------------------


def hero_free(
    cfg: RecipeConfig, s: OverfitConfig, in_shape: tuple[int, ...], device_type: str
) -> tuple[RecipeConfig, list[str], Finding]:
    """The config the stage trains with, the changes from ``cfg`` ("key: old -> new"), and the architecture check."""
    image = len(in_shape) == 3
    name, why = _architecture(cfg.model.name, s.architecture, image, device_type)
    updates: dict[str, object] = {"model.name": name}
    if name == "resnet" and cfg.model.name in ("resnet18", "resnet34"):
        updates["model.width"] = 16  # the narrow resnet at width 16 trains at about the speed of the small cnn
    if name != cfg.model.name and cfg.model.kwargs:
        updates["model.kwargs"] = {}  # kwargs belong to the model they were written for
    if s.optimizer == "adam":
        updates.update(
            {"optim.name": "adam", "optim.lr": s.lr, "schedule.name": "constant", "schedule.warmup_steps": 0}
        )
    updates.update(
        {
            "optim.weight_decay": 0.0,
            "model.dropout": 0.0,
            "data.augment": [],
            "budget.early_stopping": None,
            "model.init_from": None,
        }
    )
    if s.epochs:
        updates["budget.epochs"] = s.epochs
    new = cfg.with_overrides(updates)
    before, after = cfg.flat(), new.flat()
    changes = [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in after.items() if before.get(k) != v]
    kind = "images" if image else "tables"
    arch = finding(
        "architecture",
        f"a known architecture fit for {kind} on a {device_type} (don't be a hero)",
        f"{describe_model(new)}: {why}",
        "cnn / resnet for images (resnet18/34 on a GPU), mlp for tables",
        PASS,
    )
    return new, changes, arch


def _architecture(name: str, setting: str, image: bool, device_type: str) -> tuple[str, str]:
    if setting != "auto":
        return setting, "set by stages.overfit.architecture"
    gpu = device_type == "cuda"
    if image:
        if name in ("cnn", "resnet") or ":" in name:
            return name, "kept from the config"
        if name in ("resnet18", "resnet34"):
            if gpu:
                return name, "kept from the config"
            return "resnet", f"{name} is too slow on a CPU; the narrow resnet has the same design"
        if name in ("linear", "mlp"):
            new = "resnet18" if gpu else "cnn"
            return new, f"{name} is a baseline for images, not the architecture to overfit with"
        return name, "kept from the config (a registered model)"
    if name == "mlp" or ":" in name:
        return name, "kept from the config"
    if name in ("cnn", "resnet", "resnet18", "resnet34"):
        return "mlp", f"{name} needs images; tables get an mlp"
    if name == "linear":
        return "mlp", "linear is the baseline; the mlp is the model to overfit with"
    return name, "kept from the config (a registered model)"


# --- 2. the learning rate ------------------------------------------------------------------------------------


def _lr_finder(
    cfg: RecipeConfig, data: DataBundle, s: OverfitConfig, figures: Figures
) -> tuple[float, Finding, dict[str, float]]:
    model = build_for(cfg, data)
    trainer = make_trainer(cfg, model, data)
    finder = lr_find(trainer, min_lr=s.lr_min, max_lr=s.lr_max, num_steps=s.lr_steps, rule=s.lr_rule)
    sugg = finder.suggestion
    start = cfg.optim.lr
    lr, f = decide_lr(start, sugg, s.lr_tolerance, s.lr_max)
    tracking.log_dict(
        {
            "lrs": finder.lrs,
            "losses": _jsonable(finder.losses),
            "smooth_losses": _jsonable(finder.smooth_losses),
            "stop_reason": finder.stop_reason,
            "suggestion": dataclasses.asdict(sugg),
            "start_lr": start,
            "chosen_lr": lr,
        },
        "overfit/lr_finder.json",
    )
    from recipe.plots.curves import lr_finder_figure

    figures.log(
        "plots/lr_finder.png",
        lambda: lr_finder_figure(finder.lrs, finder.losses, finder.smooth_losses, sugg, start, lr),
    )
    return lr, f, {**sugg.to_metrics(), "lr_finder/chosen": lr}


def decide_lr(start: float, sugg: LRSuggestion, tolerance: float, lr_max: float) -> tuple[float, Finding]:
    """Keep ``start`` when it lies in the good region -- within ``tolerance`` of the suggestion and below the
    rate of the loss minimum -- else take the suggestion (one significant digit)."""
    name = "lr_finder"
    hypothesis = f"the starting lr {start:g} lies in the LR finder's good region"
    if sugg.lr is None:
        return start, finding(
            name,
            hypothesis,
            f"no suggestion: {sugg.reason}; kept {start:g}",
            "a sweep whose smoothed loss falls, then rises",
            WARN,
            "look at plots/lr_finder.png: a flat sweep means the model barely responds to its "
            "learning rate (frozen layers? a loss that ignores the output?)",
        )
    lo, hi = sugg.lr / tolerance, min(sugg.lr * tolerance, sugg.lr_at_min)
    where = (
        f"suggestion {sugg.lr:.2g} ({sugg.rule}), loss minimum at {sugg.lr_at_min:.2g}, "
        f"steepest fall at {sugg.lr_steepest:.2g}"
    )
    expected = f"lr in [{lo:.2g}, {hi:.2g}]"
    at_end = sugg.lr_at_min >= lr_max / 1.5
    advice = (
        (
            "the loss was still lowest at the end of the sweep: raise stages.overfit.lr_max, or the model barely "
            "responds to its learning rate"
        )
        if at_end
        else ""
    )
    verdict = WARN if at_end else PASS
    if lo <= start <= hi:
        return start, finding(name, hypothesis, f"kept {start:g}: {where}", expected, verdict, advice)
    chosen = float(f"{sugg.lr:.1g}")
    return chosen, finding(name, hypothesis, f"replaced {start:g} by {chosen:g}: {where}", expected, verdict, advice)


# --- 3. the capacity ladder ----------------------------------------------------------------------------------


class _Rung:
    def __init__(
        self, cfg: RecipeConfig, trained: FitResult, met: bool, text: str, run_id: str, update_ratios: list
    ) -> None:
        self.cfg, self.trained, self.met, self.text, self.run_id = cfg, trained, met, text, run_id
        self.update_ratios = update_ratios  # (step, {layer: log10 update/weight ratio}) every 10 steps
        self.top = ""  # why the ladder could not grow past this rung


def _ladder(
    ctx: StageContext, cfg: RecipeConfig, data: DataBundle, s: OverfitConfig, ceiling: float = 1.0
) -> list[_Rung]:
    rungs: list[_Rung] = []
    for k in range(s.max_rungs + 1):
        tags = tracking.run_tags(ctx.input_cfg, data.fingerprint, stage=STAGE, kind="candidate")
        tags["recipe.candidate"] = f"rung{k}"
        with tracking.start_run(f"{STAGE}:rung{k}", tags, params=cfg.flat(), nested=True) as run:
            ratio = UpdateRatio(every=10)
            stop = [StopAtTarget(data, s, ceiling)] if s.stop_at_target else []
            t = fit(cfg, data, callbacks=[ratio, *stop], workdir=ctx.workdir)
            t.save(ctx.workdir / "rungs" / f"rung{k}.pt")
            met, text = target_met(t, s, ceiling)
            tracking.log_metrics(t.summary("eval/") | {"eval/target_met": float(met)})
        rungs.append(_Rung(cfg, t, met, text, run.info.run_id, list(ratio.history)))
        if met or t.diverged or k == s.max_rungs:
            break
        if len(rungs) > 1 and (stalled := rung_stalled(rungs[-2].trained, t, s.min_rung_gain)):
            rungs[-1].top = stalled  # a rung that did not help: the next would not either
            break
        try:
            bigger = grow(cfg.model)
        except ModelConfigError as e:
            rungs[-1].top = str(e)  # the top of the ladder: the ladder check says so
            break
        cfg = cfg.with_overrides({"model": bigger.model_dump(mode="json")})
    return rungs


def train_error(t: FitResult) -> float:
    """The evaluated fit's training error: 1 - accuracy, or the train MSE as a fraction of the target variance."""
    if task_for(t.data).higher_is_better:
        return 1.0 - t.train.metrics["accuracy"]
    var = _target_variance(t.data)
    return t.train.metrics["mse"] / var if var > 0 else math.inf


def _target_variance(data: DataBundle) -> float:
    """The train target variance of ``data`` in the target's units (where the MSE is reported)."""
    return ((data.target_std or 0.0) * (getattr(data, "target_scale", None) or 1.0)) ** 2


def rung_stalled(before: FitResult, after: FitResult, min_gain: float) -> str:
    """Why the ladder should stop after ``after`` (the bigger model), or "" to grow on: the training error fell by
    less than ``min_gain`` of ``before``'s (the recipe's "complexify one thing at a time", judged by its result)."""
    e0, e1 = train_error(before), train_error(after)
    if not (math.isfinite(e0) and math.isfinite(e1)) or e0 <= 0 or e1 < (1 - min_gain) * e0:
        return ""
    return (
        f"the last rung cut the training error only from {e0:.4g} to {e1:.4g} (less than "
        f"stages.overfit.min_rung_gain={min_gain:g} of it): more capacity is not what is missing"
    )


def target_met(t: FitResult, s: OverfitConfig, ceiling: float = 1.0) -> tuple[bool, str]:
    """Whether the evaluated fit ``t`` reaches the training target of ``s``, and the observation in words:
    classification: train accuracy (and loss, nats) in eval mode, the accuracy target capped at ``ceiling`` (the
    accuracy identical rows with different labels allow); regression: train MSE as a fraction of the train target
    variance."""
    return _meets(t.train.metrics, t.train.loss, t.data, s, ceiling)


def _meets(
    metrics: dict[str, float], loss: float, data: DataBundle, s: OverfitConfig, ceiling: float
) -> tuple[bool, str]:
    """:func:`target_met` on training-split ``metrics`` (accuracy, or mse) and ``loss`` of a model on ``data``."""
    if task_for(data).higher_is_better:
        acc = metrics["accuracy"]
        target_acc = _target_accuracy(s, ceiling)
        ok_acc = target_acc is None or acc >= target_acc - 1e-12
        ok_loss = s.target_loss is None or loss <= s.target_loss
        return ok_acc and ok_loss, f"train accuracy {acc:.4f}, train loss {fmt(loss)}"
    var = _target_variance(data)
    mse = metrics["mse"]
    ratio = mse / var if var > 0 else math.inf
    return ratio <= s.target_mse_ratio, f"train MSE {fmt(mse)} = {ratio:.3f} x the target variance {fmt(var)}"


class StopAtTarget(Callback):
    """Stop a rung at the first validation where the training target of ``s`` is met
    (``stages.overfit.stop_at_target``; the budget turns it on): the epoch's train-mode metric (``train/accuracy``
    or ``train/mse``, free) must meet it, and then the model in eval mode on the whole training split of ``data``
    (no augmentation; what :func:`target_met` judges after the fit), so the costlier pass runs only near the
    target. The stage's question, "can this model fit the training set?", is then answered; the steps after it
    only drive the loss further down. Measured on a 300-image MNIST folder (210 training images, Adam at 0.01):
    eval-mode train accuracy 92.9% after 50 steps, 100% from 100 steps on, where budget.min_steps gave the rung
    800. It validates every data epoch (``every_epoch``: no step cadence, :mod:`recipe.train.cadence`), so the
    stop lands on the first epoch at the target and the curve checks get a point per epoch: on the step cadence
    (every 8 epochs of 4 steps) that rung stopped with 3 points, and the curves_* checks could not judge it. The
    budget's estimate already counts a validation every epoch (:class:`recipe.budget.StepCost`). Runs after
    early stopping (30) and the metrics (which record the epoch first)."""

    order = 31
    every_epoch = True

    def __init__(self, data: DataBundle, s: OverfitConfig, ceiling: float = 1.0) -> None:
        self.data, self.s, self.ceiling = data, s, ceiling
        self.stopped_step: int | None = None

    def after_epoch(self) -> None:
        t, task = self.trainer, task_for(self.data)
        key = "train/accuracy" if task.higher_is_better else "train/mse"
        if key not in t.metrics or not self._met({key.split("/")[1]: t.metrics[key]}, t.metrics["train/loss"]):
            return
        ev = evaluate_model(
            t.model,
            self.data.batches("train", batch_size=self.data.config.eval_batch_size, device=t.device),
            task,
            t.device,
        )
        if self._met(ev.metrics, ev.loss):
            self.stopped_step = t.step
            t.stop(f"reached the training target after {t.step} steps (stages.overfit.stop_at_target)")

    def _met(self, metrics: dict[str, float], loss: float) -> bool:
        return _meets(metrics, loss, self.data, self.s, self.ceiling)[0]


def _target_accuracy(s: OverfitConfig, ceiling: float = 1.0) -> float | None:
    target = s.target_accuracy if (s.target_accuracy is not None or s.target_loss is not None) else 0.99
    return None if target is None else min(target, ceiling)


def _target_text(s: OverfitConfig, task: str, ceiling: float = 1.0) -> str:
    if not task_for(task).higher_is_better:
        return f"train MSE <= {s.target_mse_ratio:g} x the target variance"
    parts = []
    target = _target_accuracy(s, ceiling)
    if target is not None:
        capped = f" (capped by the {ceiling:.4f} that conflicting duplicates allow)" if ceiling < 0.99 else ""
        parts.append(f"train accuracy >= {target:.4g}{capped}")
    if s.target_loss is not None:
        parts.append(f"train loss <= {s.target_loss:g}")
    return " and ".join(parts)


def epochs_needed(t: FitResult, target_error: float) -> int | None:
    """More epochs the training error's recent pace says reaching ``target_error`` would take: a straight line
    through log(train error) over the last half of the epochs (at least 3; the per-epoch train-mode metric),
    extended from the eval-mode error now. None when the error is not falling or there are too few epochs."""
    task = task_for(t.data)
    # (data epoch, error) per history row: rows are every few epochs on tiny data (trainer.eval_min_steps)
    if task.higher_is_better:
        rows = [
            (h.get("epoch", i), 1.0 - h["train/accuracy"]) for i, h in enumerate(t.history) if "train/accuracy" in h
        ]
    else:
        var = _target_variance(t.data)
        rows = [
            (h.get("epoch", i), h["train/mse"] / var) for i, h in enumerate(t.history) if "train/mse" in h and var > 0
        ]
    pts = np.asarray(rows[len(rows) // 2 :], np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts[:, 1]) & (pts[:, 1] > 0)]
    now = train_error(t)
    if len(pts) < 3 or not (math.isfinite(now) and now > 0):
        return None
    slope = float(np.polyfit(pts[:, 0], np.log(pts[:, 1]), 1)[0])
    if slope >= 0:
        return None
    return max(1, math.ceil((math.log(max(target_error, 1e-4)) - math.log(now)) / slope))


def _target_finding(
    t: FitResult, s: OverfitConfig, rung: int, *, ceiling: float = 1.0, reference_loss: float = math.nan
) -> Finding:
    """train_target: PASS at the target; short of it WARN when the model shows it can fit (training loss under
    ``fit_loss_ratio`` x ``reference_loss`` -- the dumb predictor's, the loss at init with the bias from the
    priors -- or still falling), with the epochs it would need; WARN as a plateau when it is flat between that and
    ``stall_loss_ratio`` x ``reference_loss`` (a noisy table's ceiling: attrition's TabM levelled off at 0.92 train
    accuracy); FAIL only when the loss stalled near the dumb predictor's (evidence of a bug: seed 004, "overfit")."""
    met, text = target_met(t, s, ceiling)
    expected = _target_text(s, t.data.task, ceiling)
    observed = f"{text} (eval mode, {len(t.train.scores)} training samples) after {t.epochs} epochs at rung {rung}"
    hypothesis = f"the model fits the training set: {expected}"
    if met:
        return finding("train_target", hypothesis, observed, expected, PASS)
    task = task_for(t.data)
    ratio = t.train.loss / reference_loss if reference_loss and math.isfinite(reference_loss) else math.nan
    falling = still_falling(t.smooth_losses)
    learned = math.isfinite(ratio) and ratio <= s.fit_loss_ratio
    evidence = (
        f"training loss {fmt(t.train.loss)} = {ratio:.2g} x the dumb predictor's {fmt(reference_loss)}, "
        f"{'still falling' if falling else 'flat at the end'}; train {task.metric} {fmt(t.train.metric)} vs "
        f"val {fmt(t.val.metric)}"
    )
    stalled = not (math.isfinite(ratio) and ratio < s.stall_loss_ratio)
    if not (learned or falling) and stalled:
        return finding(
            "train_target",
            hypothesis,
            f"{observed}; {evidence}",
            expected,
            FAIL,
            "the model does not fit its own training data: the training loss stalled near the dumb predictor's. "
            "Look for a bug: frozen or detached layers, labels that do not belong to their inputs (re-check the "
            "labels), a learning rate far off (plots/lr_finder.png), inputs zeroed on the way in",
        )
    if not (learned or falling):
        return finding(
            "train_target",
            hypothesis,
            f"{observed}; {evidence}: a plateau, not a stall (the loss left the dumb predictor's; the stall line is "
            f"{s.stall_loss_ratio:g}x it, stages.overfit.stall_loss_ratio)",
            expected,
            WARN,
            "not a bug by this evidence: the model learned part of the way and levelled off. On a noisy table "
            "(labels the features do not fully decide) that is the ceiling, not a fault; otherwise try a larger "
            "model or a higher learning rate (plots/lr_finder.png), or go on: regularize starts from this model",
        )
    target_error = 1 - (_target_accuracy(s, ceiling) or 0.99) if task.higher_is_better else s.target_mse_ratio
    more = epochs_needed(t, target_error)
    budget = (
        f"at the last epochs' pace about {more} more epochs (stages.overfit.epochs={t.epochs + more}) would reach it"
        if more is not None
        else "the pace of the last epochs gives no estimate of the epochs it would need"
    )
    return finding(
        "train_target",
        hypothesis,
        f"{observed}; {evidence}; {budget}",
        expected,
        WARN,
        "not a bug: the model fits (its training loss is far below the dumb predictor's or still falling) and "
        "the budget ran out first. Give it the epochs above (stages.overfit.epochs, budget.epochs) if the "
        "train/val gap matters, or go on: regularize starts from this model",
    )


def _ladder_finding(rungs: list[_Rung], s: OverfitConfig) -> Finding:
    steps = " -> ".join(f"{describe_model(r.cfg)} ({r.text.split(',')[0]})" for r in rungs)
    met = rungs[-1].met
    grew = len(rungs) - 1
    if met:
        observed = f"reached the target at rung {grew}" + (
            f" after growing {grew} time(s): {steps}" if grew else f": {steps}"
        )
    elif rungs[-1].trained.diverged:
        observed = f"stopped at rung {grew}: the loss diverged ({steps})"
    else:
        observed = f"not reached after {grew} of at most {s.max_rungs} growth step(s): {steps}"
        if rungs[-1].top:
            observed += f"; stopped growing: {rungs[-1].top}"
    return finding(
        "capacity_ladder",
        "a model on the capacity ladder (one change per rung) reaches the training target",
        observed,
        f"the target within {s.max_rungs} growth step(s)",
        PASS if met else WARN,
        "every rung fell short: the problem is probably not capacity (see the curves_* checks), or the budget is "
        "too small for the bigger models",
    )


def _finite(t: FitResult) -> Finding:
    ok = not t.diverged
    return finding(
        "finite_loss",
        "the training loss stays finite",
        "finite" if ok else t.divergence,
        "finite",
        PASS if ok else FAIL,
        "lower optim.lr (try 10x smaller) or set trainer.grad_clip",
    )


# --- plots ---------------------------------------------------------------------------------------------------


def _log_figures(rungs: list[_Rung], s: OverfitConfig, figures: Figures) -> None:
    from recipe.plots.curves import curves_figure, update_ratio_figure

    metric = task_for(rungs[-1].trained.data).metric
    histories = {f"rung{i}": r.trained.history for i, r in enumerate(rungs)}
    titles = {
        f"rung{i}": f"rung {i}: {describe_model(r.cfg)}\ntrain {metric} {r.trained.train.metric:.4f}, "
        f"val {r.trained.val.metric:.4f}"
        for i, r in enumerate(rungs)
    }
    figures.log(
        "plots/curves.png",
        lambda: curves_figure(histories, titles=titles, title="overfit: train vs validation loss per rung"),
    )
    figures.log(
        "plots/update_ratio.png",
        lambda: update_ratio_figure(rungs[-1].update_ratios, s.update_ratio_low, s.update_ratio_high),
    )


def _jsonable(values: list[float]) -> list[float | str]:
    return [v if math.isfinite(v) else str(v) for v in values]


__all__ = ["decide_lr", "epochs_needed", "hero_free", "rung_stalled", "run", "target_met", "train_error"]
