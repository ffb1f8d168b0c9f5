"""What a new user sees at the end of a run that failed or was interrupted: the stages kept and the command that
resumes; Prefect's own "Crash detected!" lines kept off the terminal on a Ctrl-C (the CLI reports it once)."""

from __future__ import annotations

import logging

from flows.cli import _kept_and_resume, _not_interrupt_crash, _resume_command


def _record(name: str, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)


def test_prefect_crash_lines_of_an_interrupt_are_kept_off_the_terminal_and_others_are_not():
    for message in (
        "Crash detected! Execution was aborted by an interrupt signal.",
        "Crash detected! Execution was aborted by a termination signal.",
    ):
        assert not _not_interrupt_crash(_record("prefect.task_runs", message))
        assert not _not_interrupt_crash(_record("prefect.flow_runs", message))
    real_crash = "Crash detected! Request to http://127.0.0.1:4200/api failed: ConnectError."
    assert _not_interrupt_crash(_record("prefect.flow_runs", real_crash))  # a backend crash is still shown
    assert _not_interrupt_crash(_record("recipe.user", "Crash detected! Execution was aborted by an interrupt signal."))


def test_the_resume_command_is_the_same_command_without_fresh():
    argv = ["run", "recipe", "--preset", "imagefolder", "--set", "data.root=/my data", "--fresh", "--stage", "tune"]
    assert _resume_command(argv) == "flows run recipe --preset imagefolder --set 'data.root=/my data' --stage tune"


def test_a_failed_run_names_the_stages_kept_the_failed_one_and_how_to_resume():
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
