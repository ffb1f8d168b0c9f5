"""Stage 2, set up the end-to-end training/evaluation skeleton and get dumb baselines.

"Gain trust in its correctness via a series of experiments" -- each one a check with a hypothesis, numbers
and a verdict, so a wiring bug in the model, the data pipeline or the loss shows up here, before any
compute is spent. The stage trains the config's model briefly, several times over, and compares:

===============================  =====================================================================
check                            experiment
===============================  =====================================================================
fixed_seed                       the short run's first steps, re-run with the same seed and another
loss_at_init                     val loss before any step vs -log(1/C) / the priors' cross-entropy / var
init_well                        the same with and without the final bias from the data; first steps
input_independent                the short run again with every input zeroed (a forward pre-hook)
dumb_baselines                   majority class / mean target and a linear model (the bar to beat)
human_metric                     val accuracy (MAE) next to the loss, beside stages.baselines.human_baseline
overfit_one_batch                a few train examples to ~0 loss; capacity grown a rung at a time if needed
training_loss_decreases          the short run's smoothed loss, first vs last window
batch_independence               d(outputs of i)/d(input j) = 0 for j != i (eval mode with batch norm)
visualise_before_net             a pre-hook grabs the exact training batch entering the net; decoded, drawn
prediction_dynamics              predictions on fixed val examples after every epoch of the short run
augmentation_preserves_labels    (data.augment set) a clean-trained model on augmented val inputs
finite_loss                      the NaN guard of every run above; a diverged run FAILs with its message
===============================  =====================================================================

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recipe import tracking
from recipe.checks import skeleton as sk
from recipe.checks.base import Finding
from recipe.config import RecipeConfig
from recipe.data import build_augment
from recipe.data.batching import InMemoryBatcher
from recipe.fit import FitResult, build_for, fit
from recipe.models import ModelConfigError, grow
from recipe.report import StageResult
from recipe.stages.base import StageContext
from recipe.stages.ending import Figures, finish
from recipe.tasks import task_for
from recipe.train import Callback, Trainer, build_optimizer, config_callbacks, resolve_device
from recipe.train.callbacks import Budget, PredictionSnapshots

STAGE = "baselines"
KIND = "ablation"  # recipe.kind of the stage's grandchild runs
MIN_EPOCHS = 5  # a run shorter than this many epochs of the training split uses shorter "epochs" (FirstBatches)


def run(ctx: StageContext) -> StageResult:
    return _Skeleton(ctx).run()


# --- small callbacks only this stage needs ---------------------------------------------------------------


class _PreHook(Callback):
    """A callback that owns a forward pre-hook on the model (set as ``_handle``) and removes it after fit."""

    def after_fit(self) -> None:
        self.remove()

    def remove(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.remove()
            self._handle = None


class _InputCapture(_PreHook):
    """A forward pre-hook keeps exactly the tensor entering the model on the first training batch (after
    batching, augmentation and device transfer), with that batch's labels."""

    order = 50

    def before_fit(self) -> None:
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self._handle = self.trainer.model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        if self.x is None and module.training and args and isinstance(args[0], Tensor):
            self.x = args[0].detach().float().cpu().clone()

    def after_pred(self) -> None:
        if self.y is None and self.x is not None and self.trainer.training:
            self.y = self.trainer.yb.detach().cpu().clone()



class _ZeroInputs(_PreHook):
    """Every input the model sees, in training and validation, replaced by zeros (a forward pre-hook)."""

    def before_fit(self) -> None:
        self._handle = self.trainer.model.register_forward_pre_hook(
            lambda module, args: (torch.zeros_like(args[0]), *args[1:])
        )


class _LossAtInit(Callback):
    """The val loss before any step (mean, and per example), measured as the fit starts."""

    order = -100  # before every other before_fit: nothing has touched the model yet

    def before_fit(self) -> None:
        t = self.trainer
        pred, y = t.predict(t.valid_data)
        self.loss = float(t.loss_fn(pred, y))
        self.per_example = task_for(t.task).loss(pred, y, reduction="none").double().numpy()


class _StopBelow(Callback):
    """End the fit once the training loss is at or below ``target``."""

    order = 80  # after every other after_step (the MLflow logger's included): stopping skips the rest

    def __init__(self, target: float) -> None:
        self.target = target

    def after_step(self) -> None:
        if float(self.trainer.loss.detach()) <= self.target:
            self.trainer.stop(f"loss reached {self.target:.3g}")


def diverse(y: Tensor, n: int, task: Any) -> Tensor:
    """Indices of ``n`` examples covering as many classes as possible (round-robin over the classes in order of
    appearance), sorted by class; regression: the first ``n``. ``task``: a name or Task."""
    if not task_for(task).classifier:
        return torch.arange(min(n, len(y)))
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(y.tolist()):
        by_class.setdefault(int(c), []).append(i)
    picked: list[int] = []
    while len(picked) < min(n, len(y)):
        for idx in by_class.values():
            if idx and len(picked) < n:
                picked.append(idx.pop(0))
    return torch.tensor(sorted(picked, key=lambda i: (int(y[i]), i)), dtype=torch.long)


def _logger(prefix: str = "") -> tracking.MLflowLogger:
    """The MLflow logger for these short fits: one synchronous write at the end of the fit (an asynchronous
    one would make ending the run wait out MLflow's logging thread, ~1 s, more than the fit takes)."""
    return tracking.MLflowLogger(flush_s=math.inf, prefix=prefix, synchronous=True)


# --- the stage -------------------------------------------------------------------------------------------


class _NeedsShortRun(RuntimeError):
    pass


@dataclass
class _Skeleton:
    ctx: StageContext
    findings: dict[str, Finding] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    diverged: dict[str, str] = field(default_factory=dict)  # run -> guard message ("" = finite)

    def __post_init__(self) -> None:
        self.cfg: RecipeConfig = self.ctx.cfg
        self.bc = self.cfg.stages.baselines
        self.data = self.ctx.data()
        self.task = task_for(self.data)
        self.device = resolve_device(self.cfg.trainer.device)
        self.handed_on = self.cfg
        self.tags = tracking.run_tags(self.ctx.input_cfg, self.data.fingerprint, stage=STAGE, kind=KIND)
        train_size = self.data.split_sizes.get("train", 0)
        self.spe = max(1, math.ceil(train_size / self.cfg.data.batch_size))  # batches in an epoch of train
        self.short: FitResult | None = None
        self.short_error = ""
        self.short_cfg = self._run_cfg(self.bc.short_steps)
        self.figures = Figures(enabled=self.bc.plots)

    # --- driver --------------------------------------------------------------------------------------------

    def run(self) -> StageResult:
        start = time.perf_counter()
        # A model that cannot be built is a config error, reported as such, not as every check failing.
        build_for(self.short_cfg, self.data)
        self.y_val = torch.cat([y.cpu() for _, y in self._val_batches()])
        self._timed("short_run", self._guard_short_run)
        for name in sk.CHECK_NAMES:
            self._timed(name, lambda name=name: self._check(name))
        self.timings["total"] = time.perf_counter() - start
        self.metrics.update({f"time/{k}_s": v for k, v in self.timings.items()})
        tracking.log_dict({k: round(v, 3) for k, v in self.timings.items()}, "baselines/timings.json")
        findings = [self.findings[n] for n in sk.CHECK_NAMES]
        artifacts = {"plots": tracking.artifact_uri("plots")}
        return finish(STAGE, findings, self.handed_on, metrics=self.metrics, artifacts=artifacts,
                      notes=self.notes + self.figures.close())

    def _timed(self, name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        try:
            fn()
        finally:
            self.timings[name] = time.perf_counter() - t

    def _check(self, name: str) -> None:
        try:
            found = getattr(self, f"_{name}")()
        except _NeedsShortRun as e:
            found = sk.failed(name, str(e), "fix the error that stopped the short run first (traceback in "
                                            "baselines/errors/short_run.txt)")
        except Exception as e:  # a crash in the user's model must not hide the other checks
            tracking.log_text(traceback.format_exc(), f"baselines/errors/{name}.txt")
            found = sk.failed(name, f"the experiment raised {_clip(f'{type(e).__name__}: {e}')}")
        self.findings[name] = found
        self.metrics.update({k: float(v) for k, v in found.metrics.items()})

    def _need_short(self) -> FitResult:
        if self.short is None:
            raise _NeedsShortRun(f"needs the short run, which raised {self.short_error}")
        return self.short

    # --- runs ----------------------------------------------------------------------------------------------

    def _geometry(self, steps: int) -> tuple[int, int]:
        """(epochs, batches per epoch) for a run of about ``steps`` steps: whole epochs of the training split,
        or MIN_EPOCHS shorter ones when the split is too large for that many in ``steps``."""
        if math.ceil(steps / self.spe) >= MIN_EPOCHS:
            return math.ceil(steps / self.spe), self.spe
        return MIN_EPOCHS, max(1, math.ceil(steps / MIN_EPOCHS))

    def _run_cfg(self, steps: int, **overrides: Any) -> RecipeConfig:
        """The config for a run of about ``steps`` steps, in whole epochs: the budget's max_steps would stop the
        fit in the middle of its last epoch, before that epoch's callbacks run; no time limit either, which
        would make runs irreproducible."""
        over = {"budget.max_steps": None, "budget.epochs": self._geometry(steps)[0], "budget.time_limit_s": None,
                "budget.early_stopping": None, "model.init_from": None, "trainer.progress": False}
        return self.cfg.with_overrides({**over, **overrides})

    @contextmanager
    def _child(self, name: str, params: dict[str, Any]) -> Iterator[None]:
        with tracking.start_run(name, self.tags, params=params, nested=True):
            yield

    def _train(self, name: str, cfg: RecipeConfig, steps: int, cbs: list[Callback], **kw: Any) -> FitResult:
        """:func:`recipe.fit.fit` for a run of about ``steps`` steps (see :meth:`_geometry`), no eval-mode
        evaluation, MLflow curves only through a logger in ``cbs``. A diverged run's (or one that never
        validated) val loss and metric are NaN: no trustworthy validation after a divergence."""
        try:
            r = fit(cfg, self.data, callbacks=cbs, evaluate=False, log=False,
                    steps_per_epoch=self._geometry(steps)[1], **kw)
        finally:
            for cb in cbs:
                if isinstance(cb, _PreHook):
                    cb.remove()
        self.diverged[name] = r.divergence
        if r.diverged or "val/loss" not in r.metrics:
            r.metrics.update({k: math.nan for k in ("val/loss", f"val/{self.task.metric}")})
        return r

    def _quick(self, name: str, cfg: RecipeConfig, steps: int) -> FitResult:
        """The first ``steps`` steps of the short run's schedule with ``cfg`` (a seed, an init), no validation,
        no MLflow run: the same epochs and batches per epoch, so a non-constant schedule has the same horizon."""
        return self._train(name, cfg, self.bc.short_steps, [Budget(max_steps=steps)], validate=False)

    def _val_batches(self, augment: bool = False):
        return self.data.batches("val", batch_size=self.cfg.data.eval_batch_size, augment=augment,
                                 device=self.device)

    def _guard_short_run(self) -> None:
        try:
            self._short_run()
        except Exception as e:
            self.short_error = _clip(f"{type(e).__name__}: {e}")
            tracking.log_text(traceback.format_exc(), "baselines/errors/short_run.txt")
            self.notes.append(f"the short run raised {self.short_error}; the checks that need it fail")

    def _short_run(self) -> None:
        cfg = self.short_cfg.with_overrides({"trainer.progress": self.cfg.trainer.progress})
        xv, yv = next(iter(self._val_batches()))
        pick = diverse(yv.cpu(), self.bc.snapshot_examples, self.task).to(xv.device)
        self.snap = PredictionSnapshots((xv[pick], yv[pick]), max_items=self.bc.snapshot_examples)
        self.capture = _InputCapture()
        params = {"steps": self.bc.short_steps, "inputs": "real", "model.name": cfg.model.name, "seed": cfg.seed}
        at_init = _LossAtInit()
        with self._child("short_run", params):
            self.short = self._train("short_run", cfg, self.bc.short_steps, [at_init, self.snap, self.capture,
                                                                              _logger()])
            self.init_loss, self.init_per_example = at_init.loss, at_init.per_example
            tracking.log_metrics({"skeleton/loss_at_init": self.init_loss}, step=0)
        bpe = len(self.short.trainer.train_data)
        epochs = f"epochs of {bpe}" if bpe == self.spe else f"'epochs' of {bpe} of the split's {self.spe} batches"
        m = self.task.metric
        self.notes.append(
            f"short run: {self.short.trainer.step} steps ({self.short.trainer.epoch + 1} {epochs}) in "
            f"{self.short.seconds:.1f} s; val {m} {self.short.metrics.get('val/' + m, math.nan):.4g}"
        )
        for key in ("val/loss", "val/accuracy", "val/mae", "val/mse", "train/loss"):
            if key in self.short.metrics:
                self.metrics[key] = self.short.metrics[key]

    def _plot(self, path: str, make: Callable[[], Any]) -> None:
        """Log a figure; a plotting error becomes a note, never a failed check."""
        self.figures.log(path, make)

    # --- the checks ----------------------------------------------------------------------------------------

    def _fixed_seed(self) -> Finding:
        from recipe.plots import skeleton as plots

        short = self._need_short()
        k = self.bc.seed_steps
        again = self._quick("same_seed", self.short_cfg, k)
        other_seed = self.cfg.seed + 1
        other = self._quick("other_seed", self.short_cfg.with_overrides({"seed": other_seed}), k)
        a = short.losses[:k]
        self._plot("plots/fixed_seed.png", lambda: plots.fixed_seed_figure(
            a, again.losses, other.losses, self.cfg.seed, other_seed))
        return sk.fixed_seed((a, again.losses), other.losses, self.cfg.seed, other_seed, self.bc.seed_tol)

    def _expected(self, init_bias: bool) -> sk.InitLoss:
        return self.task.expected_init_loss(self.y_val, init_bias=init_bias, class_counts=self.data.class_counts,
                                            target_mean=self.data.target_mean)

    def _loss_at_init(self) -> Finding:
        from recipe.plots import skeleton as plots

        if not hasattr(self, "init_loss"):
            raise _NeedsShortRun(f"needs the short run, which raised {self.short_error}")
        expected = self._expected(self.cfg.model.init_bias)
        self._plot("plots/loss_at_init.png", lambda: plots.loss_at_init_figure(
            self.init_per_example, expected.value, self.init_loss, self.task))
        return sk.loss_at_init(self.task, self.init_loss, expected, self.bc.init_loss_warn, self.bc.init_loss_fail)

    def _init_well(self) -> Finding:
        from recipe.plots import skeleton as plots

        short = self._need_short()
        used = self.cfg.model.init_bias
        h = self.bc.hockey_steps
        flipped = self.short_cfg.with_overrides({"model.init_bias": not used})
        other = self._quick("other_init", flipped, h)
        other_init = self._val_loss_at_init(flipped)
        mine, theirs = (short.losses[:h], other.losses[:h])
        with_bias, without = (self.init_loss, other_init) if used else (other_init, self.init_loss)
        curves = (mine, theirs) if used else (theirs, mine)
        self._plot("plots/init_well.png", lambda: plots.init_well_figure(curves[0], curves[1], used))
        return sk.init_well(self.task, with_bias, without, used, self.bc.init_loss_warn, h)

    def _val_loss_at_init(self, cfg: RecipeConfig) -> float:
        model = build_for(cfg, self.data).to(self.device).eval()
        preds, ys = [], []
        with torch.no_grad():
            for xb, yb in self._val_batches():
                preds.append(model(xb).float().cpu())
                ys.append(yb.cpu())
        return float(self.task.loss(torch.cat(preds), torch.cat(ys)))

    def _input_independent(self) -> Finding:
        from recipe.plots import skeleton as plots

        short = self._need_short()
        cfg = self.short_cfg
        params = {"steps": self.bc.short_steps, "inputs": "zeroed", "model.name": cfg.model.name, "seed": cfg.seed}
        with self._child("zero_input", params):
            self.zero = self._train("zero_input", cfg, self.bc.short_steps, [_ZeroInputs(), _logger()])
        curves = {"real inputs": self._curve(short), "zeroed inputs": self._curve(self.zero)}
        self._plot("plots/learning_curves.png", lambda: plots.learning_curves_figure(curves, self.task))
        chance = self.task.chance_margin(self.y_val, target_mean=self.data.target_mean, k=3.0)
        return sk.input_independent(self.task, short.metrics, self.zero.metrics, self.bc.input_margin,
                                    short.trainer.step, chance)

    @staticmethod
    def _curve(r: FitResult) -> dict[str, list[float]]:
        hist = [h for h in r.trainer.history if "val/loss" in h]
        return {"smooth": r.smooth_losses, "val_step": [h["step"] for h in hist], "val_loss": [h["val/loss"] for h in hist]}

    def _dumb_baselines(self) -> Finding:
        from recipe.plots import skeleton as plots

        short = self._need_short()
        self.dumb = self._dumb()
        b = self.bc
        cfg = self.cfg.with_overrides({
            "model.name": "linear", "model.kwargs": {}, "model.dropout": 0.0, "optim.name": "adam",
            "optim.lr": self._linear_lr(), "optim.weight_decay": 0.0, "schedule.name": "constant",
            "trainer.ema_decay": None, "trainer.grad_clip": None, "budget.max_steps": None,
            "budget.epochs": self._geometry(b.linear_steps)[0], "budget.time_limit_s": None, "trainer.progress": False,
            "budget.early_stopping": None, "model.init_from": None,
        })
        params = {"steps": b.linear_steps, "model.name": "linear", "optim.lr": cfg.optim.lr, "seed": cfg.seed}
        with self._child("linear_baseline", params):
            self.linear = self._train("linear_baseline", cfg, b.linear_steps, [_logger()], augment=False)
        margin = self.task.chance_margin(self.y_val, target_mean=self.data.target_mean)
        found = sk.dumb_baselines(self.task, short.metrics, self.dumb, self.linear.metrics, short.trainer.step,
                                  b.require_beat_linear, margin)
        m = self.task.metric
        zero = self.zero.metrics if hasattr(self, "zero") else {}
        mine, lin = short.metrics.get(f"val/{m}", math.nan), self.linear.metrics.get(f"val/{m}", math.nan)
        bars = {self.task.dumb_name.split()[0]: self.dumb[self.task.dumb_key],
                "zero input": zero.get(f"val/{m}", math.nan), "linear": lin, "model": mine}
        self._plot("plots/baselines.png", lambda: plots.baselines_figure(bars, m, b.human_baseline))
        return found

    def _linear_lr(self) -> float:
        """stages.baselines.linear_lr; for regression times the train target std: the targets are raw, and Adam
        moves each weight by about lr per step whatever the gradient's size, so reaching outputs of a target's
        size in a few hundred steps takes a step size of that scale."""
        lr = self.bc.linear_lr
        if not self.task.higher_is_better and self.data.target_std:
            lr *= max(1.0, float(self.data.target_std))
        return lr

    def _human_metric(self) -> Finding:
        short = self._need_short()
        return sk.human_metric(self.task, short.metrics, self.bc.human_baseline, short.trainer.step)

    def _overfit_one_batch(self) -> Finding:
        from recipe.plots import skeleton as plots

        b = self.bc
        xb, yb = self._pick_batch(b.overfit_examples)
        # regularisation off (dropout, weight decay), a constant learning rate: only memorising counts here
        model_cfg = self.cfg.model.model_copy(update={"dropout": 0.0})
        attempts: list[sk.OverfitAttempt] = []
        curves: list[tuple[str, list[float]]] = []
        grow_error = ""
        params = {"examples": len(xb), "steps": b.overfit_steps, "model.name": model_cfg.name}
        with self._child("overfit_one_batch", params):
            for rung in range(b.overfit_max_grow + 1):
                attempt, losses, pred = self._overfit(model_cfg, xb, yb, prefix=f"rung{rung}/" if rung else "")
                attempts.append(attempt)
                curves.append((attempt.model, losses))
                if attempt.reached or rung == b.overfit_max_grow:
                    break
                try:
                    model_cfg = grow(model_cfg)
                except ModelConfigError as e:
                    grow_error = str(e)
                    break
        if attempts[-1].reached and len(attempts) > 1:
            grown = model_cfg.model_copy(update={"dropout": self.cfg.model.dropout})
            self.handed_on = RecipeConfig.model_validate({**self.cfg.to_dict(), "model": grown.model_dump(mode="json")})
            self.notes.append(f"overfitting one batch needed {len(attempts) - 1} more capacity rung(s): the config "
                              f"handed on has model {attempts[-1].model}")
        target = attempts[0].init_loss * b.overfit_ratio
        self._plot("plots/overfit_one_batch.png", lambda: plots.overfit_figure(
            curves, pred, yb.cpu().numpy(), self.task, self.data.classes, target))
        return sk.overfit_one_batch(attempts, len(xb), b.overfit_ratio, b.overfit_steps, grow_error)

    def _pick_batch(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` training examples of as many classes as possible, from a seeded shuffle of the split."""
        pool = self.data.batches("train", batch_size=max(256, n), shuffle=True, seed=self.cfg.seed)
        x, y = next(iter(pool))
        pick = diverse(y.cpu(), n, self.task).to(x.device)
        return x[pick].cpu(), y[pick].cpu()

    def _overfit(self, model_cfg, xb: Tensor, yb: Tensor, prefix: str) -> tuple[sk.OverfitAttempt, list[float], Any]:
        b = self.bc
        cfg = self.cfg.with_overrides({
            "model": model_cfg.model_dump(mode="json"), "optim.weight_decay": 0.0, "schedule.name": "constant",
            "trainer.ema_decay": None, "budget.max_steps": None, "budget.time_limit_s": None,
        })
        model = build_for(cfg, self.data).to(self.device)
        x, y = xb.to(self.device), yb.to(self.device)
        loss_fn = self.task.loss
        with torch.no_grad():
            init = float(loss_fn(model.eval()(x), y))
        target = init * b.overfit_ratio
        trainer = Trainer(
            model, InMemoryBatcher(x, y, len(x)), None, loss_fn=loss_fn,
            opt=build_optimizer(cfg.optim, model.parameters()),
            cbs=[*config_callbacks(cfg, self.device.type), _StopBelow(target), _logger(prefix=prefix)],
            task=self.task, device=self.device, progress=False,
        )
        name = "overfit_one_batch" + (f"[{prefix.rstrip('/')}]" if prefix else "")
        trainer.fit(b.overfit_steps)
        self.diverged[name] = trainer.diverged
        with torch.no_grad():
            out = model.eval()(x).float()
            final = float(loss_fn(out, y))
        pred = self.task.outputs(out)
        losses = list(trainer.cb("recorder").losses)
        best = min((v for v in losses if math.isfinite(v)), default=math.nan)
        label = _describe(model_cfg)
        attempt = sk.OverfitAttempt(label, init, final, best, trainer.step, bool(best <= target))
        return attempt, losses, pred.cpu().numpy()

    def _training_loss_decreases(self) -> Finding:
        short = self._need_short()
        return sk.training_loss_decreases(self.task, short.smooth_losses, self.bc.decrease_margin, short.divergence,
                                          short.trainer.step, self.init_loss)

    def _batch_independence(self) -> Finding:
        from recipe.plots import skeleton as plots

        xv, yv = next(iter(self._val_batches()))  # the val split in its stored order: rows(val) names them
        pick = diverse(yv.cpu(), self.bc.batch_examples, self.task)
        ids = self.data.rows("val")["id"].astype(str).to_numpy()[pick.numpy()]
        names = [f"{k}:{_short(i)}" for k, i in enumerate(ids)]
        xb = xv[pick.to(xv.device)]
        model = build_for(self.short_cfg, self.data).to(self.device)
        dep = sk.batch_dependence(model, xb.to(self.device), seed=self.cfg.seed)
        if dep.eval_mode:
            self.notes.append("batch independence was checked in eval mode: the model has batch norm, which mixes "
                              "the examples of a batch in train mode by design")
        self._plot("plots/batch_independence.png",
                   lambda: plots.batch_dependence_figure(dep.grad, names, dep.eval_mode))
        return sk.batch_independence(dep, self.bc.batch_leak_tol, names)

    def _train_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The train split's per-channel pixel (0..1) or per-feature statistics, from the manifest."""
        m = self.data.manifest
        df = m.df
        train = df.index[(df["split"] == "train") & df["readable"]].to_numpy()
        if m.image_mode is not None and m.chan_stats is not None:
            cs = m.chan_stats[train]
            mean = cs[:, 0].mean(0)
            return mean, np.sqrt(np.maximum(cs[:, 1].mean(0) - mean**2, 0))
        f = m.features.to_numpy(np.float64)[train]
        return f.mean(0), f.std(0)

    def _visualise_before_net(self) -> Finding:
        from recipe.plots import skeleton as plots

        self._need_short()
        x, y = self.capture.x, self.capture.y
        image = len(self.data.in_shape) == 3
        augment = list(self.cfg.data.augment)
        if x is None:
            return sk.visualise_before_net(None, image, augment, self.bc.input_mean_tol, self.bc.input_std_factor)
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        decoded = x * torch.tensor(self.data.std).view(shape) + torch.tensor(self.data.mean).view(shape)
        mean, std = self._train_stats()
        stats = sk.input_stats(decoded, mean, std)
        aug = f"augment [{', '.join(augment)}]" if augment else "no augmentation"
        title = (f"exactly what enters the net: the first training batch {tuple(x.shape)}, {aug},\n"
                 "decoded with the data's mean/std")
        if image:
            title += f"; batch mean {np.mean(stats.batch_mean):.3g} vs train {np.mean(mean):.3g}"
        labels = y.tolist() if y is not None else [0] * len(x)
        if image:
            self._plot("plots/input_batch.png", lambda: plots.input_batch_figure(
                decoded.numpy(), labels, self.data.classes, title))
        else:
            names = list(self.data.manifest.feature_columns)
            self._plot("plots/input_batch.png", lambda: plots.feature_batch_figure(
                decoded.numpy(), names, mean, std, title))
        return sk.visualise_before_net(stats, image, augment, self.bc.input_mean_tol, self.bc.input_std_factor,
                                       tuple(x.shape))

    def _prediction_dynamics(self) -> Finding:
        from recipe.plots import skeleton as plots

        self._need_short()
        snaps, y = self.snap.snapshots, self.snap.yb
        arrays = [(e, p.numpy()) for e, p in snaps]
        self._plot("plots/prediction_dynamics.png", lambda: plots.prediction_dynamics_figure(
            arrays, y.cpu().numpy(), self.task, self.data.classes))
        return sk.prediction_dynamics(self.task, snaps, y)

    def _augmentation_preserves_labels(self) -> Finding:

        augment = list(self.cfg.data.augment)
        m = self.task.metric
        if not augment:
            return sk.augmentation_preserves_labels(self.task, [], math.nan, math.nan, math.nan, 0.0, 0.0, 0)
        cfg = self.short_cfg
        params = {"steps": self.bc.short_steps, "augment": "none (clean)", "model.name": cfg.model.name}
        with self._child("clean_for_augmentation", params):
            clean_run = self._train("clean_for_augmentation", cfg, self.bc.short_steps, [_logger()], augment=False)
            trainer = clean_run.trainer
            torch.manual_seed(self.cfg.seed)
            scores = []
            for r in range(self.bc.augment_repeats):
                # shuffled: a transform that hands back another sample's input must meet other classes
                pred, y = trainer.predict(self.data.batches(
                    "val", batch_size=self.cfg.data.eval_batch_size, augment=True, shuffle=True, seed=self.cfg.seed + r,
                    device=self.device))
                scores.append(float(self.task.scores(pred, y).mean()))
            augmented = float(np.mean(scores))
            tracking.log_metrics({f"val_augmented/{m}": augmented})
        clean = clean_run.metrics.get(f"val/{m}", math.nan)
        dumb = self._dumb()[self.task.dumb_key]
        if len(self.data.in_shape) == 3 and self.task.classifier:
            self._plot("plots/augmentation.png", lambda: self._augmentation_figure(trainer, augment))
        return sk.augmentation_preserves_labels(self.task, augment, clean, augmented, dumb,
                                                self.bc.augment_warn_retained, self.bc.augment_fail_retained,
                                                clean_run.trainer.step)

    def _augmentation_figure(self, trainer: Trainer, augment: list[str]):
        from recipe.plots import skeleton as plots

        x, y = next(iter(self.data.batches("val", batch_size=self.cfg.data.eval_batch_size)))
        pick = diverse(y, 16, self.task)
        x, y = x[pick], y[pick]
        torch.manual_seed(self.cfg.seed)
        xa = build_augment(augment, self.data.in_shape)(x)
        pc, _ = trainer.predict([(x, y)])
        pa, _ = trainer.predict([(xa, y)])
        shape = (1, -1, 1, 1)
        mean, std = torch.tensor(self.data.mean).view(shape), torch.tensor(self.data.std).view(shape)
        title = (f"val images (rows 1, 3) and augmented [{', '.join(augment)}] (rows 2, 4);\n"
                 "captions: label/prediction of a model trained on clean data, red when wrong")
        return plots.augmentation_figure(
            (x * std + mean).numpy(), (xa * std + mean).numpy(), y.tolist(), pc.argmax(-1).tolist(),
            pa.argmax(-1).tolist(), self.data.classes, title,
        )

    def _dumb(self) -> dict[str, float]:
        """The dumbest predictor's val metrics (:meth:`recipe.tasks.Task.dumb_baseline`)."""
        return self.task.dumb_baseline(self.y_val, class_counts=self.data.class_counts,
                                       target_mean=self.data.target_mean)

    def _finite_loss(self) -> Finding:
        return sk.finite_loss(self.diverged)


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _short(name: str, n: int = 16) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1) :]


def _describe(m) -> str:
    if ":" in m.name:
        knobs = " ".join(f"{k}={v}" for k, v in m.kwargs.items() if k in ("width", "depth"))
        return f"{m.name.rsplit(':', 1)[-1]} {knobs}".strip()
    if m.name == "linear":
        return "linear"
    return f"{m.name} width={m.width} depth={m.depth}"
