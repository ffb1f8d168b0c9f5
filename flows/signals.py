"""Ctrl-C and SIGTERM for ``flows run``: stop within seconds, record why, exit 130 / 143.

The first SIGINT or SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, where
the flow and its stages run: the stage stops at its next Python instruction, ``recipe.tracking.start_run``
ends the open MLflow runs KILLED with a ``recipe.ended_by`` note, and Prefect's engine reports the flow run
crashed. (During a flow run Prefect swaps in its own SIGTERM handler, which raises ``TerminationSignal``
and then re-sends the signal to the handler installed here; both unwind the same way.) A second signal
while that clean-up runs exits at once (``os._exit``) with the same code: what is left RUNNING in MLflow is
ended by the next run's orphan sweep.

A signal handler's exception is raised wherever the main thread happens to be, and when that is a finalizer (a
``__del__``, a weakref callback such as SQLAlchemy's class registry runs during garbage collection) Python
prints "Exception ignored in ..." and drops it: the run went on as if Ctrl-C had never been pressed (seen: a
SIGINT 0.2-0.5 s into the baselines stage, which then finished and exited 0). Those drops go through
``sys.unraisablehook``; the block's hook catches a dropped interrupt and delivers it again 20 ms later
(``_thread.interrupt_main`` from a helper thread), so it is raised outside the finalizer, silently.

Exit codes are the shell's convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
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


def _redeliver_later() -> None:
    """Run the SIGINT handler (ours: it raises Interrupted with the first signal's number) in the main thread
    after ``REDELIVER_AFTER_S``, from a helper thread: tripped from the main thread itself, the handler would
    run at once, still inside the finalizer."""
    timer = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, args=(signal.SIGINT,))
    timer.daemon = True
    timer.start()


def _within(frame, code) -> bool:
    """Whether ``frame`` or one of its callers runs ``code``."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


class _State:
    first: int | None = None  # the first signal received
    lost: bool = False  # its exception was dropped in a finalizer and is being delivered again


@contextmanager
def interrupts(on_second=None) -> Iterator[_State]:
    """Within the block, SIGINT/SIGTERM raise :class:`Interrupted`; a second one exits the process at once.

    Only in the main thread (elsewhere signals cannot be handled; the block then changes nothing).
    ``on_second``: called (best effort) before the immediate exit, e.g. to say so on stderr.
    An interrupt that a finalizer swallowed is raised again (see the module docstring).
    """
    state = _State()

    def handler(signum, frame):
        if state.lost:  # our own redelivery of the first signal, not a second one from outside
            if _within(frame, unraisable.__code__):  # still in the hook, where it would be dropped again: later
                _redeliver_later()
                return
            state.lost = False
            raise Interrupted(state.first)
        if state.first is not None:
            if on_second:
                try:
                    on_second(signum)
                except BaseException:
                    pass
            os._exit(128 + state.first)
        state.first = signum
        raise Interrupted(signum)

    def unraisable(info) -> None:
        sig = signal_of(info.exc_value)
        if sig is not None and not state.lost:
            if state.first is None:  # Prefect's SIGTERM handler (TerminationSignal) took it, not ours
                state.first = sig
            state.lost = True
            _redeliver_later()
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
        for sig, old in previous.items():
            signal.signal(sig, old)
        if previous:
            sys.unraisablehook = earlier_hook
