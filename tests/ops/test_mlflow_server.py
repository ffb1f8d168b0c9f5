"""The recipe against a real `mlflow server` (sqlite backend, artifacts on disk, loopback), read back over REST.

The recipe runs in-process here (its Prefect side is covered by test_prefect_deployment); what is under test is
that every MLflow call of recipe.tracking works through a tracking server: runs, tags, nesting, and artifacts
proxied by the server onto its disk.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest

from recipe import tracking
from recipe.config import load_config
from recipe.pipeline import run_recipe
from tests.ops.conftest import first_stage, mlflow_server_at

pytestmark = [pytest.mark.ops, pytest.mark.timeout(300)]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def mlflow_server(ops_tmp: Path, _mlflow_template: Path):
    with mlflow_server_at(ops_tmp / "mlflow-server", _mlflow_template) as server:
        yield server


def rest(base: str, path: str, body: dict | None = None, **query: str) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _NO_PROXY.open(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def server_uri(mlflow_server, monkeypatch):
    uri, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # back to the environment's (restored by monkeypatch) for later tests


def test_the_recipe_logs_parent_and_stage_runs_through_the_tracking_server(server_uri, mlflow_server):
    stage = first_stage()
    cfg = load_config(preset="digits")
    outcome = run_recipe(cfg, stage=stage, flow_run_id="ops-flow-run-1")
    assert outcome.report["verdict"] in {"pass", "warn"}, outcome.report

    exp = rest(server_uri, "experiments/get-by-name", experiment_name=cfg.name)["experiment"]
    assert exp["artifact_location"].startswith("mlflow-artifacts:")  # the server decides where artifacts go
    runs = rest(
        server_uri,
        "runs/search",
        {"experiment_ids": [exp["experiment_id"]], "filter": "tags.`prefect.flow_run_id` = 'ops-flow-run-1'"},
    )["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs}
    parents = [rid for rid, t in tags.items() if t[tracking.TAG_KIND] == "flow"]
    children = [rid for rid, t in tags.items() if t[tracking.TAG_KIND] == "stage"]
    assert parents == [outcome.report["parent_run_id"]] and len(children) == 1, tags
    child = tags[children[0]]
    assert child["mlflow.parentRunId"] == parents[0]
    assert child[tracking.TAG_STAGE] == stage and child[tracking.TAG_VERDICT] in {"pass", "warn"}
    for t in tags.values():
        assert t[tracking.TAG_CONFIG_HASH] == cfg.config_hash()
        assert t[tracking.TAG_FINGERPRINT] == child[tracking.TAG_FINGERPRINT] != ""
        assert t[tracking.TAG_FLOW_RUN] == "ops-flow-run-1"

    # artifacts go through the server's proxy onto its disk
    listed = rest(server_uri, "artifacts/list", run_id=children[0])
    assert "checks.json" in {f["path"] for f in listed.get("files", [])}
    _, artifacts = mlflow_server
    assert list(artifacts.rglob("checks.json")), f"no checks.json under {artifacts}"


def test_the_server_answers_loopback_host_headers(mlflow_server):
    uri, _ = mlflow_server
    port = uri.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        req = urllib.request.Request(
            f"{uri}/api/2.0/mlflow/experiments/search",
            data=b'{"max_results": 1}',
            headers={"Host": host, "Content-Type": "application/json"},
        )
        with _NO_PROXY.open(req, timeout=10) as r:
            assert r.status == 200, host


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:{port}", "127.0.0.1.nip.io:{port}"])
def test_the_server_rejects_a_host_header_that_is_not_loopback(mlflow_server, host):
    """DNS rebinding: a page on another name that resolves to 127.0.0.1 reaches the server with its own name in
    the Host header; MLflow's host check (--allowed-hosts; its default admits loopback names and private-network IP
    literals, which a rebinding page cannot send) must refuse it."""
    uri, _ = mlflow_server
    port = uri.rsplit(":", 1)[1]
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 1}',
        headers={"Host": host.format(port=port), "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        _NO_PROXY.open(req, timeout=10)
    assert refused.value.code in (400, 403), refused.value.code
    assert b"experiments" not in refused.value.read()  # no data came back
