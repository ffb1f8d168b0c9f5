"""The callback base class.

A callback is an object with methods named after events (see ``recipe.train.events``).
It may read and change any trainer state through ``self.trainer``. Callbacks run in
``order`` (lower first); ``run_before`` / ``run_after`` name other callback classes
(or their names) that must come after / before this one, whatever their order.

Each callback resets its own per-fit state in ``before_fit``; state that must survive a
checkpoint-resume goes through ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from recipe.train.events import EVENTS

if TYPE_CHECKING:
    from recipe.train.trainer import Trainer

_EVENT_LIKE = re.compile(r"^(before|after)_[a-z_]+$")


class Callback:
    order: int = 0
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
    """Order by ``order``, then honour run_before / run_after constraints (a stable topological sort)."""

    def matches(cb: Callback, ref: type | str) -> bool:
        return isinstance(cb, ref) if isinstance(ref, type) else ref in (type(cb).__name__, cb.name)

    pending = sorted(cbs, key=lambda c: c.order)
    must_precede: dict[int, set[int]] = {id(c): set() for c in pending}  # id(cb) -> ids that must come before
    for a in pending:
        for b in pending:
            if a is b:
                continue
            if any(matches(b, r) for r in a.run_before) or any(matches(a, r) for r in b.run_after):
                must_precede[id(b)].add(id(a))
    out: list[Callback] = []
    placed: set[int] = set()
    while pending:
        for cb in pending:
            if must_precede[id(cb)] <= placed:
                out.append(cb)
                placed.add(id(cb))
                pending.remove(cb)
                break
        else:
            names = ", ".join(type(c).__name__ for c in pending)
            raise ValueError(f"callback ordering constraints form a cycle among: {names}")
    return out
