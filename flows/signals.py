"""Ctrl-C and SIGTERM for ``flows run``: stop within seconds, record why, exit 130 / 143.

The first SIGINT or SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, where
the flow and its stages run: the stage stops at its next Python instruction, ``recipe.tracking.start_run``
ends the open MLflow runs KILLED with a ``recipe.ended_by`` note, and Prefect's engine reports the flow run
crashed. (During a flow run Prefect swaps in its own SIGTERM handler, which raises ``TerminationSignal``
and then re-sends the signal to the handler installed here; both unwind the same way.) A second signal
while that clean-up runs exits at once (``os._exit``) with the same code: what is left RUNNING in MLflow is
ended by the next run's orphan sweep.

Exit codes are the shell's convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal
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


class _State:
    first: int | None = None


@contextmanager
def interrupts(on_second=None) -> Iterator[_State]:
    """Within the block, SIGINT/SIGTERM raise :class:`Interrupted`; a second one exits the process at once.

    Only in the main thread (elsewhere signals cannot be handled; the block then changes nothing).
    ``on_second``: called (best effort) before the immediate exit, e.g. to say so on stderr.
    """
    state = _State()

    def handler(signum, frame):
        if state.first is not None:
            if on_second:
                try:
                    on_second(signum)
                except BaseException:
                    pass
            os._exit(128 + state.first)
        state.first = signum
        raise Interrupted(signum)

    previous = {}
    try:
        for sig in HANDLED:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
