"""The ``recipe`` Prefect flow: one task per stage, each a thin wrapper over ``recipe.stages.<name>.run``.

The stages, in order: inspect, baselines, overfit, regularize, tune. The tune stage's trials are Prefect tasks
too (one per trial, ``flows/trials.py``): in this thread by default, on a local process pool with
``stages.tune.parallel=k``, on an existing Dask cluster with ``stages.tune.dask_address=tcp://HOST:PORT``.

The control flow (order, gates, reuse of earlier results from MLflow, tracking) lives in
``recipe.pipeline`` so it is testable without Prefect; this module only makes each stage a
Prefect task and the whole a flow whose parameters (a pydantic RecipeConfig) the Prefect UI
renders as a form.
"""

# No `from __future__ import annotations`: the flow's signature must hold real types, not strings. Prefect builds
# its parameter model from it, and in a deployment's flow-run process the strings were left unresolved
# ("RecipeModel is not fully defined"), so every run given a `config` from a form or the API failed validation.
import contextlib
import signal
import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows.artifacts import flow_run_name, forward_recipe_logs, publish_stage, publish_summary, reused_stage
from flows.notify import emit_verdict
from flows.signals import store_calls_deferred
from flows.trials import trial_map_for
from recipe.config import ConfigError, RecipeConfig, load_config
from recipe.data import DataError
from recipe.pipeline import run_recipe
from recipe.policy import PolicyError, check_job_variables, check_untrusted_config, untrusted_run
from recipe.preflight import PreflightError
from recipe.secrets import redact_text
from recipe.stages import stage_names


def _stage_task(name: str):
    # No caching: a stage's inputs hold tensors and DataFrames, and its results live in MLflow, not Prefect.
    # No retries: stages are deterministic computations; retrying a failed check would only repeat it.
    @task(name=f"stage-{name}", cache_policy=NO_CACHE, persist_result=False)
    def run_stage(fn, ctx):
        result = fn(ctx)
        run_id = _active_mlflow_run()
        publish_stage(ctx.input_cfg.name, result, run_id)  # the checks table, the MLflow run
        emit_verdict(ctx.input_cfg.name, result, run_id)  # recipe.stage.verdict: a FAIL notifies (flows/notify.py)
        return result

    return run_stage


def _active_mlflow_run() -> str | None:
    from recipe.tracking import active_run_id

    return active_run_id()


USER_ERRORS = (ConfigError, DataError, FileNotFoundError, PreflightError, PolicyError)
EXIT_BAD_INPUT = 2


def _from_deployment() -> bool:
    """Whether this flow run was created from a deployment (a schedule, the UI's "Custom run" form, the API)."""
    from prefect.runtime import deployment

    return deployment.id is not None


STAGE_TASKS = {name: _stage_task(name) for name in stage_names()}
LAST_FLOW_RUN_ID: str | None = None  # the latest flow run of this process, for the CLI's interrupt report


def _execute(name, fn, ctx):
    if name not in STAGE_TASKS:  # a stage registered after import (plugins, tests)
        STAGE_TASKS[name] = _stage_task(name)
    # quote(): Prefect must not walk the context (tensors, DataFrames) looking for futures.
    return STAGE_TASKS[name](quote(fn), quote(ctx))


@flow(name="recipe", validate_parameters=True, flow_run_name=flow_run_name)
def recipe(
    config: RecipeConfig | None = None,
    preset: str = "digits",
    stage: str | None = None,
    force: bool = False,
    fresh: bool = False,
    rerun_from: str | None = None,
):
    """Run the training recipe: every stage in order (or up to ``stage``), each gated on the one before.

    Args:
        config: the whole RecipeConfig; when absent, ``preset`` is loaded.
        preset: a shipped preset name, used when ``config`` is absent. Default "digits".
        stage: run up to this stage. Default: all stages. Either way every stage whose passing run in MLflow has
            the same config, data and code is reused.
        force: carry on past a failed stage (the runs are tagged as forced). Default False.
        fresh: rerun every stage, reusing nothing. Default False.
        rerun_from: a stage name: reuse only the up-to-date stages before it, rerun it and those after it.
            Default None (reuse every up-to-date stage).
    """
    global LAST_FLOW_RUN_ID
    LAST_FLOW_RUN_ID = str(flow_run.id)
    logger = get_run_logger()
    # A deployment's parameters (a form, an API call) are untrusted: every import, address and path they reach
    # goes through recipe.policy, here at the start and again where each is used (trial processes inherit the mark).
    guard = untrusted_run() if _from_deployment() else contextlib.nullcontext()
    seconds: dict[str, float] = {}

    def execute(name, fn, ctx):
        start = time.perf_counter()
        try:
            return _execute(name, fn, ctx)
        finally:
            seconds[name] = time.perf_counter() - start

    try:
        # Prefect's SIGTERM handler raises at once, wherever the flow is: not inside a store write (flows.signals)
        with guard, store_calls_deferred(signal.SIGTERM):
            if _from_deployment():
                check_job_variables(flow_run.job_variables)
            cfg = config or load_config(preset=preset)
            if _from_deployment():
                check_untrusted_config(cfg)
            with (
                forward_recipe_logs(),  # the recipe package's records (verdicts, advice, trials) to this run's log
                trial_map_for(cfg) as map_trials,  # the tune stage's trials: one Prefect task each (flows/trials.py)
            ):
                outcome = run_recipe(
                    cfg,
                    stage=stage,
                    force=force,
                    flow_run_id=str(flow_run.id),
                    execute=execute,
                    say=logger.info,
                    map_trials=map_trials,
                    fresh=fresh,
                    rerun_from=rerun_from,
                    on_reuse=lambda name, found: reused_stage(cfg.name, name, quote(found), return_state=True),
                )
    except USER_ERRORS as e:
        # Bad input, not a bug: end Failed with the message (no traceback), which the CLI prints as is; a
        # deployment run has no exit code of its own, so the state says the one `flows run` would have used.
        text = redact_text(str(e))
        logger.error(text)
        return Failed(
            message=f"bad input (exit code {EXIT_BAD_INPUT}): {text}",
            data={"error": text, "error_type": type(e).__name__, "exit_code": EXIT_BAD_INPUT},
        )
    verdict = outcome.report["verdict"]
    publish_summary(outcome.report, seconds)
    if outcome.exit_code and not force:
        failed = outcome.report.get("stopped_at", "?")
        return Failed(message=f"stage {failed} failed its checks", data=outcome.report)
    return Completed(message=f"recipe {cfg.name}: {verdict}", data=outcome.report)
