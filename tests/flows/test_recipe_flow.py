"""The Prefect flow and `flows run recipe`, under one session-wide Prefect test server.

Fake stages keep these about the plumbing (tasks, states, exit codes, the JSON report, the Prefect
flow-run id in MLflow); the real stages have their own end-to-end tests.
"""

import json

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.recipe_flow import recipe as recipe_flow
from recipe import tracking
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage, fake_stages  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness", "mlflow_store")
runner = CliRunner()


def test_flow_runs_each_stage_as_a_task_and_tags_mlflow_with_the_flow_run(fake_stages):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    cfg = load_config(overrides=["name=flow-test"])
    state = recipe_flow(config=cfg, return_state=True)
    assert state.is_completed()
    report = state.result()
    assert report["verdict"] == "pass" and [s["stage"] for s in report["stages"]] == ["a", "b", "c"]

    flow_run_id = str(state.state_details.flow_run_id)
    parent = MlflowClient().get_run(report["parent_run_id"])
    assert parent.data.tags[tracking.TAG_FLOW_RUN] == flow_run_id

    async def task_names():
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
            return sorted(r.name.rsplit("-", 1)[0] for r in runs)

    assert asyncio.run(task_names()) == ["stage-a", "stage-b", "stage-c"]


def test_a_failed_gate_fails_the_flow_run_with_the_report(fake_stages):
    mods, _ = fake_stages
    mods["b"] = fake_stage("b", Verdict.FAIL)
    state = recipe_flow(config=load_config(overrides=["name=flow-fail"]), return_state=True)
    assert state.is_failed() and "stage b failed its checks" in state.message
    report = state.result(raise_on_failure=False)
    assert report["verdict"] == "fail" and report["stopped_at"] == "b"


def test_cli_writes_the_json_report_and_exits_0(fake_stages, tmp_path):
    out = tmp_path / "r" / "report.json"
    result = runner.invoke(app, ["run", "recipe", "--set", "name=cli-test", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report) >= {"recipe", "verdict", "parent_run_id", "stages"}
    assert report["recipe"] == "cli-test" and report["verdict"] == "pass"
    stage = report["stages"][0]
    assert set(stage) >= {"stage", "verdict", "run_id", "metrics", "checks"}
    assert set(stage["checks"][0]) == {"name", "hypothesis", "observed", "expected", "verdict", "advice"}
    assert stage["metrics"] == {"a/score": 1.0}
    assert "a_ok" in result.output  # the terminal summary lists the checks


def test_cli_exits_1_on_a_fail_and_shows_the_advice(fake_stages):
    mods, _ = fake_stages
    mods["a"] = fake_stage("a", Verdict.FAIL)
    result = runner.invoke(app, ["run", "recipe", "--set", "name=cli-fail"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "look here" in result.output


def test_cli_force_carries_on_but_still_exits_1(fake_stages):
    mods, calls = fake_stages
    mods["a"] = fake_stage("a", Verdict.FAIL, calls=calls)
    result = runner.invoke(app, ["run", "recipe", "--set", "name=cli-force", "--force"])
    assert result.exit_code == 1
    assert [c[0] for c in calls] == ["a", "b", "c"] and "forced" in result.output


def test_cli_bad_data_is_a_clear_error_not_a_traceback(fake_stages, tmp_path):
    result = runner.invoke(app, ["run", "recipe", "--preset", "imagefolder", "--set", f"data.root={tmp_path / 'x'}"])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_cli_unknown_stage():
    result = runner.invoke(app, ["run", "recipe", "--stage", "overfitt"])
    assert result.exit_code == 2 and "unknown stage 'overfitt'" in result.output


def test_a_deployment_run_may_import_a_model_module_only_when_the_operator_allows_it(fake_stages, monkeypatch):
    import flows.recipe_flow as rf

    cfg = load_config(overrides=["name=deploy-import", "model.name=os.path:join"])
    assert recipe_flow(config=cfg, return_state=True).is_completed()  # the local command line may
    monkeypatch.setattr(rf, "_from_deployment", lambda: True)
    monkeypatch.delenv("RECIPE_ALLOWED_MODEL_MODULES", raising=False)
    state = recipe_flow(config=cfg, return_state=True)
    assert state.is_failed()
    assert "'os.path'" in state.message and "RECIPE_ALLOWED_MODEL_MODULES=os.path" in state.message
    monkeypatch.setenv("RECIPE_ALLOWED_MODEL_MODULES", "os.pathlib, os.path")
    assert recipe_flow(config=cfg, return_state=True).is_completed()


def test_allowed_model_module_prefixes_match_whole_components():
    from recipe.preflight import PreflightError, check_model_imports_allowed

    cfg = load_config(overrides=["model.name=a.bc:make"])
    with pytest.raises(PreflightError, match="a.bc"):
        check_model_imports_allowed(cfg, ["a.b"])
    check_model_imports_allowed(cfg, ["a"])
    check_model_imports_allowed(cfg.with_overrides(["model.name=a.b.c:make"]), ["a.b"])
    check_model_imports_allowed(load_config(), [])  # registry names always pass


def test_a_crash_in_a_stage_is_one_line_exit_4_and_a_log_with_the_traceback(fake_stages, monkeypatch, tmp_path):
    mods, _ = fake_stages
    mods["b"] = fake_stage("b", raises=RuntimeError("boom in b"))
    monkeypatch.setenv("RECIPE_LOG_DIR", str(tmp_path / "logs"))
    result = runner.invoke(app, ["run", "recipe", "--set", "name=cli-crash"])
    assert result.exit_code == 4, result.output
    assert "the run crashed" in result.output and "RuntimeError: boom in b" in result.output
    logs = list((tmp_path / "logs").glob("run-*.log"))
    assert len(logs) == 1 and str(logs[0]) in result.output
    text = logs[0].read_text()
    assert "Traceback" in text and "boom in b" in text
    stamped = [line for line in text.splitlines() if line[:4].isdigit()]  # one record a line, each written once
    assert stamped and len(stamped) == len(set(stamped))
    exp = MlflowClient().get_experiment_by_name("cli-crash")
    statuses = {
        r.data.tags[tracking.TAG_STAGE]: r.info.status
        for r in MlflowClient().search_runs([exp.experiment_id])
        if r.data.tags[tracking.TAG_KIND] == "stage"
    }
    assert statuses == {"a": "FINISHED", "b": "FAILED"}  # what was recorded before the crash is kept


def test_a_tracking_store_that_fails_inside_the_flow_is_exit_3(fake_stages, monkeypatch):
    def broken(experiment):
        raise tracking.TrackingError("the MLflow store sqlite:///x cannot be used: disk I/O error")

    monkeypatch.setattr(tracking, "setup", broken)
    result = runner.invoke(app, ["run", "recipe", "--set", "name=cli-store"])
    assert result.exit_code == 3, result.output
    assert "disk I/O error" in result.output and "Traceback" not in result.output
