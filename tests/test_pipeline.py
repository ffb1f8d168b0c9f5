"""The pipeline's control flow and what it records in MLflow, with fake stages (fast, no data work)."""

import mlflow
import pytest
from mlflow import MlflowClient

from recipe import pipeline, tracking
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage, fake_stages  # noqa: F401  (fixture)


@pytest.fixture
def cfg():
    return load_config(overrides=["name=pipeline-test"])


def runs_by_stage(experiment):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


def test_all_stages_run_in_order_with_parent_and_child_runs(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    assert [c[0] for c in calls] == ["a", "b", "c"]
    assert calls[1][1] == ["a"] and calls[2][1] == ["a", "b"]  # each stage sees the results before it
    assert out.exit_code == 0 and out.report["verdict"] == "pass"
    assert [s["stage"] for s in out.report["stages"]] == ["a", "b", "c"]

    client, runs = runs_by_stage("pipeline-test")
    parent = [r for r in runs if r.data.tags[tracking.TAG_KIND] == "flow"]
    children = [r for r in runs if r.data.tags[tracking.TAG_KIND] == "stage"]
    assert len(parent) == 1 and len(children) == 3
    pid = parent[0].info.run_id
    assert out.report["parent_run_id"] == pid and parent[0].info.status == "FINISHED"
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == pid
        assert tags[tracking.TAG_VERDICT] == "pass"
        assert tags[tracking.TAG_CONFIG_HASH] == cfg.config_hash()
        assert len(tags[tracking.TAG_FINGERPRINT]) == 12
        assert child.data.params["optim.name"] == "adam"
        names = {f.path for f in client.list_artifacts(child.info.run_id)}
        assert {"checks.json", "stage_result.json"} <= names
    # stage b starts from the config stage a handed on
    b = next(r for r in children if r.data.tags[tracking.TAG_STAGE] == "b")
    assert b.data.params["optim.lr"] == "0.01"
    assert parent[0].data.tags[tracking.TAG_VERDICT] == "pass"


def test_a_failed_stage_stops_the_flow_and_marks_runs_failed(mlflow_store, fake_stages, cfg, monkeypatch):
    mods, calls = fake_stages
    mods["b"] = fake_stage("b", Verdict.FAIL, calls=calls)
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    assert [c[0] for c in calls] == ["a", "b"]
    assert out.exit_code == 1 and out.report["stopped_at"] == "b" and out.report["skipped"] == ["c"]
    client, runs = runs_by_stage("pipeline-test")
    status = {r.data.tags[tracking.TAG_STAGE]: r.info.status for r in runs if r.data.tags[tracking.TAG_KIND] == "stage"}
    assert status == {"a": "FINISHED", "b": "FAILED"}
    parent = next(r for r in runs if r.data.tags[tracking.TAG_KIND] == "flow")
    assert parent.info.status == "FAILED" and parent.data.tags[tracking.TAG_VERDICT] == "fail"


def test_force_carries_on_and_tags_the_runs(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    mods["b"] = fake_stage("b", Verdict.FAIL, calls=calls)
    messages = []
    out = pipeline.run_recipe(cfg, force=True, say=messages.append)
    assert [c[0] for c in calls] == ["a", "b", "c"]
    assert out.exit_code == 1 and out.report["forced"] is True
    assert any("carrying on because of --force" in m for m in messages)
    _, runs = runs_by_stage("pipeline-test")
    c = next(r for r in runs if r.data.tags.get(tracking.TAG_STAGE) == "c")
    assert c.data.tags[tracking.TAG_FORCED] == "true"


def test_a_raising_stage_ends_child_and_parent_failed_and_keeps_earlier_work(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    mods["b"] = fake_stage("b", raises=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_recipe(cfg, say=lambda m: None)
    assert mlflow.active_run() is None
    _, runs = runs_by_stage("pipeline-test")
    status = {(r.data.tags[tracking.TAG_KIND], r.data.tags[tracking.TAG_STAGE]): r.info.status for r in runs}
    assert status[("stage", "a")] == "FINISHED" and status[("stage", "b")] == "FAILED"
    assert status[("flow", "all")] == "FAILED"
    a = next(r for r in runs if r.data.tags[tracking.TAG_STAGE] == "a")
    assert a.data.metrics["a/score"] == 1.0  # recorded before the crash, still there


def test_stage_reuses_passing_runs_for_the_same_config_and_data(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    pipeline.run_recipe(cfg, stage="b", say=lambda m: None)
    calls.clear()
    messages = []
    out = pipeline.run_recipe(cfg, stage="c", say=messages.append)
    assert [c[0] for c in calls] == ["c"]
    assert calls[0][1] == ["a", "b"]  # c still sees a and b, rebuilt from MLflow
    assert out.report["reused"] == ["a", "b"]
    assert sum("up to date, reused run" in m for m in messages) == 2
    # c starts from the config a handed on (through b)
    _, runs = runs_by_stage("pipeline-test")
    latest_c = [r for r in runs if r.data.tags.get(tracking.TAG_STAGE) == "c"][-1]
    assert latest_c.data.params["optim.lr"] == "0.01"


def test_stage_runs_missing_earlier_stages_first_and_says_so(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    messages = []
    pipeline.run_recipe(cfg, stage="b", say=messages.append)
    assert [c[0] for c in calls] == ["a", "b"]
    assert any("no passing run in MLflow for a, b" in m and "running them" in m for m in messages)


def test_a_different_config_does_not_reuse(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    pipeline.run_recipe(cfg, say=lambda m: None)
    calls.clear()
    pipeline.run_recipe(cfg.with_overrides({"seed": 1}), stage="b", say=lambda m: None)
    assert [c[0] for c in calls] == ["a", "b"]


def test_failed_runs_are_never_reused(mlflow_store, fake_stages, cfg):
    mods, calls = fake_stages
    mods["a"] = fake_stage("a", Verdict.FAIL, calls=calls)
    pipeline.run_recipe(cfg, say=lambda m: None)
    mods["a"] = fake_stage("a", calls=calls)
    calls.clear()
    pipeline.run_recipe(cfg, stage="b", say=lambda m: None)
    assert [c[0] for c in calls] == ["a", "b"]


def test_unknown_stage(fake_stages):
    with pytest.raises(ValueError, match="unknown stage 'z'; stages, in order: a, b, c"):
        pipeline.plan("z")


def test_the_flow_runs_scratch_folder_is_removed_when_it_ends(mlflow_store, fake_stages, cfg):
    """Checkpoints written to the work folder are MLflow artifacts by the end; the folder itself goes, whether the
    run passes or a stage raises, so a long-lived worker does not fill its disk."""
    seen = []

    def execute(name, fn, ctx):
        (ctx.workdir / "weights.pt").write_bytes(b"x")
        seen.append(ctx.workdir)
        if name == "b":
            raise RuntimeError("stage b broke")
        return fn(ctx)

    with pytest.raises(RuntimeError, match="stage b broke"):
        pipeline.run_recipe(cfg, execute=execute, say=lambda m: None)
    assert len(seen) == 2 and not any(p.exists() or p.parent.exists() for p in seen)
    seen.clear()

    def record(name, fn, ctx):
        (ctx.workdir / "weights.pt").write_bytes(b"x")
        seen.append(ctx.workdir)
        return fn(ctx)

    out = pipeline.run_recipe(cfg, execute=record, say=lambda m: None, fresh=True)  # fresh: a was recorded above
    assert out.exit_code == 0 and len(seen) == 3  # a passing run ran every stage, and leaves nothing behind either
    assert not any(p.exists() or p.parent.exists() for p in seen)


def test_the_report_follows_its_published_schema(mlflow_store, fake_stages, cfg, tmp_path):
    """recipe/report.schema.json is the pydantic model's schema, and every report written validates against it."""
    import json

    from recipe.report import SCHEMA_PATH, Report, report_schema, write_report

    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(report_schema()))  # regenerate if not
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    report = Report.model_validate(out.report)
    assert report.verdict == "pass" and [s.stage for s in report.stages] == ["a", "b", "c"]
    written = json.loads(write_report(tmp_path / "r.json", out.report).read_text())
    assert written == out.report
    with pytest.raises(ValueError, match="verdict"):
        write_report(tmp_path / "bad.json", {**out.report, "verdict": "maybe"})
