"""One local Prefect API server per PREFECT_HOME, shared by every local ``flows run``.

Why not Prefect's own temporary server: Prefect starts one per process (``SubprocessASGIServer``), in the
caller's process group, and gives it ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (20 s) to answer.
On a busy 2-core machine it takes 20-40 s, so runs crashed; a Ctrl-C to the terminal's process group
killed the server instead of the run; two runs on one PREFECT_HOME fought over its sqlite database; and a
``kill -9`` of the run left the server orphaned.

Here instead:

- The first ``flows run`` that needs a server starts one (``python -m flows.local_server serve``) in its
  own session (``setsid``: a terminal's Ctrl-C does not reach it), on a free loopback port, and records
  ``{pid, port, url, started}`` in ``$PREFECT_HOME/recipe-server/server.json``. The start happens under
  a file lock, so concurrent runs wait for the one that starts it and then share it.
- The startup budget is generous (``RECIPE_PREFECT_STARTUP_TIMEOUT_S``, default 120 s); a server that does
  not answer within it, or exits, is a :class:`BackendError` naming its log file.
- Each run holds a lease (a file named after its pid and process start time). The server exits by itself
  once no lease belongs to a live process for ``RECIPE_PREFECT_SERVER_IDLE_S`` seconds (default 600), so
  it never outlives its users by long, even when they were killed with ``kill -9``.
- Later runs reuse it: the fixed cost per run is a health request; the runs appear in its UI.
- ``flows server status`` / ``flows server stop`` show and stop it.

The server runs Prefect's app with ``webserver_only`` (API and UI, no scheduler, late-run or cancellation loops:
local runs need state bookkeeping, not schedulers, and those services would cost CPU on a small machine) plus
Prefect's task-run recorder: Prefect 3 records task runs (the stages, tune's trials) only from the client's events
(``prefect_app``).

Doors closed by default (DESIGN.md, "Trust boundaries"): anyone who can reach the API can start runs and read
their parameters, so the server requires HTTP basic auth (Prefect's ``PREFECT_SERVER_API_AUTH_STRING``) with a
string generated on first use and kept in ``$PREFECT_HOME/recipe-server/auth`` (mode 0600, in a 0700 folder);
the runs of ``flows run`` and ``flows serve`` send it (``PREFECT_API_AUTH_STRING``). CORS allows only the
server's own origin, and CSRF protection is on (``PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED``; Prefect's client
fetches its token). ``/api/health`` stays open: that is how runs find a live server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recipe.owner import pid_alive, process_start_time

STARTUP_TIMEOUT_ENV = "RECIPE_PREFECT_STARTUP_TIMEOUT_S"
IDLE_ENV = "RECIPE_PREFECT_SERVER_IDLE_S"
DELAY_ENV = "RECIPE_PREFECT_SERVER_START_DELAY_S"  # for tests: an artificially slow start
DB_TEMPLATE_ENV = "RECIPE_PREFECT_DB_TEMPLATE"  # a folder of migrated Prefect databases to start new homes from
DEFAULT_STARTUP_TIMEOUT_S = 120.0
DEFAULT_IDLE_S = 600.0


class BackendError(RuntimeError):
    """An orchestration or tracking backend that cannot be reached or started (exit code 3)."""


def prefect_home() -> Path:
    """``PREFECT_HOME`` (Prefect's default ``~/.prefect``), without importing Prefect."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_dir(home: Path | None = None) -> Path:
    return (home or prefect_home()) / "recipe-server"


AUTH_USER = "recipe"


def auth_string(home: Path | None = None) -> str:
    """The basic-auth string (``recipe:<random>``) of this PREFECT_HOME's local server, generated on first use.

    Kept in ``recipe-server/auth``, created with mode 0600 (exclusively, without following a symlink planted in its
    place) in a folder made 0700.

    Raises:
        BackendError: the file exists but is not a regular file owned by this user with mode 0600, or cannot be
            read or written.
    """
    import secrets as pysecrets
    import stat

    folder = state_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "auth"
    try:
        if folder.stat().st_uid == os.getuid():
            folder.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise BackendError(f"cannot create the local Prefect server's auth file {path}: {e.strerror or e}") from None
    else:
        with os.fdopen(fd, "w") as f:
            f.write(f"{AUTH_USER}:{pysecrets.token_urlsafe(32)}\n")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise BackendError(
            f"cannot read the local Prefect server's auth file {path} ({e.strerror or e}); remove it and retry"
        ) from None
    with os.fdopen(fd) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise BackendError(
                f"{path} must be a file of yours that only you can read (mode 0600); remove it and the next run "
                "makes a new one (then `flows server stop`)"
            )
        text = f.read().strip()
    if ":" not in text:
        raise BackendError(f"{path} does not hold a user:password string; remove it and retry")
    return text


def client_settings(url: str, home: Path | None = None) -> dict:
    """The Prefect settings a client of the local server needs: its API URL and auth string (for
    ``prefect.settings.temporary_settings(updates=...)``; child processes, flow runs of ``flows serve`` among them,
    inherit them)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    return {PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth_string(home)}


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise BackendError(f"{name}={raw!r} is not a number of seconds; unset it or give e.g. {name}=120") from None


@dataclass
class ServerInfo:
    """The shared local Prefect server as recorded in ``server.json``: its pid, loopback port, process start
    time (seconds since the epoch, to tell a reused pid apart) and log file path."""

    pid: int
    port: int
    started: float  # the server process's start time (seconds since the epoch, from /proc)
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def alive(self) -> bool:
        return pid_alive(self.pid) and _same_start(self.pid, self.started)


def _same_start(pid: int, started: float) -> bool:
    now = process_start_time(pid)
    return now is None or abs(now - started) < 2.0


def read_info(home: Path | None = None) -> ServerInfo | None:
    """The recorded server of ``PREFECT_HOME`` (or ``home``), or None when ``server.json`` is missing,
    unreadable or malformed. Says nothing about whether that server still runs (see :meth:`ServerInfo.alive`)."""
    path = state_dir(home) / "server.json"
    try:
        data = json.loads(path.read_text())
        return ServerInfo(int(data["pid"]), int(data["port"]), float(data["started"]), str(data["log"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@functools.cache
def _tls_context():
    """httpx's default TLS context (the CA bundle of ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, else certifi's), built
    once per process: every ``httpx.get`` builds its own, loading the whole CA bundle (~20 ms of CPU, for a plain
    http URL too), and a run that starts the server polls :func:`healthy` five times a second."""
    import httpx

    return httpx.create_ssl_context()


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether the Prefect API at ``url`` answers ``GET {url}/health`` with 200 within ``timeout`` seconds;
    False on any HTTP or connection error. An https URL is verified as httpx verifies by default."""
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=timeout, verify=_tls_context()).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lease:
    """This process's claim on the shared server: while its pid lives, the server stays up."""

    def __init__(self, home: Path | None = None) -> None:
        started = process_start_time(os.getpid()) or 0.0
        self.path = state_dir(home) / "leases" / f"{os.getpid()}-{started:.2f}"

    def take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def release(self) -> None:
        """Drop this process's lease (a missing lease file is fine) and touch ``last-used``, from which the
        server's idle timeout counts (best effort: a failed touch is ignored)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        # the idle clock starts when the last user leaves
        with contextlib.suppress(OSError):
            (self.path.parent.parent / "last-used").touch()


def live_leases(home: Path | None = None) -> list[int]:
    """Pids holding a lease whose process is still the one that took it; dead ones are removed."""
    out = []
    folder = state_dir(home) / "leases"
    for f in folder.glob("*-*") if folder.is_dir() else []:
        pid_s, _, start_s = f.name.partition("-")
        try:
            pid, start = int(pid_s), float(start_s)
        except ValueError:
            continue
        if pid_alive(pid) and _same_start(pid, start):
            out.append(pid)
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return out


def ensure_server(home: Path | None = None, say=None) -> tuple[str, Lease]:
    """The URL of this PREFECT_HOME's local server, started if need be, and a lease taken on it.

    Raises:
        BackendError: the server did not answer within ``RECIPE_PREFECT_STARTUP_TIMEOUT_S`` seconds, or
            exited while starting (the message names its log file).
    """
    from filelock import FileLock, Timeout

    home = home or prefect_home()
    budget = _float_env(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S)
    folder = state_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    lease = Lease(home)
    try:
        # Waiting for the lock is part of the budget: another run may be starting the server right now.
        with FileLock(str(folder / "server.lock"), timeout=budget + 10):
            info = read_info(home)
            if info and info.alive() and healthy(info.url):
                lease.take()
                return info.url, lease
            if info and info.alive():  # alive but not answering: a hung server; replace it
                stop_server(home)
            lease.take()  # before the server's idle watchdog first looks
            try:
                info = _start(home, budget, say)
            except BaseException:
                lease.release()
                raise
            return info.url, lease
    except Timeout:
        raise BackendError(
            f"waited {budget:.0f} s for another run to start the local Prefect server ({folder}); "
            f"raise {STARTUP_TIMEOUT_ENV} on a busy machine, or `flows server stop` and retry"
        ) from None


def _start(home: Path, budget: float, say) -> ServerInfo:
    folder = state_dir(home)
    log = folder / "server.log"
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # doors closed: basic auth, CORS for the server's own origin only, CSRF tokens on state changes
        "PREFECT_SERVER_API_AUTH_STRING": auth_string(home),
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
    }
    env.pop("PREFECT_API_URL", None)
    if say:
        say(f"starting the local Prefect server for {home} on http://127.0.0.1:{port} (log: {log})")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.local_server", "serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own session: the terminal's Ctrl-C is for the run, not for it
        )
    started = process_start_time(proc.pid) or time.time()
    info = ServerInfo(proc.pid, port, started, str(log))
    deadline = time.monotonic() + budget
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BackendError(
                    f"the local Prefect server exited with code {proc.returncode} while starting; its log is {log}"
                )
            if healthy(info.url, timeout=2.0):
                tmp = folder / f"server.json.{os.getpid()}"
                tmp.write_text(
                    json.dumps({"pid": info.pid, "port": port, "started": started, "log": str(log), "url": info.url})
                )
                tmp.replace(folder / "server.json")  # atomic: `flows server status` reads it without the lock
                return info
            time.sleep(0.2)
    except BaseException:  # Ctrl-C while it starts: a server nobody recorded must not be left behind
        _terminate(proc.pid)
        raise
    _terminate(proc.pid)
    raise BackendError(
        f"the local Prefect server did not answer within {budget:.0f} s (log: {log}); on a busy machine raise "
        f"{STARTUP_TIMEOUT_ENV} (e.g. {STARTUP_TIMEOUT_ENV}=300), or point PREFECT_API_URL at a running server"
    )


def _terminate(pid: int, grace: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_server(home: Path | None = None) -> ServerInfo | None:
    """Stop this PREFECT_HOME's local server if it runs; returns what was stopped."""
    info = read_info(home)
    if info is None:
        return None
    if info.alive():
        _terminate(info.pid)
    with contextlib.suppress(FileNotFoundError):
        (state_dir(home) / "server.json").unlink()
    return info


# --- the server process -----------------------------------------------------------------------------------


def _watch_idle(server, home: Path, idle_s: float) -> None:
    """Ask uvicorn to exit once no live process has held a lease for ``idle_s`` seconds."""
    last_busy = time.monotonic()
    while not server.should_exit:
        time.sleep(min(2.0, max(idle_s / 4, 0.2)))
        if live_leases(home):
            last_busy = time.monotonic()
        elif time.monotonic() - last_busy > idle_s:
            from filelock import FileLock

            # Under the start lock: a run that found this server a moment ago has taken its lease by now,
            # and one that comes after finds no server.json and starts a new server.
            with FileLock(str(state_dir(home) / "server.lock")):
                if live_leases(home):
                    last_busy = time.monotonic()
                    continue
                info = read_info(home)
                if info and info.pid == os.getpid():
                    with contextlib.suppress(FileNotFoundError):
                        (state_dir(home) / "server.json").unlink()
            print(f"no run has used this server for {idle_s:.0f} s: exiting", flush=True)
            server.should_exit = True


def _template_paths(home: Path) -> tuple[Path, Path] | None:
    """``(this home's Prefect database, the template to start it from)`` when ``RECIPE_PREFECT_DB_TEMPLATE`` names
    a folder and the database is Prefect's default sqlite file (``$PREFECT_HOME/prefect.db``: no database URL is
    set); else None. The template's name carries Prefect's version, so a folder outlives an upgrade."""
    folder = os.environ.get(DB_TEMPLATE_ENV, "").strip()
    if not folder or any(os.environ.get(f"PREFECT_{part}_DATABASE_CONNECTION_URL") for part in ("API", "SERVER")):
        return None
    from importlib.metadata import version

    return home / "prefect.db", Path(folder).expanduser() / f"prefect-{version('prefect')}.db"


_MEMO = "memo_store.toml"  # Prefect's record that this home's database has its block types registered


def _start_from_template(home: Path) -> Path | None:
    """A new PREFECT_HOME's database starts as a copy of the template, when there is one: creating it runs every
    one of Prefect's migrations and registers its block types, 9.5 CPU-s of a server's start on the 2-core
    machine against 4 on an existing database. For many short-lived homes (the test suite sets
    ``RECIPE_PREFECT_DB_TEMPLATE`` once per session). Returns the template copied, or None. Best effort: on any
    error Prefect creates its database."""
    paths = _template_paths(home)
    if paths is None or paths[0].exists() or not paths[1].is_file():
        return None
    db, template = paths
    tmp = db.with_name(f".{db.name}.{os.getpid()}")
    try:
        memo = template.with_suffix(".memo.toml")
        if memo.is_file() and not (home / _MEMO).exists():
            shutil.copyfile(memo, home / _MEMO)
        shutil.copyfile(template, tmp)
        os.replace(tmp, db)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    return template


def _save_template(home: Path) -> None:
    """Back this home's database up as the template when the template folder has none yet: sqlite's online
    backup, kept only if no run has reached the database (a template holds no one's runs), written beside the
    template and renamed so that concurrent servers never leave half a file. Called once Prefect's start-up has
    migrated the database and registered its block types, before the server takes its first request."""
    paths = _template_paths(home)
    if paths is None or paths[1].exists() or not paths[0].is_file():
        return
    import sqlite3

    db, template = paths
    tmp = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        src, dst = sqlite3.connect(db), sqlite3.connect(tmp)
        try:
            src.backup(dst)
            used = sum(dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("flow_run", "deployment"))
        finally:
            dst.close()
            src.close()
        if used:
            tmp.unlink()
            return
        if (home / _MEMO).is_file():
            shutil.copyfile(home / _MEMO, template.with_suffix(".memo.toml"))
        os.replace(tmp, template)
    except (OSError, sqlite3.Error):  # the next new home creates its own database
        with contextlib.suppress(OSError):
            tmp.unlink()


def prefect_app():
    """Prefect's API and UI app (``prefect.server.api.server.create_app``, ``webserver_only``: no scheduler, no
    late-run or cancellation loops, no event services) plus Prefect's task-run recorder: Prefect 3 records a task
    run only from its client's events, so without it a flow run's page lists no task run (no stage, no trial).
    (The other services an ephemeral server runs, the event persister, triggers and actions, feed the Events page
    and automations, which local runs do not use.) Its start-up also saves the database template
    (``_save_template``); uvicorn runs the start-up before it listens, so no run can reach the database first."""
    from contextlib import asynccontextmanager

    from prefect.server.api.server import create_app
    from prefect.server.services.task_run_recorder import TaskRunRecorder

    app = create_app()
    startup = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with startup(a) as state:
            _save_template(prefect_home())
            async with TaskRunRecorder.running():  # Prefect's own start and stop, honouring the recorder's setting
                yield state

    app.router.lifespan_context = lifespan
    return app


def serve(port: int) -> None:
    """Run Prefect's API (and UI) on 127.0.0.1:``port`` until idle or SIGTERM."""
    delay = _float_env(DELAY_ENV, 0.0)
    if delay:
        time.sleep(delay)
    os.environ["PREFECT__SERVER_WEBSERVER_ONLY"] = "1"
    os.environ["PREFECT__SERVER_FINAL"] = "1"
    home = prefect_home()
    template = _start_from_template(home)
    import uvicorn

    idle_s = _float_env(IDLE_ENV, DEFAULT_IDLE_S)
    config = uvicorn.Config(
        "flows.local_server:prefect_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_watch_idle, args=(server, home, idle_s), daemon=True).start()
    print(
        f"pid {os.getpid()} serving Prefect for {home} on http://127.0.0.1:{port} (idle exit {idle_s:.0f} s)"
        + (f"; its database started as a copy of {template}" if template else ""),
        flush=True,
    )
    server.run()
    info = read_info(home)
    if info and info.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (state_dir(home) / "server.json").unlink()


if __name__ == "__main__":  # python -m flows.local_server serve --port N
    if len(sys.argv) == 4 and sys.argv[1] == "serve" and sys.argv[2] == "--port":
        serve(int(sys.argv[3]))
    else:
        sys.exit("usage: python -m flows.local_server serve --port PORT")
