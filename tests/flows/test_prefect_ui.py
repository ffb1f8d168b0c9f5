"""What a user of the Prefect UI sees of a recipe run, read back through the Prefect client from a real local server
(the session's test server): the flow run's name, per stage a checks table and a pointer to its MLflow run under
stable keys, the flow run's summary, reused stages as completed tasks, and the recipe's log records in the run's
log. Fake stages keep it about the plumbing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from uuid import UUID

import pytest

from flows import artifacts
from flows.recipe_flow import recipe as recipe_flow
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage, fake_stages  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness", "mlflow_store")


def _read(flow_run_id: UUID):
    """The flow run, its artifacts by key (latest of each) and its log messages."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs go to the API in background batches: send what is queued first
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def go():
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return run, {a.key: a for a in arts}, [lg.message for lg in logs], tasks

    return asyncio.run(go())


def test_each_stage_has_a_checks_table_and_an_mlflow_pointer_and_the_run_a_summary_and_a_name(fake_stages):
    mods, _ = fake_stages
    mods["b"] = fake_stage("b", Verdict.WARN)
    mods["c"] = fake_stage("c", Verdict.FAIL)
    state = recipe_flow(config=load_config(overrides=["name=UI_Test"]), return_state=True)
    assert state.is_failed()
    report = state.result(raise_on_failure=False)
    run, arts, logs, _ = _read(state.state_details.flow_run_id)

    assert run.name == "UI_Test:recipe"  # as the MLflow parent run
    assert set(arts) == {
        *(f"recipe-ui-test-{s}" for s in "abc"),
        *(f"recipe-ui-test-{s}-mlflow" for s in "abc"),
        "recipe-ui-test-summary",
    }
    run_ids = {s["stage"]: s["run_id"] for s in report["stages"]}
    for stage, verdict in (("a", "PASS"), ("b", "WARN"), ("c", "FAIL")):
        table = arts[f"recipe-ui-test-{stage}"]
        assert table.type == "table"
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        assert rows == [
            {
                "check": f"{stage}_ok",
                "verdict": verdict,
                "observed": "yes" if verdict == "PASS" else "no",
                "expected": "yes",
                "advice": "" if verdict == "PASS" else "look here",
            }
        ]
        assert run_ids[stage] in table.description
        link = arts[f"recipe-ui-test-{stage}-mlflow"]  # a sqlite store: the run id and the command that opens it
        assert link.type == "markdown" and run_ids[stage] in link.data and "mlflow ui --backend-store-uri" in link.data
    summary = arts["recipe-ui-test-summary"].data
    assert "| b | WARN |" in summary and "| c | FAIL |" in summary and "look here" in summary
    assert "Stopped at **c**" in summary

    # the recipe package's records reach the flow run's log: verdicts with the observed value, and the advice
    assert any("stage b: WARN b_ok: observed no, expected yes" in m for m in logs), logs
    assert any("stage c: FAIL c_ok" in m and "what to do: look here" in m for m in logs), logs
    # the hypothesis labelled as such beside what was observed (a new user read it as the finding)
    assert any("FAIL c_ok: hypothesis (not confirmed): c works; observed: no -- what to do" in m for m in logs), logs
    from prefect.logging.handlers import APILogHandler

    assert not any(isinstance(h, APILogHandler) for h in logging.getLogger("recipe").handlers)  # removed after


def test_a_run_up_to_a_stage_is_named_after_it_and_reused_stages_are_completed_tasks(fake_stages):
    cfg = load_config(overrides=["name=ui-reuse"])
    first = recipe_flow(config=cfg, stage="b", return_state=True)
    assert first.is_completed()
    ids = {s["stage"]: s["run_id"] for s in first.result()["stages"]}
    second = recipe_flow(config=cfg, stage="b", return_state=True)
    assert second.is_completed() and second.result()["reused"] == ["a", "b"]
    run, arts, _, tasks = _read(second.state_details.flow_run_id)

    assert run.name == "ui-reuse:b"
    by_name = {t.name: t for t in tasks}
    assert set(by_name) == {"stage-a-reused", "stage-b-reused"}
    for stage in "ab":
        t = by_name[f"stage-{stage}-reused"]
        assert t.state.is_completed() and f"reused MLflow run {ids[stage]}" in t.state.message
        assert arts[f"recipe-ui-reuse-{stage}"].description.endswith(f"reused MLflow run {ids[stage]} (up to date)")
    assert "| a | PASS | reused |" in arts["recipe-ui-reuse-summary"].data


def test_a_tracking_server_gets_a_clickable_link():
    assert artifacts.mlflow_run_url("http://mlflow:5000/", "3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"
    assert artifacts.mlflow_run_url("sqlite:///mlruns/mlflow.db", "3", "abc") is None


def test_artifact_keys_keep_prefects_alphabet():
    assert artifacts.artifact_key("Digits v2.1", "overfit") == "recipe-digits-v2-1-overfit"
    assert artifacts.artifact_key("my_data", "tune", "mlflow") == "recipe-my-data-tune-mlflow"


def test_the_cli_terminal_leaves_recipe_records_to_the_log_file(tmp_path):
    """The terminal shows the verdicts once (the summary table): the CLI's console handlers drop the recipe
    package's records, which its log file keeps."""
    from flows.cli import _setup_logging

    root = logging.getLogger()
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    root.addHandler(console)
    log = tmp_path / "run.log"
    detach = _setup_logging(log)
    try:
        logging.getLogger("recipe.pipeline").warning("stage b: WARN b_ok: look here")
        logging.getLogger("prefect.cli_test").warning("a prefect line")
        detach()
        assert "a prefect line" in stream.getvalue() and "look here" not in stream.getvalue()
        assert "stage b: WARN b_ok: look here" in log.read_text()
        logging.getLogger("recipe.pipeline").warning("after the run")  # the filter leaves with the run
        assert "after the run" in stream.getvalue()
    finally:
        root.removeHandler(console)


def test_the_summary_ends_with_the_champion_and_the_test_table():
    stage = {"checks": [], "run_id": "r1", "verdict": "pass"}
    report = {
        "recipe": "digits",
        "verdict": "pass",
        "reused": ["inspect"],
        "stages": [
            {**stage, "stage": "inspect", "metrics": {}},
            {
                **stage,
                "stage": "squeeze",
                "metrics": {
                    "squeeze/champion_networks": 3.0,
                    "squeeze/champion_params": 12345.0,
                    "test/champion_accuracy": 0.97,
                    "test/champion_accuracy_low": 0.95,
                    "test/champion_accuracy_high": 0.985,
                    "val/accuracy": 0.96,
                },
            },
        ],
    }
    text = artifacts.summary_markdown(report, {"squeeze": 12.34})
    assert "| inspect | PASS | reused |" in text and "| squeeze | PASS | 12.3 s |" in text
    tail = text[text.index("### Champion and test split") :]
    assert "3 network(s), 1.234e+04 parameters" in tail
    assert "| champion_accuracy | 0.97 | [0.95, 0.985] |" in tail and "val/" not in tail
    assert "Champion" not in artifacts.summary_markdown({**report, "stages": report["stages"][:1]}, {})


def test_each_tune_trial_outcome_is_logged(caplog):
    from recipe.stages.tune import _log_trial
    from recipe.tune.trial import TrialResult

    with caplog.at_level(logging.INFO, logger="recipe"):
        _log_trial(0, TrialResult("t0", "complete", value=0.25, val_metric=0.9, epochs=4, seconds=1.5))
        _log_trial(1, TrialResult("t1", "diverged", value=float("nan"), epochs=2, note="loss went NaN\nmore"))
        _log_trial(2, RuntimeError("out of memory"))
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [
        ("recipe.stages.tune", "INFO", "tune trial 0: complete after 4 epochs, val loss 0.25, val metric 0.9, 1.5 s"),
        (
            "recipe.stages.tune",
            "WARNING",
            "tune trial 1: diverged after 2 epochs, val loss nan, val metric nan, 0.0 s; loss went NaN",
        ),
        ("recipe.stages.tune", "WARNING", "tune trial 2: failed (RuntimeError: out of memory)"),
    ]


def test_a_run_from_a_preset_is_named_after_the_presets_recipe(fake_stages):
    state = recipe_flow(preset="digits", stage="a", return_state=True)
    assert state.is_completed()
    run, arts, _, _ = _read(state.state_details.flow_run_id)
    name = load_config(preset="digits").name
    assert run.name == f"{name}:a" and f"recipe-{name}-a" in arts
