"""Stage 4, regularize: give up some training fit to gain validation performance, one change at a time.

"We have a large model that is fitting at least the training set. Now it is time to regularize it and gain
some validation accuracy by giving up some of the training accuracy." Starting from the overfit stage's
config (its model, optimiser and chosen learning rate), the stage:

1. trains the **reference**, that config unchanged, for ``stages.regularize.epochs``;
2. trains one **candidate** per regulariser, each the reference plus exactly one change, same seed, same
   budget, each in its own nested MLflow run (recipe.kind=candidate, recipe.stage=regularize,
   recipe.candidate=<name>): label-preserving augmentation (``augment``), AdamW weight decay (one per value),
   dropout (one per value), early stopping on validation loss, a smaller input (images), a smaller batch, and
   initialising from an earlier run's checkpoint (``init_from``: a local file or an MLflow URI; skipped, and
   reported, when none is given -- nothing is ever downloaded from the web);
3. **keeps** a candidate when it beats the reference beyond noise on ``criterion`` -- by default the
   validation loss ("give up some training loss to improve the validation loss"), with the validation metric
   not allowed to get worse beyond noise; or the metric itself. The comparison is paired, on the same
   validation samples: the gain must exceed ``noise_z`` standard errors and ``min_delta`` (see
   :mod:`recipe.checks.ablation`). It then takes the best kept value of each kind, **combines** them, trains
   the combination and **verifies** it: the combination is chosen only if it beats the best single change
   beyond noise, else that single change is (what the others add on top is not shown to be real).

Verdict: PASS when the chosen model improves on the reference (beyond noise, on the criterion) and its
train-validation gap (in the criterion's units) shrinks; WARN when nothing helps (the reference's curves say
why) or the gap does not shrink; FAIL when the chosen model trails the dumb baselines of stage 2 beyond noise --
behind the linear one only while its curves say it has converged: a model still learning at the end of its
epochs (``curves_train_longer``; a budget's 2-epoch candidates) that trails it is under-trained, not evidence of
a bug, and WARNs. Curve diagnosis and the per-candidate rows are advisory.

Logged: the candidate table (``regularize/candidates.json`` and ``.md``), ``plots/regularize_comparison.png``,
``plots/regularize_curves.png`` (train vs validation loss of every candidate), ``plots/first_layer.png`` (the
chosen model's first-layer weights: edges and blobs, not noise) and the chosen weights
(``checkpoint/regularize.pt``, the stage's ``checkpoint_uri``). Hands on the chosen config with the user's
budget.

All candidates are selected on the validation split, so the winner's validation score is optimistic (a
best-of-N pick); the test split, touched once by the squeeze stage, gives the unbiased number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recipe import tracking
from recipe.checks.ablation import (
    CandidateResult,
    Choice,
    Decision,
    bar_evidence,
    baseline_bar_check,
    candidate_finding,
    choose,
    combine_changes,
    decide,
    gap_shrinks,
    improves_on_reference,
    markdown_table,
    pick_per_group,
    table_rows,
)
from recipe.checks.base import Finding, finding
from recipe.checks.curves import diagnose_curves
from recipe.config import RecipeConfig, RegularizeConfig
from recipe.data import AUGMENTATIONS, DataBundle
from recipe.data.augment import TABULAR
from recipe.fit import FitResult, describe_model, fit, resolve_checkpoint, safe_name, with_min_steps
from recipe.report import StageResult, Verdict
from recipe.stages.base import StageContext
from recipe.stages.ending import Figures, finish, publish_checkpoint
from recipe.tasks import task_for

STAGE = "regularize"
PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
GATES = ("improves_on_reference", "gap_shrinks", "beats_baselines")


@dataclass
class Spec:
    """A candidate to try: a name (MLflow-key safe), its kind and its config changes."""

    name: str
    group: str
    changes: dict[str, Any] = field(default_factory=dict)
    skip: str = ""  # why it is not tried (empty: it is)
    note: str = ""  # what a rule changed in it, or left out of it, and why (shown with the stage's notes)


def run(ctx: StageContext) -> StageResult:
    """Reference, one candidate per regulariser, the combination of the kept ones, the choice; see the module
    docstring."""
    prev = ctx.results.get("overfit")
    base = prev.config if prev is not None else ctx.cfg
    data = ctx.data()
    notes = [] if prev is not None else ["no overfit stage result: starting from the incoming config"]
    s = with_min_steps(ctx.cfg.stages.regularize, base, data, notes)
    runner = _Runner(ctx, base, data, s, _init_path(prev, ctx, s, notes))
    reference = runner.run(Spec("reference", "reference"))
    if not reference.ok:
        return _reference_failed(reference, base, notes)
    specs = candidate_specs(base, s, data)
    ab = _ablate(runner, reference, specs, s, notes)
    rows = table_rows(reference, ab.candidates, ab.decisions, ab.chosen.name, runner.task.higher_is_better, s.criterion)
    table = markdown_table(rows, runner.task.metric)
    tracking.log_dict(rows_json(rows), "regularize/candidates.json")
    tracking.log_text(table + "\n", "regularize/candidates.md")
    findings = _findings(ctx, runner, reference, ab)
    figures = Figures()
    _log_figures(figures, runner, rows, reference, ab.chosen, _baselines(ctx))
    return _finish(ctx, runner, reference, ab, findings, notes + _notes(base, s, ab, specs, table) + figures.close())


@dataclass
class Ablation:
    """The candidates trained (the combination last, when there is one), the keep/drop decision of each
    against the reference, and the choice."""

    candidates: list[CandidateResult]
    decisions: dict[str, Decision]
    choice: Choice

    @property
    def chosen(self) -> CandidateResult:
        """The candidate the stage hands on (the reference when nothing helped)."""
        return self.choice.chosen


def _init_path(prev: StageResult | None, ctx: StageContext, s: RegularizeConfig, notes: list[str]) -> Path | None:
    """The overfit checkpoint every same-shaped candidate starts from (regularize.init=overfit), else None."""
    if s.init != "overfit":
        return None
    path = _overfit_checkpoint(prev, ctx.workdir)
    if path is None:
        notes.append("regularize.init=overfit but the overfit checkpoint is not available: training from scratch")
    return path


def _reference_failed(reference: CandidateResult, base: RecipeConfig, notes: list[str]) -> StageResult:
    f = finding(
        "reference_trains",
        "the overfit stage's config trains again as the unregularised reference",
        f"{reference.status}: {reference.note}",
        "a trained reference",
        FAIL,
        "the config the overfit stage handed on does not train: rerun overfit, or look at the "
        "reference's nested MLflow run",
    )
    return finish(STAGE, [f], base, notes=notes)


def _ablate(
    runner: _Runner, reference: CandidateResult, specs: list[Spec], s: RegularizeConfig, notes: list[str]
) -> Ablation:
    """Train every spec, decide each against the reference, combine the best kept change of each kind (when
    two or more kinds were kept), and choose."""
    higher = runner.task.higher_is_better
    candidates = [runner.run(spec) for spec in specs]
    rule = {"higher_is_better": higher, "noise_z": s.noise_z, "min_delta": s.min_delta, "criterion": s.criterion}
    decisions = {c.name: decide(reference, c, **rule) for c in candidates}
    picked = pick_per_group(candidates, decisions)
    combined = None
    if len(picked) >= 2:
        changes, clash = combine_changes(picked)
        notes += clash
        combined = runner.run(Spec("combined", "combined", changes))
        decisions["combined"] = decide(reference, combined, **rule)
        candidates.append(combined)
    choice = choose(
        reference,
        picked,
        combined,
        higher_is_better=higher,
        criterion=s.criterion,
        noise_z=s.noise_z,
        min_delta=s.min_delta,
    )
    return Ablation(candidates, decisions, choice)


def _baselines(ctx: StageContext) -> dict[str, float] | None:
    return ctx.results["baselines"].metrics if "baselines" in ctx.results else None


def _findings(ctx: StageContext, runner: _Runner, reference: CandidateResult, ab: Ablation) -> list[Finding]:
    """The gated checks (improves_on_reference, gap_shrinks, beats_baselines), a row per candidate and the
    chosen model's curve diagnosis."""
    s, task, chosen = runner.s, runner.task, ab.chosen
    t_ref, t_chosen = runner.trained[reference.name], runner.trained[chosen.name]
    judged = {"metric": task.metric, "criterion": s.criterion}
    curves = diagnose_curves(
        [h["train/loss"] for h in t_chosen.history],
        [h.get("val/loss", math.nan) for h in t_chosen.history],
        steps=t_chosen.smooth_losses,
        reference_loss=runner.init_loss,
    )
    evidence = bar_evidence(t_chosen.val, t_chosen.data) if t_chosen.val is not None else None
    return [
        improves_on_reference(
            reference,
            chosen,
            ab.choice,
            decisions=ab.decisions,
            ref_history=t_ref.history,
            init_loss=runner.init_loss,
            **judged,
        ),
        gap_shrinks(reference, chosen, task.higher_is_better, **judged),
        beats_baselines(chosen.val_metric, task, _baselines(ctx), evidence, curves),
        *[
            candidate_finding(c, ab.decisions.get(c.name), reference, higher=task.higher_is_better, **judged)
            for c in ab.candidates
        ],
        *curves,
    ]


def beats_baselines(
    value: float, task: Any, baselines: dict[str, float] | None, evidence: Any, curves: list[Finding]
) -> Finding:
    """The chosen model's val metric ``value`` against stage 2's dumb baselines (``baselines``: its metrics), by
    :func:`recipe.checks.ablation.baseline_bar_check`'s paired noise rule. Behind the majority class (or mean)
    beyond noise FAILs. Behind the linear baseline FAILs only when the chosen run's ``curves``
    (:func:`recipe.checks.curves.diagnose_curves`) do not say ``curves_train_longer``: a model whose train and
    val losses were both still falling at the end is under-trained at these epochs, which is no evidence of a bug
    (the issue's rule for every gate: a FAIL needs evidence of a bug), and WARNs with that advice."""
    still_learning = any(f.name == "curves_train_longer" and f.verdict != Verdict.PASS for f in curves)
    return baseline_bar_check(
        value,
        task,
        baselines,
        what=f"val {task_for(task).metric}",
        evidence=evidence,
        behind_linear="beats_baselines.behind_still_learning" if still_learning else None,
    )


def _notes(base: RecipeConfig, s: RegularizeConfig, ab: Ablation, specs: list[Spec], table: str) -> list[str]:
    return [
        f"reference: {describe_model(base)}, {base.optim.name} lr {base.optim.lr:g}, {s.epochs} epochs per candidate",
        f"chosen: {ab.chosen.name} ({ab.choice.reason})",
        *[f"skipped {sp.name}: {sp.skip}" for sp in specs if sp.skip],
        *[f"{sp.name}: {sp.note}" for sp in specs if sp.note and not sp.skip],
        "candidates (val split; the winner's score is a best-of-N pick, the test split in squeeze is unbiased):\n"
        + table,
    ]


def _finish(
    ctx: StageContext,
    runner: _Runner,
    reference: CandidateResult,
    ab: Ablation,
    findings: list[Finding],
    notes: list[str],
) -> StageResult:
    """Publish the chosen weights and hand on the chosen config (the base plus the chosen changes)."""
    chosen, task = ab.chosen, runner.task
    weights = runner.trained[chosen.name].weights_path
    checkpoint, checkpoint_uri = publish_checkpoint(weights, ctx.workdir, "regularize.pt")
    handed_on = runner.base.with_overrides(chosen.changes) if chosen.changes else runner.base
    metrics = _metrics(
        reference, chosen, ab.candidates, ab.decisions, task.metric, task.higher_is_better, runner.s.criterion
    )
    artifacts = {"checkpoint_path": str(checkpoint), "candidates": tracking.artifact_uri("regularize/candidates.json")}
    return finish(
        STAGE,
        findings,
        handed_on,
        gates=GATES,
        metrics=metrics,
        notes=notes,
        artifacts=artifacts,
        checkpoint_uri=checkpoint_uri,
    )


# --- the candidates ------------------------------------------------------------------------------------------


def candidate_specs(base: RecipeConfig, s: RegularizeConfig, data: DataBundle) -> list[Spec]:
    """One spec per regulariser the settings ask for, in a fixed order (skipped ones carry the reason)."""
    image = len(data.in_shape) == 3
    wd_optim = "adamw" if base.optim.name in ("adam", "adamw") else base.optim.name
    specs = [_augment_spec(s.augment, image, base.data.mirror_symmetric)] if s.augment else []
    specs += [
        Spec(f"weight_decay_{wd:g}", "weight_decay", {"optim.name": wd_optim, "optim.weight_decay": wd})
        for wd in s.weight_decay
    ]
    specs += [_dropout_spec(base, p) for p in s.dropout]
    if s.early_stopping:
        specs.append(
            Spec(f"early_stopping_{s.early_stopping}", "early_stopping", {"budget.early_stopping": s.early_stopping})
        )
    if s.smaller_input:
        specs.append(_smaller_input_spec(data.in_shape, s.smaller_input))
    if s.smaller_batch:
        specs.append(_smaller_batch_spec(base.data.batch_size, s.smaller_batch))
    if s.init_from:
        specs.append(Spec("pretrained", "pretrained", {"model.init_from": s.init_from}))
    else:
        specs.append(
            Spec(
                "pretrained",
                "pretrained",
                skip="no checkpoint given (stages.regularize.init_from): nothing is downloaded",
            )
        )
    return specs


def _augment_spec(augment: list[str], image: bool, mirror_symmetric: bool | None = None) -> Spec:
    """The augmentation candidate: ``augment`` (``stages.regularize.augment``) as one change of
    ``data.augment``; tables keep only what applies to rows ("noise").

    Mirroring follows one rule the user sets and the stage states: ``hflip`` is tried only when listed in
    ``augment``, and never on data declared not mirror-symmetric (``data.mirror_symmetric=false``: a mirrored
    3 is no digit), where it is dropped from the candidate with a note. Without ``hflip`` listed the note says
    so and how to ask for it, but the stage does not add it on its own, even for data declared mirror-symmetric:
    on Fashion-MNIST (3,000 images, split seed 0, 50 epochs) adding it cost the imagefolder preset's width-16
    resnet 2.0 points of test accuracy (84.4% -> 82.4%, 92% -> 89% training fit) and gave the width-32 net
    -0.2 (README, "Images"). Source: seeds/004 ("you forgot to flip your labels when you left-right flipped").
    """
    names = list(augment) if image else [n for n in augment if n in TABULAR]
    unknown = [n for n in augment if n not in AUGMENTATIONS]
    if unknown:
        return Spec("augment", "augment", skip=f"unknown augmentation(s) {unknown}")
    if not names:
        return Spec("augment", "augment", skip=f"{augment} need images; tables can only use noise")
    note = ""
    if image and "hflip" in names and mirror_symmetric is False:
        names = [n for n in names if n != "hflip"]
        note = "hflip left out: data.mirror_symmetric=false (a mirrored input would change its label)"
        if not names:
            return Spec("augment", "augment", skip=note)
    elif image and "hflip" not in names:
        why = {
            False: "data.mirror_symmetric=false",
            True: "not in stages.regularize.augment (data.mirror_symmetric=true allows it: add it there to try it)",
            None: "data.mirror_symmetric is unset; for classes a mirror keeps (garments, photos) set it to true "
            "and add hflip to stages.regularize.augment",
        }[mirror_symmetric]
        note = f"no hflip: {why}"
    return Spec("augment_" + "_".join(names), "augment", {"data.augment": names}, note=note)


def _dropout_spec(base: RecipeConfig, p: float) -> Spec:
    if base.model.name == "linear" or ":" in base.model.name:
        return Spec(f"dropout_{p:g}", "dropout", skip=f"model {base.model.name} has no model.dropout")
    return Spec(f"dropout_{p:g}", "dropout", {"model.dropout": p})


def _smaller_input_spec(in_shape: tuple[int, ...], factor: float) -> Spec:
    if len(in_shape) != 3:
        return Spec(
            "smaller_input",
            "input",
            skip="tables: dropping features is not automated (see the inspect stage's feature checks)",
        )
    side = min(in_shape[1:])
    new = max(4, round(side * factor))
    if new < side:
        return Spec(f"image_size_{new}", "input", {"data.image_size": new})
    return Spec("smaller_input", "input", skip=f"images of side {side} cannot get smaller than 4")


def _smaller_batch_spec(bs: int, factor: float) -> Spec:
    new = max(1, round(bs * factor))
    if new < bs:
        return Spec(f"batch_size_{new}", "batch_size", {"data.batch_size": new})
    return Spec("smaller_batch", "batch_size", skip=f"batch size {bs} cannot get smaller")


class _Runner:
    """Trains specs in nested MLflow runs and keeps what the stage needs from each."""

    def __init__(
        self, ctx: StageContext, base: RecipeConfig, data: DataBundle, s: RegularizeConfig, init_path: Path | None
    ) -> None:
        self.ctx, self.base, self.data, self.s, self.init_path = ctx, base, data, s, init_path
        self.task = task_for(data)
        self.init_loss = self.task.init_loss_of(data, init_bias=base.model.init_bias).value  # curves' reference
        self.trained: dict[str, FitResult] = {}
        self.ref_targets: np.ndarray | None = None

    def run(self, spec: Spec) -> CandidateResult:
        """Train ``spec`` for ``stages.regularize.epochs`` in its own nested run and score it on both splits.
        Never raises: a skipped spec, changes the config refuses, a crash or a divergence come back as a
        skipped or failed :class:`CandidateResult` with the reason in its note."""
        if spec.skip:
            return CandidateResult(spec.name, spec.group, spec.changes, status="skipped", note=spec.skip)
        tags = tracking.run_tags(self.ctx.input_cfg, self.data.fingerprint, stage=STAGE, kind="candidate")
        tags.update({"recipe.candidate": spec.name, "recipe.candidate_group": spec.group})
        try:
            cfg = self.base.with_overrides(spec.changes) if spec.changes else self.base
        except Exception as e:  # a bad value in stages.regularize: report it as a failed candidate
            return _failed(spec, str(e))
        with tracking.start_run(f"{STAGE}:{spec.name}", tags, params=cfg.flat(), nested=True) as run:
            try:
                t = fit(cfg, self.data, epochs=self.s.epochs, init_path=self._init_for(cfg), workdir=self.ctx.workdir)
                t.save(self.ctx.workdir / "candidates" / f"{safe_name(spec.name)}.pt")
            except Exception as e:  # one broken candidate (an unreadable checkpoint) must not sink the stage
                tracking.set_tags({tracking.TAG_VERDICT: "fail"})
                return _failed(spec, f"{type(e).__name__}: {e}", run.info.run_id)
            tracking.log_metrics(_eval_metrics(t))
        self.trained[spec.name] = t
        same = self._same_val_samples(t)
        if t.diverged:
            return _failed(spec, f"diverged: {t.stop_reason}", run.info.run_id)
        return _scored(spec, t, same, run.info.run_id)

    def _init_for(self, cfg: RecipeConfig) -> Path | None:
        """The overfit checkpoint when ``cfg`` has the base's tensor shapes and names no checkpoint of its own
        (model.init_from); else None (trained from scratch)."""
        arch = ("name", "width", "depth", "kwargs")  # what decides the tensor shapes (dropout does not)
        same_shape = all(getattr(cfg.model, k) == getattr(self.base.model, k) for k in arch) and (
            cfg.data.image_size == self.base.data.image_size
        )
        return self.init_path if same_shape and not cfg.model.init_from else None

    def _same_val_samples(self, t: FitResult) -> bool:
        """Whether ``t`` was scored on the reference's validation samples in the same order, which paired
        comparisons need (a reloaded bundle keeps them). The first run trained sets them."""
        if self.ref_targets is None:
            self.ref_targets = t.val.targets
        return self.ref_targets is not None and np.array_equal(self.ref_targets, t.val.targets)


def _failed(spec: Spec, note: str, run_id: str | None = None) -> CandidateResult:
    """A candidate that could not be trained or scored, with the reason."""
    return CandidateResult(spec.name, spec.group, spec.changes, status="failed", note=note, run_id=run_id)


def _eval_metrics(t: FitResult) -> dict[str, float]:
    """The final evaluation a candidate's run logs: ``eval/{train,val}_<metric>`` and ``eval/{train,val}_loss``."""
    return (
        {f"eval/train_{k}": v for k, v in t.train.metrics.items()}
        | {f"eval/val_{k}": v for k, v in t.val.metrics.items()}
        | {"eval/train_loss": t.train.loss, "eval/val_loss": t.val.loss}
    )


def _scored(spec: Spec, t: FitResult, same: bool, run_id: str) -> CandidateResult:
    """A trained candidate's scores; the per-sample ones only when ``same`` (the reference's val samples)."""
    note = t.init_note + ("" if same else "; validation samples differ from the reference: no paired noise")
    return CandidateResult(
        spec.name,
        spec.group,
        spec.changes,
        val_metric=t.val.metric,
        train_metric=t.train.metric,
        val_loss=t.val.loss,
        train_loss=t.train.loss,
        scores=t.val.scores if same else None,
        loss_scores=t.val.losses if same else None,
        note=note.strip("; "),
        run_id=run_id,
        seconds=t.seconds,
        epochs=t.epochs,
    )


def _overfit_checkpoint(prev: StageResult | None, workdir: Path) -> Path | None:
    if prev is None:
        return None
    local = prev.artifacts.get("checkpoint_path")
    if local and Path(local).is_file():
        return Path(local)
    if prev.checkpoint_uri:
        try:
            return resolve_checkpoint(prev.checkpoint_uri, workdir)
        except Exception:
            return None
    return None


# --- checks --------------------------------------------------------------------------------------------------


def _metrics(
    ref: CandidateResult,
    chosen: CandidateResult,
    cands: list[CandidateResult],
    decisions: dict[str, Decision],
    metric: str,
    higher: bool,
    criterion: str,
) -> dict[str, float]:
    out = {
        "val/loss": chosen.val_loss,  # the same keys in every stage: one MLflow chart compares them
        f"val/{metric}": chosen.val_metric,
        "train/loss": chosen.train_loss,
        f"train/{metric}": chosen.train_metric,
        f"regularize/val_{metric}": chosen.val_metric,
        f"regularize/train_{metric}": chosen.train_metric,
        "regularize/val_loss": chosen.val_loss,
        "regularize/train_loss": chosen.train_loss,
        "regularize/gap": chosen.gap(higher, criterion),
        f"regularize/reference_val_{metric}": ref.val_metric,
        "regularize/reference_val_loss": ref.val_loss,
        "regularize/reference_gap": ref.gap(higher, criterion),
        "regularize/candidates": float(sum(c.ok for c in cands)),
        "regularize/kept": float(sum(d.kept for d in decisions.values())),
    }
    for c in cands:
        if c.ok:
            out[f"candidate/{c.name}/val_{metric}"] = c.val_metric
            out[f"candidate/{c.name}/val_loss"] = c.val_loss
            out[f"candidate/{c.name}/gap"] = c.gap(higher, criterion)
    return out


def rows_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidate table's rows (:func:`~recipe.checks.ablation.table_rows`) with NaN and inf as None (JSON)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]


# --- plots ---------------------------------------------------------------------------------------------------


def _log_figures(figures: Figures, runner: _Runner, rows, ref, chosen, baselines) -> None:
    metric, higher, s = runner.task.metric, runner.task.higher_is_better, runner.s
    from recipe.checks.ablation import baseline_keys
    from recipe.plots.curves import comparison_figure, curves_figure, first_layer_figure

    bars = {}
    for label, key in baseline_keys(runner.data):
        if baselines and isinstance(baselines.get(key), (int, float)):
            bars[f"{label} baseline"] = float(baselines[key])
    figures.log(
        "plots/regularize_comparison.png",
        lambda: comparison_figure(rows, metric, higher_is_better=higher, bars=bars, noise_z=s.noise_z),
    )
    by_name = {r["name"]: r for r in rows}
    histories = {n: t.history for n, t in runner.trained.items()}
    titles = {
        n: f"{n}: val loss {by_name[n]['val_loss']:.4f}, {metric} {by_name[n]['val_metric']:.4f}\n"
        + by_name[n].get("decision", by_name[n]["kept"] + (" (chosen)" if by_name[n]["chosen"] else ""))
        for n in histories
        if n in by_name
    }
    figures.log(
        "plots/regularize_curves.png",
        lambda: curves_figure(
            histories,
            titles=titles,
            reference=ref.name,
            title="regularize: train (solid) vs validation (dashed) loss per candidate",
        ),
    )
    t = runner.trained[chosen.name]
    figures.log("plots/first_layer.png", lambda: first_layer_figure(t.model, t.data.in_shape))
