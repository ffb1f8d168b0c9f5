"""The ``recipe`` Prefect flow: one task per stage, each a thin wrapper over ``recipe.stages.<name>.run``.

The stages, in order: inspect, baselines, overfit, regularize, tune. The tune stage's trials are Prefect tasks
too (one per trial, ``flows/trials.py``): in this thread by default, on a local process pool with
``stages.tune.parallel=k``, on an existing Dask cluster with ``stages.tune.dask_address=tcp://HOST:PORT``.

The control flow (order, gates, reuse of earlier results from MLflow, tracking) lives in
``recipe.pipeline`` so it is testable without Prefect; this module only makes each stage a
Prefect task and the whole a flow whose parameters (a pydantic RecipeConfig) the Prefect UI
renders as a form.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.utilities.annotations import quote

from flows.trials import trial_map_for
from recipe.config import ConfigError, RecipeConfig, load_config
from recipe.data import DataError
from recipe.pipeline import run_recipe
from recipe.preflight import (
    ALLOWED_MODULES_ENV,
    PreflightError,
    allowed_model_modules,
    check_model_imports_allowed,
)
from recipe.stages import stage_names


def _stage_task(name: str):
    # No caching: a stage's inputs hold tensors and DataFrames, and its results live in MLflow, not Prefect.
    # No retries: stages are deterministic computations; retrying a failed check would only repeat it.
    @task(name=f"stage-{name}", cache_policy=NO_CACHE, persist_result=False)
    def run_stage(fn, ctx):
        return fn(ctx)

    return run_stage


USER_ERRORS = (ConfigError, DataError, FileNotFoundError, PreflightError)


def _from_deployment() -> bool:
    """Whether this flow run was created from a deployment (a schedule, the UI's "Custom run" form, the API)."""
    from prefect.runtime import deployment

    return deployment.id is not None


def _operator_allowed_model_modules() -> list[str]:
    """The worker's ``RECIPE_ALLOWED_MODEL_MODULES``, for a flow run from a deployment.

    The process worker copies a flow run's own job variables' ``env`` into the flow run's environment, and the
    "Custom run" form (or the API) that submits the config submits those too: a submitter could set the
    allow-list the guard reads. So a flow run whose own job variables set it is refused (the deployment's job
    variables, written by the operator in deploy/prefect.yaml, are not the flow run's own).

    Raises:
        PreflightError: the flow run's job variables set ``RECIPE_ALLOWED_MODEL_MODULES``.
    """
    env = (flow_run.job_variables or {}).get("env") or {}
    if isinstance(env, dict) and ALLOWED_MODULES_ENV in env:
        raise PreflightError(
            f"this flow run's job variables set {ALLOWED_MODULES_ENV}, which only the operator may set (in the "
            f"worker's environment); submit the run without it"
        )
    return allowed_model_modules()


STAGE_TASKS = {name: _stage_task(name) for name in stage_names()}
LAST_FLOW_RUN_ID: str | None = None  # the latest flow run of this process, for the CLI's interrupt report


def _execute(name, fn, ctx):
    if name not in STAGE_TASKS:  # a stage registered after import (plugins, tests)
        STAGE_TASKS[name] = _stage_task(name)
    # quote(): Prefect must not walk the context (tensors, DataFrames) looking for futures.
    return STAGE_TASKS[name](quote(fn), quote(ctx))


@flow(name="recipe", validate_parameters=True)
def recipe(
    config: RecipeConfig | None = None,
    preset: str = "digits",
    stage: str | None = None,
    force: bool = False,
):
    """Run the training recipe: every stage in order (or up to ``stage``), each gated on the one before.

    Args:
        config: the whole RecipeConfig; when absent, ``preset`` is loaded.
        preset: a shipped preset name, used when ``config`` is absent. Default "digits".
        stage: run up to this stage, reusing earlier passing results from MLflow. Default: all stages.
        force: carry on past a failed stage (the runs are tagged as forced). Default False.
    """
    global LAST_FLOW_RUN_ID
    LAST_FLOW_RUN_ID = str(flow_run.id)
    cfg = config or load_config(preset=preset)
    logger = get_run_logger()
    try:
        if _from_deployment():  # the config came from a form or an API call, not the worker's own command line
            check_model_imports_allowed(cfg, _operator_allowed_model_modules())
        with trial_map_for(cfg) as map_trials:  # the tune stage's trials: one Prefect task each (flows/trials.py)
            outcome = run_recipe(
                cfg,
                stage=stage,
                force=force,
                flow_run_id=str(flow_run.id),
                execute=_execute,
                say=logger.info,
                map_trials=map_trials,
            )
    except USER_ERRORS as e:
        # Bad input, not a bug: end Failed with the message (no traceback), which the CLI prints as is.
        logger.error(str(e))
        return Failed(message=str(e), data={"error": str(e), "error_type": type(e).__name__})
    verdict = outcome.report["verdict"]
    if outcome.exit_code and not force:
        failed = outcome.report.get("stopped_at", "?")
        return Failed(message=f"stage {failed} failed its checks", data=outcome.report)
    return Completed(message=f"recipe {cfg.name}: {verdict}", data=outcome.report)
