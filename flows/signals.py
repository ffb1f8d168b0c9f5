"""Ctrl-C and SIGTERM for ``flows run``: stop within seconds, record why, exit 130 / 143.

The first SIGINT or SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, where
the flow and its stages run: the stage stops at its next Python instruction, ``recipe.tracking.start_run``
ends the open MLflow runs KILLED with a ``recipe.ended_by`` note, and Prefect's engine reports the flow run
crashed. (During a flow run Prefect swaps in its own SIGTERM handler, which raises ``TerminationSignal``
and then re-sends the signal to the handler installed here; both unwind the same way.) A second signal
while that clean-up runs exits at once (``os._exit``) with the same code: what is left RUNNING in MLflow is
ended by the next run's orphan sweep.

A signal handler's exception is raised wherever the main thread happens to be. Two places are made safe:
- *Inside SQLAlchemy* (an MLflow store write, a study's RDB write): an exception there can leave the connection
  holding sqlite's write lock, so that the run's own KILLED record waits out the busy timeout and fails "database
  is locked" (CI, a SIGINT sent as a stage started: exit 3, runs left RUNNING). The handler does not raise
  there; it runs again every ``REDELIVER_AFTER_S`` until the main thread is out of SQLAlchemy's code, so the
  write completes (or rolls back) whole. :func:`deferring_store_calls` does the same for another handler
  (Prefect's SIGTERM handler during a flow run).
- *In a finalizer* (a ``__del__``, a weakref callback such as SQLAlchemy's class registry runs during garbage
  collection) Python prints "Exception ignored in ..." and drops the exception: the run went on as if Ctrl-C
  had never been pressed (a SIGINT 0.2-0.5 s into the baselines stage, which then finished and exited 0). Those
  drops go through ``sys.unraisablehook``; the block's hook catches a dropped interrupt and delivers it again.
- *In code that swallows it* (a bare ``except:`` or ``except BaseException`` that carries on; seen once in 20
  SIGINTs sent during the baselines stage's imports: the stage finished and the run exited 0, nothing printed).
  After raising, a watchdog thread samples the main thread's exception in flight (``sys._current_exceptions``):
  while the interrupt unwinds, every ``finally``, ``__exit__`` and ``except`` it passes has it in hand; when
  ``QUIET_SAMPLES`` samples ``WATCH_S`` apart find none and the CLI has not taken it (:attr:`_State.taken`), it
  was swallowed, and it is delivered again.
A redelivery is ``_thread.interrupt_main`` from a helper thread (tripped from the main thread itself, the handler
would run at once, still where it was).

Exit codes are the shell's convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; ``exit_code`` is 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} (pid {os.getpid()})")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_of(e: BaseException) -> int | None:
    """The signal behind an interrupt-like exception, or None: Interrupted, Prefect's TerminationSignal
    (``.signal``), a bare KeyboardInterrupt (SIGINT)."""
    for attr in ("signum", "signal"):
        value = getattr(e, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(e, KeyboardInterrupt):
        return signal.SIGINT
    return None


REDELIVER_AFTER_S = 0.02


def _redeliver_later(signum: int = signal.SIGINT, wanted=lambda: True) -> None:
    """Run the handler of ``signum`` in the main thread after ``REDELIVER_AFTER_S``, from a helper thread, if
    ``wanted()`` still says so then."""

    def deliver() -> None:
        if wanted():
            _thread.interrupt_main(signum)

    timer = threading.Timer(REDELIVER_AFTER_S, deliver)
    timer.daemon = True
    timer.start()


def _stack(frame) -> Iterator:
    """``frame`` and its callers, innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def _within(frame, code) -> bool:
    """Whether ``frame`` or one of its callers runs ``code``."""
    return any(f.f_code is code for f in _stack(frame))


def in_store_call(frame) -> bool:
    """Whether ``frame`` or one of its callers is SQLAlchemy's code: a database call (MLflow's store, Optuna's RDB
    storage) is under way and must not be broken off in the middle."""
    return any(f.f_globals.get("__name__", "").startswith("sqlalchemy.") for f in _stack(frame))


def deferring_store_calls(handler):
    """``handler`` (a Python signal handler) wrapped so that it runs only outside SQLAlchemy's code: a signal that
    arrives inside is handled ``REDELIVER_AFTER_S`` later, again until the main thread is out. A handler that is
    not a Python function (``SIG_DFL``, ``SIG_IGN``, None) or already wrapped is returned as it is."""
    if not callable(handler) or getattr(handler, "_defers_store_calls", False):
        return handler

    def wrapper(signum, frame):
        if in_store_call(frame):
            _redeliver_later(signum)
            return None
        return handler(signum, frame)

    wrapper._defers_store_calls = True
    return wrapper


@contextmanager
def store_calls_deferred(signum: int = signal.SIGTERM) -> Iterator[None]:
    """Within the block, the handler installed for ``signum`` (Prefect's SIGTERM handler during a flow run) runs
    only outside SQLAlchemy's code (:func:`deferring_store_calls`); restored after. Main thread only (elsewhere
    nothing changes)."""
    try:
        previous = signal.signal(signum, deferring_store_calls(signal.getsignal(signum)))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


WATCH_S = 0.5
QUIET_SAMPLES = 4


def _carries_interrupt(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from or during (``__cause__``, ``__context__``) is an
    interrupt."""
    seen = 0
    while exc is not None and seen < 20:
        if signal_of(exc) is not None:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _in_flight(thread_id: int) -> BaseException | None:
    """The exception the thread is handling now (in an ``except``, ``finally`` or ``__exit__``), or None."""
    info = sys._current_exceptions().get(thread_id)
    if isinstance(info, tuple):  # Python 3.11: (type, value, traceback)
        info = info[1]
    return info


class _State:
    first: int | None = None  # the first signal received
    pending: bool = False  # its Interrupted is still to be raised: deferred or dropped, being delivered again
    taken: bool = False  # the code that reports the interrupt has it (the CLI): no more watching
    closed: bool = False  # the block ended


@contextmanager
def interrupts(on_second=None) -> Iterator[_State]:
    """Within the block, SIGINT/SIGTERM raise :class:`Interrupted`; a second one exits the process at once.

    Only in the main thread (elsewhere signals cannot be handled; the block then changes nothing).
    ``on_second``: called (best effort) before the immediate exit, e.g. to say so on stderr.
    An interrupt is not raised inside SQLAlchemy's code, and one that a finalizer swallowed is raised again (see
    the module docstring).
    """
    state = _State()

    def handler(signum, frame):
        redelivered = state.pending  # our own redelivery of the first signal, not a second one from outside
        if not redelivered:
            if state.first is not None:
                if on_second:
                    try:
                        on_second(signum)
                    except BaseException:
                        pass
                os._exit(128 + state.first)
            state.first = signum
        if in_store_call(frame) or _within(frame, unraisable.__code__):  # see the module docstring: later
            state.pending = True
            _redeliver_later(wanted=lambda: not state.closed)
            return
        state.pending = False
        if not redelivered:
            threading.Thread(target=watch, name="interrupt-watchdog", daemon=True).start()
        raise Interrupted(state.first)

    def watch() -> None:
        main = threading.main_thread().ident
        quiet = 0
        while not (state.taken or state.closed):
            time.sleep(WATCH_S)
            if state.taken or state.closed or state.pending:
                quiet = 0
                continue
            quiet = 0 if _carries_interrupt(_in_flight(main)) else quiet + 1
            if quiet >= QUIET_SAMPLES:  # nothing has had it in hand for a while: it was swallowed
                quiet = 0
                state.pending = True
                if not state.closed:
                    _thread.interrupt_main(signal.SIGINT)

    def unraisable(info) -> None:
        sig = signal_of(info.exc_value)
        if sig is not None and not state.pending:
            if state.first is None:  # Prefect's SIGTERM handler (TerminationSignal) took it, not ours
                state.first = sig
            state.pending = True
            _redeliver_later(wanted=lambda: not state.closed)
            return
        earlier_hook(info)

    previous = {}
    try:
        for sig in HANDLED:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        previous = {}
    earlier_hook = sys.unraisablehook
    if previous:
        sys.unraisablehook = unraisable
    try:
        yield state
    finally:
        state.closed = True
        for sig, old in previous.items():
            signal.signal(sig, old)
        if previous:
            sys.unraisablehook = earlier_hook
