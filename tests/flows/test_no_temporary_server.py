"""Trials on a local process pool (``stages.tune.parallel=2``) report to the Prefect server the flow runs on: the
pool's event-forwarding thread must see the ``PREFECT_API_URL`` that the CLI sets with ``temporary_settings``.
Prefect starts that thread without the caller's context variables, so it saw no URL and its first forwarded event
started Prefect's temporary server in the middle of the tune stage ("Starting temporary server" in the log)."""

from __future__ import annotations

import threading

from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner

from flows.trials import _PoolRunner

URL = "http://127.0.0.1:9/api"


def _url_seen_by_forwarder(runner_cls, monkeypatch) -> str | None:
    seen: dict[str, str | None] = {}
    done = threading.Event()

    def record(self):  # stands in for Prefect's loop: what settings does this thread see?
        seen["url"] = get_current_settings().api.url
        done.set()

    monkeypatch.setattr(ProcessPoolTaskRunner, "_forward_subprocess_messages", record)
    with temporary_settings(updates={PREFECT_API_URL: URL}), runner_cls(max_workers=1):
        assert done.wait(30)
    return seen["url"]


def test_the_pool_forwards_worker_events_to_the_callers_server(monkeypatch):
    assert _url_seen_by_forwarder(_PoolRunner, monkeypatch) == URL


def test_prefects_own_pool_thread_does_not_see_it(monkeypatch):
    # Why _PoolRunner exists; when this fails, Prefect carries the context itself and the subclass can go.
    assert _url_seen_by_forwarder(ProcessPoolTaskRunner, monkeypatch) != URL
