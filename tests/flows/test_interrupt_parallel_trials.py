"""Ctrl-C during parallel trials (``stages.tune.parallel=2``, a local process pool): a real `flows run` process
(fake baselines and regularize stages, the real tune stage, the local Prefect server) gets SIGINT on its process
group, as a terminal sends it, once both trials run in their workers (MLflow runs RUNNING, params logged). It
ends with exit 130 within seconds and no traceback, no process of the run survives (the trial workers included),
no MLflow run is left RUNNING (the trials' end KILLED), and the next run resumes the same study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from recipe import tracking
from tests.tune.helpers import TINY

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# `flows run recipe` with the earlier stages replaced by tests/tune/helpers.py's fakes (the CLI runs the flow in
# this process, so patching the pipeline's stage table here is what the flow sees).
DRIVER = """
import sys
from recipe import pipeline
from tests.tune.helpers import stages
mods = stages({"data.augment": ["crop"]})
pipeline.STAGES = mods
pipeline.stage_names = lambda: list(mods)
from flows.cli import main
sys.argv = ["flows", *sys.argv[1:]]
main()
"""
NAME = "tune-interrupt"


def _start(env: dict[str, str], journal: Path, parallel: int = 2) -> subprocess.Popen:
    over = [
        *TINY,
        f"name={NAME}",
        "stages.tune.n_trials=2",
        "stages.tune.epochs=8",  # long enough that both trials are seen running together on a busy machine
        "stages.tune.seeds=[0]",
        "stages.tune.plots=false",
        f"stages.tune.parallel={parallel}",
        f"stages.tune.storage={journal}",
    ]
    args = [a for o in over for a in ("--set", o)]
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, "run", "recipe", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(NAME)
    return client.search_runs([exp.experiment_id], max_results=500) if exp else []


def test_ctrl_c_during_parallel_trials_exits_130_leaves_nothing_running_and_the_next_run_resumes(
    mlflow_store, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT__"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(tmp_path / "prefect"),
        MLFLOW_TRACKING_URI=mlflow_store,
        RECIPE_PREFECT_SERVER_IDLE_S="60",
        RECIPE_LOG_DIR=str(tmp_path / "logs"),
        OMP_WAIT_POLICY="PASSIVE",
    )
    journal = tmp_path / "study.log"
    client = MlflowClient(tracking_uri=mlflow_store)
    try:
        p = _start(env, journal)
        # The event: both trials' MLflow runs are RUNNING and their workers have started them (params logged by
        # run_trial), not a sleep.
        deadline = time.monotonic() + 240
        running: list = []
        while time.monotonic() < deadline and p.poll() is None:
            running = [
                r
                for r in _runs(client)
                if r.data.tags.get(tracking.TAG_KIND) == "trial" and r.info.status == "RUNNING" and r.data.params
            ]
            if len(running) == 2:
                break
            time.sleep(0.2)
        if len(running) != 2:
            p.kill()
            pytest.fail("the trials never ran:\n" + p.communicate(timeout=30)[0][-4000:])
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
        sent = time.monotonic()
        try:
            out = p.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail("the run did not end within 30 s of Ctrl-C:\n" + p.communicate()[0][-4000:])
        took = time.monotonic() - sent
        assert p.returncode == 130, out[-4000:]
        assert took < 20, f"{took:.1f} s from Ctrl-C to exit"
        assert "Traceback" not in out, out[-4000:]
        assert _group_gone(p.pid), "a process of the run (a trial worker) outlived it"
        after = _runs(client)
        assert not [r for r in after if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
        ended = {r.info.run_id: r.info.status for r in after}
        assert {ended[r.info.run_id] for r in running} <= {"KILLED", "FAILED"}

        names = optuna.get_all_study_names(storage(journal))
        assert len(names) == 1
        study = optuna.load_study(study_name=names[0], storage=storage(journal))
        interrupted = {t.number: t.state for t in study.trials}
        done_before = {n for n, s in interrupted.items() if s == TrialState.COMPLETE}
        assert interrupted and len(done_before) < 2, interrupted

        # The next run resumes the same study: the interrupted trials do not count, two trials complete in it.
        # One at a time: `parallel` is an execution setting, not part of the study, and a second process pool's
        # start-up (two more processes importing torch) is not what this test is about.
        p2 = _start(env, journal, parallel=1)
        out2 = p2.communicate(timeout=300)[0]
        assert p2.returncode in (0, 1), out2[-4000:]  # 1: a stage verdict FAIL, not a crash
        assert optuna.get_all_study_names(storage(journal)) == names
        trials = optuna.load_study(study_name=names[0], storage=storage(journal)).trials
        assert {n for n in interrupted} < {t.number for t in trials}
        resumed = [t for t in trials if t.number not in interrupted]
        states = [(t.number, t.state, t.user_attrs.get("note")) for t in trials]
        assert all(t.state == TrialState.COMPLETE for t in resumed), states
        assert len(resumed) == 2 - len(done_before), states  # completed trials are not run again
        assert all(t.state != TrialState.RUNNING for t in trials), states
        assert not [r for r in _runs(client) if r.info.status == "RUNNING"]
    finally:
        subprocess.run(
            [sys.executable, "-c", "from flows.cli import main; main()", "server", "stop"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )


def journal_backend(path: Path):
    from optuna.storages.journal import JournalFileBackend

    return JournalFileBackend(str(path))


def storage(path: Path):
    return optuna.storages.JournalStorage(journal_backend(path))
