"""flows.signals: the first SIGINT/SIGTERM raises Interrupted in the main thread, also when its first delivery
lands in a finalizer that drops it."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import sys
import time

import pytest

from flows import signals
from flows.signals import Interrupted, deferring_store_calls, in_store_call, interrupts


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
    assert caught.value.exit_code == 143 and state.first == signal.SIGTERM and not state.pending


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


def test_an_interrupt_inside_a_store_write_waits_until_the_write_is_whole(tmp_path):
    """A signal that arrives while SQLAlchemy executes a write (here: from its after_cursor_execute hook, right
    after the INSERT, before the commit) is raised only once SQLAlchemy's code has returned: the row is
    committed and no lock is left, where raising at once rolled it back and could leave sqlite's write lock held."""
    import sqlalchemy
    from sqlalchemy import event

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE runs (id INTEGER)")
    delivered_inside = []

    @event.listens_for(engine, "after_cursor_execute")
    def signal_mid_write(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT"):
            os.kill(os.getpid(), signal.SIGINT)
            try:
                _loop_until_interrupted(0.3)  # the handler runs here, inside SQLAlchemy's call
            except Interrupted:
                delivered_inside.append(True)
                raise

    with pytest.raises(Interrupted), interrupts():
        with engine.begin() as con:
            con.exec_driver_sql("INSERT INTO runs VALUES (1)")
        _loop_until_interrupted()
        pytest.fail("the interrupt was lost")
    assert not delivered_inside
    other = sqlite3.connect(tmp_path / "store.db", timeout=0.5)  # a lock left held would fail this write
    other.execute("INSERT INTO runs VALUES (2)")
    other.commit()
    assert [r[0] for r in other.execute("SELECT id FROM runs ORDER BY id")] == [1, 2]


def test_another_handler_is_deferred_out_of_store_calls_too():
    seen = []

    def prefect_like(signum, frame):
        seen.append(in_store_call(frame))

    wrapped = deferring_store_calls(prefect_like)
    assert deferring_store_calls(wrapped) is wrapped and deferring_store_calls(signal.SIG_DFL) is signal.SIG_DFL
    import sqlalchemy
    from sqlalchemy import event

    engine = sqlalchemy.create_engine("sqlite://")

    @event.listens_for(engine, "after_cursor_execute")
    def call_inside(conn, cursor, statement, parameters, context, executemany):
        wrapped(signal.SIGTERM, sys._getframe())  # as if SIGTERM arrived here

    previous = signal.signal(signal.SIGTERM, wrapped)
    try:
        with engine.connect() as con:
            con.exec_driver_sql("SELECT 1")
        assert seen == []  # deferred
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [False]  # run once, outside SQLAlchemy


def test_an_interrupt_that_code_swallows_and_carries_on_from_is_raised_again(monkeypatch):
    """A bare ``except:`` (or ``except BaseException``) that carries on ate the interrupt: nothing has it in hand
    for QUIET_SAMPLES samples, so the watchdog delivers it again."""
    monkeypatch.setattr(signals, "WATCH_S", 0.05)
    swallowed = []
    with pytest.raises(Interrupted) as caught, interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            _loop_until_interrupted()
        except BaseException as e:  # noqa: BLE001 -- the library that swallows it
            swallowed.append(e)
        _loop_until_interrupted()  # it used to be lost here, and the run went on
        pytest.fail("the swallowed interrupt was lost")
    assert len(swallowed) == 1 and caught.value.exit_code == 143


def test_an_interrupt_in_hand_is_not_raised_twice_however_long_its_clean_up(monkeypatch):
    monkeypatch.setattr(signals, "WATCH_S", 0.05)
    raised = []
    with pytest.raises(Interrupted), interrupts():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            _loop_until_interrupted()
        except Interrupted as e:
            raised.append(e)
            deadline = time.monotonic() + 0.6  # clean-up far longer than QUIET_SAMPLES * WATCH_S, the interrupt
            while time.monotonic() < deadline:  # in hand all along
                pass
            raise
    time.sleep(0.4)  # and nothing is delivered after the block
    assert len(raised) == 1
