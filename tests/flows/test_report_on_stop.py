"""`flows run recipe --report FILE` writes the report also when the run stops before its end: interrupted by
Ctrl-C / SIGTERM (verdict ``interrupted``) or stopped by a backend failure (verdict ``error``), with the stages
recorded before, the stage that was running and the command that resumes (a new user's trial: a script passing
--report found no file after a Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from typer.testing import CliRunner

from flows import cli
from flows.signals import Interrupted
from recipe import pipeline
from recipe.report import Check, Report, StageResult, Verdict


def _progress(cfg) -> pipeline.Progress:
    """A run that reused inspect, ran baselines (a WARN) and was inside overfit."""
    inspect = StageResult.from_checks(
        "inspect", [Check("files_readable", "h", "all decode", "0 unreadable", Verdict.PASS)], {}, cfg, run_id="r-in"
    )
    baselines = StageResult.from_checks(
        "baselines",
        [Check("beats_linear", "h", 0.91, 0.93, Verdict.WARN, "train longer")],
        {"val/accuracy": 0.91},
        cfg,
        run_id="r-base",
    )
    progress = pipeline.Progress(target="squeeze", parent_run_id="r-parent")
    for result in (inspect, baselines):
        progress.results[result.stage] = result
    progress.reused.append("inspect")
    progress.running = ("overfit", "r-over")
    return progress


def _invoke(monkeypatch, tmp_path, fake_run_flow, *extra: str):
    monkeypatch.setattr(cli, "_run_flow", fake_run_flow)
    monkeypatch.setattr(cli, "_preflight", lambda cfg: None)
    monkeypatch.setenv("RECIPE_LOG_DIR", str(tmp_path / "logs"))
    path = tmp_path / "out" / "report.json"
    args = ["run", "recipe", "--preset", "digits", "--report", str(path), *extra]
    monkeypatch.setattr("sys.argv", ["flows", *args])  # what the resume command repeats
    result = CliRunner().invoke(cli.app, args)
    return result, path


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_writes_its_report_with_what_was_kept_and_how_to_resume(monkeypatch, tmp_path, sig, code):
    def fake_run_flow(cfg, stage, force, log, fresh=False, rerun_from=None):
        monkeypatch.setattr(pipeline, "LAST_PROGRESS", _progress(cfg))
        os.kill(os.getpid(), sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the handler raises Interrupted here
            pass
        pytest.fail("no interrupt")

    result, path = _invoke(monkeypatch, tmp_path, fake_run_flow)
    assert result.exit_code == code, result.output
    assert f"report written to {path} (verdict interrupted)" in result.output
    # the terminal names the stages kept, and does not also claim that nothing was recorded
    assert "stages kept (reused by the next run): inspect (run r-in), baselines (run r-base)" in result.output
    assert "it stopped before anything was recorded" not in result.output
    report = json.loads(path.read_text())
    Report.model_validate(report)  # the published schema holds it
    assert report["verdict"] == "interrupted" and report["parent_run_id"] == "r-parent"
    assert [(s["stage"], s["verdict"], s["run_id"]) for s in report["stages"]] == [
        ("inspect", "pass", "r-in"),
        ("baselines", "warn", "r-base"),
    ]
    assert report["stages"][1]["checks"][0]["advice"] == "train longer"  # the normal report's stage entries
    assert report["reused"] == ["inspect"]
    stopped = report["stopped"]
    assert stopped["reason"] == "signal" and stopped["signal"] == signal.Signals(sig).name
    assert stopped["exit_code"] == code and "error" not in stopped
    assert stopped["running"] == {"stage": "overfit", "run_id": "r-over"}
    assert stopped["kept"] == ["inspect", "baselines"]
    assert "run recipe --preset digits --report" in stopped["resume"] and "--fresh" not in stopped["resume"]


def test_an_interrupt_before_any_stage_still_writes_the_report(monkeypatch, tmp_path):
    def fake_run_flow(cfg, stage, force, log, fresh=False, rerun_from=None):
        monkeypatch.setattr(pipeline, "LAST_PROGRESS", None)  # stopped before the pipeline started
        raise Interrupted(signal.SIGINT)

    result, path = _invoke(monkeypatch, tmp_path, fake_run_flow, "--fresh")
    assert result.exit_code == 130, result.output
    report = json.loads(path.read_text())
    assert report["verdict"] == "interrupted" and report["stages"] == [] and report["parent_run_id"] is None
    assert report["stopped"]["running"] is None and report["stopped"]["kept"] == []
    # the terminal and the report give the same resume command: a --fresh run reuses nothing, from the first stage
    # (the terminal dropped --fresh and reused older runs; a new user's trial)
    resume = report["stopped"]["resume"]
    assert resume.endswith("--rerun-from inspect") and f"to resume: {resume}" in result.output


def test_a_backend_failure_writes_the_report_with_verdict_error_and_exits_3(monkeypatch, tmp_path):
    from recipe.tracking import BackendFailure

    def fake_run_flow(cfg, stage, force, log, fresh=False, rerun_from=None):
        monkeypatch.setattr(pipeline, "LAST_PROGRESS", _progress(cfg))
        raise BackendFailure("the MLflow store failed during stage overfit (database is locked)\nmore")

    result, path = _invoke(monkeypatch, tmp_path, fake_run_flow)
    assert result.exit_code == cli.EXIT_BACKEND, result.output
    report = json.loads(path.read_text())
    Report.model_validate(report)
    assert report["verdict"] == "error" and [s["stage"] for s in report["stages"]] == ["inspect", "baselines"]
    stopped = report["stopped"]
    assert stopped["reason"] == "backend" and stopped["exit_code"] == 3 and "signal" not in stopped
    assert stopped["error"] == "the MLflow store failed during stage overfit (database is locked)"
    assert stopped["running"]["stage"] == "overfit"
