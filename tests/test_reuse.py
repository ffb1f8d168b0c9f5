"""Code-aware, automatic reuse: a stage is reused exactly when its settings, the earlier stages' settings, the data
and the code are those of a passing run; execution-only settings never matter (recipe.reuse, recipe.pipeline)."""

from __future__ import annotations

import shutil
import time

import pytest
from mlflow import MlflowClient

from recipe import pipeline, reuse, tracking
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage

REAL_NAMES = ["inspect", "baselines", "overfit"]  # fakes under the real names, so later-stage settings exist


@pytest.fixture
def cfg():
    return load_config(overrides=["name=reuse-test"])


@pytest.fixture
def stages(monkeypatch):
    calls: list[tuple[str, list[str]]] = []
    mods = {name: fake_stage(name, calls=calls) for name in REAL_NAMES}
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(REAL_NAMES))
    return mods, calls


def ran(calls) -> list[str]:
    return [name for name, _ in calls]


def test_a_run_on_an_up_to_date_store_reuses_every_stage_and_says_which_run(mlflow_store, stages, cfg):
    _, calls = stages
    first = pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    messages: list[str] = []
    start = time.perf_counter()
    out = pipeline.run_recipe(cfg, say=messages.append)
    assert time.perf_counter() - start < 10  # lookups only
    assert ran(calls) == [] and out.report["reused"] == REAL_NAMES and out.exit_code == 0
    before = {s["stage"]: s["run_id"] for s in first.report["stages"]}
    # the reused stages are in the outcome, each with the run it came from
    assert [(s["stage"], s["run_id"]) for s in out.report["stages"]] == list(before.items())
    for name, run_id in before.items():
        assert any(f"stage {name}: up to date, reused run {run_id}" in m for m in messages), messages
    stage = out.report["stages"][0]
    assert any(f"reused run {before['inspect']}" in n for n in stage["notes"])


def test_fresh_reruns_every_stage(mlflow_store, stages, cfg):
    _, calls = stages
    pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    out = pipeline.run_recipe(cfg, fresh=True, say=lambda m: None)
    assert ran(calls) == REAL_NAMES and out.report.get("reused", []) == []


def test_after_a_code_change_no_stage_is_reused_and_without_one_every_stage_is(mlflow_store, stages, cfg, monkeypatch):
    _, calls = stages
    pipeline.run_recipe(cfg, say=lambda m: None)
    original = reuse.code_version()
    monkeypatch.setattr(reuse, "code_version", lambda: "0123456789ab")  # the sources changed
    calls.clear()
    pipeline.run_recipe(cfg, say=lambda m: None)
    assert ran(calls) == REAL_NAMES
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("reuse-test").experiment_id],
        "tags.`recipe.kind` = 'stage'",
        order_by=["attributes.start_time DESC"],
    )
    assert {r.data.tags[tracking.TAG_CODE_VERSION] for r in runs} == {original, "0123456789ab"}
    monkeypatch.setattr(reuse, "code_version", lambda: original)  # back to the first code: its runs are reused
    calls.clear()
    assert pipeline.run_recipe(cfg, say=lambda m: None).report["reused"] == REAL_NAMES and ran(calls) == []


def test_execution_only_settings_do_not_change_the_reuse_key(mlflow_store, stages, cfg):
    _, calls = stages
    pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    how = cfg.with_overrides(
        {
            "stages.tune.parallel": 4,
            "stages.tune.dask_address": "tcp://10.0.0.1:8786",
            "stages.tune.storage": "postgresql://u@db/optuna",
            "trainer.progress": False,
            "description": "another text",
        }
    )
    assert how.config_hash() == cfg.config_hash()
    out = pipeline.run_recipe(how, say=lambda m: None)
    assert ran(calls) == [] and out.report["reused"] == REAL_NAMES


def test_a_later_stages_settings_rerun_only_that_stage(mlflow_store, stages, cfg):
    _, calls = stages
    pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    out = pipeline.run_recipe(cfg.with_overrides({"stages.overfit.max_rungs": 1}), say=lambda m: None)
    assert ran(calls) == ["overfit"] and out.report["reused"] == ["inspect", "baselines"]
    calls.clear()  # an earlier stage's settings rerun it and everything after it
    pipeline.run_recipe(cfg.with_overrides({"stages.baselines.seed_steps": 9}), say=lambda m: None)
    assert ran(calls) == ["baselines", "overfit"]


def test_a_stage_after_reused_ones_gets_its_settings_as_they_are_now_not_as_the_reused_run_recorded(
    mlflow_store, stages, monkeypatch, cfg
):
    """The reused baselines run recorded the whole config it handed on, ``stages.overfit`` and the execution-only
    settings as they were; overfit, rerun because its own settings changed, must train with the new ones (a second
    run with ``--set stages.squeeze.members=1 --stage squeeze`` reused tune and trained the first run's 2 members),
    while what the earlier stages handed on (here an optim.lr) stays."""
    mods, calls = stages
    seen = []
    inner = fake_stage("overfit", calls=calls)

    def overfit(ctx):
        seen.append((ctx.cfg.stages.overfit.max_rungs, ctx.cfg.stages.tune.parallel, ctx.cfg.optim.lr))
        return inner.run(ctx)

    mods["baselines"] = fake_stage("baselines", calls=calls, hand_on={"optim.lr": 0.0123})
    mods["overfit"] = type("M", (), {"run": staticmethod(overfit)})
    pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    changed = cfg.with_overrides({"stages.overfit.max_rungs": 1, "stages.tune.parallel": 3})
    out = pipeline.run_recipe(changed, say=lambda m: None)
    assert out.report["reused"] == ["inspect", "baselines"] and ran(calls) == ["overfit"]
    assert seen[-1] == (1, 3, 0.0123)


def test_a_failed_stage_is_rerun_and_so_is_everything_after_it(mlflow_store, stages, cfg):
    mods, calls = stages
    mods["baselines"] = fake_stage("baselines", Verdict.FAIL, calls=calls)
    pipeline.run_recipe(cfg, force=True, say=lambda m: None)
    mods["baselines"] = fake_stage("baselines", calls=calls)
    calls.clear()
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    assert ran(calls) == ["baselines", "overfit"] and out.report["reused"] == ["inspect"]


def test_the_stage_key_covers_its_own_and_earlier_settings_data_and_code():
    cfg = load_config()
    order = ["inspect", "baselines", "overfit", "regularize", "tune", "squeeze"]
    key = reuse.stage_key(cfg, "regularize", "fp", "code", order)
    assert reuse.stage_key(cfg.with_overrides({"stages.squeeze.members": 2}), "regularize", "fp", "code", order) == key
    assert reuse.stage_key(cfg.with_overrides({"stages.tune.n_trials": 3}), "regularize", "fp", "code", order) == key
    for changed in ({"stages.regularize.epochs": 3}, {"stages.inspect.max_listed": 3}, {"optim.lr": 0.1}):
        assert reuse.stage_key(cfg.with_overrides(changed), "regularize", "fp", "code", order) != key, changed
    assert reuse.stage_key(cfg, "regularize", "fp2", "code", order) != key
    assert reuse.stage_key(cfg, "regularize", "fp", "code2", order) != key
    assert reuse.stage_key(cfg, "tune", "fp", "code", order) != key


def test_the_code_version_follows_the_sources_not_compiled_files(tmp_path):
    import recipe

    root = tmp_path / "recipe"
    shutil.copytree(next(iter(recipe.__path__)), root, ignore=shutil.ignore_patterns("__pycache__"))
    before = reuse.source_hash([root])
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    (root / "notes.txt").write_text("not code")
    assert reuse.source_hash([root]) == before
    trainer = root / "train" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# a fix\n")
    changed = reuse.source_hash([root])
    assert changed != before
    (root / "train" / "extra.py").write_text("X = 1\n")
    assert reuse.source_hash([root]) not in (before, changed)
    assert len(reuse.code_version()) == 12 and reuse.code_version() == reuse.code_version()


def test_the_study_name_covers_what_changes_the_trials_and_nothing_else(monkeypatch):
    from recipe.tune.study import study_name

    cfg = load_config()
    name = study_name(cfg, "fp")
    for how in (
        {"stages.tune.parallel": 2},
        {"stages.tune.dask_address": "tcp://h:1"},
        {"trainer.progress": False},
        {"stages.squeeze.members": 2},  # a later stage's setting
    ):
        assert study_name(cfg.with_overrides(how), "fp") == name, how
    assert study_name(cfg.with_overrides({"stages.tune.sampler": "tpe"}), "fp") != name
    assert study_name(cfg, "fp", fresh="abcd1234") == f"{name}-fresh-abcd1234"
    monkeypatch.setattr(reuse, "code_version", lambda: "0123456789ab")  # other code: other trials
    assert study_name(cfg, "fp") != name


def test_a_reused_stage_keeps_its_diagnosis(mlflow_store, monkeypatch, cfg):
    """The leading cause a stage found (recipe.diagnosis) is part of its recorded result: a later run that reuses
    the stage shows it again instead of a bare verdict."""
    import dataclasses

    warned = fake_stage("inspect", verdict=Verdict.WARN)
    diagnosis = {
        "lead": "inspect_ok",
        "confirmed": True,
        "evidence": "no",
        "consequences": [],
        "also_confirmed": [],
        "summary": "leading cause: inspect_ok (no)",
    }

    def run(ctx):
        return dataclasses.replace(warned.run(ctx), diagnosis=diagnosis)

    monkeypatch.setattr(pipeline, "STAGES", {"inspect": type(warned)(run=run)})
    monkeypatch.setattr(pipeline, "stage_names", lambda: ["inspect"])
    first = pipeline.run_recipe(cfg, say=lambda m: None)
    again = pipeline.run_recipe(cfg, say=lambda m: None)
    assert again.report["reused"] == ["inspect"]
    assert first.report["stages"][0]["diagnosis"] == again.report["stages"][0]["diagnosis"] == diagnosis
