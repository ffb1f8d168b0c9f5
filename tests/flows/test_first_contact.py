"""What a new user sees at the end of a run that failed or was interrupted: the stages kept and the command that
resumes; Prefect's own "Crash detected!" lines kept off the terminal on a Ctrl-C (the CLI reports it once)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from flows.cli import _command, _kept_and_resume, _not_interrupt_crash, _resume_command


def _record(name: str, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)


def test_prefect_crash_lines_of_an_interrupt_are_kept_off_the_terminal_and_others_are_not():
    for message in (
        "Crash detected! Execution was aborted by an interrupt signal.",
        "Crash detected! Execution was aborted by a termination signal.",
        "Finished in state Crashed('Execution was aborted by an interrupt signal.')",  # read first, as a crash
        "Finished in state Crashed('Execution was aborted by a termination signal.')",
    ):
        assert not _not_interrupt_crash(_record("prefect.task_runs", message))
        assert not _not_interrupt_crash(_record("prefect.flow_runs", message))
    real_crash = "Crash detected! Request to http://127.0.0.1:4200/api failed: ConnectError."
    assert _not_interrupt_crash(_record("prefect.flow_runs", real_crash))  # a backend crash is still shown
    assert _not_interrupt_crash(_record("prefect.task_runs", "Finished in state Crashed('ConnectError')"))
    assert _not_interrupt_crash(_record("recipe.user", "Crash detected! Execution was aborted by an interrupt signal."))


@pytest.fixture
def venv_on_path(monkeypatch):
    """PATH finds this environment's console scripts first, as in an activated virtual environment."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def test_a_command_is_named_by_its_path_when_path_does_not_find_it(monkeypatch, tmp_path):
    """After `make run` the venv is not activated: `flows ...` would say "command not found" (a new user's trial)."""
    script = Path(sys.executable).parent / "flows"
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.chdir(script.parent.parent.parent)  # the folder holding .venv
    assert _command("flows") == str(script.relative_to(script.parent.parent.parent))
    monkeypatch.chdir(tmp_path)  # outside: the absolute path
    assert _command("flows") == str(script)
    assert _command("no-such-script") == "no-such-script"


def test_a_command_started_through_a_linked_environment_is_named_as_typed(monkeypatch, tmp_path):
    """A `.venv` linked from another checkout: the resume line named the link's target, not what the user typed
    (a new user's trial)."""
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/flows", "run", "recipe"])
    assert _command("flows") == ".venv/bin/flows"
    assert _command("mlflow") == ".venv/bin/mlflow"  # the `mlflow ui` hint, from the same folder
    monkeypatch.setattr(sys, "argv", ["-c", "run"])  # not started by the script: the one beside the interpreter
    assert _command("flows") == str(Path(sys.executable).parent / "flows")


def test_the_resume_command_is_the_same_command_without_fresh(venv_on_path):
    argv = ["run", "recipe", "--preset", "imagefolder", "--set", "data.root=/my data", "--fresh", "--stage", "tune"]
    assert _resume_command(argv) == "flows run recipe --preset imagefolder --set 'data.root=/my data' --stage tune"


def test_an_interrupted_fresh_run_resumes_from_the_first_stage_it_did_not_keep(venv_on_path):
    # without --rerun-from the next run would reuse older passing runs of the later stages (same config, data and
    # code), which --fresh had asked to rerun: a new user's trial found the resume training nothing
    argv = ["run", "recipe", "--fresh", "--set", "optim.lr=2e-3"]
    assert _resume_command(argv, rerun_from="overfit") == ("flows run recipe --set optim.lr=2e-3 --rerun-from overfit")
    again = ["run", "recipe", "--rerun-from", "overfit", "--stage", "tune"]
    assert _resume_command(again, rerun_from="regularize") == ("flows run recipe --stage tune --rerun-from regularize")
    assert _resume_command(["run", "recipe", "--rerun-from=tune"], rerun_from="tune").endswith("--rerun-from tune")
    # a run that reused what it could resumes the same way, reusing again
    assert _resume_command(["run", "recipe"], rerun_from="overfit") == "flows run recipe"
    outcome = {
        "verdict": "fail",
        "stages": [{"stage": "inspect", "verdict": "pass"}, {"stage": "baselines", "verdict": "fail"}],
    }
    assert _kept_and_resume(outcome, ["run", "recipe", "--fresh"]).endswith(
        "resume with: flows run recipe --rerun-from baselines"
        " (or change the config with --set; the kept stages are reused while their settings are unchanged)"
    )


def test_a_failed_run_names_the_stages_kept_the_failed_one_and_how_to_resume(venv_on_path):
    outcome = {
        "verdict": "fail",
        "stopped_at": "overfit",
        "stages": [
            {"stage": "inspect", "verdict": "pass"},
            {"stage": "baselines", "verdict": "warn"},
            {"stage": "overfit", "verdict": "fail"},
        ],
    }
    text = _kept_and_resume(outcome, ["run", "recipe", "--set", "optim.lr=1"])
    assert "stages kept (reused by the next run): inspect, baselines" in text
    assert "failed: overfit" in text and "resume with: flows run recipe --set optim.lr=1" in text


def test_under_a_wall_clock_budget_the_sized_stages_that_passed_are_said_to_be_reused_too(venv_on_path):
    # the run's plan, logged as each stage ends, gives the next budgeted run their sizes (recipe.pipeline)
    outcome = {
        "verdict": "fail",
        "stopped_at": "tune",
        "stages": [
            {"stage": s, "verdict": v}
            for s, v in [("inspect", "pass"), ("baselines", "pass"), ("overfit", "warn"), ("regularize", "pass")]
        ]
        + [{"stage": "tune", "verdict": "fail"}],
    }
    text = _kept_and_resume(outcome, ["run", "recipe", "--set", "budget.minutes=2"])
    assert text.startswith("stages kept (reused by the next run): inspect, baselines, overfit, regularize\n")
    assert "run again by the next run" not in text
    assert "resume with: flows run recipe --set budget.minutes=2" in text


def test_prefect_lines_that_repeat_the_live_view_are_kept_off_the_terminal_and_others_are_not():
    """A new user read each stage's start twice (the live view's line and Prefect's) and a "Finished in state
    Completed()" line under every trial; the live view's started line names the stage's MLflow run instead."""
    from flows.cli import _not_echo

    def info(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    assert not _not_echo(info("prefect.flow_runs", "stage baselines: started (MLflow run 0123abcd)"))
    assert not _not_echo(info("prefect.task_runs", "Finished in state Completed()"))
    for kept in (
        info("prefect.flow_runs", "View at http://127.0.0.1:4200/runs/flow-run/1"),
        # the reuse decision with the config, data and code versions it matched (scripts and tests read it)
        info("prefect.flow_runs", "stage inspect: up to date, reused run 0123abcd (pass; config 1a2b, data 3c4d)"),
        info("prefect.flow_runs", "no passing run in MLflow for inspect with this config, data and code: running them"),
        info("prefect.task_runs", "Finished in state Failed('stage overfit failed')"),
        info("prefect.flow_runs", "stage baselines: started (MLflow run 0123abcd)", logging.WARNING),
        info("recipe.user", "Finished in state Completed()"),
    ):
        assert _not_echo(kept), kept.getMessage()


def test_flows_stages_marks_a_stage_older_than_an_earlier_stages_latest_run():
    from flows.cli import stale_stages

    order = ["inspect", "baselines", "overfit", "regularize", "tune", "squeeze"]
    latest = {  # a killed regularize (time 50) after an older full run (times 10..15)
        "inspect": {"start_time": 10},
        "baselines": {"start_time": 11},
        "overfit": {"start_time": 40},
        "regularize": {"start_time": 50},
        "tune": {"start_time": 14},
        "squeeze": {"start_time": 15},
    }
    assert stale_stages(latest, order) == {"tune": "regularize", "squeeze": "regularize"}
    in_order = {n: {"start_time": i} for i, n in enumerate(order)}
    assert stale_stages(in_order, order) == {} and stale_stages({}, order) == {}
