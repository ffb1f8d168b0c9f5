"""The baselines stage's experiments, one function each, in the order the report lists them.

Each experiment is ``fn(lab, short) -> Finding``: it trains what it needs through the :class:`Lab` (its own
grandchild MLflow run when it has curves), reads the frozen :class:`ShortRun` when it needs the short run
(``short`` is None when the short run raised: :func:`need` turns that into a FAIL), and is judged by the public
check of the same name in :mod:`recipe.checks.skeleton`. No experiment reads another's result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recipe import tracking
from recipe.checks import skeleton as sk
from recipe.checks.base import Finding
from recipe.config import RecipeConfig
from recipe.data import build_augment
from recipe.data.batching import InMemoryBatcher
from recipe.fit import FitResult, build_for
from recipe.models import ModelConfigError, grow
from recipe.stages.baselines.lab import (
    Lab,
    ShortRun,
    _logger,
    _short,
    _StopBelow,
    _ZeroInputs,
    diverse,
    need,
)
from recipe.tasks import task_for
from recipe.train import Trainer, build_optimizer, config_callbacks

Experiment = Callable[[Lab, "ShortRun | None"], Finding]


def fixed_seed(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``fixed_seed``: the short run's first steps, re-run with the same seed and another."""
    from recipe.plots import skeleton as plots

    short = need(short)
    k = lab.bc.seed_steps
    again = lab.quick("same_seed", lab.short_cfg, k)
    other_seed = lab.cfg.seed + 1
    other = lab.quick("other_seed", lab.short_cfg.with_overrides({"seed": other_seed}), k)
    a = short.losses[:k]
    lab.plot(
        "plots/fixed_seed.png", lambda: plots.fixed_seed_figure(a, again.losses, other.losses, lab.cfg.seed, other_seed)
    )
    return sk.fixed_seed((a, again.losses), other.losses, lab.cfg.seed, other_seed=other_seed, tol=lab.bc.seed_tol)


def output_layer(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``output_layer``: the first forward pass of a fresh model on a val batch, read for what it
    returns (logits, probabilities, log-probabilities)."""
    model = build_for(lab.short_cfg, lab.data).to(lab.device).eval()
    xb, _ = next(iter(lab.val_batches()))
    with torch.no_grad():
        pred = model(xb.to(lab.device))
    return sk.output_layer(lab.task, sk.output_kind(pred), n_classes=lab.data.num_classes)


def loss_at_init(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``loss_at_init``: val loss before any step vs -log(1/C) / the priors' cross-entropy / var."""
    from recipe.plots import skeleton as plots

    short = need(short)
    expected = _expected(lab, lab.cfg.model.init_bias)
    lab.plot(
        "plots/loss_at_init.png",
        lambda: plots.loss_at_init_figure(short.init_per_example, expected.value, short.init_loss, lab.task),
    )
    return sk.loss_at_init(lab.task, short.init_loss, expected, warn=lab.bc.init_loss_warn, fail=lab.bc.init_loss_fail)


def init_well(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``init_well``: the same with and without the final bias from the data; first steps."""
    from recipe.plots import skeleton as plots

    short = need(short)
    used = lab.cfg.model.init_bias
    h = lab.bc.hockey_steps
    flipped = lab.short_cfg.with_overrides({"model.init_bias": not used})
    other = lab.quick("other_init", flipped, h)
    other_init = _val_loss_at_init(lab, flipped)
    mine, theirs = (short.losses[:h], other.losses[:h])
    with_bias, without = (short.init_loss, other_init) if used else (other_init, short.init_loss)
    curves = (mine, theirs) if used else (theirs, mine)
    lab.plot("plots/init_well.png", lambda: plots.init_well_figure(curves[0], curves[1], used))
    return sk.init_well(lab.task, with_bias, without, used=used, warn=lab.bc.init_loss_warn, steps=h)


def input_independent(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``input_independent``: the short run again with every input zeroed (a forward pre-hook)."""
    from recipe.plots import skeleton as plots

    short = need(short)
    cfg = lab.short_cfg
    params = {"steps": lab.bc.short_steps, "inputs": "zeroed", "model.name": cfg.model.name, "seed": cfg.seed}
    with lab.child("zero_input", params):
        zero = lab.train("zero_input", cfg, lab.bc.short_steps, [_ZeroInputs(), _logger()])
    curves = {"real inputs": _curve(short), "zeroed inputs": _curve(zero)}
    lab.plot("plots/learning_curves.png", lambda: plots.learning_curves_figure(curves, lab.task))
    chance = lab.task.chance_margin(lab.y_val, target_mean=lab.data.target_mean, k=3.0)
    return sk.input_independent(
        lab.task,
        short.metrics,
        zero.metrics,
        margin=lab.bc.input_margin,
        steps=short.trainer.step,
        chance=chance,
        paired=_paired_loss_gain(lab, short.fit, zero),
    )


class _OnZeros(torch.nn.Module):
    """A model fed all-zero inputs of the batch's shape (the zero-input run's own view of the data)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.zeros_like(x))


def _paired_loss_gain(lab: Lab, real: FitResult, zero: FitResult) -> tuple[float, float] | None:
    """Mean and standard error of (zero-input loss - real-input loss) per val sample, the two short runs' models
    in eval mode on the same samples; None when either run diverged."""
    if real.diverged or zero.diverged:
        return None
    from recipe.fit import evaluate_model

    r = evaluate_model(real.model, lab.val_batches(), lab.task, lab.device).losses
    z = evaluate_model(_OnZeros(zero.model), lab.val_batches(), lab.task, lab.device).losses
    d = z - r
    return (float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))) if len(d) > 1 else None


def _linear(lab: Lab) -> FitResult:
    """The linear baseline's run, trained once in its own child run and shared by the checks that need it (the
    bar of dumb_baselines, the witness of weak signal for input_independent)."""
    if "linear_baseline" in lab.runs:
        return lab.runs["linear_baseline"]
    b = lab.bc
    cfg = linear_config(lab.cfg, lab.data, epochs=lab.geometry(b.linear_steps)[0])
    params = {"steps": b.linear_steps, "model.name": "linear", "optim.lr": cfg.optim.lr, "seed": cfg.seed}
    with lab.child("linear_baseline", params):
        return lab.train("linear_baseline", cfg, b.linear_steps, [_logger()], augment=False)


def dumb_baselines(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``dumb_baselines``: majority class / mean target and a linear model (the bar to beat)."""
    short = need(short)
    dumb = lab.dumb()
    b = lab.bc
    linear = _linear(lab)
    margin = lab.task.chance_margin(lab.y_val, target_mean=lab.data.target_mean)
    found = sk.dumb_baselines(
        lab.task,
        short.metrics,
        dumb,
        linear=linear.metrics,
        steps=short.trainer.step,
        require_linear=b.require_beat_linear,
        margin=margin,
    )
    return found


def human_metric(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``human_metric``: val accuracy (MAE) next to the loss, beside stages.baselines.human_baseline."""
    short = need(short)
    return sk.human_metric(lab.task, short.metrics, lab.bc.human_baseline, steps=short.trainer.step)


def overfit_one_batch(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``overfit_one_batch``: a few train examples to ~0 loss. A loss still falling at the end is
    retried at 10x the learning rate (slow is not broken); one that flattens out grows the model a rung."""
    from recipe.plots import skeleton as plots

    b = lab.bc
    xb, yb = _pick_batch(lab, b.overfit_examples)
    # regularisation off (dropout, weight decay), a constant learning rate: only memorising counts here
    model_cfg = lab.cfg.model.model_copy(update={"dropout": 0.0})
    attempts: list[sk.OverfitAttempt] = []
    curves: list[tuple[str, list[float]]] = []
    grow_error, rungs = "", 0
    params = {"examples": len(xb), "steps": b.overfit_steps, "model.name": model_cfg.name}
    with lab.child("overfit_one_batch", params):
        while True:
            prefix = f"rung{rungs}/" if rungs else ""
            attempt, pred = _attempt(lab, model_cfg, xb, yb, prefix, 1.0, attempts, curves)
            if not attempt.reached and attempt.falling:
                attempt, pred = _attempt(lab, model_cfg, xb, yb, f"{prefix}lr_x10/", 10.0, attempts, curves)
            if attempt.reached or attempt.falling or rungs == b.overfit_max_grow:
                break
            try:
                model_cfg, rungs = grow(model_cfg), rungs + 1
            except ModelConfigError as e:
                grow_error = str(e)
                break
    if attempts[-1].reached and rungs:
        grown = model_cfg.model_copy(update={"dropout": lab.cfg.model.dropout})
        lab.handed_on = RecipeConfig.model_validate({**lab.cfg.to_dict(), "model": grown.model_dump(mode="json")})
        lab.notes.append(
            f"overfitting one batch needed {rungs} more capacity rung(s): the config "
            f"handed on has model {attempts[-1].model}"
        )
    target = attempts[0].init_loss * b.overfit_ratio
    lab.plot(
        "plots/overfit_one_batch.png",
        lambda: plots.overfit_figure(curves, pred, yb.cpu().numpy(), lab.task, lab.data.classes, target),
    )
    return sk.overfit_one_batch(attempts, len(xb), b.overfit_ratio, budget=b.overfit_steps, grow_error=grow_error)


def _attempt(
    lab: Lab,
    model_cfg,
    xb: Tensor,
    yb: Tensor,
    prefix: str,
    lr_mult: float,
    attempts: list[sk.OverfitAttempt],
    curves: list[tuple[str, list[float]]],
) -> tuple[sk.OverfitAttempt, Any]:
    attempt, losses, pred = _overfit(lab, model_cfg, xb, yb, prefix=prefix, lr_mult=lr_mult)
    attempts.append(attempt)
    curves.append((f"{attempt.model}, lr {attempt.lr:.2g}", losses))
    return attempt, pred


def training_loss_decreases(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``training_loss_decreases``: the short run's smoothed loss, first vs last window."""
    short = need(short)
    return sk.training_loss_decreases(
        lab.task,
        short.smooth_losses,
        lab.bc.decrease_margin,
        diverged=short.divergence,
        steps=short.trainer.step,
        init_loss=short.init_loss,
    )


def batch_independence(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``batch_independence``: d(outputs of i)/d(input j) = 0 for j != i (eval mode with batch norm)."""
    from recipe.plots import skeleton as plots

    xv, yv = next(iter(lab.val_batches()))  # the val split in its stored order: rows(val) names them
    pick = diverse(yv.cpu(), lab.bc.batch_examples, lab.task)
    ids = lab.data.rows("val")["id"].astype(str).to_numpy()[pick.numpy()]
    names = [f"{k}:{_short(i)}" for k, i in enumerate(ids)]
    xb = xv[pick.to(xv.device)]
    model = build_for(lab.short_cfg, lab.data).to(lab.device)
    dep = sk.batch_dependence(model, xb.to(lab.device), seed=lab.cfg.seed)
    if dep.eval_mode:
        lab.notes.append(
            "batch independence was checked in eval mode: the model has batch norm, which mixes "
            "the examples of a batch in train mode by design"
        )
    lab.plot("plots/batch_independence.png", lambda: plots.batch_dependence_figure(dep.grad, names, dep.eval_mode))
    return sk.batch_independence(dep, lab.bc.batch_leak_tol, names)


def visualise_before_net(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``visualise_before_net``: a pre-hook grabs the exact training batch entering the net; decoded, drawn."""
    from recipe.plots import skeleton as plots

    short = need(short)
    x, y = short.x, short.y
    image = len(lab.data.in_shape) == 3
    augment = list(lab.cfg.data.augment)
    if x is None:
        return sk.visualise_before_net(
            None, image, augment, mean_tol=lab.bc.input_mean_tol, std_factor=lab.bc.input_std_factor
        )
    decoded = lab.data.decode(x)  # the inverse of the data's scaling (soft clip of tables included)
    mean, std = _train_stats(lab)
    stats = sk.input_stats(decoded, mean, std)
    aug = f"augment [{', '.join(augment)}]" if augment else "no augmentation"
    title = (
        f"exactly what enters the net: the first training batch {tuple(x.shape)}, {aug},\n"
        "decoded with the data's mean/std"
    )
    if image:
        title += f"; batch mean {np.mean(stats.batch_mean):.3g} vs train {np.mean(mean):.3g}"
    labels = y.tolist() if y is not None else [0] * len(x)
    if image:
        lab.plot(
            "plots/input_batch.png", lambda: plots.input_batch_figure(decoded.numpy(), labels, lab.data.classes, title)
        )
    else:
        names = list(lab.data.manifest.feature_columns)
        lab.plot("plots/input_batch.png", lambda: plots.feature_batch_figure(decoded.numpy(), names, mean, std, title))
    return sk.visualise_before_net(
        stats, image, augment, mean_tol=lab.bc.input_mean_tol, std_factor=lab.bc.input_std_factor, shape=tuple(x.shape)
    )


def prediction_dynamics(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``prediction_dynamics``: predictions on fixed val examples after every epoch of the short run."""
    from recipe.plots import skeleton as plots

    short = need(short)
    snaps, y = short.snapshots, short.snap_y
    arrays = [(e, p.numpy()) for e, p in snaps]
    lab.plot(
        "plots/prediction_dynamics.png",
        lambda: plots.prediction_dynamics_figure(arrays, y.cpu().numpy(), lab.task, lab.data.classes),
    )
    return sk.prediction_dynamics(lab.task, snaps, y)


def augmentation_preserves_labels(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``augmentation_preserves_labels``: a model trained on clean data, scored on the val inputs
    the augmentation actually changed (a transform applied with probability p leaves the rest as they were, and
    they would hide what it does); flips are refused outright for data that is not mirror-symmetric."""
    augment = list(lab.cfg.data.augment)
    m = lab.task.metric
    if not augment:
        return sk.augmentation_preserves_labels(lab.task, [])
    cfg = lab.short_cfg
    params = {"steps": lab.bc.short_steps, "augment": "none (clean)", "model.name": cfg.model.name}
    with lab.child("clean_for_augmentation", params):
        clean_run = lab.train("clean_for_augmentation", cfg, lab.bc.short_steps, [_logger()], augment=False)
        trainer = clean_run.trainer
        augmented, changed = _augmented_skill(lab, trainer, augment)
        tracking.log_metrics({f"val_augmented/{m}": augmented, "val_augmented/changed_share": changed})
    clean = clean_run.metrics.get(f"val/{m}", math.nan)
    dumb = lab.dumb()[lab.task.dumb_key]
    if len(lab.data.in_shape) == 3 and lab.task.classifier:
        lab.plot("plots/augmentation.png", lambda: _augmentation_figure(lab, trainer, augment))
    mirrored = "hflip" in augment and lab.cfg.data.mirror_symmetric is False
    return sk.augmentation_preserves_labels(
        lab.task,
        augment,
        clean,
        augmented=augmented,
        dumb=dumb,
        warn=lab.bc.augment_warn_retained,
        fail=lab.bc.augment_fail_retained,
        steps=clean_run.trainer.step,
        changed=changed,
        mirror_refused=mirrored,
    )


def _augmented_skill(lab: Lab, trainer: Trainer, augment: list[str]) -> tuple[float, float]:
    """The clean-trained model's val metric on the inputs the augmentation changed (shuffled first, so a
    transform that hands back another sample's input meets other classes), averaged over
    ``stages.baselines.augment_repeats`` draws; and the share of inputs changed."""
    x, y = lab.data.tensors("val")
    aug = build_augment(augment, lab.data.in_shape)
    bs = lab.cfg.data.eval_batch_size
    scores, shares = [], []
    for r in range(lab.bc.augment_repeats):
        g = torch.Generator().manual_seed(lab.cfg.seed + r)
        perm = torch.randperm(len(x), generator=g)
        xs, ys = x[perm], y[perm]
        xa = torch.cat([aug(xs[i : i + bs], generator=g) for i in range(0, len(xs), bs)])
        changed = (xa - xs).flatten(1).abs().amax(1) > 1e-6
        shares.append(float(changed.float().mean()))
        if changed.any():
            pred, yy = trainer.predict([(xa[changed], ys[changed])])
            scores.append(float(lab.task.scores(pred, yy).mean()))
    return (float(np.mean(scores)) if scores else math.nan), float(np.mean(shares))


def finite_loss(lab: Lab, short: ShortRun | None) -> Finding:
    """Experiment for ``finite_loss``: the NaN guard of every run above; a diverged run FAILs with its message."""
    return sk.finite_loss(lab.diverged)


def _expected(lab: Lab, init_bias: bool) -> sk.InitLoss:
    return lab.task.expected_init_loss(
        lab.y_val, init_bias=init_bias, class_counts=lab.data.class_counts, target_mean=lab.data.target_mean
    )


def _val_loss_at_init(lab: Lab, cfg: RecipeConfig) -> float:
    model = build_for(cfg, lab.data).to(lab.device).eval()
    preds, ys = [], []
    with torch.no_grad():
        for xb, yb in lab.val_batches():
            preds.append(model(xb).float().cpu())
            ys.append(yb.cpu())
    return float(lab.task.loss(torch.cat(preds), torch.cat(ys)))


def _curve(r: FitResult | ShortRun) -> dict[str, list[float]]:
    hist = [h for h in r.trainer.history if "val/loss" in h]
    return {"smooth": r.smooth_losses, "val_step": [h["step"] for h in hist], "val_loss": [h["val/loss"] for h in hist]}


def linear_config(cfg: RecipeConfig, data: Any, *, epochs: int) -> RecipeConfig:
    """The linear baseline's config: ``cfg`` with a linear model, Adam at ``stages.baselines.linear_lr``, a constant
    schedule, no regularisation, augmentation, budget limits or checkpoint, for ``epochs`` epochs. Regression
    with raw targets (``data.standardize_target=false``) scales the lr by the train target std: Adam moves each
    weight by about lr per step whatever the gradient's size, so reaching outputs of a target's size in a few
    hundred steps takes a step size of that scale. Squeeze retrains exactly this for its test table."""
    lr = cfg.stages.baselines.linear_lr
    if not task_for(data).classifier and data.target_std:
        lr *= max(1.0, float(data.target_std))
    return cfg.with_overrides(
        {
            "model.name": "linear",
            "model.kwargs": {},
            "model.dropout": 0.0,
            "model.init_from": None,
            "optim.name": "adam",
            "optim.lr": lr,
            "optim.weight_decay": 0.0,
            "schedule.name": "constant",
            "data.augment": [],
            "trainer.ema_decay": None,
            "trainer.grad_clip": None,
            "trainer.progress": False,
            "budget.max_steps": None,
            "budget.epochs": epochs,
            "budget.time_limit_s": None,
            "budget.early_stopping": None,
        }
    )


def _pick_batch(lab: Lab, n: int) -> tuple[Tensor, Tensor]:
    """``n`` training examples of as many classes as possible, from a seeded shuffle of the split."""
    pool = lab.data.batches("train", batch_size=max(256, n), shuffle=True, seed=lab.cfg.seed)
    x, y = next(iter(pool))
    pick = diverse(y.cpu(), n, lab.task).to(x.device)
    return x[pick].cpu(), y[pick].cpu()


def _overfit(
    lab: Lab, model_cfg, xb: Tensor, yb: Tensor, prefix: str, lr_mult: float = 1.0
) -> tuple[sk.OverfitAttempt, list[float], Any]:
    """One attempt at memorising the batch ``xb`` / ``yb`` with ``model_cfg`` (:func:`_overfit_config`), for up to
    ``stages.baselines.overfit_steps`` steps, stopping once the loss is below ``overfit_ratio`` of its value at
    init. Returns the attempt, the per-step training losses (nats, or squared target units) and the final
    outputs on the batch (numpy, as :meth:`Task.outputs` gives them). Records the NaN guard in ``lab.diverged``."""
    b = lab.bc
    cfg = _overfit_config(lab.cfg, model_cfg, lr_mult)
    model = build_for(cfg, lab.data).to(lab.device)
    x, y = xb.to(lab.device), yb.to(lab.device)
    with torch.no_grad():
        init = float(lab.task.loss(model.eval()(x), y))
    target = init * b.overfit_ratio
    trainer = _overfit_trainer(lab, cfg, model, (x, y), target, prefix)
    trainer.fit(b.overfit_steps)
    lab.diverged["overfit_one_batch" + (f"[{prefix.rstrip('/')}]" if prefix else "")] = trainer.diverged
    with torch.no_grad():
        out = model.eval()(x).float()
        final = float(lab.task.loss(out, y))
    losses = list(trainer.cb("recorder").losses)
    best = min((v for v in losses if math.isfinite(v)), default=math.nan)
    reached = bool(best <= target)
    falling = not reached and sk.still_falling(losses)
    attempt = sk.OverfitAttempt(
        _describe(model_cfg), init, final, best, trainer.step, reached, lr=cfg.optim.lr, falling=falling
    )
    return attempt, losses, lab.task.outputs(out).cpu().numpy()


def _overfit_config(cfg: RecipeConfig, model_cfg, lr_mult: float) -> RecipeConfig:
    """``cfg`` with ``model_cfg`` and only memorising left: no weight decay, no EMA, no step or time limit, a
    constant learning rate ``lr_mult`` times the config's."""
    return cfg.with_overrides(
        {
            "model": model_cfg.model_dump(mode="json"),
            "optim.weight_decay": 0.0,
            "schedule.name": "constant",
            "trainer.ema_decay": None,
            "budget.max_steps": None,
            "budget.time_limit_s": None,
            "optim.lr": cfg.optim.lr * lr_mult,
        }
    )


def _overfit_trainer(
    lab: Lab, cfg: RecipeConfig, model: nn.Module, batch: tuple[Tensor, Tensor], target: float, prefix: str
) -> Trainer:
    """A trainer that steps on ``batch`` alone, stops once the loss is below ``target`` and logs its curve under
    ``prefix`` in the current MLflow run."""
    x, y = batch
    return Trainer(
        model,
        InMemoryBatcher(x, y, len(x)),
        None,
        loss_fn=lab.task.loss,
        opt=build_optimizer(cfg.optim, model.parameters()),
        cbs=[*config_callbacks(cfg, lab.device.type), _StopBelow(target), _logger(prefix=prefix)],
        task=lab.task,
        device=lab.device,
        progress=False,
    )


def _train_stats(lab: Lab) -> tuple[np.ndarray, np.ndarray]:
    """The train split's per-channel pixel (0..1) or per-feature statistics (of the features as the model gets
    them: missing cells filled, so a column with a gap has statistics, not NaN)."""
    m = lab.data.manifest
    df = m.df
    train = df.index[(df["split"] == "train") & df["readable"]].to_numpy()
    if m.image_mode is not None and m.chan_stats is not None:
        cs = m.chan_stats[train]
        mean = cs[:, 0].mean(0)
        return mean, np.sqrt(np.maximum(cs[:, 1].mean(0) - mean**2, 0))
    f = lab.data.read_rows(train).astype(np.float64)
    return f.mean(0), f.std(0)


def _augmentation_figure(lab: Lab, trainer: Trainer, augment: list[str]):
    from recipe.plots import skeleton as plots

    x, y = next(iter(lab.data.batches("val", batch_size=lab.cfg.data.eval_batch_size)))
    pick = diverse(y, 16, lab.task)
    x, y = x[pick], y[pick]
    torch.manual_seed(lab.cfg.seed)
    xa = build_augment(augment, lab.data.in_shape)(x)
    pc, _ = trainer.predict([(x, y)])
    pa, _ = trainer.predict([(xa, y)])
    shape = (1, -1, 1, 1)
    mean, std = torch.tensor(lab.data.mean).view(shape), torch.tensor(lab.data.std).view(shape)
    title = (
        f"val images (rows 1, 3) and augmented [{', '.join(augment)}] (rows 2, 4);\n"
        "captions: label/prediction of a model trained on clean data, red when wrong"
    )
    return plots.augmentation_figure(
        (x * std + mean).numpy(),
        (xa * std + mean).numpy(),
        y.tolist(),
        pc.argmax(-1).tolist(),
        pa.argmax(-1).tolist(),
        lab.data.classes,
        title,
    )


def _describe(m) -> str:
    if ":" in m.name:
        knobs = " ".join(f"{k}={v}" for k, v in m.kwargs.items() if k in ("width", "depth"))
        return f"{m.name.rsplit(':', 1)[-1]} {knobs}".strip()
    if m.name == "linear":
        return "linear"
    return f"{m.name} width={m.width} depth={m.depth}"


# The experiments in report order; the keys are the check names (recipe.checks.skeleton.CHECK_NAMES).
EXPERIMENTS: dict[str, Experiment] = {
    "fixed_seed": fixed_seed,
    "output_layer": output_layer,
    "loss_at_init": loss_at_init,
    "init_well": init_well,
    "input_independent": input_independent,
    "dumb_baselines": dumb_baselines,
    "human_metric": human_metric,
    "overfit_one_batch": overfit_one_batch,
    "training_loss_decreases": training_loss_decreases,
    "batch_independence": batch_independence,
    "visualise_before_net": visualise_before_net,
    "prediction_dynamics": prediction_dynamics,
    "augmentation_preserves_labels": augmentation_preserves_labels,
    "finite_loss": finite_loss,
}
assert tuple(EXPERIMENTS) == sk.CHECK_NAMES
