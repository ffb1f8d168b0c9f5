"""The callback base class.

A callback is an object with methods named after events (see ``recipe.train.events``).
It may read and change any trainer state through ``self.trainer``. Callbacks run in
``order`` (lower first); ``run_before`` / ``run_after`` name other callback classes
(or their names) that must come after / before this one, whatever their order.

Each callback resets its own per-fit state in ``before_fit``; state that must survive a
checkpoint-resume goes through ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import graphlib
import re
from typing import TYPE_CHECKING, Any

from recipe.train.events import EVENTS

if TYPE_CHECKING:
    from recipe.train.trainer import Trainer

_EVENT_LIKE = re.compile(r"^(before|after)_[a-z_]+$")


class Callback:
    """Base class of trainer callbacks: methods named after events (``before_fit``, ``after_loss``, ...) run
    in ``order`` (lower first) subject to ``run_before``/``run_after``; ``self.trainer`` is set when added.
    :meth:`handlers` raises ValueError for a method that looks like an event but is none."""

    order: int = 0
    # True for a callback that counts data epochs in after_epoch (SWA's start, snapshot cycles): recipe.fit then
    # ends a trainer epoch at every data epoch (no EpochGroups cadence, recipe.train.cadence)
    every_epoch: bool = False
    run_before: tuple[type | str, ...] = ()
    run_after: tuple[type | str, ...] = ()
    trainer: Trainer

    @property
    def name(self) -> str:
        """snake_case class name without a trailing 'Callback': ``NanGuard`` -> ``nan_guard``."""
        base = type(self).__name__.removesuffix("Callback")
        return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()

    def handlers(self) -> dict[str, Any]:
        """Event name -> bound method. A method that looks like an event but is none is a typo: fail loudly."""
        out = {}
        for attr in dir(type(self)):
            if not _EVENT_LIKE.match(attr):
                continue
            if attr not in EVENTS:
                raise ValueError(
                    f"{type(self).__name__}.{attr} looks like an event handler but {attr!r} is not an event; "
                    f"events are: {', '.join(EVENTS)}"
                )
            out[attr] = getattr(self, attr)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


def sort_callbacks(cbs: list[Callback]) -> list[Callback]:
    """Order by ``order``, then honour run_before / run_after constraints: a topological sort
    (``graphlib.TopologicalSorter``) that, among the callbacks free to go next, always takes the first in
    ``order`` (stable for ties). Raises ValueError when the constraints form a cycle."""

    def matches(cb: Callback, ref: type | str) -> bool:
        return isinstance(cb, ref) if isinstance(ref, type) else ref in (type(cb).__name__, cb.name)

    pending = sorted(cbs, key=lambda c: c.order)
    graph = graphlib.TopologicalSorter({i: set() for i in range(len(pending))})
    for i, a in enumerate(pending):
        for j, b in enumerate(pending):
            if a is not b and (any(matches(b, r) for r in a.run_before) or any(matches(a, r) for r in b.run_after)):
                graph.add(j, i)  # a (i) must precede b (j)
    try:
        graph.prepare()
    except graphlib.CycleError as e:
        names = ", ".join(dict.fromkeys(type(pending[i]).__name__ for i in e.args[1]))
        raise ValueError(f"callback ordering constraints form a cycle among: {names}") from None
    out: list[Callback] = []
    ready: list[int] = []
    while graph.is_active():
        ready = sorted([*ready, *graph.get_ready()])
        first = ready.pop(0)
        out.append(pending[first])
        graph.done(first)
    return out
