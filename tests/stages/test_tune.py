"""Stage 5, tune, end to end on digits with a tiny budget, behind fake baselines and regularize stages:
trials nested under the tune run with params and curves, the figures, the checks, and resuming a study whose
process was killed (a real SIGKILL)."""

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

from recipe import pipeline, tracking
from recipe.tune.study import open_storage, storage_for, study_name
from tests.tune.helpers import config, install

ROOT = Path(__file__).resolve().parents[2]


def tune_runs(experiment):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return client, runs


def test_tune_runs_trials_nested_under_its_run_and_checks_them(mlflow_store, monkeypatch):
    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    cfg = config()
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    tune = out.results[-1]
    failed = [c for c in tune.checks if c.verdict.value == "fail"]
    assert tune.stage == "tune" and tune.verdict.value in ("pass", "warn"), failed
    names = [c.name for c in tune.checks]
    assert {
        "trials_ran",
        "budget_used",
        "failed_share",
        "improves_beyond_noise",
        "beats_baselines",
        "range_edges",
        "importances",
    } <= set(names)
    assert tune.metrics["tune/n_complete"] + tune.metrics["tune/n_failed"] + tune.metrics["tune/n_pruned"] == 3
    assert any(n.startswith("searched: lr (optim.lr)") for n in tune.notes)

    client, runs = tune_runs("tune-test")
    stage_run = next(
        r for r in runs if r.data.tags.get(tracking.TAG_KIND) == "stage" and r.data.tags[tracking.TAG_STAGE] == "tune"
    )
    trials = [r for r in runs if r.data.tags.get(tracking.TAG_KIND) == "trial"]
    retrains = [r for r in runs if r.data.tags.get(tracking.TAG_KIND) == "retrain"]
    assert len(trials) == 3 and len(retrains) == 4  # 2 seeds x (best, handed-on)
    for r in trials + retrains:
        assert r.data.tags["mlflow.parentRunId"] == stage_run.info.run_id
        assert r.info.status == "FINISHED" and r.data.tags["recipe.trial_state"] == "complete"
        assert r.data.params["optim.lr"] and r.data.params["stages.tune.epochs"] == "2"
        curve = client.get_metric_history(r.info.run_id, "val/loss")
        assert len(curve) == 2 and len({m.step for m in curve}) == 2  # one point per epoch
    lrs = {r.data.params["optim.lr"] for r in trials}
    assert len(lrs) == 3  # quasi-random points, not one config thrice
    files = {f.path for f in client.list_artifacts(stage_run.info.run_id, "plots")}
    assert {
        "plots/tune_history.png",
        "plots/tune_importances.png",
        "plots/tune_slice_lr.png",
        "plots/tune_slice_augment.png",
    } <= files
    assert not [r for r in runs if r.info.status == "RUNNING"]
    if tune.verdict.value == "pass":
        assert tune.checkpoint_uri.endswith("checkpoint/tune.pt")
        assert tune.config != out.results[-2].config
    else:
        assert tune.config == out.results[-2].config


@pytest.mark.slow
def test_a_killed_tune_resumes_its_study_without_redoing_completed_trials(mlflow_store, monkeypatch, tmp_path):
    over = ["stages.tune.n_trials=6", "stages.tune.epochs=4", "stages.tune.seeds=[0]", "stages.tune.plots=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tune.helpers", *over],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cfg = config(*over).with_overrides({"data.augment": ["crop"]})  # the config the fake regularize hands on
    from recipe.data import build_manifest

    name = study_name(cfg, build_manifest(cfg).fingerprint)
    storage = storage_for(cfg.stages.tune, name)
    deadline = time.monotonic() + 240
    done: list[int] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if Path(storage.journal).exists():
                study = optuna.load_study(study_name=name, storage=open_storage(storage.spec))
                done = [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))]
                if len(done) >= 2:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the tune finished before it could be killed: give it more trials"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    study = optuna.load_study(study_name=name, storage=open_storage(storage.spec))
    before = {t.number: t.state for t in study.get_trials()}
    completed_before = {n for n, s in before.items() if s == TrialState.COMPLETE}
    assert len(completed_before) >= 2 and len(before) < 6

    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    out = pipeline.run_recipe(config(*over), say=lambda m: None)
    tune = out.results[-1]
    study = optuna.load_study(study_name=name, storage=open_storage(storage.spec))
    trials = study.get_trials()
    orphans = [t for t in trials if t.user_attrs.get("orphaned")]
    assert all(before[t.number] == TrialState.RUNNING and t.state == TrialState.FAIL for t in orphans)
    counted = [t for t in trials if not t.user_attrs.get("orphaned")]
    assert len(counted) == 6 and tune.metrics["tune/n_trials"] == 6
    assert tune.metrics["tune/n_orphaned"] == len(orphans)

    _, runs = tune_runs("tune-test")
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run was left RUNNING"
    stage_runs = sorted(
        (
            r
            for r in runs
            if r.data.tags.get(tracking.TAG_KIND) == "stage" and r.data.tags[tracking.TAG_STAGE] == "tune"
        ),
        key=lambda r: r.info.start_time,
    )
    assert len(stage_runs) == 2 and stage_runs[0].info.status == "KILLED"
    new_trials = [
        r
        for r in runs
        if r.data.tags.get(tracking.TAG_KIND) == "trial"
        and r.data.tags["mlflow.parentRunId"] == stage_runs[1].info.run_id
    ]
    rerun = {int(r.data.tags["recipe.trial"]) for r in new_trials}
    assert not rerun & completed_before, "a completed trial ran again"
    assert len(new_trials) == 6 - len([n for n, s in before.items() if s != TrialState.RUNNING])
