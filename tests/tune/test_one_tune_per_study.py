"""One tune per study: the study lock (a file lock; Prefect's global concurrency limit when a server is shared),
the owner-aware orphan reaper, trials lost with their worker retried once, an unreachable storage as exit 3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from recipe.config import TuneConfig
from recipe.tracking import TrackingError
from recipe.tune.lock import StudyBusy, file_study_lock
from recipe.tune.study import (
    LOST,
    ORPHANED,
    OWNER,
    RETRIED,
    StudyStorageError,
    counted,
    open_study,
    owner_tag,
    reap_orphans,
    retry_once,
    storage_for,
)

ROOT = Path(__file__).resolve().parents[2]
DIST = {"x": FloatDistribution(0, 1)}
HOLD = """
import sys, time
from pathlib import Path
from recipe.tune.lock import file_study_lock
with file_study_lock("s", Path(sys.argv[1]), True, print):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(lock: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_refuses_or_waits_and_a_killed_holder_frees_the_study(tmp_path):
    lock = tmp_path / "study.log.study-lock"
    holder = _holder(lock)
    try:
        with (
            pytest.raises(StudyBusy, match=rf"pid {holder.pid} on .*--no-wait"),
            file_study_lock("s", lock, False, print),
        ):
            pass
        said: list[str] = []
        got = threading.Event()

        def second() -> None:
            with file_study_lock("s", lock, True, said.append):
                got.set()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.5)
        assert not got.is_set() and said and "waiting for it to finish" in said[0] and str(holder.pid) in said[0]
        os.kill(holder.pid, signal.SIGKILL)  # the kernel drops a dead holder's lock
        holder.wait(timeout=30)
        t.join(timeout=30)
        assert got.is_set() and "free" in said[-1]
    finally:
        if holder.poll() is None:
            holder.kill()
    assert not Path(f"{lock}.owner").exists()


def _study(tmp_path: Path, name: str = "s") -> optuna.Study:
    s = TuneConfig(storage=str(tmp_path / "j.log"))
    return open_study(name, storage_for(s, name), s, seed=0)


def test_the_reaper_fails_only_trials_whose_owner_is_dead_and_retries_them_once(tmp_path):
    study = _study(tmp_path)
    live = study.ask(DIST)  # asked by this (live) process
    live.set_user_attr(OWNER, owner_tag())
    dead = study.ask(DIST)
    dead_proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = owner_tag().split("|")[0]
    dead.set_user_attr(OWNER, f"{host}|{dead_proc.stdout.strip()}|1.00")
    elsewhere = study.ask(DIST)
    elsewhere.set_user_attr(OWNER, "another-host|1|1.00")
    x = dead.params["x"]

    again = _study(tmp_path)  # the next run opens the study
    reaped = reap_orphans(again)
    assert [t.number for t in reaped] == [dead.number]
    trials = {t.number: t for t in again.get_trials()}
    assert trials[live.number].state == TrialState.RUNNING and trials[elsewhere.number].state == TrialState.RUNNING
    assert trials[dead.number].state == TrialState.FAIL and trials[dead.number].user_attrs[ORPHANED]
    retry = trials[trials[dead.number].user_attrs[RETRIED]]
    assert retry.state == TrialState.WAITING and retry.params == {"x": x}
    assert retry.system_attrs["failed_trial"] == dead.number and OWNER not in retry.user_attrs

    asked = again.ask(DIST)  # the next ask runs the retry, with the same point
    assert asked.number == retry.number and asked.params["x"] == x
    again.tell(asked, 0.5)
    assert [t.number for t in counted(again)] == [retry.number]


def test_a_lost_trial_is_retried_once_and_a_lost_retry_counts(tmp_path):
    study = _study(tmp_path)
    first = study.ask(DIST)
    n = retry_once(study, study._storage.get_trial(first._trial_id))  # as the stage does: retry, then tell
    study.tell(first, state=TrialState.FAIL)
    assert n is not None and study.trials[first.number].user_attrs[RETRIED] == n
    retry = study.ask(DIST)
    assert retry.number == n and retry.params == first.params
    study.tell(retry, state=TrialState.FAIL)  # Optuna's stale-trial rule calls it on a failed trial: no error
    assert retry_once(study, study.trials[n]) is None  # max_retry=1: no retry of a retry
    assert [t.number for t in counted(study)] == [n]  # the lost retry counts: a dying worker cannot loop forever


def test_a_killed_trial_worker_is_retried_with_the_same_point(mlflow_store, monkeypatch):
    from recipe import pipeline
    from tests.tune.helpers import config, install

    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    calls = {"n": 0}

    def dying_worker_map(fn, items):
        # What flows.trials.TrialMap hands back when a worker process dies: the item's exception, in order.
        out = []
        for item in items:
            calls["n"] += 1
            out.append(RuntimeError("worker process died") if calls["n"] == 1 else fn(item))
        return out

    dying_worker_map.in_thread = True  # trials run in this process: share the loaded data with them
    cfg = config("stages.tune.n_trials=2", "stages.tune.seeds=[0]", "stages.tune.plots=false", name="lost")
    out = pipeline.run_recipe(cfg, say=lambda m: None, map_trials=dying_worker_map)
    tune = out.results[-1]
    from recipe.data import build_manifest
    from recipe.tune.study import open_storage, study_name

    base = cfg.with_overrides({"data.augment": ["crop"]})
    name = study_name(base, build_manifest(base).fingerprint)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_for(base.stages.tune, name).spec))
    trials = study.get_trials()
    lost = trials[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs[LOST] and "worker process died" in lost.user_attrs["note"]
    retry = trials[lost.user_attrs[RETRIED]]
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert len(counted(study)) == 2 and all(t.state == TrialState.COMPLETE for t in counted(study))
    assert tune.verdict.value in ("pass", "warn")
    from mlflow import MlflowClient

    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("lost").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    lost_run = next(r for r in runs if r.info.run_id == lost.user_attrs["mlflow_run_id"])
    assert lost_run.info.status == "FAILED" and "worker process died" in lost_run.data.tags["recipe.trial_note"]


def test_an_unreachable_study_storage_is_a_backend_error_without_the_password(tmp_path):
    s = TuneConfig(storage="postgresql+psycopg2://user:SECRET@127.0.0.1:9/optuna")
    with pytest.raises(StudyStorageError) as err:
        open_study("s", storage_for(s, "s"), s, seed=0)
    assert isinstance(err.value, TrackingError) and "SECRET" not in str(err.value)
    assert "127.0.0.1:9/optuna" in str(err.value) and "stages.tune.storage" in str(err.value)


def test_an_unwritable_journal_folder_is_a_backend_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyStorageError, match="cannot be created"):
        storage_for(TuneConfig(storage=str(tmp_path / "file" / "sub" / "j.log")), "s")


@pytest.mark.slow
def test_two_concurrent_tunes_of_one_study_never_reap_each_others_trials(mlflow_store, tmp_path):
    """Two real processes tune the same study at once: the second waits for the first, then resumes the study with
    every trial complete; neither reaps the other's trials."""
    # Enough trials that the first still holds the study when the second (a fresh process) reaches it.
    over = ["stages.tune.n_trials=10", "stages.tune.epochs=2", "stages.tune.seeds=[0]", "stages.tune.plots=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "tests.tune.helpers", *over]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = Path(mlflow_store.removeprefix("sqlite:///")).parent / "optuna"
    deadline = time.monotonic() + 240
    while not list(locks.glob("*.study-lock.owner")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[0][-3000:]
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    first_out = first.communicate(timeout=400)[0]
    assert first.returncode in (0, 1) and second.returncode in (0, 1), (first_out[-2000:], second.stderr[-2000:])
    assert "waiting for it to finish" in second.stderr, "the first run ended before the second reached the study"
    from tests.tune.helpers import config

    base = config(*over).with_overrides({"data.augment": ["crop"]})
    from recipe.data import build_manifest
    from recipe.tune.study import open_storage, study_name

    name = study_name(base, build_manifest(base).fingerprint)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_for(base.stages.tune, name).spec))
    trials = study.get_trials()
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    assert not [t for t in trials if t.user_attrs.get(ORPHANED) or t.user_attrs.get(LOST)]


def test_no_wait_on_the_command_line_refuses_a_busy_study_with_exit_5(monkeypatch):
    from typer.testing import CliRunner

    from flows import cli

    def busy(cfg, stage, force, log, **_):
        assert cfg.stages.tune.wait is False
        raise StudyBusy(
            "the tune study s is being run by pid 1 on h since 10:00:00, and this run was asked not to wait"
        )

    monkeypatch.setattr(cli, "_preflight", lambda cfg: None)
    monkeypatch.setattr(cli, "_run_flow", busy)
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--no-wait"])
    assert result.exit_code == 5, result.output
    assert "is being run by pid 1" in result.output and "Traceback" not in result.output


def test_on_an_rdb_storage_a_trial_whose_heartbeat_stopped_is_failed_and_retried(tmp_path, monkeypatch):
    """Optuna's stale-trial rule covers owners the owner rule cannot judge (another host): the stage beats for its
    running trials; when the beats stop for the grace period, the next run fails the trial and retries it once."""
    from recipe.tune import study as study_mod

    monkeypatch.setattr(study_mod, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_mod, "HEARTBEAT_GRACE_S", 2)
    s = TuneConfig(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study = open_study("rdb", storage_for(s, "rdb"), s, seed=0)
    trial = study.ask(DIST)
    trial.set_user_attr(OWNER, "another-host|1|1.00")  # the owner rule leaves another host's trial alone
    with study_mod.heartbeats(study, [trial._trial_id]):
        time.sleep(0.5)
    assert reap_orphans(open_study("rdb", storage_for(s, "rdb"), s, seed=0)) == []
    time.sleep(3)  # no beats for longer than the grace period: stale
    again = open_study("rdb", storage_for(s, "rdb"), s, seed=0)
    reap_orphans(again)
    trials = again.get_trials()
    assert trials[0].state == TrialState.FAIL
    retry = trials[1]
    assert retry.state == TrialState.WAITING and retry.params == trials[0].params
    assert retry.system_attrs["failed_trial"] == 0 and [t.number for t in counted(again)] == []
