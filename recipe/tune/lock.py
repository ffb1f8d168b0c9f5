"""One tune per study: a lock held while a study runs, so two runs of one study (two scheduled runs overlapping, a
CLI run beside a deployment run) never reap each other's trials or ask the sampler for the same points.

- :func:`file_study_lock`: an exclusive ``fcntl``/``msvcrt`` lock (the ``filelock`` package) on a file beside the
  study's journal (``<journal>.study-lock``; for an RDB study, ``<MLflow store folder>/optuna/<study>.study-lock``).
  The kernel releases it when its holder dies, ``kill -9`` included, so a dead run never blocks the next one. It
  covers the processes of one machine (or of machines sharing the folder over a file system with working locks).
- ``flows.study_lock.prefect_study_lock``: a Prefect global concurrency limit of one slot, for runs that share a
  Prefect server (``PREFECT_API_URL``), so runs on different machines exclude each other; its lease expires when
  its holder stops renewing it.

Both wait for the holder to finish, saying so once, or, with ``wait=False`` (``flows run --no-wait``,
``stages.tune.wait=false``), raise :class:`StudyBusy` at once (exit code 5 on the command line). The holder
writes who it is (host, pid, process start time, since when) beside the lock, so the message names it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from recipe import owner

Say = Callable[[str], None]
# (study name, lock file path, wait, say) -> a context manager held while the study runs
StudyLock = Callable[[str, Path, bool, Say], AbstractContextManager[None]]
POLL_S = 1.0  # how often a waiting run retries the file lock


class StudyBusy(RuntimeError):
    """Another run is tuning the same study and this run was asked not to wait (exit code 5)."""


def holder_text(path: Path) -> str:
    """Who holds the lock at ``path`` as its holder recorded it ("pid 123 on host h since 10:42:07"), or "another
    run" when nothing readable was recorded."""
    try:
        who = json.loads(Path(f"{path}.owner").read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(who["since"])))
        return f"pid {who['pid']} on {who['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


def busy_message(study: str, holder: str, *, waiting: bool) -> str:
    """What a second run of ``study`` says: who holds it, and whether this run waits or was refused."""
    if waiting:
        return (
            f"the tune study {study} is being run by {holder}: waiting for it to finish (two runs of one study "
            f"would reap each other's trials); Ctrl-C stops waiting, --no-wait refuses instead"
        )
    return (
        f"the tune study {study} is being run by {holder}, and this run was asked not to wait (--no-wait / "
        f"stages.tune.wait=false): nothing was tuned; run again when it has finished (stages that finished before "
        f"are recorded in MLflow and reused by `flows run recipe --stage tune`)"
    )


@contextmanager
def file_study_lock(study: str, path: Path, wait: bool, say: Say) -> Iterator[None]:
    """Hold the file lock at ``path`` for the block (see the module docstring).

    Raises:
        StudyBusy: ``wait`` is false and another process holds it.
    """
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise StudyBusy(busy_message(study, holder_text(path), waiting=False)) from None
        say(busy_message(study, holder_text(path), waiting=True))
        lock.acquire(poll_interval=POLL_S)
        say(f"the tune study {study} is free: this run holds it now")
    try:
        me = owner.me()
        Path(f"{path}.owner").write_text(json.dumps({"host": me["host"], "pid": me["pid"], "since": time.time()}))
        yield
    finally:
        Path(f"{path}.owner").unlink(missing_ok=True)
        lock.release()
