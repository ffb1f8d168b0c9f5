"""deploy/prefect.yaml against a real Prefect server: `flows deploy`, a process worker, `flows serve`.

One server for the module. The worker hands MLFLOW_TRACKING_URI (a private sqlite store) and RECIPE_DATA_DIR
to the flow-run process through its own environment, as deploy/stack.sh's worker does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.deployments import REPO_ROOT, deployment_spec
from recipe import tracking
from tests.ops.conftest import BIN, Proc, copy_mlflow_store, first_stage, run_cli, wait_flow_run

pytestmark = [pytest.mark.ops, pytest.mark.timeout(420)]
SPEC = deployment_spec()  # the file's first deployment: recipe/nightly


@pytest.fixture(scope="module")
def deployed(prefect_server) -> dict[str, str]:
    done = run_cli([str(BIN / "flows"), "deploy"], env=prefect_server, timeout=180, cwd=Path("/"))
    assert f"work pool {SPEC.work_pool!r}: created" in done.stdout  # the fresh server had no pool: flows deploy made it
    return prefect_server


@pytest.fixture(scope="module")
def worker(deployed, ops_tmp, _mlflow_template):
    """A process worker on the deployment's pool; yields (proc, the MLflow URI its flow runs write to)."""
    uri = copy_mlflow_store(_mlflow_template, ops_tmp / "mlruns")
    env = {
        **deployed,
        "MLFLOW_TRACKING_URI": uri,
        "RECIPE_FLOWS_HOME": str(REPO_ROOT),
        "PREFECT_HOME": str(ops_tmp / "prefect-worker"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    # RECIPE_DATA_DIR: tests/conftest.py's session folder (temporary), inherited through `deployed`'s environment
    assert env.get("RECIPE_DATA_DIR")
    proc = Proc(
        "worker",
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            SPEC.work_pool,
            "--type",
            "process",
            "--name",
            "ops-test-worker",
            "--install-policy",
            "never",
        ],
        env,
        ops_tmp / "logs" / "worker.log",
        cwd=ops_tmp,
    )
    try:
        yield proc, uri
    finally:
        # 5 s of grace, not 20: SIGTERM makes a Prefect worker wait for its flow-run processes, and a refused run's
        # process can still be exiting (teardowns of 22 s measured); nothing is asserted about the worker's exit
        proc.stop(timeout=5)


def test_the_deployment_carries_the_files_schedule_parameters_and_pool(deployed):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(deployed["PREFECT_API_URL"]) as client:
        dep = client.read_deployment_by_name(f"recipe/{SPEC.name}")
    assert dep.work_pool_name == SPEC.work_pool
    assert dep.parameters == SPEC.parameters
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in dep.schedules] == [
        (s["cron"], s.get("timezone"), s.get("active", True)) for s in SPEC.schedules
    ]
    assert dep.entrypoint == SPEC.entrypoint
    assert dep.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $RECIPE_FLOWS_HOME }}"}}
    ]  # resolved on the worker, at run time


def test_a_triggered_run_completes_on_the_worker_and_lands_in_mlflow(worker, deployed):
    from prefect.client.orchestration import SyncPrefectClient

    proc, uri = worker
    stage = first_stage()
    with SyncPrefectClient(deployed["PREFECT_API_URL"]) as client:
        dep = client.read_deployment_by_name(f"recipe/{SPEC.name}")
        flow_run = client.create_flow_run_from_deployment(dep.id, parameters={"stage": stage})
    assert flow_run.parameters == {**SPEC.parameters, "stage": stage}
    wait_flow_run(deployed["PREFECT_API_URL"], flow_run.id, timeout=240, logs=[proc])

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(SPEC.parameters.get("preset", "digits"))
    assert exp is not None, "the flow run wrote nowhere the worker's MLFLOW_TRACKING_URI points"
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_FLOW_RUN}` = '{flow_run.id}'")
    by_kind = {r.data.tags[tracking.TAG_KIND]: r for r in runs}
    assert sorted(by_kind) == ["flow", "stage"], [r.data.tags for r in runs]
    parent, child = by_kind["flow"], by_kind["stage"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags[tracking.TAG_STAGE] == stage
    for run in (parent, child):
        tags = run.data.tags
        assert tags[tracking.TAG_VERDICT] in {"pass", "warn"}, tags
        assert tags[tracking.TAG_CONFIG_HASH] and tags[tracking.TAG_FINGERPRINT]
        assert run.info.status == "FINISHED"


def test_flows_serve_registers_the_same_schedule_and_parameters(deployed, ops_tmp):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import ObjectNotFound

    name = "ops-serve"
    proc = Proc(
        "serve", [str(BIN / "flows"), "serve", "--as", name], deployed, ops_tmp / "logs" / "serve.log", cwd=ops_tmp
    )
    try:
        with SyncPrefectClient(deployed["PREFECT_API_URL"]) as client:

            def registered():
                try:
                    return client.read_deployment_by_name(f"recipe/{name}")
                except ObjectNotFound:
                    return None

            proc.wait_until(registered, 120, "deployment recipe/ops-serve")
            dep = registered()
    finally:
        proc.stop()
    assert dep.work_pool_name is None  # served by the process itself
    assert dep.parameters == SPEC.parameters
    assert [(s.schedule.cron, s.schedule.timezone) for s in dep.schedules] == [
        (s["cron"], s.get("timezone")) for s in SPEC.schedules
    ]
    assert dep.entrypoint == "flows.recipe_flow.recipe"  # by module, like the deployment


def test_flows_deploy_without_a_server_says_how_to_get_one(tmp_path):
    from tests.ops.conftest import clean_env

    # run_cli's timeout only guards against a hang; bench/cli_startup.py times this exit against a bare python
    done = run_cli([str(BIN / "flows"), "deploy"], env=clean_env(PREFECT_HOME=str(tmp_path)), timeout=60, check=False)
    assert done.returncode == 2
    assert "PREFECT_API_URL is not set" in done.stderr and "deploy/stack.sh up" in done.stderr


def _final(api_url: str, flow_run_id, timeout: float, logs: list[Proc] = ()):
    """The flow run once its state is final (any final state); fails with the logs when it is not in time."""
    import time

    from prefect.client.orchestration import SyncPrefectClient

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api_url) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(1)
    pytest.fail(f"flow run {flow_run_id} not final after {timeout:.0f} s\n" + "\n".join(p.tail(60) for p in logs))


def test_a_deployment_run_with_a_custom_model_module_is_refused_naming_the_setting(worker, deployed):
    """The "Custom run" form's threat: a config whose model.name imports a module. The module here is importable
    on the worker (the checkout's tests.models.custom_net), and the worker sets no RECIPE_ALLOWED_MODEL_MODULES:
    the flow run ends Failed before any stage, its message naming the setting that would allow it."""
    from prefect.client.orchestration import SyncPrefectClient

    from recipe.config import load_config

    proc, uri = worker
    name = "deploy-guard"
    cfg = load_config(overrides=[f"name={name}", "model.name=tests.models.custom_net:TinyNet"])
    with SyncPrefectClient(deployed["PREFECT_API_URL"]) as client:
        dep = client.read_deployment_by_name(f"recipe/{SPEC.name}")
        flow_run = client.create_flow_run_from_deployment(
            dep.id, parameters={"config": cfg.to_dict(), "stage": first_stage()}
        )
    run = _final(deployed["PREFECT_API_URL"], flow_run.id, timeout=240, logs=[proc])
    assert run.state.is_failed(), f"{run.state.type.value}: {run.state.message}"
    message = run.state.message
    assert "model.name='tests.models.custom_net:TinyNet'" in message, message
    assert "RECIPE_ALLOWED_MODEL_MODULES=tests.models.custom_net" in message, message
    assert "allowed module prefixes: none" in message, message
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name(name) is None  # refused before anything ran


def test_job_variables_of_a_custom_run_cannot_allow_a_model_module(worker, deployed):
    """The same form also takes job variables, whose env the process worker hands to the flow run: a submitter
    setting RECIPE_ALLOWED_MODEL_MODULES there must not get past the operator's (empty) allow-list."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import PrefectHTTPStatusError

    from recipe.config import load_config

    proc, uri = worker
    name = "deploy-guard-env"
    cfg = load_config(overrides=[f"name={name}", "model.name=tests.models.custom_net:TinyNet"])
    with SyncPrefectClient(deployed["PREFECT_API_URL"]) as client:
        dep = client.read_deployment_by_name(f"recipe/{SPEC.name}")
        try:
            flow_run = client.create_flow_run_from_deployment(
                dep.id,
                parameters={"config": cfg.to_dict(), "stage": first_stage()},
                job_variables={"env": {"RECIPE_ALLOWED_MODEL_MODULES": "tests"}},
            )
        except PrefectHTTPStatusError as e:  # the pool's template has no `env` (flows deploy): refused at the door
            assert e.response.status_code == 422, e
            flow_run = None
    if flow_run is not None:  # a pool made another way: the flow itself refuses the run's own `env`
        run = _final(deployed["PREFECT_API_URL"], flow_run.id, timeout=240, logs=[proc])
        assert run.state.is_failed(), f"{run.state.type.value}: {run.state.message}"
        assert "job variable(s) env may not be set" in run.state.message, run.state.message
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name(name) is None
