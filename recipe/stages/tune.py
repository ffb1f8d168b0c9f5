"""Stage 5, tune: quasi-random search over what matters, from the config regularize handed on.

"Random over grid search ... explore a wide model space for architectures that achieve low validation loss."
The stage:

1. resolves ``stages.tune.space`` around the handed-on config (:mod:`recipe.tune.space`: the learning rate a
   decade each side, weight decay, dropout, width and depth around the chosen rung, batch size, augmentation
   on/off where regularize kept it, the schedule: constant / cosine / one-cycle with warm-up);
2. opens the persisted Optuna study for this starting config and data (:mod:`recipe.tune.study`), marking
   trials a dead process left RUNNING as failed (and ending their MLflow runs), so an interrupted tune resumes
   without redoing completed trials;
3. asks the study for ``parallel`` trials at a time, runs them through ``ctx.map`` (in this process by default;
   Prefect tasks on a process pool or a Dask cluster in the flow) with :func:`recipe.tune.trial.run_trial`,
   each in its own MLflow run nested under this stage's run (created here with an explicit parent), and tells
   the study their outcome, until ``n_trials`` count or ``timeout_s`` passes;
4. retrains the best trial's config and the handed-on config with each of ``seeds`` (nested runs too) and
   judges the gain against seed noise and validation-sampling noise (:mod:`recipe.tune.checks`).

Verdict: PASS when the best beats the handed-on config beyond noise (it is handed on, with its checkpoint);
WARN when nothing does (the handed-on config goes on unchanged, and the advice says whether a wider space or a
bigger budget comes next); FAIL when no trial completes or the best trails the dumbest baseline of stage 2
(majority class, mean) beyond noise. Behind the linear baseline beyond noise WARNs: a trial is a short run that
ranks configs (what budget.minutes leaves it can be 2 epochs), not evidence of a bug; the full-length model was
judged against the linear bar by regularize and is again, on test, by squeeze.
Advisory checks: best values at a range edge (widen which way), the share of failed or diverged trials,
parameter importances, trials run versus asked.

Logged on the stage's run: ``tune/trials.json``, ``plots/tune_history.png``, ``plots/tune_importances.png``,
``plots/tune_slice_<param>.png`` and, on PASS, ``checkpoint/tune.pt``. The best trial is picked on the
validation split (a best-of-N pick, optimistic); the test split in squeeze gives the unbiased number.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from recipe import tracking
from recipe.checks.ablation import BarEvidence, baseline_bar_check
from recipe.checks.base import Finding, finding
from recipe.config import RecipeConfig
from recipe.fit import describe_model, with_min_steps
from recipe.report import StageResult, Verdict
from recipe.stages.base import StageContext, map_in_process
from recipe.stages.ending import Figures, finish, publish_checkpoint
from recipe.tasks import task_for
from recipe.tune import checks, plots
from recipe.tune.lock import file_study_lock
from recipe.tune.space import Space, resolve
from recipe.tune.study import (
    LOST,
    ORPHANED,
    OWNER,
    PARENT_RUN_ID,
    RETRIED,
    RUN_ID,
    counted,
    heartbeats,
    open_study,
    owner_tag,
    reap_orphans,
    retry_once,
    storage_for,
    study_name,
)
from recipe.tune.trial import TrialResult, TrialSpec, run_trial, share_data

STAGE = "tune"
log = logging.getLogger(__name__)
PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
GATES = ("trials_ran", "improves_beyond_noise", "beats_baselines")
TUNE_RUNS = "tune_runs"  # study user attribute: the MLflow run ids of the tune stages that worked on it


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass
class _Outcome:
    """What the stage hands on and records, filled in step by step."""

    handed_on: RecipeConfig
    checkpoint_uri: str | None
    notes: list[str]
    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    budget_stopped: int | None = None  # the trials counted when the budget's deadline stopped the search


def run(ctx: StageContext) -> StageResult:
    """Resolve the space, open (or resume) the study, search, judge the search, retrain and decide, log; see the
    module docstring."""
    start = time.perf_counter()
    prev = ctx.results.get("regularize")
    base = prev.config if prev is not None else ctx.cfg
    s, data = ctx.cfg.stages.tune, ctx.data()
    space = resolve(base, s.space)
    out = _Outcome(base, prev.checkpoint_uri if prev else None, _start_notes(prev, base, space))
    s = with_min_steps(s, base, data, out.notes)
    if not space.dims:
        return _nothing_to_search(out)
    name = study_name(base, data.fingerprint, fresh=mlflow.active_run().info.run_id[:8] if ctx.fresh else None)
    storage = storage_for(s, name)
    hold = getattr(ctx.map, "study_lock", None) or file_study_lock  # a flow may hold it elsewhere (Prefect)
    waited = time.perf_counter()
    with hold(name, storage.lock_path(name), s.wait, _say):
        if time.perf_counter() - waited > 1:
            out.notes.append(f"waited {time.perf_counter() - waited:.0f} s for another run of this study to finish")
        study, runner, reaped = _open(ctx, base, s, space, data, out, name, storage)
        _search(study, runner, s, start, out, ctx.deadline)
        trials = study.get_trials(deepcopy=False)
        best, importance = _judge(ctx, runner, study, trials, len(reaped), out)
    _log_trials(trials, best, space, importance, s.plots, out)
    out.metrics["tune/seconds"] = time.perf_counter() - start
    return finish(
        STAGE,
        out.findings,
        out.handed_on,
        gates=GATES,
        metrics=out.metrics,
        notes=out.notes,
        artifacts=out.artifacts,
        checkpoint_uri=out.checkpoint_uri,
    )


def _judge(
    ctx: StageContext, runner: _Runner, study: optuna.Study, trials: list[Any], n_reaped: int, out: _Outcome
) -> tuple[Any, dict[str, float]]:
    """The search's own checks (trials ran, failed share, range edges, importances) and, when a trial completed,
    the retrain-and-decide finding and the baseline bar. Returns the best trial (None when none completed) and
    the parameter importances."""
    s, space = ctx.cfg.stages.tune, runner.space
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    # a search the budget's deadline stopped ran the trials the budget gave it (the plan records that number)
    ran, used = checks.trials_check(trials, s.n_trials, n_reaped, deadline_stopped=out.budget_stopped is not None)
    out.findings += [ran, used, checks.failed_share_check(trials)]
    edges = checks.edge_check(best, space)
    imp_finding, importance = checks.importance_check(study, space)
    if best is not None:
        out.findings.append(_retrain_and_decide(ctx, runner, runner.base, space, best, edges, len(complete), out))
        out.findings += [_bar(ctx, ctx.data(), out), edges, imp_finding]
    else:
        out.findings += [edges, imp_finding]
        out.notes.append("handed on: the incoming config, unchanged (no trial completed)")
    return best, importance


def _log_trials(
    trials: list[Any], best: Any, space: Space, importance: dict[str, float], plots_on: bool, out: _Outcome
) -> None:
    """``tune/trials.json`` and, with ``stages.tune.plots``, the figures (a drawing error becomes a note)."""
    tracking.log_dict(_trials_json(trials, space), "tune/trials.json")
    out.artifacts["trials"] = tracking.artifact_uri("tune/trials.json")
    figures = Figures(enabled=plots_on)
    _log_figures(figures, trials, best, space, importance, out.metrics.get("tune/handed_on_val_loss"))
    out.notes += figures.close()


def _start_notes(prev: StageResult | None, base: RecipeConfig, space: Space) -> list[str]:
    """Where the search starts, what it searches and what it holds fixed."""
    held = [f"{k}: {why}" for k, why in space.fixed.items()]
    notes = [] if prev is not None else ["no regularize stage result: starting from the incoming config"]
    return [
        *notes,
        f"starting point: {describe_model(base)}, {base.optim.name} lr {base.optim.lr:g}, schedule "
        f"{base.schedule.name}, batch {base.data.batch_size}, augment {base.data.augment or 'off'}",
        "searched: " + ("; ".join(d.describe() for d in space.dims) or "nothing"),
        "held fixed: " + ("; ".join(held) + "; " if held else "") + "every other config key",
    ]


def _nothing_to_search(out: _Outcome) -> StageResult:
    f = finding(
        "improves_beyond_noise",
        "the search finds a better config",
        "nothing to search: every parameter is held fixed",
        "a search space",
        WARN,
        "add parameters to stages.tune.space",
    )
    return StageResult(STAGE, WARN, [f.check], {}, out.handed_on, checkpoint_uri=out.checkpoint_uri, notes=out.notes)


def _say(message: str) -> None:
    """A message the user must see while the stage runs (it waits): on stderr, and in the log."""
    print(message, file=sys.stderr, flush=True)
    logging.getLogger("recipe.tune").info(message)


def _open(
    ctx: StageContext, base: RecipeConfig, s: Any, space: Space, data: Any, out: _Outcome, name: str, storage: Any
) -> tuple[optuna.Study, _Runner, list[Any]]:
    """The persisted study (resumed when it exists; trials a dead process left running reaped) and the runner."""
    study = open_study(name, storage, s, seed=base.seed)
    tune_run = mlflow.active_run()
    run_id, exp_id = tune_run.info.run_id, tune_run.info.experiment_id
    reaped = reap_orphans(study)
    ended = _end_orphaned_runs(study, reaped, run_id)
    study.set_user_attr(TUNE_RUNS, [*study.user_attrs.get(TUNE_RUNS, []), run_id])
    done_before = len(counted(study))
    resumed = f"resumed with {done_before} finished trials" if done_before or reaped else "new"
    reaped_text = (
        f"; {len(reaped)} trials left running by an interrupted run marked failed and retried once, {ended} "
        f"MLflow runs ended"
        if reaped or ended
        else ""
    )
    out.notes += [f"study {name} in {storage.describe()}: {resumed}{reaped_text}", *_engine_notes(s, storage)]
    runner = _Runner(ctx, base, s, space, study, storage.spec, run_id, exp_id, data.fingerprint)
    if ctx.map is map_in_process or getattr(ctx.map, "in_thread", False):  # trials run in this process
        share_data(data)
    return study, runner, reaped


def _search(
    study: optuna.Study, runner: _Runner, s: Any, start: float, out: _Outcome, deadline: float | None = None
) -> None:
    """Waves of ``parallel`` trials until ``n_trials`` count, ``timeout_s`` passes, or (a budgeted run) the next
    wave and the retrainings would end past ``deadline`` (:func:`over_deadline`)."""
    while len(counted(study)) < s.n_trials:
        if s.timeout_s is not None and time.perf_counter() - start > s.timeout_s:
            out.notes.append(f"stages.tune.timeout_s={s.timeout_s:g} reached: no new trials started")
            break
        if deadline is not None:
            stop = over_deadline(counted(study), len(s.seeds), deadline - time.time(), s.n_trials)
            if stop:
                out.budget_stopped = len(counted(study))
                out.notes.append(f"budget: {stop}")
                log.info("tune: budget: %s", stop)
                break
        runner.wave(min(s.parallel, s.n_trials - len(counted(study))))
    out.metrics["tune/search_seconds"] = time.perf_counter() - start


def over_deadline(trials: list[Any], n_seeds: int, left_s: float, n_trials: int) -> str | None:
    """Why a budgeted search starts no more trials, or None when the next one fits.

    The budget sizes the search on the handed-on config's step time, but a trial trains a point of the space
    (a wider, deeper model, a smaller batch: on attrition trials took 4-28 s against the 5 s the warm-up's
    config costs) and the retrainings train the best trial's config and the handed-on one ``n_seeds`` times
    each. So, once the budget's minimum of trials (:func:`recipe.budget.knob_minimum`) have finished, the search stops when ``left_s`` (seconds to the stage's
    deadline) is less than one more trial (the median finished trial's duration) plus the retrainings
    (``n_seeds`` x (the best trial's duration + the median's)). ``trials``: the finished, counted ones
    (Optuna FrozenTrials with durations)."""
    timed = [t for t in trials if t.duration is not None]
    from recipe.budget import knob_minimum

    if len(timed) < knob_minimum("tune", "stages.tune.n_trials"):
        return None
    durations = sorted(t.duration.total_seconds() for t in timed)
    median = durations[len(durations) // 2]
    complete = [t for t in timed if t.state == TrialState.COMPLETE and t.value is not None]
    best = min(complete, key=lambda t: t.value).duration.total_seconds() if complete else median
    need = median + n_seeds * (best + median)
    if need <= left_s:
        return None
    return (
        f"the search stopped after {len(trials)} of {n_trials} trials: trials took {median:.1f} s (median; the "
        f"best {best:.1f} s), so one more and the {2 * n_seeds} retrainings need about {need:.0f} s, and "
        f"{max(left_s, 0.0):.0f} s of the stage's share of budget.minutes is left"
    )


def _retrain_and_decide(
    ctx: StageContext,
    runner: _Runner,
    base: RecipeConfig,
    space: Space,
    best: Any,
    edges: Finding,
    n_complete: int,
    out: _Outcome,
) -> Finding:
    """Retrain the best trial's config and the handed-on one with every seed; hand on the best only when it wins
    beyond noise (:func:`recipe.tune.checks.noise_gain`). Returns the ``improves_beyond_noise`` finding."""
    s, task = ctx.cfg.stages.tune, task_for(ctx.data())
    best_cfg = space.apply(base, best.params)
    retrained = runner.retrain(base, best_cfg)
    h_runs, b_runs = retrained["handed_on"], retrained["best"]
    ng = checks.noise_gain(h_runs, b_runs, higher_is_better=task.higher_is_better, noise_z=s.noise_z)
    out.metrics.update(_retrain_metrics(task.metric, best, b_runs, h_runs, kept=b_runs if ng.kept else h_runs))
    out.notes.append(
        f"best trial #{best.number}: {_fmt_params(best.params)} (trial val loss {best.value:.4g}); "
        f"retrained with seeds {s.seeds}: val loss {out.metrics['tune/best_val_loss']:.4g} vs "
        f"handed-on {out.metrics['tune/handed_on_val_loss']:.4g}; {ng.reason}"
    )
    if ng.kept:
        _hand_on(ctx, best_cfg, b_runs, base.seed, _fmt_params(space.overrides(best.params)), out)
    else:
        out.notes.append("handed on: the incoming config, unchanged")
    return checks.improvement_check(ng, edges, n_complete, len(space.dims))


def _retrain_metrics(
    metric: str, best: Any, b_runs: list[TrialResult], h_runs: list[TrialResult], *, kept: list[TrialResult]
) -> dict[str, float]:
    """Means over the seeds (val loss, and the val metric) of the best config's and the handed-on config's
    retrainings, the best trial's own number and val loss, and ``val/loss`` / ``val/<metric>`` of the config
    handed on (``kept``): the same keys in every stage."""
    return {
        "tune/best_val_loss": _mean_of(b_runs, "value"),
        f"tune/best_val_{metric}": _mean_of(b_runs, "val_metric"),
        "tune/handed_on_val_loss": _mean_of(h_runs, "value"),
        f"tune/handed_on_val_{metric}": _mean_of(h_runs, "val_metric"),
        "tune/best_trial": float(best.number),
        "tune/best_trial_val_loss": float(best.value),
        "val/loss": _mean_of(kept, "value"),
        f"val/{metric}": _mean_of(kept, "val_metric"),
    }


def _hand_on(
    ctx: StageContext, cfg: RecipeConfig, runs: list[TrialResult], seed: int, what: str, out: _Outcome
) -> None:
    """Hand on ``cfg`` with the checkpoint of its retraining with the config's own ``seed`` (else the first
    retraining that trained), published as ``checkpoint/tune.pt``."""
    out.handed_on = cfg
    seeds = ctx.cfg.stages.tune.seeds
    pick = next((r for r, sd in zip(runs, seeds, strict=False) if sd == seed and r.ok), None)
    pick = pick or next(r for r in runs if r.ok)
    checkpoint, out.checkpoint_uri = publish_checkpoint(Path(pick.checkpoint), ctx.workdir, "tune.pt")
    out.artifacts["checkpoint_path"] = str(checkpoint)
    out.notes.append(f"handed on: the best trial's config ({what}) with the checkpoint of its {pick.name} retraining")


def _bar(ctx: StageContext, data: Any, out: _Outcome) -> Finding:
    """The best config's val metric against the dumb baselines of stage 2: FAIL behind the dumbest one beyond
    noise, WARN behind the linear one (short trials rank configs; see the module's verdict rules)."""
    metric = task_for(data).metric
    baselines = ctx.results["baselines"].metrics if "baselines" in ctx.results else None
    n_val = int(data.split_sizes.get("val", 0))  # no per-sample scores from the trials: the aggregate bound
    evidence = BarEvidence(n=n_val, mse=out.metrics.get("tune/best_val_mse", math.nan))
    return baseline_bar_check(
        out.metrics.get(f"tune/best_val_{metric}", math.nan),
        data.task,
        baselines,
        what=f"best config's val {metric}",
        evidence=evidence,
        behind_linear="beats_baselines.behind_search",
    )


class _Runner:
    """Asks the study for trials, creates their MLflow runs, maps them through ``ctx.map`` and tells the study."""

    def __init__(
        self,
        ctx: StageContext,
        base: RecipeConfig,
        s: Any,
        space: Space,
        study: optuna.Study,
        storage: str,
        run_id: str,
        exp_id: str,
        fingerprint: str,
    ) -> None:
        self.ctx, self.base, self.s, self.space, self.study = ctx, base, s, space, study
        self.storage, self.run_id, self.exp_id, self.fingerprint = storage, run_id, exp_id, fingerprint
        self.client = MlflowClient()
        self.threads = max(1, cores() // s.parallel)
        self.owner = owner_tag()

    def _create_run(self, name: str, kind: str, extra: dict[str, str]) -> str:
        tags = tracking.run_tags(self.ctx.input_cfg, self.fingerprint, stage=STAGE, kind=kind)
        tags.update({"mlflow.parentRunId": self.run_id, "mlflow.runName": f"{STAGE}:{name}", **extra})
        return self.client.create_run(self.exp_id, run_name=f"{STAGE}:{name}", tags=tags).info.run_id

    def _spec(self, cfg: RecipeConfig, name: str, run_id: str, **kw: Any) -> TrialSpec:
        return TrialSpec(
            config=cfg.to_dict(),
            name=name,
            run_id=run_id,
            tracking_uri=tracking.tracking_uri(),
            epochs=self.s.epochs,
            workdir=str((self.ctx.workdir / "trials").resolve()),
            threads=self.threads,
            **kw,
        )

    def _end_run(self, run_id: str | None, note: str) -> None:
        """End a trial's MLflow run FAILED with ``note`` when its worker left it RUNNING."""
        if run_id and self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_tag(run_id, "recipe.trial_note", note[:5000])
            self.client.set_terminated(run_id, "FAILED")

    def _map(self, specs: list[TrialSpec]) -> list[TrialResult | BaseException]:
        try:
            return list(self.ctx.map(run_trial, specs))
        except Exception as e:  # the engine itself failed (a worker process died): the trials failed
            for sp in specs:
                self._end_run(sp.run_id, f"{type(e).__name__}: {e}")
            return [e for _ in specs]
        except BaseException as e:  # interrupted (Ctrl-C, SIGTERM): the trials' runs end KILLED, not RUNNING
            for sp in specs:
                self._end_killed(sp.run_id, tracking.interrupt_note(e))
            raise

    def _end_killed(self, run_id: str, note: str) -> None:
        """End a trial's MLflow run KILLED, saying why (``recipe.ended_by``), when it is still RUNNING; its Optuna
        trial stays RUNNING for the next run's reaper (its owner, this process, is then dead: failed, retried)."""
        with contextlib.suppress(Exception):  # the store may be what failed; the next run's sweep ends it then
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, tracking.TAG_ENDED_BY, note)
                self.client.set_terminated(run_id, "KILLED")
                tracking.KILLED_RUNS.append(run_id)

    def wave(self, k: int) -> None:
        """Ask the study for ``k`` trials, run those the config accepts through ``ctx.map`` (each in its own MLflow
        run) and tell the study every outcome. Never raises for a trial: a point the config refuses, or a trial
        whose worker raised, is told as failed with the reason in its ``note`` user attribute."""
        asked = [a for a in (self._ask() for _ in range(k)) if a is not None]
        if not asked:
            return
        with heartbeats(self.study, [trial._trial_id for trial, _ in asked]):
            results = self._map([sp for _, sp in asked])
        for (trial, _), r in zip(asked, results, strict=True):
            self._tell(trial, r)

    def _ask(self) -> tuple[optuna.Trial, TrialSpec] | None:
        """One trial from the study, with its MLflow run and spec; None (told as failed) when the config refuses
        the point."""
        with warnings.catch_warnings():  # the stage beats for its trials itself (recipe.tune.study.heartbeats)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            trial = self.study.ask()
        trial.set_user_attr(OWNER, self.owner)
        params = self.space.suggest(trial)
        try:
            cfg = self.space.apply(self.base, params)
        except Exception as e:  # a point the config refuses: a failed trial, no run needed
            _tell_failed(self.study, trial, str(e))
            return None
        rid = self._create_run(f"trial_{trial.number}", "trial", {"recipe.trial": str(trial.number)})
        trial.set_user_attr(RUN_ID, rid)
        trial.set_user_attr(PARENT_RUN_ID, self.run_id)
        spec = self._spec(
            cfg,
            f"trial_{trial.number}",
            rid,
            number=trial.number,
            trial_id=trial._trial_id,
            study_name=self.study.study_name,
            storage=self.storage,
            pruner=self.s.pruner,
        )
        return trial, spec

    def _tell(self, trial: optuna.Trial, r: TrialResult | BaseException) -> None:
        """Record a trial's outcome on it (state, seconds, note, its curve when it could not report it itself) and
        tell the study: complete with its value, pruned, or failed; log it (INFO, WARNING when it failed)."""
        _log_trial(trial.number, r)
        if isinstance(r, BaseException):  # the trial's task crashed: its worker died, not its training
            note = f"lost with its worker: {type(r).__name__}: {r}"
            self._end_run(trial.user_attrs.get(RUN_ID), note)
            trial.set_user_attr(LOST, True)
            retry_once(self.study, self.study._storage.get_trial(trial._trial_id))
            _tell_failed(self.study, trial, note)
            return
        trial.set_user_attr("state", r.state)
        trial.set_user_attr("seconds", r.seconds)
        if r.note:
            trial.set_user_attr("note", r.note[:500])
        if not r.pruning:  # record the curve in the study (the trial could not report it itself)
            for step, v in enumerate(r.curve, start=1):
                if math.isfinite(v):
                    trial.report(v, step)
        if r.state == "complete":
            self.study.tell(trial, r.value)
        else:
            self.study.tell(trial, state=TrialState.PRUNED if r.state == "pruned" else TrialState.FAIL)

    def retrain(self, handed: RecipeConfig, best: RecipeConfig) -> dict[str, list[TrialResult]]:
        """Both configs with every seed of ``stages.tune.seeds``, each in a nested run (kind ``retrain``)."""
        specs, keys = [], []
        for which, cfg in (("handed_on", handed), ("best", best)):
            for seed in self.s.seeds:
                name = f"retrain_{which}_seed{seed}"
                rid = self._create_run(name, "retrain", {"recipe.retrain": which, "recipe.seed": str(seed)})
                specs.append(self._spec(cfg.with_overrides({"seed": seed}), name, rid, keep_scores=True))
                keys.append(which)
        out: dict[str, list[TrialResult]] = {"handed_on": [], "best": []}
        for key, sp, r in zip(keys, specs, self._map(specs), strict=True):
            out[key].append(r if isinstance(r, TrialResult) else TrialResult(sp.name, "failed", note=str(r)))
        return out


def _log_trial(number: int, r: TrialResult | BaseException) -> None:
    if isinstance(r, BaseException):
        log.warning("tune trial %d: failed (%s: %s)", number, type(r).__name__, r)
        return
    note = f"; {r.note.splitlines()[0]}" if r.note else ""
    level = logging.INFO if r.ok else logging.WARNING
    log.log(
        level,
        "tune trial %d: %s after %d epochs, val loss %.4g, val metric %.4g, %.1f s%s",
        number,
        r.state,
        r.epochs,
        r.value,
        r.val_metric,
        r.seconds,
        note,
    )


def _tell_failed(study: optuna.Study, trial: optuna.Trial, note: str) -> None:
    """Tell the study ``trial`` failed, with ``note`` (cut to 500 characters) as its reason."""
    trial.set_user_attr("state", "failed")
    trial.set_user_attr("note", note[:500])
    study.tell(trial, state=TrialState.FAIL)


def _engine_notes(s: Any, storage: Any) -> list[str]:
    """What a remote Dask cluster needs that a local run does not (said, not guessed around)."""
    if not s.dask_address:
        return [f"{s.parallel} trial(s) at a time, {max(1, cores() // s.parallel)} torch thread(s) each"]
    host = urlparse(s.dask_address).hostname or ""
    notes = [f"trials on the Dask cluster at {s.dask_address}, {s.parallel} at a time"]
    if host not in ("127.0.0.1", "localhost", "::1"):
        if tracking.tracking_uri().startswith("sqlite:"):
            notes.append(
                "the MLflow store is a local sqlite file: remote Dask workers would log into their own "
                "copy; set MLFLOW_TRACKING_URI to a tracking server they can reach"
            )
        if storage.journal and s.pruner != "none":
            notes.append(
                "the study is a local journal file: remote workers cannot report to it, so pruning is "
                "off there; set stages.tune.storage to an RDB URL they can reach"
            )
    return notes


def _end_orphaned_runs(study: optuna.Study, reaped: list[Any], current: str) -> int:
    """End the MLflow runs an interrupted tune left RUNNING: its trial runs (KILLED), the earlier tune stage runs
    of this study, their RUNNING children (retrainings) and their flow run. Returns how many were ended."""
    client = MlflowClient()
    ids = {t.user_attrs[RUN_ID] for t in reaped if RUN_ID in t.user_attrs}
    tune_runs = {*study.user_attrs.get(TUNE_RUNS, []), *(t.user_attrs.get(PARENT_RUN_ID) for t in reaped)}
    tune_runs.discard(None)
    tune_runs.discard(current)
    ended = 0
    for tid in tune_runs:
        try:
            run = client.get_run(tid)
        except Exception:  # noqa: S112 -- deleted, or in another store: nothing of ours to end
            continue
        if run.info.status != "RUNNING":
            continue
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=(f"tags.`mlflow.parentRunId` = '{tid}' and attributes.status = 'RUNNING'"),
        )
        ids.update(c.info.run_id for c in children)
        ids.add(tid)
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent and client.get_run(parent).info.status == "RUNNING" and parent != tracking.active_run_id():
            ids.add(parent)
    for rid in ids:
        try:
            if client.get_run(rid).info.status == "RUNNING":
                client.set_tag(rid, "recipe.trial_note", "interrupted: ended by the next tune of this study")
                client.set_terminated(rid, "KILLED")
                ended += 1
        except Exception:  # noqa: S112 -- deleted meanwhile: nothing to end
            continue
    return ended


def _log_figures(
    figures: Figures, trials: list[Any], best: Any, space: Space, importance: dict[str, float], reference: float | None
) -> None:
    """History, importances and one slice ("axis") plot per searched parameter; a drawing error is a note."""
    figures.log("plots/tune_history.png", lambda: plots.history(trials, reference))
    if importance:
        figures.log("plots/tune_importances.png", lambda: plots.importances(importance))
    for d in space.dims:
        figures.log(f"plots/tune_slice_{d.name}.png", lambda d=d: plots.slice_plot(d, trials, best, d.base))


def _trials_json(trials: list[Any], space: Space) -> list[dict[str, Any]]:
    out = []
    for t in trials:
        out.append(
            {
                "number": t.number,
                "state": t.user_attrs.get("state", t.state.name.lower()),
                "optuna_state": t.state.name,
                "value": t.value,
                "params": t.params,
                "overrides": space.overrides(t.params),
                "note": t.user_attrs.get("note", ""),
                "orphaned": bool(t.user_attrs.get(ORPHANED)),
                "lost": bool(t.user_attrs.get(LOST)),
                "retried_as": t.user_attrs.get(RETRIED),
                "retry_of": t.system_attrs.get("failed_trial"),
                "run_id": t.user_attrs.get(RUN_ID),
                "seconds": t.user_attrs.get("seconds"),
            }
        )
    return out


def _mean_of(runs: list[TrialResult], attr: str) -> float:
    """The mean of ``attr`` ("value": the val loss, or "val_metric") over the runs that trained."""
    return _mean([getattr(r, attr) for r in runs if r.ok])


def _mean(xs: list[float]) -> float:
    """The mean of the finite values of ``xs`` (NaN when there are none)."""
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
