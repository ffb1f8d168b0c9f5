"""Running the stages in order, with gates, tracking and reuse of earlier results.

This is the recipe's control flow without Prefect: ``flows/recipe_flow.py`` passes an ``execute``
hook that runs each stage as a Prefect task; tests and other orchestrators can pass their own.

- All stages, or up to ``stage``: every stage whose latest passing MLflow run has its reuse key
  (:func:`recipe.reuse.stage_key`: the settings it depends on, the data fingerprint, the code version)
  is reused, from the first stage on, and it says so with the run it reuses; the first stage that is not
  up to date and every one after it run. ``fresh`` reruns every stage.
- A FAIL verdict stops the run (``force`` carries on and tags the runs as forced).
- One MLflow parent run per call, one child run per executed stage. A stage that raises ends
  its child run and the parent run FAILED; everything logged before stays.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipe import tracking
from recipe.config import RecipeConfig
from recipe.report import StageResult, Verdict, report_dict
from recipe.stages import STAGES, stage_names
from recipe.stages.base import StageContext, TrialMap, map_in_process

Execute = Callable[[str, Callable[[StageContext], StageResult], StageContext], StageResult]
log = logging.getLogger(__name__)


def _direct(name: str, fn: Callable[[StageContext], StageResult], ctx: StageContext) -> StageResult:
    return fn(ctx)


@dataclass
class Outcome:
    """What a recipe run returns: the JSON report (``report_dict``), the stage results in run order and the
    notes shown to the user on the way (stages reused from earlier runs, stages run first, ...)."""

    report: dict[str, Any]
    results: list[StageResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.report["verdict"])

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when a stage failed (even if forced past it)."""
        return 1 if self.verdict is Verdict.FAIL else 0


def plan(stage: str | None) -> tuple[list[str], str]:
    """The stages to take part in the run and the one asked for (the last of them)."""
    names = stage_names()
    if stage is None:
        return names, names[-1]
    if stage not in names:
        raise ValueError(f"unknown stage {stage!r}; stages, in order: {', '.join(names)}")
    return names[: names.index(stage) + 1], stage


@dataclass
class Progress:
    """How far a run got, for the message when a backend fails mid-run: stages recorded (reused or finished, with
    their MLflow runs) and the stage that was running."""

    target: str = ""  # the stage the run was asked for (the last it runs)
    running: tuple[str, str] | None = None  # (stage, its MLflow run id)
    results: dict[str, StageResult] = field(default_factory=dict)  # the recorded stages' results, in order
    reused: list[str] = field(default_factory=list)  # the recorded stages reused from MLflow (not run now)
    parent_run_id: str | None = None  # the flow's MLflow parent run, once open

    @property
    def recorded(self) -> list[tuple[str, str | None]]:
        """``(stage, MLflow run id)`` of each recorded stage (reused or finished), in order."""
        return [(name, result.run_id) for name, result in self.results.items()]

    def message(self, what: str, detail: str, cmd: str = "flows run recipe") -> str:
        """One line: what failed, what is recorded, what is not, how to resume."""
        done = ", ".join(f"{n} (run {r})" for n, r in self.recorded) or "no stage"
        text = f"{what} failed"
        if self.running:
            name, run_id = self.running
            text += (
                f" during stage {name} ({detail}). Recorded in MLflow: {done}. Stage {name} did not finish and is "
                f"not recorded as passing: its run {run_id} carries no verdict and ends FAILED (or, when the store "
                f"cannot be reached now, is ended KILLED by the next run on it)"
            )
        elif self.target in {n for n, _ in self.recorded}:  # it failed after the last stage: nothing to redo
            return (
                f"{text} ({detail}) after every stage had finished. Recorded in MLflow: {done}; `{cmd} --stage "
                f"{self.target}` reuses them"
            )
        else:
            text += f" ({detail}). Recorded in MLflow: {done}"
        resume = self.running[0] if self.running else self.target
        return (
            f"{text}. When it is back, `{cmd} --stage {self.target}` reuses the recorded stages and resumes at {resume}"
        )


LAST_PROGRESS: Progress | None = None  # the latest run of this process, for the CLI's message after a failure

# Who hears how the run goes (the CLI's live view, flows/live.py): each is called as ``listener(event, info)``
# with the events "run_start" (stages, budget_s: None without budget.minutes), "stage_start" (stage, index,
# total, runs: the runs the stage plans, None when unknown; run_id: its MLflow run), "run_done" (a training run of the current stage
# ended, in this process), "stage_end" (stage, index, total, verdict, seconds, line: the one-line verdict),
# "stage_reused" (stage, index, total, line) and "run_end" (verdict). A listener that raises is logged and
# dropped: it must not stop a run.
LISTENERS: list[Callable[[str, dict[str, Any]], None]] = []


def emit(event: str, **info: Any) -> None:
    """Tell every :data:`LISTENERS` entry about ``event``."""
    for listener in list(LISTENERS):
        try:
            listener(event, info)
        except Exception:  # a display must never end a training run
            log.exception("live view listener failed on %s; removed", event)
            LISTENERS.remove(listener)


def verdict_line(result: StageResult) -> str:
    """One line for a finished stage: its verdict and the names of the checks that failed and warned, with the
    count that passed ("stage overfit: WARN (warn: train_target, curves_lr_too_low; 12 passed)"; WARN checks of a
    stage that still PASSes are "advisory warn") and, when some
    could not judge (their observation starts "not judged"), that count apart ("14 passed, 2 not judged"). What each
    observed is in the stage's table of the summary and its MLflow run: a new user's plain log had each stage's
    warnings in full here, then again in the summary."""
    names = {v: [c.name for c in result.checks if c.verdict is v] for v in (Verdict.FAIL, Verdict.WARN)}
    # a check that could not judge (a curve too short, an audit that could not run) passes without evidence
    unjudged = sum(c.verdict is Verdict.PASS and str(c.observed).startswith("not judged") for c in result.checks)
    passed = sum(c.verdict is Verdict.PASS for c in result.checks) - unjudged
    head = f"stage {result.stage}: {result.verdict.value.upper()}"
    # a stage that PASSes with WARN checks judged them advisory (its own rule): say so, or the line reads like a
    # contradiction beside a WARN stage's (a new user's trial)
    label = {Verdict.FAIL: "fail", Verdict.WARN: "advisory warn" if result.verdict is Verdict.PASS else "warn"}
    parts = [f"{label[v]}: {', '.join(n)}" for v, n in names.items() if n]
    counted = f"{passed} {'check' if passed == 1 else 'checks'} passed" if not parts else f"{passed} passed"
    counted += f", {unjudged} not judged" if unjudged else ""
    return head + f" ({'; '.join([*parts, counted])})"


def planned_runs(stage: str, cfg: RecipeConfig) -> int | None:
    """The training runs ``stage`` plans under ``cfg`` (recipe.budget.SIZED), None for a stage not sized there."""
    from recipe import budget as budgeting

    if stage not in budgeting.SIZED:
        return None
    return budgeting.SIZED[stage].runs(budgeting.current_sizes(stage, cfg))


def run_recipe(
    cfg: RecipeConfig,
    *,
    stage: str | None = None,
    force: bool = False,
    flow_run_id: str | None = None,
    execute: Execute = _direct,
    say: Callable[[str], None] = print,
    map_trials: TrialMap | None = None,
    fresh: bool = False,
    on_reuse: Callable[[str, StageResult], None] | None = None,
    rerun_from: str | None = None,
) -> Outcome:
    """Run the stages (see the module docstring). ``map_trials`` runs a stage's independent trials (the tune
    stage's); default: one after another in this process. ``fresh``: reuse nothing. ``rerun_from``: a stage name;
    reuse only the up-to-date stages before it and rerun it and every stage after it (what resumes an interrupted
    ``fresh`` run without reusing older runs of its later stages). ``on_reuse(name, result)`` is
    called for each stage reused from MLflow (the Prefect flow shows it as a completed task).

    Raises:
        recipe.tracking.BackendFailure: a backend (the MLflow store or its artifact storage, the Prefect API, the
            tune study's storage) failed mid-run (:func:`recipe.tracking.backend_failure`); the message says what
            failed, which stages are recorded, that the interrupted one is not recorded as passing, and how to
            resume. Other exceptions (bugs, bad input) propagate as they are.
    """
    global LAST_PROGRESS
    progress = LAST_PROGRESS = Progress(target=plan(stage)[1])
    try:
        return _run_recipe(
            cfg, stage, force, flow_run_id, execute, say, map_trials, progress, fresh, on_reuse, rerun_from
        )
    except Exception as e:
        failed = tracking.backend_failure(e)
        if failed is None or isinstance(e, tracking.BackendFailure):
            raise
        raise tracking.BackendFailure(progress.message(*failed)) from e


def _run_recipe(
    cfg: RecipeConfig,
    stage: str | None,
    force: bool,
    flow_run_id: str | None,
    execute: Execute,
    say: Callable[[str], None],
    map_trials: TrialMap | None,
    progress: Progress,
    fresh: bool,
    on_reuse: Callable[[str, StageResult], None] | None,
    rerun_from: str | None = None,
) -> Outcome:
    from recipe import budget as budgeting
    from recipe.data import build_manifest
    from recipe.reuse import code_version, stage_key, uncovered_settings

    budget = budgeting.Budget(cfg.budget.minutes * 60) if cfg.budget.minutes else None
    stage_plans: list[budgeting.StagePlan] = []
    names, target = plan(stage)
    emit("run_start", stages=list(names), budget_s=budget.total_s if budget else None)
    tracking.setup(cfg.name)
    manifest = build_manifest(cfg)
    fingerprint = manifest.fingerprint
    code = code_version()
    order = stage_names()
    keys = {name: stage_key(cfg, name, fingerprint, code, order) for name in names}
    results: dict[str, StageResult] = {}
    messages: list[str] = []

    def note(msg: str) -> None:
        messages.append(msg)
        say(msg)

    # Up-to-date stages come from MLflow: the longest prefix whose passing runs have this config, data and code.
    to_run = list(names)
    replayed_plan: dict[str, Any] | None = None  # a budgeted run's recorded plan whose runs this run reuses
    # the sized stages reused at a recorded plan's sizes when not every stage left is (that plan's run stopped
    # before the rest, or --rerun-from): their plans, kept in this run's plan (`--plan` replays the whole run),
    # whose overrides the later stages' reuse keys cover
    reused_plans: list[budgeting.StagePlan] = []

    def reuse(name: str, found: StageResult, how: str = "") -> None:
        results[name] = found
        progress.results[name] = found
        progress.reused.append(name)
        to_run.remove(name)
        note(
            f"stage {name}: up to date, reused run {found.run_id} ({found.verdict.value}; the same settings for "
            f"this stage, data {fingerprint} and code {code}: its tag {tracking.TAG_REUSE_KEY} {keys[name][:12]}...{how})"
        )
        if on_reuse is not None:
            on_reuse(name, found)
        emit(
            "stage_reused",
            stage=name,
            index=names.index(name) + 1,
            total=len(names),
            line=f"{verdict_line(found)} -- up to date, reused run {found.run_id}",
        )

    if fresh:
        note(f"--fresh: running every stage ({', '.join(names)}), reusing none")
    else:
        for name in names:
            if name == rerun_from:
                note(_rerun_from_note(name))
                break
            if budget is not None and name in budgeting.SIZED:
                # Its sizes come from a warm-up not yet run; the last budgeted run with these settings and data
                # recorded the sizes it chose (its plan, logged as each stage ends, so a run stopped by Ctrl-C or a
                # FAIL has one for the stages it finished): the stages left that have a passing run at those sizes
                # (their reuse keys cover the sizes), in order, are reused as `--plan` would reuse them; the ones
                # after them are sized by this run's warm-ups.
                rest = names[names.index(name) :]
                upto = rest[: rest.index(rerun_from)] if rerun_from in rest else rest  # --rerun-from reuses none after
                doc = tracking.latest_budget_plan(cfg.name, cfg.config_hash(), fingerprint, cfg.budget.minutes)
                found_rest: dict[str, StageResult] = {}
                if doc is not None:
                    sized_cfg = budgeting.replay(cfg, doc["overrides"])
                    for n in upto:
                        hit = tracking.find_passing_stage(
                            cfg.name, n, stage_key(sized_cfg, n, fingerprint, code, order)
                        )
                        if hit is None:
                            break
                        found_rest[n] = hit
                if doc is not None and len(found_rest) == len(rest):
                    replayed_plan = doc  # every stage left: the plan is this run's too
                for n, hit in found_rest.items():
                    reuse(n, hit, how="; at the sizes of the last budgeted run's plan")
                    reused_plans.extend(budgeting.StagePlan(**p) for p in doc["stages"] if p.get("stage") == n)
                if len(found_rest) == len(rest):
                    break
                if len(found_rest) == len(upto):
                    note(_rerun_from_note(rerun_from))
                else:
                    note(
                        f"budget.minutes={cfg.budget.minutes:g}: stage {rest[len(found_rest)]} and those after it are "
                        f"sized by this run's warm-ups{'' if found_rest else ', so none is reused'} (the last budgeted "
                        "run with these settings and data did not finish them; `--plan FILE` replays a recorded plan "
                        "and reuses its runs)"
                    )
                break
            found = tracking.find_passing_stage(cfg.name, name, keys[name])
            if found is None:
                if to_run:
                    note(
                        f"no passing run in MLflow for {', '.join(to_run)} with this config, data and code: running "
                        f"{'it' if len(to_run) == 1 else 'them'}"
                    )
                break
            reuse(name, found)

    executed: list[StageResult] = []
    tags = tracking.run_tags(cfg, fingerprint, stage=target if stage else "all", kind="flow", flow_run_id=flow_run_id)
    if force:
        tags[tracking.TAG_FORCED] = "true"
    # The flow run's scratch space (checkpoints, downloads) is removed when the run ends, however it ends: the
    # checkpoints that matter are MLflow artifacts by then, and a long-lived worker must not fill its disk.
    with (
        tempfile.TemporaryDirectory(prefix="recipe-") as scratch,
        tracking.start_run(f"{cfg.name}:{target if stage else 'recipe'}", tags, params=cfg.flat()) as parent,
    ):
        workdir = Path(scratch)
        cache = _DataCache()
        parent_id = progress.parent_run_id = parent.info.run_id
        current = cfg
        if results:  # the last reused stage's handed-on config, with what its key does not cover as it is now
            last = list(results)[-1]
            current = results[last].config.with_overrides(uncovered_settings(cfg, last, order))
        forced_past: list[str] = []
        stopped_at: str | None = None
        # the input config with the sizes the budget chose so far: what the reuse keys cover
        reused_sizes = {k: v for p in reused_plans for k, v in p.overrides.items()}
        sized_input = cfg.with_overrides(reused_sizes) if reused_sizes else cfg
        if replayed_plan is None:
            stage_plans[:0] = reused_plans
        floor_told = False  # the first warm-up says whether the budget fits the smallest plan at all
        for k, name in enumerate(to_run):
            fn = STAGES[name].run
            stage_plan = None
            deadline = None
            fixed_left = 0.0
            if budget is not None:
                started = budget.elapsed()  # the warm-up is the stage's time
                share = budget.share(name, to_run[k:])
                if name in budgeting.SIZED:
                    fit = budgeting.fit_for(last=k == len(to_run) - 1)
                    stage_plan, cost, fixed = _size(name, current, share, cache, budgeting, fit)
                    # the classical fit is done (kept for the stage): what is left is the rest at the chosen sizes
                    fixed_left = fixed.seconds(stage_plan.sizes) - fixed.classical_s
                    if not floor_told:
                        floor_told = True
                        too_small = budgeting.floor_warning(
                            cfg.budget.minutes, budget.elapsed(), to_run[k:], current, cost, name
                        )
                        if too_small:
                            log.warning("%s", too_small)
                            note(f"warning: {too_small}")
                    current = current.with_overrides(stage_plan.overrides)
                    sized_input = sized_input.with_overrides(stage_plan.overrides)
                    keys[name] = stage_key(sized_input, name, fingerprint, code, order)
                    fn = _with_budget_check(fn, stage_plan, name)
                    # the stage's runs should end within the fit of its share, counted from before its warm-up
                    deadline = time.time() + fit * share - (budget.elapsed() - started)
                else:
                    stage_plan = budgeting.StagePlan(name, share, note="not sized: it trains no runs of its own size")
                stage_plans.append(stage_plan)
            ctx = StageContext(
                cfg=current,
                input_cfg=cfg,
                results=dict(results),
                workdir=workdir / name,
                map=map_trials or map_in_process,
                fresh=fresh,
                deadline=deadline,
                fixed_s=fixed_left,
            )
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            cache.attach(ctx)
            stage_tags = tracking.run_tags(cfg, fingerprint, stage=name, kind="stage", flow_run_id=flow_run_id)
            stage_tags[tracking.TAG_REUSE_KEY] = keys[name]
            if forced_past:
                stage_tags[tracking.TAG_FORCED] = "true"
            index = names.index(name) + 1
            planned_sizes = dict(stage_plan.sizes) if stage_plan is not None else {}
            stage_start = time.perf_counter()
            with tracking.start_run(
                name, stage_tags, params=current.flat(), nested=True, system_metrics=tracking.system_metrics_enabled()
            ) as child:
                progress.running = (name, child.info.run_id)  # from here an interrupt names this stage
                note(f"stage {name}: started (MLflow run {child.info.run_id})")
                emit(
                    "stage_start",
                    stage=name,
                    index=index,
                    total=len(names),
                    runs=planned_runs(name, current),
                    run_id=child.info.run_id,
                )
                tracking.log_splits(manifest, cfg.name)  # the runs table shows and filters the data it saw
                result = execute(name, fn, ctx)
                result.run_id = child.info.run_id
                if stage_plan is not None and stage_plan.sizes and stage_plan.sizes != planned_sizes:
                    # the deadline stopped the stage early: its key is that of the runs it did (a replay's)
                    sized_input = sized_input.with_overrides(stage_plan.overrides)
                    keys[name] = stage_key(sized_input, name, fingerprint, code, order)
                    tracking.set_tags({tracking.TAG_REUSE_KEY: keys[name]})
                tracking.log_stage_result(result)
                log_verdict(result)
                if result.verdict is Verdict.FAIL:
                    tracking.end_run(failed=True)
            cache.keep(ctx)
            emit(
                "stage_end",
                stage=name,
                index=index,
                total=len(names),
                verdict=result.verdict.value,
                seconds=time.perf_counter() - stage_start,
                line=verdict_line(result),
            )
            if stage_plan is not None:
                stage_plan.used_s = budget.elapsed() - started
            results[name] = result
            executed.append(result)
            progress.results[name] = result
            progress.running = None
            if budget is not None and stage_plans:
                # the plan so far, on the parent run as each stage ends: a run stopped later (Ctrl-C, a FAIL, kill)
                # leaves the sizes of the stages it finished, which the next run reuses (above)
                tracking.log_dict(
                    budgeting.plan_document(cfg.budget.minutes, stage_plans, elapsed_s=budget.elapsed()),
                    budgeting.PLAN_FILE,
                )
            current = result.config
            if result.verdict is Verdict.FAIL:
                if not force:
                    stopped_at = name
                    break
                forced_past.append(name)
                note(f"stage {name} failed; carrying on because of --force")
        report = report_dict(cfg.name, [results[n] for n in names if n in results], parent_id, forced=force)
        report["reused"] = [n for n in names if n in results and n not in to_run]
        if stopped_at:
            report["stopped_at"] = stopped_at
            report["skipped"] = [n for n in names if n not in results]
        if budget is not None:  # every sized stage reused at a recorded plan's sizes: that plan stays this run's
            doc = replayed_plan or budgeting.plan_document(cfg.budget.minutes, stage_plans, elapsed_s=budget.elapsed())
            tracking.log_dict(doc, budgeting.PLAN_FILE)
            tracking.log_params(budgeting.plan_params(doc))
            report["budget"] = {"minutes": cfg.budget.minutes, "elapsed_s": round(budget.elapsed(), 1)}
        tracking.set_tags({tracking.TAG_VERDICT: report["verdict"]})
        tracking.log_dict(report, "report.json")
        emit("run_end", verdict=report["verdict"])
        if report["verdict"] == Verdict.FAIL.value:
            tracking.end_run(failed=True)
    return Outcome(report=report, results=executed, messages=messages)


def log_verdict(result: StageResult, logger: logging.Logger = log) -> None:
    """Log a stage's verdict and each check (verdict, observed against expected) at INFO, and the advice of each
    check that did not pass at WARNING: what a deployment run's log says without the CLI's summary table."""
    logger.info("stage %s: %s (MLflow run %s)", result.stage, result.verdict.value.upper(), result.run_id)
    for c in result.checks:
        logger.info(
            "stage %s: %s %s: observed %s, expected %s",
            result.stage,
            c.verdict.value.upper(),
            c.name,
            c.observed,
            c.expected,
        )
        if c.verdict is not Verdict.PASS:
            logger.warning(  # the hypothesis labelled as the terminal labels it: the observed text contradicts it
                "stage %s: %s %s: hypothesis (not confirmed): %s; observed: %s -- what to do: %s",
                result.stage,
                c.verdict.value.upper(),
                c.name,
                c.hypothesis,
                c.observed,
                c.advice or "see the stage's MLflow run",
            )


def _rerun_from_note(stage: str) -> str:
    """What a run says when ``--rerun-from stage`` stops its reuse there."""
    return f"--rerun-from {stage}: running {stage} and every stage after it, reusing none of them"


def _size(
    name: str, cfg: RecipeConfig, share: float, cache: _DataCache, budgeting: Any, fit: float
) -> tuple[Any, Any, Any]:
    """Warm up ``name``'s handed-on model on the run's data, time its work outside the runs
    (:func:`recipe.budget.fixed_work`) and size the stage to ``fit`` of ``share`` seconds
    (:func:`recipe.budget.size_stage`, :func:`recipe.budget.fit_for`); returns (the stage's plan, the measured
    StepCost, the FixedWork)."""
    data = cache.data_for(cfg)
    cost = budgeting.warm_up(cfg, data)
    fixed = budgeting.fixed_work(name, cfg, cost, data)
    stage_plan = budgeting.size_stage(name, cfg, cost, share, fixed, fit)
    log.info("stage %s: budget %s", name, stage_plan.note)
    return stage_plan, cost, fixed


def _with_budget_check(fn: Callable[[StageContext], StageResult], stage_plan: Any, name: str) -> Callable:
    """``fn`` with the budget's check (what it cut, or a WARN with the time its minimum needs; a search its
    deadline stopped, :func:`recipe.budget.record_stop`) added to its result, the verdict updated."""
    from recipe import budget as budgeting

    def run(ctx: StageContext) -> StageResult:
        result = fn(ctx)
        budgeting.record_stop(stage_plan, name, result.metrics)
        check = stage_plan.check()
        result.checks.append(check)
        result.verdict = Verdict.worst([result.verdict, check.verdict])
        result.notes.append(f"budget: {stage_plan.note}")
        return result

    return run


class _DataCache:
    """Share the manifest and loaded data between stages while their data config is unchanged."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._manifest = self._data = None

    def attach(self, ctx: StageContext) -> None:
        if self._key == ctx.cfg.data.model_dump_json():
            ctx._manifest, ctx._data = self._manifest, self._data

    def data_for(self, cfg: RecipeConfig) -> Any:
        """The data of ``cfg``'s data section: the kept one, or loaded now and kept (the next stage's context
        gets it)."""
        key = cfg.data.model_dump_json()
        if self._key != key or self._data is None:
            from recipe.data import load_data

            self._key, self._data = key, load_data(cfg)
            self._manifest = self._data.manifest
        return self._data

    def keep(self, ctx: StageContext) -> None:
        self._key = ctx.cfg.data.model_dump_json()
        self._manifest, self._data = ctx._manifest, ctx._data
