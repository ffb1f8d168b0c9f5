"""Stage 6, squeeze out the juice: ensembles, averaging, longer training, distillation; the test split once.

"Model ensembles are a pretty much guaranteed way to gain 2% of accuracy on anything. If you can't afford the
computation at test time look into distilling your ensemble into a network using dark knowledge." -- and
"leave it training". Starting from tune's config (regularize's when tune did not run), the stage:

1. trains ``members`` seeds of it through the trial map (member 0, the config's own seed, is the reference, and
   its run also keeps SWA and Polyak-averaged weights), then in this process: a run ``longer`` times the budget
   with a cosine decay (best-validation weights kept), a snapshot ensemble from cosine warm restarts, and a
   student distilled from the ensemble (:mod:`recipe.squeeze.runs`; each its own nested MLflow run);
2. scores every candidate on the validation split, adds one more, ``weighted``: the candidates blended by
   ensemble selection on the val loss, started from the ensemble (:mod:`recipe.squeeze.weighted`, Caruana et al.
   2004; ``stages.squeeze.ensemble_selection`` rounds, within ``max_params``), and chooses the champion there by
   ``stages.squeeze.rule`` (default: that weighted ensemble), among the candidates within
   ``stages.squeeze.max_params`` (:func:`recipe.checks.squeeze.choose_champion`);
3. reads the test split once, for a fixed list: the champion, the best single network, the ensemble, the
   student, the dumb and linear baselines and a tuned classical baseline, each with a bootstrap interval, and
   records that it did (:mod:`recipe.squeeze.heldout`);
4. registers the chosen model with its preprocessing as a new version of ``models:/<recipe name>`` with the
   alias ``challenger`` and checks that the loaded model predicts what the networks do (:mod:`recipe.champion`);
   the alias ``champion`` moves to it only when the stage did not fail and it is at least as good as the current
   champion on the same validation split (:mod:`recipe.squeeze.promotion`; the check ``champion_promoted`` says
   why it stayed otherwise);
5. writes the model card (this run, the parent run, the registered version) and ``plots/recipe_progress.png``.

Verdict: PASS when the champion beats the dumb and linear baselines on test and matches the best single network
on validation; WARN when the classical baseline beats it on test (or the test split was read before); FAIL when
it does not beat the dumb baseline on test.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import mlflow

from recipe import tracking
from recipe.checks import squeeze as judge
from recipe.checks.ablation import CandidateResult
from recipe.checks.base import Finding
from recipe.fit import epochs_for
from recipe.report import StageResult, Verdict
from recipe.squeeze import heldout, publish, runs
from recipe.squeeze.candidates import Squeezed, evaluate, latency_ms
from recipe.squeeze.weighted import weighted_candidate
from recipe.stages.base import StageContext, map_in_process
from recipe.stages.ending import Figures, finish
from recipe.tasks import task_for
from recipe.tune.trial import share_data

STAGE = "squeeze"


def run(ctx: StageContext) -> StageResult:
    """Members and the other candidates, the champion chosen on validation, the test split read once, the
    champion registered and its model card written; see the module docstring."""
    start = time.perf_counter()
    sc, notes = _context(ctx)
    members, failed = runs.train_members(sc)
    notes += failed
    if not members:
        return _nothing_trained(ctx, sc, notes)
    cands = _candidates(sc, members, notes)
    pick = _choose(sc, cands)
    rows, test_notes, classical = _test(sc, pick.champion, pick.single, cands)
    notes += test_notes
    reads = heldout.previous_reads(sc.cfg.name, sc.data.fingerprint, sc.run_id)
    tracking.set_tags({heldout.TAG_TEST_READ: "true"})
    registered = publish.register(sc, pick.champion) if sc.s.registry else publish.Registered()
    if registered.model_id:  # the Models tab ranks champions across runs by their test metric
        test_set = tracking.split_dataset(ctx.manifest(), sc.cfg.name, "test")
        if failed_note := publish.log_test_metrics(registered, rows, sc.task.metric, test_set):
            notes.append(failed_note)
    findings = _findings(sc, cands, pick, rows, classical, reads, registered)
    if sc.s.registry:  # challenger, then champion: the alias moves only for a stage that did not fail
        verdict = Verdict.worst([f.check.verdict for f in findings if f.name in judge.GATES])
        findings.append(publish.promote(sc, registered, verdict))
    metrics = _metrics(sc, pick.champion, rows, time.perf_counter() - start)
    return _publish(ctx, sc, cands, pick, rows, classical, registered, findings, metrics, notes)


@dataclass(frozen=True)
class _Pick:
    """The validation choice: the champion, the best single network, the best candidate on validation and the
    reason the champion won (the candidates table compares each candidate with the reference itself:
    :func:`recipe.squeeze.publish.candidates_table`)."""

    champion: Squeezed
    single: Squeezed
    best: CandidateResult
    reason: str


def _choose(sc: runs.Context, cands: dict[str, Squeezed]) -> _Pick:
    """Score every candidate on the validation split and choose the champion there
    (:func:`recipe.checks.squeeze.choose_champion`, which raises ValueError when none is ok)."""
    outputs = {name: evaluate(c, sc.data, sc.task) for name, c in cands.items()}
    if sc.s.ensemble_selection > 0:  # one more candidate: the others blended on the val loss
        ok = [c for c in cands.values() if c.result.ok]
        _, y_val = sc.data.tensors("val")
        blend = weighted_candidate(
            ok,
            [outputs[c.name] for c in ok],
            y_val.numpy(),
            sc.task,
            rounds=sc.s.ensemble_selection,
            max_params=sc.s.max_params,
            init={"ensemble": sc.s.ensemble_selection_init},
        )
        if blend is not None:
            evaluate(blend, sc.data, sc.task)
            cands[blend.name] = blend
    pairs = [(c.result, c.cost) for c in cands.values()]
    champ_r, best_r, _, reason = judge.choose_champion(
        pairs,
        task=sc.task,
        criterion=sc.s.criterion,
        noise_z=sc.s.noise_z,
        rule=sc.s.rule,
        max_params=sc.s.max_params,
    )
    champion = next(c for c in cands.values() if c.result is champ_r)
    return _Pick(champion, _best_single(cands, sc), best_r, reason)


def _publish(
    ctx: StageContext,
    sc: runs.Context,
    cands: dict[str, Squeezed],
    pick: _Pick,
    rows: list[heldout.TestRow],
    classical: heldout.TestRow | None,
    registered: publish.Registered,
    findings: list[Finding],
    metrics: dict[str, float],
    notes: list[str],
) -> StageResult:
    """Log the tables and the progress plot, hand on the champion's config, write the model card."""
    figures = Figures()
    publish.log_tables(cands, pick.champion, rows, sc)
    publish.progress(figures, ctx, sc, pick.champion, rows, classical)
    notes += [f"champion: {pick.champion.what} ({pick.reason})", *registered.notes, *figures.close()]
    result = finish(
        STAGE,
        findings,
        pick.champion.cfgs[0],
        gates=judge.GATES,
        metrics=metrics,
        notes=notes,
        artifacts={"test": tracking.artifact_uri("squeeze/test.json"), **registered.artifacts},
        checkpoint_uri=registered.uri,
    )
    publish.model_card(ctx, sc, result, rows, registered, pick.champion)
    return result


def _context(ctx: StageContext) -> tuple[runs.Context, list[str]]:
    prev = ctx.results.get("tune") or ctx.results.get("regularize")
    cfg = prev.config if prev is not None else ctx.cfg
    s = ctx.cfg.stages.squeeze
    data = ctx.data()
    active = mlflow.active_run()
    from recipe.stages.tune import cores

    parallel = max(1, ctx.cfg.stages.tune.parallel)
    sc = runs.Context(
        ctx,
        cfg,
        data,
        task_for(data),
        s,
        epochs_for(s.epochs or cfg.budget.epochs, cfg, data),
        active.info.run_id,
        active.info.experiment_id,
        threads=max(1, cores() // parallel),
    )
    if ctx.map is map_in_process or getattr(ctx.map, "in_thread", False):  # members train in this process
        share_data(data)
    start = f"the {prev.stage} stage's config" if prev is not None else "the incoming config (no tune result)"
    return sc, [f"starting from {start}: {sc.cfg.model.name}, {sc.epochs} epochs per candidate"]


def _candidates(sc: runs.Context, members: list[Squeezed], notes: list[str]) -> dict[str, Squeezed]:
    out: dict[str, Squeezed] = {"reference": members[0]}
    members[0].name, members[0].what = (
        "reference",
        f"the tuned config, {sc.epochs} epochs (member 0, seed {sc.cfg.seed})",
    )
    ensemble = None
    if len(members) > 1:
        ensemble = Squeezed(
            "ensemble",
            f"ensemble of {len(members)} members (seeds {sc.cfg.seed}.."
            f"{sc.cfg.seed + len(members) - 1}), probabilities averaged",
            [n for m in members for n in m.nets],
            [m.cfgs[0] for m in members],
        )
        out["ensemble"] = ensemble
    for c in runs.averaged(sc):
        out[c.name] = c
    cut = runs.longer_to_deadline(sc, len(members))
    if cut:
        notes.append(cut)
    if sc.s.longer > 1:
        longer, sc.longer_fit = runs.longer(sc)
        if longer is not None:
            out["longer"] = longer
    if sc.s.snapshots > 1:
        snap = runs.snapshots(sc)
        if snap is not None:
            out["snapshots"] = snap
    if sc.s.distill and ensemble is not None:
        student = runs.student(sc, ensemble)
        if student is not None:
            out["student"] = student
    missing = [n for n in ("ensemble", "swa", "ema", "longer", "snapshots", "student") if n not in out]
    off = {"longer": sc.s.longer <= 1, "snapshots": sc.s.snapshots <= 1, "student": not sc.s.distill}
    switched_off = [n for n in missing if off.get(n)]
    if switched_off:  # under budget.minutes the settings are the budget's plan, which says what it cut
        budget = (
            " (budget.minutes: the sizes of the budget's plan, see its budget check)" if sc.cfg.budget.minutes else ""
        )
        notes.append(f"not trained, off in this run's settings{budget}: {', '.join(switched_off)}")
    if other := [n for n in missing if not off.get(n)]:
        notes.append(f"not trained (skipped by settings, or diverged): {', '.join(other)}")
    return out


def _best_single(cands: dict[str, Squeezed], sc: runs.Context) -> Squeezed:
    singles = [c for c in cands.values() if c.n_nets == 1 and c.result.ok and c.weights is None]
    if sc.s.criterion == "loss":
        return min(singles, key=lambda c: c.result.val_loss)
    return max(singles, key=lambda c: sc.task.gain(c.result.val_metric, 0.0))


def _test(
    sc: runs.Context, champion: Squeezed, single: Squeezed, cands: dict[str, Squeezed]
) -> tuple[list[heldout.TestRow], list[str], heldout.TestRow | None]:
    """The fixed list, scored once on the test split."""
    n, seed = sc.s.bootstrap, sc.cfg.seed
    rows: list[heldout.TestRow] = []
    notes: list[str] = []
    x_test, _ = sc.data.tensors("test")
    champ = heldout.model_row(champion, "champion", sc.data, sc.task, n, seed)
    champ.latency_ms = latency_ms(champion.nets, x_test)
    rows.append(champ)
    for c, kind in ((single, "single"), (cands.get("ensemble"), "ensemble"), (cands.get("student"), "student")):
        if c is champion:  # the champion's own row again under its kind: the table always lists each kind
            rows.append(dataclasses.replace(champ, kind=kind))
        elif c is not None:
            row = heldout.model_row(c, kind, sc.data, sc.task, n, seed)
            row.latency_ms = latency_ms(c.nets, x_test)
            rows.append(row)
    heldout.guarded(rows, notes, "the dumb baseline", lambda: heldout.dumb_row(sc.data, sc.task, n, seed))
    heldout.guarded(rows, notes, "the linear baseline", lambda: heldout.linear_row(sc.cfg, sc.data, sc.task, n, seed))
    classical = None
    if sc.s.classical:
        heldout.guarded(rows, notes, "the classical baseline", lambda: heldout.classical_row(sc.data, sc.task, n, seed))
        classical = next((r for r in rows if r.kind == "classical"), None)
    return rows, notes, classical


def _row(rows: list[heldout.TestRow], kind: str) -> heldout.TestRow | None:
    return next((r for r in rows if r.kind == kind), None)


# The tricks whose gain over the reference squeeze reports, and how the report names each.
TRICKS = (
    ("ensemble", "an ensemble"),
    ("swa", "SWA"),
    ("ema", "Polyak averaging"),
    ("longer", "training longer"),
    ("snapshots", "a snapshot ensemble"),
)


def _findings(
    sc: runs.Context,
    cands: dict[str, Squeezed],
    pick: _Pick,
    rows: list[heldout.TestRow],
    classical: heldout.TestRow | None,
    reads: list[Any],
    registered: publish.Registered,
) -> list[Finding]:
    """The gated checks (the choice, the test-split comparisons, a fresh test split, the registry round trip),
    then what each trick gave."""
    return [
        judge.choice(
            pick.champion.result,
            pick.best,
            pick.reason,
            metric=sc.task.metric,
            over_limit=sc.s.max_params is not None and pick.champion.params > sc.s.max_params,
        ),
        judge.matches_best_single(pick.champion.result, pick.single.result, task=sc.task, noise_z=sc.s.noise_z),
        *_test_findings(sc, rows, classical),
        judge.test_split_fresh(reads),
        judge.round_trip(registered.max_diff, registered.n_checked, registered.uri or "", registered.error),
        *_trick_findings(sc, cands),
    ]


def _test_findings(sc: runs.Context, rows: list[heldout.TestRow], classical: heldout.TestRow | None) -> list[Finding]:
    """The champion's test scores against the dumb and linear baselines (those that were scored) and the
    classical one."""
    t, champ, found = sc.task, _row(rows, "champion"), []
    for name, kind, fail in (("beats_dumb_on_test", "majority", True), ("beats_linear_on_test", "linear", False)):
        other = _row(rows, kind)
        if other is not None:
            found.append(judge.beats_on_test(name, champ.scores, other.scores, other.model, task=t, fail=fail))
    classical_scores, classical_model = (classical.scores, classical.model) if classical else (None, "")
    found.append(judge.versus_classical(champ.scores, classical_scores, classical_model, task=t))
    return found


def _trick_findings(sc: runs.Context, cands: dict[str, Squeezed]) -> list[Finding]:
    """Each trick's gain over the reference on validation, whether the long run was still improving, and the
    student's size and speed against its teacher (when there is an ensemble)."""
    ref = cands["reference"].result
    found = []
    for name, what in TRICKS:
        c = cands.get(name)
        result = c.result if c else None
        found.append(judge.trick_gain(f"gain_{name}", result, ref, task=sc.task, noise_z=sc.s.noise_z, what=what))
    longer = sc.longer_fit
    if longer is not None:
        es = longer.trainer.cb("early_stopping")
        rows = [h for h in longer.history if "val/loss" in h]
        val_losses = [h["val/loss"] for h in rows]
        data_epochs = [int(h.get("epoch", i)) for i, h in enumerate(rows)]  # history rows carry the data epoch
        found.append(judge.still_improving(val_losses, getattr(es, "best_epoch", None), sc.epochs, data_epochs))
    student, teacher = cands.get("student"), cands.get("ensemble")
    if teacher is not None:
        x, _ = sc.data.tensors("val")
        student_ms = latency_ms(student.nets, x) if student else 0.0
        teacher_ms = latency_ms(teacher.nets, x)
        found.append(
            judge.student_size(student, teacher, student_ms, teacher_ms, metric=sc.task.metric, missing=_no_student(sc))
        )
    return found


def _no_student(sc: runs.Context) -> str:
    """Why an ensemble has no distilled student: the budget's plan cut it (the run's input asked for one), the
    config turned distillation off, or its run failed."""
    if sc.s.distill:
        return "its distillation run failed (see the notes)"
    if sc.ctx.input_cfg.stages.squeeze.distill:
        from recipe.budget import knob_of

        return f"the budget's plan cut it (the budget check: {knob_of('squeeze', 'squeeze.distill').words} 1 → 0)"
    return "stages.squeeze.distill=false"


def _metrics(sc: runs.Context, champion: Squeezed, rows: list[heldout.TestRow], seconds: float) -> dict[str, float]:
    metric = sc.task.metric
    out = {
        "val/loss": champion.result.val_loss,
        f"val/{metric}": champion.result.val_metric,
        "train/loss": champion.result.train_loss,
        f"train/{metric}": champion.result.train_metric,
        "squeeze/champion_networks": float(champion.n_nets),
        "squeeze/champion_params": float(champion.params),
        "squeeze/seconds": seconds,
        "squeeze/members_run": float(sc.members_run),  # a budget's deadline can stop them before s.members
        "squeeze/longer_budgets": float(sc.longer_budgets),  # ... and cut the long run (recipe.budget.STOPS)
    }
    for r in rows:
        out[f"test/{r.kind}_{metric}"] = r.interval.value
        out[f"test/{r.kind}_{metric}_low"] = r.interval.low
        out[f"test/{r.kind}_{metric}_high"] = r.interval.high
    return out


def _nothing_trained(ctx: StageContext, sc: runs.Context, notes: list[str]) -> StageResult:
    from recipe.checks.base import finding

    f = finding(
        "members_trained",
        "the tuned config trains with every member seed",
        "; ".join(notes[1:]) or "no member trained",
        "at least one member",
        Verdict.FAIL,
        "see the member runs nested under this stage's run; the tuned config may diverge with other seeds",
    )
    return finish(STAGE, [f], sc.cfg, notes=notes)


__all__ = ["run"]
