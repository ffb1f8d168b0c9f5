"""Real server processes for the operations tests: started on free loopback ports, always stopped.

Every process starts in its own session, so stopping it signals its whole process group (uvicorn workers,
flow-run subprocesses) and nothing outlives the test that started it. Each helper waits with a deadline and,
when something does not come up, fails with the tail of that process's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flows.deployments import REPO_ROOT

BIN = Path(sys.executable).parent
STACK = REPO_ROOT / "deploy" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def http_ok(url: str) -> bool:
    # No proxies: every URL here is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without pointers at servers (tests/conftest.py set some), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_PROFILE", "RECIPE_PG_PASSWORD"}
    }
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Proc:
    """A process in its own session with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"---- last lines of {self.name} ({self.log}):\n" + "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.popen.returncode} before {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} within {timeout:.0f} s\n{self.tail()}")
            time.sleep(0.5)

    def stop(self, timeout: float = 20) -> None:
        kill_group(self.pid, timeout)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def group_alive(pgid: int) -> bool:
    """Is any process of the group running? Zombies do not count: an exited process that init has not reaped
    yet (a daemon such as the postmaster has init as parent) still answers kill(pid, 0)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return any(state != "Z" for state, _ in _group_processes(pgid))


def _group_processes(pgid: int) -> list[tuple[str, Path]]:
    """(state, /proc/<pid>) of every process in process group ``pgid``, zombies included (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
            if int(fields[2]) == pgid:
                found.append((fields[0], stat.parent))
        except (OSError, IndexError, ValueError):
            continue
    return found


def group_commands(pgid: int) -> list[str]:
    """The command lines of the processes in process group ``pgid`` (Linux /proc; a zombie's is empty)."""
    found = []
    for _, folder in _group_processes(pgid):
        try:
            found.append((folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def kill_group(pgid: int, timeout: float = 20) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pgid)
            if not group_alive(pgid):
                return
            time.sleep(0.2)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child stays a zombie (and "alive") until reaped
    except ChildProcessError:
        pass


def run_cli(
    args: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command to completion with a deadline; on failure (when ``check``) fail with its output."""
    try:
        done = subprocess.run(
            args,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(map(str, args))} did not finish within {timeout} s\n{e.stdout}\n{e.stderr}")
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def first_stage() -> str:
    """The shortest run that still exercises a real stage: the first stage of the recipe."""
    from recipe.stages import stage_names

    names = stage_names()
    if not names:
        pytest.skip("no stage is registered yet (recipe/stages ORDER is empty)")
    return names[0]


@pytest.fixture(scope="module")
def ops_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ops")


@contextmanager
def prefect_server_at(folder: Path, name: str, ui: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` (sqlite in ``folder/<name>-home``, started from the session's database template
    when there is one) on a free loopback port, with its UI when
    ``ui``; every service runs either way. Yields (its base URL, the environment a client of it needs: a private
    PREFECT_HOME and PREFECT_API_URL); stops it and checks that the port is free again. Fails with the log's tail
    when /api/health does not answer within 150 s."""
    from flows.local_server import _start_from_template

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = folder / f"{name}-home"
    home.mkdir(parents=True, exist_ok=True)
    # its database a copy of the session's migrated template, as the local servers' (tests/conftest.py), when a
    # local server has made it: `prefect server start` on a new database runs every migration and registers the
    # block types, 16 s to healthy on the 2-core machine against 8-9 s from the template (2026-12-07, two each)
    _start_from_template(home)
    server_env = clean_env(PREFECT_HOME=str(home), PREFECT_SERVER_UI_ENABLED=str(ui).lower())
    if ui:  # the UI's own API address: without it the UI calls the default port 4200, not the one given to --port
        server_env["PREFECT_UI_API_URL"] = f"{base}/api"
    proc = Proc(
        name,
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
        folder / "logs" / f"{name}.log",
    )
    try:
        proc.wait_until(lambda: http_ok(f"{base}/api/health"), 150, "healthy /api/health")
        yield base, clean_env(PREFECT_HOME=str(folder / f"{name}-client"), PREFECT_API_URL=f"{base}/api")
    finally:
        proc.stop()
    assert port_free(port), f"port {port} still taken after stopping the Prefect server"


@pytest.fixture(scope="module")
def prefect_server(ops_tmp: Path) -> Iterator[dict[str, str]]:
    """A real `prefect server start` without its UI (see ``prefect_server_at``): yields the environment a client
    of it needs (PREFECT_API_URL, a private PREFECT_HOME)."""
    with prefect_server_at(ops_tmp, "prefect-server") as (_, env):
        yield env


def copy_mlflow_store(template: Path, dest_dir: Path) -> str:
    """A migrated sqlite MLflow store (a fresh one costs seconds of migrations); returns its URI."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, dest_dir / "mlflow.db")
    return f"sqlite:///{dest_dir / 'mlflow.db'}"


def wait_flow_run(api_url: str, flow_run_id, timeout: float, logs: list[Proc] = ()):
    """Poll the flow run until it is final; fail with the workers' logs when it is not Completed in time."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_AUTH_STRING

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api_url, auth_string=PREFECT_API_AUTH_STRING.value()) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    if run.state is None or not run.state.is_completed():
        state = f"{run.state.type.value}: {run.state.message}" if run.state else "no state"
        pytest.fail(f"flow run {flow_run_id} is {state} after {timeout:.0f} s\n" + "\n".join(p.tail(60) for p in logs))
    return run


def start_mlflow_server(store: str, artifacts: Path, port: int, log: Path, timeout: float = 180) -> Proc:
    """A real `mlflow server` (one worker) on ``store`` with artifacts under ``artifacts``, on loopback ``port``;
    returns once /health answers (fails with its log's tail when it does not within ``timeout`` seconds). The
    caller stops it (``Proc.stop``)."""
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: MLflow 3's server otherwise starts a job runner and seven huey
    # consumers, eight more Python processes importing mlflow at every start (seconds of CPU each on 2 cores);
    # the recipe submits no server jobs
    proc = Proc("mlflow", cmd, clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), log)
    try:
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout, "healthy /health")
    except BaseException:
        proc.stop()
        raise
    return proc


@contextmanager
def mlflow_server_at(folder: Path, template: Path) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` (a copy of the migrated sqlite ``template`` in ``folder``, artifacts on disk there)
    on a free loopback port; yields (its URL, the artifacts folder) and stops it, checking the port is free."""
    port = free_port()
    store = copy_mlflow_store(template, folder)
    artifacts = folder / "artifacts"
    proc = start_mlflow_server(store, artifacts, port, folder / "logs" / "mlflow.log", timeout=120)
    try:
        yield f"http://127.0.0.1:{port}", artifacts
    finally:
        proc.stop()
    assert port_free(port), f"port {port} still taken after stopping the MLflow server"
