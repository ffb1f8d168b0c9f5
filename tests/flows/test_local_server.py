"""The shared local Prefect server: leases, idle exit, status and stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from flows import local_server
from flows.cli import app
from recipe.owner import process_start_time

runner = CliRunner()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leases_of_dead_or_reused_pids_do_not_count_and_are_removed(tmp_path):
    folder = local_server.state_dir(tmp_path) / "leases"
    folder.mkdir(parents=True)
    mine = local_server.Lease(tmp_path)
    mine.take()
    (folder / f"{_dead_pid()}-1.00").touch()
    (folder / f"{os.getpid()}-1000.00").touch()  # this pid, but another (older) process: a reused pid
    assert local_server.live_leases(tmp_path) == [os.getpid()]
    assert sorted(f.name for f in folder.iterdir()) == [mine.path.name]
    mine.release()
    assert local_server.live_leases(tmp_path) == [] and (folder.parent / "last-used").exists()


def test_status_and_stop_when_no_server_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    status = runner.invoke(app, ["server", "status"])
    assert status.exit_code == 1 and "no local Prefect server runs" in status.output
    stop = runner.invoke(app, ["server", "stop"])
    assert stop.exit_code == 0 and "no local Prefect server was recorded" in stop.output


def test_status_says_how_the_prefect_cli_reaches_the_server(tmp_path, monkeypatch):
    """A new user's `prefect artifact ls` got a 401 and a traceback: status prints the two exports it needs."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    folder = local_server.state_dir(tmp_path)
    folder.mkdir(parents=True)
    started = process_start_time(os.getpid())  # this process stands in for the server: alive, nothing answers
    (folder / "server.json").write_text(f'{{"pid": {os.getpid()}, "port": 9, "started": {started}, "log": "x"}}')
    status = runner.invoke(app, ["server", "status"])
    assert status.exit_code == 0, status.output
    auth = folder / "auth"
    assert "NOT answering" in status.output
    assert f'export PREFECT_API_URL=http://127.0.0.1:9/api PREFECT_API_AUTH_STRING="$(cat {auth})"' in status.output


def test_a_recorded_server_whose_process_is_gone_is_not_alive(tmp_path):
    folder = local_server.state_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "server.json").write_text(f'{{"pid": {_dead_pid()}, "port": 9, "started": 1.0, "log": "x"}}')
    info = local_server.read_info(tmp_path)
    assert info is not None and not info.alive()
    me = local_server.ServerInfo(os.getpid(), 9, process_start_time(os.getpid()), "x")
    assert me.alive()


def test_health_polls_load_the_ca_bundle_once_and_still_verify_https(monkeypatch):
    """A run polls ``healthy`` five times a second while the server starts; each ``httpx.get`` used to build a TLS
    context of its own, loading the whole CA bundle (~20 ms of CPU a poll, for a plain-http URL too)."""
    import ssl

    loads: list[object] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: loads.append(a) or real(*a, **k))
    local_server._tls_context.cache_clear()
    try:
        url = f"http://127.0.0.1:{local_server._free_port()}/api"  # nothing listens there
        assert not any(local_server.healthy(url, timeout=2) for _ in range(5))
        assert len(loads) == 1, loads
        ctx = local_server._tls_context()
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # https is verified as httpx's default
    finally:
        local_server._tls_context.cache_clear()


def test_a_bad_startup_budget_setting_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_PREFECT_STARTUP_TIMEOUT_S", "soon")
    with pytest.raises(local_server.BackendError, match="RECIPE_PREFECT_STARTUP_TIMEOUT_S='soon'"):
        local_server.ensure_server(tmp_path)


@pytest.mark.slow
def test_the_server_exits_by_itself_once_idle(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_PREFECT_SERVER_IDLE_S", "2")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    url, lease = local_server.ensure_server(tmp_path)
    info = local_server.read_info(tmp_path)
    try:
        assert local_server.healthy(url) and info.alive()
        again, lease2 = local_server.ensure_server(tmp_path)  # a second user shares it
        assert again == url and len(local_server.live_leases(tmp_path)) == 1  # both leases are this pid's
        lease2.release()
        lease.release()
        deadline = time.monotonic() + 90
        while info.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not info.alive(), "the idle server should have exited"
        assert local_server.read_info(tmp_path) is None
    finally:
        local_server.stop_server(tmp_path)


def _prefect_db(path, runs: int = 0) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE flow_run (id TEXT)")
    con.execute("CREATE TABLE deployment (id TEXT)")
    con.executemany("INSERT INTO flow_run VALUES (?)", [(str(i),) for i in range(runs)])
    con.commit()
    con.close()


def test_a_new_home_starts_from_the_template_the_first_server_saved(tmp_path, monkeypatch):
    """RECIPE_PREFECT_DB_TEMPLATE: the first server saves its migrated database (and Prefect's block-registration
    memo) at the end of its start-up; a new home's server starts from a copy; an existing database is never
    replaced. (The suite's servers all run this way: tests/conftest.py sets the variable.)"""
    import sqlite3

    monkeypatch.setenv("RECIPE_PREFECT_DB_TEMPLATE", str(tmp_path / "templates"))
    for var in ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
        monkeypatch.delenv(var, raising=False)
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    for home in (first, second, third):
        home.mkdir()
    _prefect_db(first / "prefect.db")
    (first / "memo_store.toml").write_text('block_auto_registration = "abc"\n')
    local_server._save_template(first)
    db, template = local_server._template_paths(second)
    assert template.is_file() and template.parent == tmp_path / "templates" and "prefect-3." in template.name
    assert [p.name for p in template.parent.iterdir() if p.name.startswith(".")] == []  # no half-written file

    assert local_server._start_from_template(second) == template
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM flow_run").fetchone() == (0,)  # the schema, from the template
    con.close()
    assert (second / "memo_store.toml").read_text() == 'block_auto_registration = "abc"\n'

    (third / "prefect.db").write_text("not a copy")
    assert local_server._start_from_template(third) is None
    assert (third / "prefect.db").read_text() == "not a copy"


def test_a_database_that_runs_reached_is_no_template_and_a_database_url_turns_templates_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_PREFECT_DB_TEMPLATE", str(tmp_path / "templates"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    _prefect_db(tmp_path / "prefect.db", runs=1)
    local_server._save_template(tmp_path)
    assert not any((tmp_path / "templates").glob("*.db"))  # a run reached it first: it holds someone's run

    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://x/y")
    assert local_server._template_paths(tmp_path) is None
    monkeypatch.delenv("RECIPE_PREFECT_DB_TEMPLATE")
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL")
    assert local_server._template_paths(tmp_path) is None


def test_the_template_is_saved_at_the_end_of_start_up_before_any_request(tmp_path, monkeypatch):
    """prefect_app wraps Prefect's start-up (migrations, block registration): the template is saved after it and
    before the app serves (uvicorn listens only once the start-up is done), so no run can be in it; the task-run
    recorder runs while it serves (without it Prefect records no task run)."""
    import asyncio
    from contextlib import asynccontextmanager

    import prefect.server.api.server as prefect_server
    from fastapi import FastAPI
    from prefect.server.services import task_run_recorder

    events = []

    @asynccontextmanager
    async def prefect_startup(app):
        events.append("prefect start-up")
        yield
        events.append("prefect shutdown")

    class Recorder:  # Prefect's task-run recorder, which the local server runs beside the web server
        @classmethod
        @asynccontextmanager
        async def running(cls):
            events.append("task-run recorder")
            yield
            events.append("recorder stopped")

    monkeypatch.setattr(prefect_server, "create_app", lambda: FastAPI(lifespan=prefect_startup))
    monkeypatch.setattr(task_run_recorder, "TaskRunRecorder", Recorder)
    monkeypatch.setattr(local_server, "_save_template", lambda home: events.append(f"template from {home}"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    app = local_server.prefect_app()

    async def serve_once():
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0)  # the event loop runs: the server's tasks start
            events.append("serving")

    asyncio.run(serve_once())
    assert events == [
        "prefect start-up",
        f"template from {tmp_path}",
        "task-run recorder",
        "serving",
        "recorder stopped",
        "prefect shutdown",
    ]
