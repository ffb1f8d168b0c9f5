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
    trials = [
        optuna.trial.create_trial(
            params={"x": 0.1}, distributions=dist, state=TrialState.FAIL, user_attrs={"state": "diverged"}
        )
        for _ in range(3)
    ]
    ran, _ = checks.trials_check(trials, n_trials=3, reaped=0)
    assert ran.verdict is Verdict.FAIL and "3 failed (3 diverged)" in ran.check.observed
    assert checks.failed_share_check(trials).verdict is Verdict.WARN


def test_the_study_name_ignores_how_the_search_runs_but_not_what_it_searches():
    from recipe.config import RecipeConfig
    from recipe.tune.study import study_name

    cfg = RecipeConfig()
    name = study_name(cfg, "fp")
    same = cfg.with_overrides({"stages.tune.n_trials": 40, "stages.tune.parallel": 2, "stages.tune.seeds": [5]})
    assert study_name(same, "fp") == name and name.startswith("digits-tune-") and name.endswith("-fp")
    for change in ({"stages.tune.epochs": 3}, {"stages.tune.space.lr.high": 3}, {"optim.lr": 1e-3}):
        assert study_name(cfg.with_overrides(change), "fp") != name


def test_every_sampler_asks_within_the_space(tmp_path):
    from recipe.config import RecipeConfig
    from recipe.tune.space import resolve

    cfg = RecipeConfig().with_overrides({"data.augment": ["crop"]})
    space = resolve(cfg, cfg.stages.tune.space)
    for sampler in ("qmc", "tpe", "random", "gp"):
        s = TuneConfig(sampler=sampler, storage=str(tmp_path / f"{sampler}.log"))
        study = open_study(sampler, storage_for(s, sampler), s, seed=0)
        for i in range(3):
            trial = study.ask()
            params = space.suggest(trial)
            assert all(d.distribution._contains(d.distribution.to_internal_repr(params[d.name])) for d in space.dims)
            study.tell(trial, float(i))
