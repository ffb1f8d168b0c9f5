"""A real served deployment (``flows serve`` on the local Prefect server it starts) against hostile parameters.

Each run is created through the API as a "Custom run" would be and must end Failed as bad input (exit code 2),
naming the setting, before any work: a custom model in the tune space, a foreign Dask scheduler, a job-variable
``command``, a traversal preset, a setting over its resource cap (though the worker's environment lifts the
caps). The same server shows its doors: no API call without the generated auth string, no state change without a
CSRF token, no CORS grant to another origin.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from flows import local_server
from flows.deployments import REPO_ROOT
from tests.ops.conftest import BIN, Proc, clean_env, copy_mlflow_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
NAME = "guard-test"

HOSTILE = {
    "tune space": (
        {
            "config": {
                "name": "guard",
                "stages": {
                    "tune": {
                        "space": {
                            "arch": {
                                "key": "model.name",
                                "type": "categorical",
                                "choices": ["tests.models.custom_net:TinyNet", "cnn"],
                            }
                        }
                    }
                },
            }
        },
        None,
        "stages.tune.space.arch='tests.models.custom_net:TinyNet' imports module",
    ),
    "dask": (
        {"config": {"name": "guard", "stages": {"tune": {"dask_address": "tcp://203.0.113.9:8786"}}}},
        None,
        "stages.tune.dask_address='tcp://203.0.113.9:8786' is not an allowed Dask scheduler",
    ),
    "command": ({}, {"command": "touch {marker}"}, "job variable(s) command may not be set"),
    "preset": ({"preset": "../../../../etc/hosts"}, None, "preset='../../../../etc/hosts' is a path"),
    # the worker lifts the caps for its own use (RECIPE_LIFT_CAPS=1 below): a form still cannot
    "caps": (
        {"config": {"name": "guard", "model": {"width": 100000}}},
        None,
        "model.width: over its resource cap of 4096; a deployment run cannot lift resource caps",
    ),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, _mlflow_template):
    """``flows serve --as guard-test`` without PREFECT_API_URL: yields (API URL, auth string, tmp folder)."""
    tmp = tmp_path_factory.mktemp("guard")
    home = tmp / "prefect"
    env = clean_env(
        PREFECT_HOME=str(home),
        PYTHONPATH=str(REPO_ROOT),
        MLFLOW_TRACKING_URI=copy_mlflow_store(_mlflow_template, tmp / "mlruns"),
        RECIPE_LOG_DIR=str(tmp / "logs"),
        RECIPE_LIFT_CAPS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",  # the runner picks the runs up within a second, not Prefect's default 10
    )
    for key in ("RECIPE_ALLOWED_MODEL_MODULES", "RECIPE_ALLOWED_DASK_ADDRESSES", "PREFECT_API_AUTH_STRING"):
        env.pop(key, None)
    proc = Proc("serve", [str(BIN / "flows"), "serve", "--as", NAME], env, tmp / "serve.log", cwd=tmp)
    try:
        proc.wait_until(lambda: (info := local_server.read_info(home)) is not None and info.alive(), 240, "a server")
        url, auth = local_server.read_info(home).url, local_server.auth_string(home)

        def registered():
            r = httpx.post(
                f"{url}/deployments/filter",
                json={"deployments": {"name": {"any_": [NAME]}}},
                auth=tuple(auth.split(":", 1)),
                headers=_csrf(url, auth),
                timeout=10,
            )
            return r.status_code == 200 and r.json()

        proc.wait_until(registered, 180, f"deployment recipe/{NAME}")
        yield url, auth, tmp, proc
    finally:
        proc.stop()
        local_server.stop_server(home)


def _csrf(url: str, auth: str) -> dict[str, str]:
    client = "guard-test-client"
    r = httpx.get(f"{url}/csrf-token", params={"client": client}, auth=tuple(auth.split(":", 1)), timeout=10)
    r.raise_for_status()
    return {"Prefect-Csrf-Token": r.json()["token"], "Prefect-Csrf-Client": client}


def test_the_local_server_requires_its_auth_string_csrf_and_its_own_origin(served):
    url, auth, _, _ = served
    user = tuple(auth.split(":", 1))
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # how runs find a live server
    assert httpx.get(f"{url}/version", timeout=10).status_code == 401
    assert httpx.get(f"{url}/version", auth=("recipe", "guess"), timeout=10).status_code == 401
    assert httpx.get(f"{url}/version", auth=user, timeout=10).status_code == 200
    assert httpx.post(f"{url}/flows/filter", json={}, auth=user, timeout=10).status_code == 403  # no CSRF token
    preflight = httpx.options(
        f"{url}/flows/filter",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.headers.get("access-control-allow-origin") != "http://evil.example"
    auth_file = local_server.state_dir(Path(served[2]) / "prefect") / "auth"
    assert oct(auth_file.stat().st_mode & 0o777) == "0o600"


def test_hostile_parameters_of_a_served_deployment_are_refused_as_bad_input(served):
    from prefect.client.orchestration import SyncPrefectClient

    url, auth, tmp, proc = served
    marker = tmp / "pwned"
    runs = {}
    with SyncPrefectClient(url, auth_string=auth) as client:
        dep = client.read_deployment_by_name(f"recipe/{NAME}")
        for case, (params, job_vars, _) in HOSTILE.items():
            jv = {k: v.format(marker=marker) for k, v in job_vars.items()} if job_vars else None
            runs[case] = client.create_flow_run_from_deployment(dep.id, parameters=params, job_variables=jv).id
        deadline = time.monotonic() + 300
        states = {}
        while len(states) < len(runs) and time.monotonic() < deadline:
            for case, run_id in runs.items():
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    states[case] = state
            time.sleep(1)
    assert len(states) == len(runs), f"not final: {set(runs) - set(states)}\n{proc.tail(60)}"
    for case, (_, _, names) in HOSTILE.items():
        state = states[case]
        assert state.is_failed(), (case, state.type, state.message, proc.tail(60))
        assert "bad input (exit code 2)" in state.message and names in state.message, (case, state.message)
    assert not marker.exists()
