"""flows.mlflow_users against a real MLflow server with the basic-auth app and compose's basic_auth.ini rules:
the worker's user can log runs but cannot manage users."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.deployments import REPO_ROOT
from tests.ops.conftest import BIN, Proc, clean_env, copy_mlflow_store, free_port, http_ok, run_cli

pytestmark = [pytest.mark.ops, pytest.mark.timeout(300)]


def test_the_worker_user_logs_runs_but_is_no_admin(tmp_path: Path, _mlflow_template):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    ini = (REPO_ROOT / "deploy" / "compose" / "basic_auth.ini").read_text()
    ini = ini.replace("sqlite:////mlflow-auth/basic_auth.db", f"sqlite:///{tmp_path / 'auth.db'}")
    (tmp_path / "basic_auth.ini").write_text(ini)
    port, admin_pw, worker_pw = free_port(), "admin-pw-0123456789", "worker-pw-0123456789"
    uri = f"http://127.0.0.1:{port}"
    env = clean_env(
        MLFLOW_BACKEND_STORE_URI=copy_mlflow_store(_mlflow_template, tmp_path / "store"),
        MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "basic_auth.ini"),
        MLFLOW_AUTH_ADMIN_USERNAME="admin",
        MLFLOW_AUTH_ADMIN_PASSWORD=admin_pw,
        MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32,
        # as tests/ops/conftest.py's servers: no job runner and seven huey consumers (eight more processes
        # importing mlflow at start); user management never submits a server job
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-name",
        "basic-auth",
        "--artifacts-destination",
        f"file://{tmp_path / 'artifacts'}",
        "--workers",
        "1",
    ]
    proc = Proc("mlflow", cmd, env, tmp_path / "mlflow.log", cwd=tmp_path)
    try:
        proc.wait_until(lambda: http_ok(f"{uri}/health"), 180, "healthy /health")
        as_admin = clean_env(
            PYTHONPATH=str(REPO_ROOT),
            MLFLOW_TRACKING_URI=uri,
            MLFLOW_TRACKING_USERNAME="admin",
            MLFLOW_TRACKING_PASSWORD=admin_pw,
            RECIPE_MLFLOW_USER_PASSWORD=worker_pw,
        )
        py = str(BIN / "python")
        first = run_cli([py, "-m", "flows.mlflow_users", "worker"], env=as_admin, timeout=120)
        assert "'worker' created (no admin rights)" in first.stdout
        again = run_cli([py, "-m", "flows.mlflow_users", "worker"], env=as_admin, timeout=120)
        assert "'worker' updated" in again.stdout  # idempotent: a restarted stack keeps one worker user

        import os

        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_pw)
        try:
            exp = MlflowClient(uri).create_experiment("made-by-admin")  # e.g. a CLI run with the admin's login
            os.environ.update(MLFLOW_TRACKING_USERNAME="worker", MLFLOW_TRACKING_PASSWORD=worker_pw)
            worker = MlflowClient(uri)
            run = worker.create_run(exp)  # EDIT on every experiment: the worker's runs land there
            worker.log_param(run.info.run_id, "x", "1")
            with pytest.raises(MlflowException, match="403|PERMISSION_DENIED|Permission denied"):
                AuthServiceClient(uri).create_user("intruder", "pw-0123456789")
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    finally:
        proc.stop()
