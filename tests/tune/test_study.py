"""The study's storage choice and resuming: orphaned RUNNING trials are failed and not counted."""

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from recipe.config import TuneConfig
from recipe.report import Verdict
from recipe.tune import checks
from recipe.tune.study import ORPHANED, counted, open_study, reap_orphans, storage_for


def test_storage_is_a_journal_beside_the_mlflow_store_unless_configured(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.delenv("RECIPE_OPTUNA_STORAGE", raising=False)
    s = storage_for(TuneConfig(), "study-a")
    assert s.journal.endswith("mlruns/optuna/study-a.log") and s.journal.startswith(str(tmp_path))
    assert s.spec == f"journal:{s.journal}"
    monkeypatch.setenv("RECIPE_OPTUNA_STORAGE", "postgresql://u:p@db:5432/optuna")
    s = storage_for(TuneConfig(), "study-a")
    assert s.url == "postgresql://u:p@db:5432/optuna" and s.describe() == "db:5432/optuna"  # no password shown
    s = storage_for(TuneConfig(storage=f"{tmp_path}/elsewhere/"), "study-b")
    assert s.journal == str(tmp_path / "elsewhere" / "study-b.log")


def test_trials_left_running_are_failed_as_orphans_and_not_counted(tmp_path):
    s = TuneConfig(storage=str(tmp_path / "j.log"))
    study = open_study("resume", storage_for(s, "resume"), s, seed=0)
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=1.0))
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, state=TrialState.FAIL))
    study.ask(dist)  # a trial whose process died
    again = open_study("resume", storage_for(s, "resume"), s, seed=0)  # the next run
    reaped = reap_orphans(again)
    assert [t.number for t in reaped] == [2]
    trials = again.get_trials()
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs[ORPHANED]
    assert [t.number for t in counted(again)] == [0, 1]
    ran, used = checks.trials_check(trials, n_trials=3, reaped=1)
    assert ran.verdict is Verdict.PASS and used.verdict is Verdict.WARN and "marked failed" in used.check.observed


def test_no_completed_trial_fails_the_gate(tmp_path):
    dist = {"x": FloatDistribution(0, 1)}
    trials = [optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, state=TrialState.FAIL,
                                        user_attrs={"state": "diverged"}) for _ in range(3)]  # fmt: skip
    ran, _ = checks.trials_check(trials, n_trials=3, reaped=0)
    assert ran.verdict is Verdict.FAIL and "3 failed (3 diverged)" in ran.check.observed
    assert checks.failed_share_check(trials).verdict is Verdict.WARN
