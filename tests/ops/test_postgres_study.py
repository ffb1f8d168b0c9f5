"""The tune study on a real PostgreSQL (``stages.tune.storage=postgresql://...``, the stack's storage):
a killed tune resumes its study there without redoing completed trials, and the median pruner, read by a trial
from the database, prunes a trial worse than the earlier ones.

A throwaway cluster per module: ``initdb`` in a temporary folder, loopback TCP on a free port, trust auth for
loopback only, stopped and removed afterwards. As root it runs as the ``postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.ops.conftest import free_port, port_free

pytestmark = pytest.mark.ops
ROOT = Path(__file__).resolve().parents[2]
OVER = ["stages.tune.n_trials=4", "stages.tune.epochs=2", "stages.tune.seeds=[0]", "stages.tune.plots=false"]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [None])[-1]
    return Path(found).parent if found else None


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster with an empty ``optuna`` database; yields its SQLAlchemy URL (psycopg 3)."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to run PostgreSQL as")
    # Under /tmp and open to others: as root, the postgres user must reach the data folder.
    top = Path(tempfile.mkdtemp(prefix="recipe-pg-", dir="/tmp"))
    top.chmod(0o755)
    data, log = top / "data", top / "postgres.log"
    data.mkdir(mode=0o700)
    log.touch()
    if os.geteuid() == 0:
        for p in (data, log):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    port = free_port()
    run = dict(capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    try:
        init = subprocess.run(
            _as_pg([str(pg / "initdb"), "-D", str(data), "-U", "recipe", "--auth=trust", "-E", "UTF8", "--no-locale"]),
            **run,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        start = subprocess.run(
            _as_pg([str(pg / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]), **run
        )
        assert start.returncode == 0, start.stdout + start.stderr + log.read_text()
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=recipe dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://recipe@127.0.0.1:{port}/optuna"  # SQLAlchemy 2.1: psycopg 3
    finally:
        subprocess.run(_as_pg([str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]), **run)
        shutil.rmtree(top, ignore_errors=True)
    assert port_free(port), f"port {port} still taken after stopping PostgreSQL"


def _study_name(cfg) -> str:
    from recipe.data import build_manifest
    from recipe.tune.study import study_name

    return study_name(cfg, build_manifest(cfg).fingerprint)


def test_a_killed_tune_resumes_its_postgres_study_without_redoing_completed_trials(
    postgres, mlflow_store, monkeypatch, tmp_path
):
    from mlflow import MlflowClient

    from recipe import pipeline
    from tests.tune.helpers import config, install

    over = [*OVER, f"stages.tune.storage={postgres}"]
    cfg = config(*over).with_overrides({"data.augment": ["crop"]})  # what the fake regularize hands on
    name = _study_name(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tune.helpers", *over],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    try:
        # The event: the first trial is COMPLETE in the database (not a sleep).
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                study = optuna.load_study(study_name=name, storage=postgres)
            except KeyError:  # the study is not created yet
                time.sleep(0.2)
                continue
            if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the tune ended before it could be killed: give it more trials"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: t.state for t in optuna.load_study(study_name=name, storage=postgres).get_trials()}
    completed_before = {n for n, s in before.items() if s == TrialState.COMPLETE}
    assert completed_before and len(completed_before) < 4, before

    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    out = pipeline.run_recipe(config(*over), say=lambda m: None)
    tune = out.results[-1]
    trials = optuna.load_study(study_name=name, storage=postgres).get_trials()
    orphans = [t for t in trials if t.user_attrs.get("orphaned")]
    assert all(before[t.number] == TrialState.RUNNING and t.state == TrialState.FAIL for t in orphans)
    assert len([t for t in trials if not t.user_attrs.get("orphaned")]) == 4 and tune.metrics["tune/n_trials"] == 4
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("tune-test").experiment_id], max_results=500)
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run was left RUNNING"
    stages = sorted((r for r in runs if r.data.tags.get("recipe.kind") == "stage"), key=lambda r: r.info.start_time)
    tune_runs = [r for r in stages if r.data.tags.get("recipe.stage") == "tune"]
    rerun = {
        int(r.data.tags["recipe.trial"])
        for r in runs
        if r.data.tags.get("recipe.kind") == "trial" and r.data.tags["mlflow.parentRunId"] == tune_runs[-1].info.run_id
    }
    assert rerun and not rerun & completed_before, f"completed trials {completed_before} ran again: {rerun}"
    assert len(rerun) == 4 - len([n for n, s in before.items() if s != TrialState.RUNNING])


def test_the_median_pruner_prunes_a_bad_trial_through_postgres(postgres, mlflow_store, tmp_path):
    """Four earlier trials reached a val loss of 0.01 by every epoch (MedianPruner's 4 startup trials); a trial
    trained with a learning rate far too small reports its epochs to PostgreSQL from the trial code and is pruned
    at the first epoch past the warm-up (3 epochs of 4), not trained to the end."""
    from mlflow import MlflowClient
    from optuna.distributions import FloatDistribution

    from recipe.config import TuneConfig
    from recipe.tune.study import open_study, storage_for
    from recipe.tune.trial import TrialSpec, run_trial
    from tests.tune.helpers import config

    s = TuneConfig(storage=postgres, pruner="median", epochs=4)
    storage = storage_for(s, "median-pg")
    assert storage.url == postgres
    study = open_study("median-pg", storage, s, seed=0)
    dist = {"lr": FloatDistribution(1e-6, 1.0, log=True)}
    for lr in (1e-3, 2e-3, 3e-3, 4e-3):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr}, distributions=dist, value=0.01, intermediate_values={e: 0.01 for e in range(1, 5)}
            )
        )
    with warnings.catch_warnings():  # the stage beats for its trials itself (recipe.tune.study.heartbeats)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        trial = study.ask(dist)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("median-pg")).info.run_id
    cfg = config("optim.lr=1e-6")  # a bad trial: it barely moves from the initial loss
    spec = TrialSpec(
        config=cfg.to_dict(),
        name=f"trial_{trial.number}",
        run_id=run_id,
        tracking_uri=mlflow_store,
        epochs=4,
        workdir=str(tmp_path),
        number=trial.number,
        trial_id=trial._trial_id,
        study_name="median-pg",
        storage=storage.spec,
        pruner="median",
    )
    result = run_trial(spec)
    assert result.pruning and result.state == "pruned", (result.state, result.note, result.error)
    assert result.epochs == 3 and "pruned by the study after epoch 3" in result.note
    reported = optuna.load_study(study_name="median-pg", storage=postgres).trials[trial.number].intermediate_values
    assert sorted(reported) == [1, 2, 3] and min(reported.values()) > 0.01  # the curve is in PostgreSQL
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["recipe.trial_state"] == "pruned"
