"""One tune per study across machines: a Prefect global concurrency limit of one slot per study.

Used by the tune stage (through :class:`flows.trials.TrialMap`) when a Prefect server is configured
(``PREFECT_API_URL`` in the environment: the stack, a deployment's worker), so runs that share the server exclude
each other wherever they run. Without one, the stage holds a file lock beside the study's journal
(:func:`recipe.tune.lock.file_study_lock`); the local server ``flows run`` starts for itself is not a shared one.

The slot is taken with a lease (``LEASE_S``) that this process renews while it holds it; when the holder dies
(``kill -9``, a lost machine), the lease lapses and the next run gets the slot, so a dead run blocks the study for
at most ``LEASE_S`` seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recipe.tune.lock import Say, StudyBusy, busy_message

LEASE_S = 60.0  # a dead holder's slot is free again after this long
FIRST_TRY_S = 10.0  # a free slot answers at once; a busy machine may need seconds


def configured() -> bool:
    """Whether a shared Prefect server is configured for this process (``PREFECT_API_URL`` in the environment)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def limit_name(study: str) -> str:
    """The global concurrency limit of ``study``: ``tune-study:<study>`` (Prefect names may not hold / % & < >)."""
    return "tune-study:" + "".join("_" if c in "/%&<>" else c for c in study)


def ensure_limit(name: str) -> None:
    """Create the one-slot limit ``name`` when it does not exist (a run racing to create it is fine)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1, active=True))
        except ObjectAlreadyExists:
            pass


@contextmanager
def prefect_study_lock(study: str, path: Path, wait: bool, say: Say) -> Iterator[None]:
    """Hold ``study``'s global concurrency slot for the block (``path``, the file lock's place, is unused: the
    lock lives on the server). Waits for it, saying so once, or with ``wait`` false raises
    :class:`recipe.tune.lock.StudyBusy`. Prefect errors (the server does not answer) propagate: exit code 3."""
    from prefect.concurrency.sync import concurrency

    name = limit_name(study)
    ensure_limit(name)
    holder = f"another run (Prefect global concurrency limit {name!r}: Concurrency in the Prefect UI)"
    acquired = False
    try:
        with concurrency(name, occupy=1, timeout_seconds=FIRST_TRY_S, lease_duration=LEASE_S, strict=True):
            acquired = True
            yield
            return
    except TimeoutError:
        if acquired:  # raised by the block itself, not by the wait for the slot
            raise
    if not wait:
        raise StudyBusy(busy_message(study, holder, waiting=False))
    say(busy_message(study, holder, waiting=True))
    with concurrency(name, occupy=1, timeout_seconds=None, lease_duration=LEASE_S, strict=True):
        say(f"the tune study {study} is free: this run holds it now")
        yield
