"""Stage 6, squeeze out the juice: ensembles, averaging, longer training, distillation; the test split once.

"Model ensembles are a pretty much guaranteed way to gain 2% of accuracy on anything. If you can't afford the
computation at test time look into distilling your ensemble into a network using dark knowledge." -- and
"leave it training". Starting from tune's config (regularize's when tune did not run), the stage:

1. trains ``members`` seeds of it through the trial map (member 0, the config's own seed, is the reference),
   then in this process: SWA and Polyak-averaged weights of one more run, a run ``longer`` times the budget with
   a cosine decay (best-validation weights kept), a snapshot ensemble from cosine warm restarts, and a student
   distilled from the ensemble (:mod:`recipe.squeeze.runs`; each its own nested MLflow run);
2. scores every candidate on the validation split and chooses the champion there, preferring the cheaper of two
   candidates within noise (:func:`recipe.checks.squeeze.choose_champion`);
3. reads the test split once, for a fixed list: the champion, the best single network, the ensemble, the
   student, the dumb and linear baselines and a tuned classical baseline, each with a bootstrap interval, and
   records that it did (:mod:`recipe.squeeze.heldout`);
4. registers the champion with its preprocessing as ``models:/<recipe name>@champion`` and checks that the
   loaded model predicts what the networks do (:mod:`recipe.champion`);
5. writes the model card (this run, the parent run, the registered version) and ``plots/recipe_progress.png``.

Verdict: PASS when the champion beats the dumb and linear baselines on test and matches the best single network
on validation; WARN when the classical baseline beats it on test (or the test split was read before); FAIL when
it does not beat the dumb baseline on test.
"""

from __future__ import annotations

import math
import time
from typing import Any

import mlflow

from recipe import tracking
from recipe.checks import squeeze as judge
from recipe.checks.base import Finding
from recipe.report import StageResult, Verdict
from recipe.squeeze import heldout, publish, runs
from recipe.squeeze.candidates import Squeezed, evaluate, latency_ms
from recipe.stages.base import StageContext, map_in_process
from recipe.stages.ending import Figures, finish
from recipe.tasks import task_for
from recipe.tune.trial import share_data

STAGE = "squeeze"


def run(ctx: StageContext) -> StageResult:
    start = time.perf_counter()
    sc, notes = _context(ctx)
    members, failed = runs.train_members(sc)
    notes += failed
    if not members:
        return _nothing_trained(ctx, sc, notes)
    cands = _candidates(sc, members, notes)
    for c in cands.values():
        evaluate(c, sc.data, sc.task)
    pairs = [(c.result, c.cost) for c in cands.values()]
    champ_r, best_r, decisions, reason = judge.choose_champion(
        pairs, task=sc.task, criterion=sc.s.criterion, noise_z=sc.s.noise_z
    )
    champion = next(c for c in cands.values() if c.result is champ_r)
    single = _best_single(cands, sc)
    rows, test_notes, classical = _test(sc, champion, single, cands)
    notes += test_notes
    reads = heldout.previous_reads(sc.cfg.name, sc.data.fingerprint, sc.run_id)
    tracking.set_tags({heldout.TAG_TEST_READ: "true"})
    registered = publish.register(sc, champion) if sc.s.registry else publish.Registered()
    findings = _findings(sc, cands, champion, single, rows, classical, reads, registered, best_r, reason)
    metrics = _metrics(sc, champion, rows, time.perf_counter() - start)
    figures = Figures()
    publish.log_tables(cands, champion, decisions, rows, sc)
    publish.progress(figures, ctx, sc, champion, rows, classical)
    notes += [f"champion: {champion.what} ({reason})", *registered.notes, *figures.close()]
    result = finish(
        STAGE,
        findings,
        champion.cfgs[0],
        gates=judge.GATES,
        metrics=metrics,
        notes=notes,
        artifacts={"test": tracking.artifact_uri("squeeze/test.json"), **registered.artifacts},
        checkpoint_uri=registered.uri,
    )
    publish.model_card(ctx, sc, result, rows, registered, champion)
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
        s.epochs or cfg.budget.epochs,
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
    if missing:
        notes.append(f"not trained (skipped by settings, or diverged): {', '.join(missing)}")
    return out


def _best_single(cands: dict[str, Squeezed], sc: runs.Context) -> Squeezed:
    singles = [c for c in cands.values() if c.n_nets == 1 and c.result.ok]
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
        if c is not None and c is not champion:
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


def _findings(
    sc: runs.Context,
    cands: dict[str, Squeezed],
    champion: Squeezed,
    single: Squeezed,
    rows: list[heldout.TestRow],
    classical: heldout.TestRow | None,
    reads: list[Any],
    registered: Any,
    best: Any,
    reason: str,
) -> list[Finding]:
    t, metric, ref = sc.task, sc.task.metric, cands["reference"].result
    champ, dumb, linear = _row(rows, "champion"), _row(rows, "majority"), _row(rows, "linear")
    found = [
        judge.choice(champion.result, best, reason, metric=metric),
        judge.matches_best_single(champion.result, single.result, task=t, noise_z=sc.s.noise_z),
    ]
    for name, other, fail in (("beats_dumb_on_test", dumb, True), ("beats_linear_on_test", linear, False)):
        if other is not None:
            found.append(judge.beats_on_test(name, champ.scores, other.scores, other.model, task=t, fail=fail))
    found += [
        judge.versus_classical(
            champ.scores, classical.scores if classical else None, classical.model if classical else "", task=t
        ),
        judge.test_split_fresh(reads),
        judge.round_trip(registered.max_diff, registered.n_checked, registered.uri or "", registered.error),
    ]
    for name, what in (
        ("ensemble", "an ensemble"),
        ("swa", "SWA"),
        ("ema", "Polyak averaging"),
        ("longer", "training longer"),
        ("snapshots", "a snapshot ensemble"),
    ):
        c = cands.get(name)
        found.append(
            judge.trick_gain(f"gain_{name}", c.result if c else None, ref, task=t, noise_z=sc.s.noise_z, what=what)
        )
    longer = sc.longer_fit
    if longer is not None:
        es = longer.trainer.cb("early_stopping")
        found.append(
            judge.still_improving(
                [h.get("val/loss", math.nan) for h in longer.history], getattr(es, "best_epoch", None), sc.epochs
            )
        )
    student, teacher = cands.get("student"), cands.get("ensemble")
    if teacher is not None:
        x, _ = sc.data.tensors("val")
        found.append(
            judge.student_size(
                student,
                teacher,
                latency_ms(student.nets, x) if student else 0.0,
                latency_ms(teacher.nets, x),
                metric=metric,
            )
        )
    return found


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
