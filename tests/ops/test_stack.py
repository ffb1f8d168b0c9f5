"""deploy/stack.sh: the PostgreSQL-backed stack up, one recipe run through the deployment, down, nothing left.

Also the cheap promises of the script (down when nothing runs, a taken port named with its owner) and that
deploy/compose.yaml describes the same stack (services, ports, variables, work pool).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows.deployments import REPO_ROOT, deployment_spec
from recipe import tracking
from tests.ops.conftest import (
    BIN,
    STACK,
    clean_env,
    first_stage,
    free_port,
    group_alive,
    group_commands,
    kill_group,
    port_free,
    run_cli,
    wait_flow_run,
)

COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
SPEC = deployment_spec()


def stack_env(run_dir: Path, **extra: str) -> dict[str, str]:
    ports = {var: str(free_port()) for var in ("RECIPE_PG_PORT", "RECIPE_PREFECT_PORT", "RECIPE_MLFLOW_PORT")}
    return clean_env(**{"RECIPE_STACK_DIR": str(run_dir), "RECIPE_PYTHON": str(BIN / "python"), **ports, **extra})


def postgres_available() -> str | None:
    """Why the Postgres stack cannot run here, or None when it can."""
    found = shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if not found:
        return (
            "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it), "
            "so the Postgres-backed stack cannot start"
        )
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run PostgreSQL as"
    return None


# ---------------------------------------------------------------- cheap promises (no servers)


def test_down_and_status_when_nothing_runs(tmp_path):
    env = stack_env(tmp_path / "run")
    down = run_cli([str(STACK), "down"], env=env, timeout=30)
    assert "nothing running" in down.stdout
    status = run_cli([str(STACK), "status"], env=env, timeout=30, check=False)
    assert status.returncode == 1
    assert re.search(r"^prefect-server\s+-\s+\d+\s+stopped", status.stdout, re.M), status.stdout


def test_up_names_a_taken_port_and_its_owner_and_starts_nothing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = stack_env(tmp_path / "run", RECIPE_PREFECT_PORT=str(port))
        done = run_cli([str(STACK), "up"], env=env, timeout=60, check=False)
    assert done.returncode == 1
    assert f"port {port} (prefect-server, RECIPE_PREFECT_PORT) is taken by" in done.stderr, done.stderr
    if shutil.which("ss"):
        assert f"(pid {os.getpid()})" in done.stderr  # the owner: this test process
    assert not list((tmp_path / "run").glob("pids/*.pid")) and not (tmp_path / "run" / "postgres").exists()


def test_compose_describes_the_same_stack_as_the_script():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "mlflow", "mlflow-users", "worker"}
    script = run_cli([str(STACK), "ports"], env=clean_env(), timeout=30).stdout.split("\n")
    for line in filter(None, script):
        name, port, var = line.split()
        published = services[name]["ports"]
        assert len(published) == 1, published
        m = re.fullmatch(r"127\.0\.0\.1:\$\{(\w+):-(\d+)\}:(\d+)", published[0])
        assert m, f"{name}: {published[0]!r} should publish on 127.0.0.1 with ${{{var}:-{port}}}"
        assert (m[1], m[2]) == (var, port), f"{name}: compose says {m[1]}={m[2]}, stack.sh says {var}={port}"
    worker = " ".join(services["worker"]["command"])
    assert f"--pool {SPEC.work_pool}" in worker
    assert services["worker"]["environment"]["RECIPE_FLOWS_HOME"]  # the pull step of deploy/prefect.yaml needs it
    text = COMPOSE.read_text()
    assert "RECIPE_PG_PASSWORD:?" in text  # no default password: compose refuses to start without one


# ---------------------------------------------------------------- the real stack


@pytest.fixture(scope="module")
def stack():
    why_not = postgres_available()
    if why_not:
        pytest.skip(why_not)
    # Under /tmp, opened to others: as root, PostgreSQL runs as the postgres user, which must reach its data dir.
    run_dir = Path(tempfile.mkdtemp(prefix="recipe-stack-"))
    run_dir.chmod(0o755)
    env = stack_env(run_dir, RECIPE_MLFLOW_WORKERS="1", PREFECT_WORKER_QUERY_SECONDS="1", RECIPE_STACK_TIMEOUT="150")
    ports = [int(env[v]) for v in ("RECIPE_PG_PORT", "RECIPE_PREFECT_PORT", "RECIPE_MLFLOW_PORT")]
    try:
        up = run_cli([str(STACK), "up"], env=env, timeout=300, check=False)
        if up.returncode:
            logs = run_cli([str(STACK), "logs"], env=env, timeout=30, check=False).stdout
            pytest.fail(f"stack.sh up exited {up.returncode}\n{up.stdout}\n{up.stderr}\n{logs}")
        yield env, run_dir, ports, up
    finally:
        _down_and_clean(env, run_dir)


def _down_and_clean(env, run_dir: Path) -> None:
    pids = {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")}
    try:
        subprocess.run([str(STACK), "down"], env=env, timeout=120, capture_output=True)
    finally:  # whatever down left (it failed or timed out): stop it here, then remove the run directory
        for name, pid in pids.items():
            if name != "postgres" and group_alive(pid):
                kill_group(pid, timeout=5)
        postmaster = run_dir / "postgres" / "postmaster.pid"
        if postmaster.exists():
            pid = int(postmaster.read_text().split()[0])
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(run_dir, ignore_errors=True)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)


@pytest.mark.ops
@pytest.mark.timeout(400)
def test_stack_worker_logs_in_to_mlflow_without_admin_rights(stack):
    """The worker (and so every flow run) holds the MLflow user `worker`, never the admin's login: that user can
    log runs in an experiment the admin made (default_permission EDIT) but cannot create users or make itself admin."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    env, run_dir, _, up = stack
    if not Path("/proc/self/environ").exists():
        pytest.skip("reading the worker's environment needs /proc")
    secrets = run_dir / "secrets"
    worker_password = (secrets / "mlflow-worker-password").read_text()
    admin_password = (secrets / "mlflow-admin-password").read_text()
    assert (secrets / "mlflow-worker-password").stat().st_mode & 0o077 == 0, "the worker's password must be 0600"
    assert worker_password and worker_password != admin_password

    worker_env = _environ(int((run_dir / "pids" / "worker.pid").read_text()))
    assert worker_env.get("MLFLOW_TRACKING_USERNAME") == "worker"
    assert worker_env.get("MLFLOW_TRACKING_PASSWORD") == worker_password
    leaked = [k for k, v in worker_env.items() if admin_password in v]
    assert not leaked, f"the worker's environment holds the MLflow admin password in {leaked}"

    uri = dict(re.findall(r"^export (\w+)=(\S+)$", (run_dir / "env").read_text(), re.M))["MLFLOW_TRACKING_URI"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        experiment = MlflowClient(uri).create_experiment("made-by-the-admin")
        mp.setenv("MLFLOW_TRACKING_USERNAME", "worker")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", worker_password)
        client = MlflowClient(uri)
        run = client.create_run(experiment)  # EDIT on every experiment: a flow run can log
        client.log_param(run.info.run_id, "who", "worker")
        client.set_terminated(run.info.run_id)
        auth = AuthServiceClient(uri)
        for admin_only in (
            lambda: auth.create_user("mallory", "x" * 16),
            lambda: auth.update_user_admin("worker", True),
            lambda: auth.delete_user("admin"),
        ):
            with pytest.raises(MlflowException) as denied:
                admin_only()
            assert denied.value.get_http_status_code() == 403, denied.value
        mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        assert not AuthServiceClient(uri).get_user("worker").is_admin
        with pytest.raises(MlflowException):
            AuthServiceClient(uri).get_user("mallory")


@pytest.mark.ops
@pytest.mark.timeout(600)
def test_stack_up_run_a_deployment_down(stack):
    env, run_dir, ports, up = stack
    assert "healthy" in up.stdout and (run_dir / "env").exists()
    secret = run_dir / "secrets" / "pg-password"
    assert secret.stat().st_mode & 0o077 == 0, "the generated password must be private to its owner"
    pids = {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")}
    assert set(pids) == {"postgres", "prefect-server", "mlflow", "worker"}

    again = run_cli([str(STACK), "up"], env=env, timeout=120)  # idempotent: nothing new starts
    assert again.stdout.count("already running") == 4, again.stdout
    assert {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")} == pids
    status = run_cli([str(STACK), "status"], env=env, timeout=60)
    assert status.stdout.count("healthy") == 4, status.stdout
    # the MLflow server runs no job runner nor huey consumers: the recipe submits no server-side jobs
    mlflow_group = group_commands(pids["mlflow"])
    assert any("mlflow" in cmd for cmd in mlflow_group), mlflow_group
    assert not [cmd for cmd in mlflow_group if "huey" in cmd or "_job_runner" in cmd], mlflow_group

    exports = dict(re.findall(r"^export (\w+)=(\S+)$", (run_dir / "env").read_text(), re.M))
    client_env = clean_env(PREFECT_HOME=str(run_dir / "client-home"), **exports)
    run_cli([str(BIN / "flows"), "deploy"], env=client_env, timeout=180)

    from mlflow import MlflowClient
    from prefect.client.orchestration import SyncPrefectClient

    from tests.ops.conftest import Proc

    # auth is on by default: the env file holds the clients' credentials, and nothing answers without them
    assert (run_dir / "env").stat().st_mode & 0o077 == 0
    assert {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(exports)
    for url in (
        f"{exports['PREFECT_API_URL']}/flows/filter",
        f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search",
    ):
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                urllib.request.Request(url, data=b'{"max_results": 1}', headers={"Content-Type": "application/json"}),
                timeout=10,
            )
        assert denied.value.code == 401, url

    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    with temporary_settings(updates={PREFECT_API_AUTH_STRING: exports["PREFECT_API_AUTH_STRING"]}):
        with SyncPrefectClient(exports["PREFECT_API_URL"], auth_string=exports["PREFECT_API_AUTH_STRING"]) as client:
            dep = client.read_deployment_by_name(f"recipe/{SPEC.name}")
            assert [s.schedule.cron for s in dep.schedules] == [s["cron"] for s in SPEC.schedules]
            flow_run = client.create_flow_run_from_deployment(dep.id, parameters={"stage": first_stage()})
        worker_log = Proc.__new__(Proc)  # only for its tail(): the worker is the stack's, not ours
        worker_log.name, worker_log.log = "worker", run_dir / "logs" / "worker.log"
        wait_flow_run(exports["PREFECT_API_URL"], flow_run.id, timeout=240, logs=[worker_log])

    with pytest.MonkeyPatch.context() as mp:  # restores what was there before, set or not
        mp.setenv("MLFLOW_TRACKING_USERNAME", exports["MLFLOW_TRACKING_USERNAME"])
        mp.setenv("MLFLOW_TRACKING_PASSWORD", exports["MLFLOW_TRACKING_PASSWORD"])
        mlflow_client = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
        exp = mlflow_client.get_experiment_by_name(SPEC.parameters.get("preset", "digits"))
        runs = mlflow_client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{tracking.TAG_FLOW_RUN}` = '{flow_run.id}'"
        )
    assert sorted(r.data.tags[tracking.TAG_KIND] for r in runs) == ["flow", "stage"]
    assert list((run_dir / "mlflow-artifacts").rglob("checks.json")), "artifacts should land in the run directory"

    down = run_cli([str(STACK), "down"], env=env, timeout=120)
    for name in ("worker", "mlflow", "prefect-server", "postgres"):
        assert f"{name}: stopped" in down.stdout, down.stdout
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (pid {pid}) or a process of its group survived down"
    assert all(port_free(p) for p in ports), f"a port of {ports} is still taken after down"
    assert not (run_dir / "postgres" / "postmaster.pid").exists()
    assert run_cli([str(STACK), "down"], env=env, timeout=30).stdout.strip().startswith("nothing running")
