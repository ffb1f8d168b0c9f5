"""deploy/compose.yaml keeps its doors closed: no secret has a default, so compose refuses to start without one."""

from __future__ import annotations

import re

import yaml

from flows.deployments import REPO_ROOT

COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
SECRET_NAME = re.compile(r"PASSWORD|AUTH_STRING|SECRET")
REQUIRED = {
    "RECIPE_PG_PASSWORD",
    "PREFECT_SERVER_API_AUTH_STRING",
    "RECIPE_MLFLOW_ADMIN_PASSWORD",
    "RECIPE_MLFLOW_SECRET_KEY",
    "RECIPE_MLFLOW_WORKER_PASSWORD",
}


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_secret_is_required_without_a_default():
    seen = set()
    for name, service in _services().items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key) or key == "MLFLOW_AUTH_CONFIG_PATH":
                continue
            refs = re.findall(r"\$\{(\w+)(:\?|:-|-|\?)?", str(value))
            assert refs, f"{name}: {key} is a literal secret"
            for var, op in refs:
                assert op == ":?" or var in seen, f"{name}: {key} uses ${{{var}{op or ''}}}: write ${{{var}:?message}}"
                seen.add(var)
    assert REQUIRED <= seen


def test_both_servers_require_auth_and_the_worker_is_not_the_admin():
    services = _services()
    prefect = services["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert prefect["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"].startswith("http://127.0.0.1:")
    assert "basic-auth" in services["mlflow"]["command"]
    worker = services["worker"]["environment"]
    assert worker["MLFLOW_TRACKING_USERNAME"] != services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert "RECIPE_MLFLOW_WORKER_PASSWORD" in worker["MLFLOW_TRACKING_PASSWORD"]
    assert "mlflow-users" in services["worker"]["depends_on"]
    ini = (REPO_ROOT / "deploy" / "compose" / "basic_auth.ini").read_text()
    assert re.search(r"^default_permission = (READ|USE|EDIT)$", ini, re.M)  # never MANAGE for everyone
