"""A `flows run recipe` of three fake stages whose second one meets a backend fault; run as a process
(``python -m tests.faults.run MODE FOLDER``) so that the test can stop a server under it and a later run finds
its runs orphaned (their owner dead), as after a real CLI run.

Modes (stage b):
- ``server-down``: writes ``FOLDER/b-started``, waits for ``FOLDER/server-stopped`` (the test stops the tracking
  server), then logs: the store is gone.
- ``disk-full``: logs a 1 MB artifact; the test put the artifact folder on a tiny tmpfs, or, with
  ``RECIPE_FAULT_INJECT=1``, every artifact write fails with ENOSPC (a fault-injecting artifact store).
- ``prefect-down``: raises what Prefect's client raises when its server is gone (``httpx.ConnectError``).
- ``prefect-stop``: the real Prefect flow on the server ``PREFECT_API_URL`` names; b waits for
  ``FOLDER/server-stopped`` (the test stops that server) and then finishes. Prefect's events client sends to
  that server without reconnecting (``reconnection_attempts=0``; Prefect's default, 10 tries with 1 s pauses
  per queued event, kept the process alive ~20 s after its last line, draining events at exit).

Except in ``prefect-stop``, the flow runs without Prefect (the pipeline directly), so only the fault under test
can fail it.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

from recipe import pipeline, tracking
from tests.fakes import fake_stage

MODES = ("server-down", "disk-full", "prefect-down", "prefect-stop")


def _server_stopped(folder: Path, timeout: float = 180) -> None:
    """Say that stage b started (``FOLDER/b-started``) and wait for the test's ``FOLDER/server-stopped``; a test
    that never stops its server gets an AssertionError here (the run crashes, exit 4), not a run that carried on
    without the fault it was meant to meet."""
    (folder / "b-started").write_text("")
    deadline = time.monotonic() + timeout
    while not (folder / "server-stopped").exists():
        assert time.monotonic() < deadline, f"the test did not stop the server within {timeout:.0f} s"
        time.sleep(0.2)


def faulty_b(mode: str, folder: Path):
    ok = fake_stage("b")

    def run(ctx):
        if mode == "server-down":
            _server_stopped(folder)
            tracking.log_metrics({"b/score": 1.0})
        elif mode == "disk-full":
            big = ctx.workdir / "big.bin"
            big.write_bytes(b"\0" * 1_000_000)
            if os.environ.get("RECIPE_FAULT_INJECT") == "1":  # from here on the artifact store is full
                inject_enospc()
            tracking.log_artifact(big, "b")
        elif mode == "prefect-stop":  # the real flow; the test stops its Prefect server while b runs
            _server_stopped(folder)
        elif mode == "prefect-down":
            import httpx

            raise httpx.ConnectError("[Errno 111] Connection refused")
        return ok.run(ctx)

    return run


def inject_enospc() -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.artifact_dir))

    LocalArtifactRepository.log_artifact = full
    LocalArtifactRepository.log_artifacts = full


def main(mode: str, folder: Path) -> None:
    from types import SimpleNamespace

    assert mode in MODES, f"unknown mode {mode!r}; modes: {', '.join(MODES)}"  # else b would meet no fault
    mods = {"a": fake_stage("a"), "b": SimpleNamespace(run=faulty_b(mode, folder)), "c": fake_stage("c")}
    pipeline.STAGES = mods
    pipeline.stage_names = lambda: list(mods)
    from flows import cli

    if mode == "prefect-stop":  # the real server's events, without Prefect's reconnection pauses once it is gone
        from prefect.events.clients import PrefectEventsClient
        from prefect.events.worker import EventsWorker

        EventsWorker.set_client_override(PrefectEventsClient, reconnection_attempts=0)
    if mode != "prefect-stop":  # without Prefect: only the fault under test can fail the run
        cli._run_flow = lambda cfg, stage, force, log, fresh=False, rerun_from=None: (
            pipeline.run_recipe(cfg, stage=stage, force=force, fresh=fresh, rerun_from=rerun_from).report
        )
    cli.app(["run", "recipe", "--set", "name=faults"])


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
