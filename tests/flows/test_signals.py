"""flows.signals: the first SIGINT/SIGTERM raises Interrupted in the main thread, also when its first delivery
lands in a finalizer that drops it."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from flows.signals import Interrupted, interrupts


class _SignalledWhileFinalized:
    """Sends ``sig`` to this process from its finalizer and lets the handler run there (where Python drops
    the handler's exception as "Exception ignored in ...")."""

    def __init__(self, sig: int) -> None:
        self.sig = sig
        self.handled_inside = False

    def __del__(self) -> None:
        try:
            os.kill(os.getpid(), self.sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # bytecodes: the pending handler runs here, inside __del__
                pass
        finally:
            _finalized.append(True)


_finalized: list[bool] = []


def _loop_until_interrupted(seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_dropped_by_a_finalizer_is_raised_again_outside_it(sig, code, capsys):
    _finalized.clear()
    hook = sys.unraisablehook
    with pytest.raises(Interrupted) as caught, interrupts():
        obj = _SignalledWhileFinalized(sig)
        del obj  # the finalizer runs now; the handler raises inside it, where the exception is dropped
        gc.collect()
        assert _finalized == [True]
        _loop_until_interrupted()  # it used to be lost here, and the run went on; now it is raised again
        pytest.fail("the interrupt was lost")
    assert caught.value.signum == sig and caught.value.exit_code == code
    assert "Exception ignored" not in capsys.readouterr().err  # redelivered silently
    assert sys.unraisablehook is hook  # the block's hook is gone with the block


def test_an_unrelated_exception_in_a_finalizer_still_reaches_the_earlier_hook(monkeypatch):
    class Broken:
        def __del__(self):
            raise ValueError("broken finalizer")

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_value))
    with interrupts():
        obj = Broken()
        del obj
    assert [str(e) for e in seen] == ["broken finalizer"]


def test_a_plain_first_interrupt_raises_once_with_its_exit_code():
    with pytest.raises(Interrupted) as caught, interrupts() as state:
        os.kill(os.getpid(), signal.SIGTERM)
        _loop_until_interrupted()
    assert caught.value.exit_code == 143 and state.first == signal.SIGTERM and not state.lost


def test_prefects_termination_signal_dropped_by_a_finalizer_is_raised_again_as_an_interrupt():
    """During a flow run Prefect's own SIGTERM handler raises TerminationSignal: lost in a finalizer, it comes
    back as Interrupted with SIGTERM's exit code."""
    from prefect.exceptions import TerminationSignal

    class Dropped:
        def __del__(self):
            raise TerminationSignal(signal=signal.SIGTERM)

    with pytest.raises(Interrupted) as caught, interrupts():
        obj = Dropped()
        del obj
        _loop_until_interrupted()
        pytest.fail("the termination signal was lost")
    assert caught.value.exit_code == 143


def test_a_store_failure_while_the_run_stops_keeps_the_signals_exit_code_and_says_what_failed(monkeypatch, tmp_path):
    """An interrupt whose clean-up then fails (the store refusing the KILLED record, or the interrupt lost and the
    stage failing on after it) is still reported as the interrupt: exit 130 with the resume line, and one line
    naming what failed while it stopped, not exit 3 as if the store had failed on its own."""
    from typer.testing import CliRunner

    from flows import cli

    def fake_run_flow(cfg, stage, force, log, fresh=False, rerun_from=None):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            _loop_until_interrupted()
        except Interrupted:
            raise RuntimeError("the MLflow store failed: database is locked") from None
        pytest.fail("no interrupt")

    monkeypatch.setattr(cli, "_run_flow", fake_run_flow)
    monkeypatch.setattr(cli, "_preflight", lambda cfg: None)
    monkeypatch.setenv("RECIPE_LOG_DIR", str(tmp_path / "logs"))
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--preset", "digits"])
    assert result.exit_code == 130, result.output
    assert "interrupted by SIGINT" in result.output and "to resume:" in result.output
    assert "while it stopped: the MLflow store failed: database is locked" in result.output
    assert "nothing was recorded" not in result.output and "Traceback" not in result.output
