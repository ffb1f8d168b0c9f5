"""Hyperband (``stages.tune.pruner=hyperband``) runs in the tune stage and prunes: a tiny real search on digits,
behind fake baselines and regularize stages."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from recipe import pipeline
from recipe.data import build_manifest
from recipe.tune.space import resolve
from recipe.tune.study import open_study, storage_for, study_name
from tests.tune.helpers import config, install

OVER = [
    "stages.tune.pruner=hyperband",
    "stages.tune.n_trials=3",
    "stages.tune.epochs=3",
    "stages.tune.seeds=[0]",
    "stages.tune.plots=false",
]


def test_hyperband_prunes_trials_behind_the_rung_at_epoch_2(mlflow_store, monkeypatch):
    """With 3 epochs Hyperband has one bracket, min resource 2, reduction factor 3 (recipe.tune.study.make_pruner):
    at epoch 2 a trial goes on only when it is in the best third of the trials that reached epoch 2 (the first of
    a rung: when it is the best so far). An earlier run's trial reached a val loss of 1e-6 at epoch 2 (recorded by
    Hyperband itself through should_prune), so both new trials are pruned there, not trained to epoch 3."""
    cfg = config(*OVER, name="hyperband").with_overrides({"data.augment": ["crop"]})  # what regularize hands on
    name = study_name(cfg, build_manifest(cfg).fingerprint)
    s = cfg.stages.tune
    study = open_study(name, storage_for(s, name), s, seed=cfg.seed)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    earlier = study.ask()
    resolve(cfg, s.space).suggest(earlier)
    for epoch in (1, 2):
        earlier.report(1e-6, epoch)
    assert not earlier.should_prune()  # the first trial of the rung goes on, and its epoch-2 value is recorded
    study.tell(earlier, state=TrialState.PRUNED)

    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    out = pipeline.run_recipe(config(*OVER, name="hyperband"), say=lambda m: None)
    tune = out.results[-1]
    assert tune.metrics["tune/n_pruned"] == 3 and tune.metrics["tune/n_complete"] == 0, tune.metrics

    trials = open_study(name, storage_for(s, name), s, seed=cfg.seed).get_trials()
    new = [t for t in trials if t.number != earlier.number]
    assert len(new) == 2
    for t in new:
        assert t.state == TrialState.PRUNED and sorted(t.intermediate_values) == [1, 2]
        assert t.system_attrs["completed_rung_0"] > 1e-6
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("hyperband").experiment_id], max_results=200)
    trial_runs = [r for r in runs if r.data.tags.get("recipe.kind") == "trial"]
    assert len(trial_runs) == 2
    for r in trial_runs:
        assert r.data.tags["recipe.trial_state"] == "pruned" and r.info.status == "FINISHED"
        assert r.data.metrics["trial/epochs"] == 2
