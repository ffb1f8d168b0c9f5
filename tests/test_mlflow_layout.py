"""What the MLflow UI reads of a recipe run beyond metrics: the experiment marked as model training with the
recipe's runs view, and every stage run's splits logged as its dataset inputs (fingerprint as digest)."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from recipe import pipeline, tracking
from recipe.config import load_config
from recipe.data import build_manifest
from tests.fakes import fake_stages  # noqa: F401  (fixture)


def test_the_experiment_opens_on_training_runs_with_the_verdict_column(mlflow_store):
    exp_id = tracking.setup("kinds")
    tags = MlflowClient().get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # what the UI's kind selector writes
    view = json.loads(tags[f"mlflow.sharedViewState.{tracking.VIEW_KEY}"])
    assert "tags.`recipe.verdict`" in view["selectedColumns"] and "attributes.`Dataset`" in view["selectedColumns"]
    client = MlflowClient()
    client.set_experiment_tag(exp_id, "mlflow.experimentKind", "genai_development")  # set by hand, or an old store
    tracking.setup("kinds")
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    url = tracking.experiment_runs_url("http://127.0.0.1:5000/", exp_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={tracking.VIEW_KEY}"
    )


def test_every_stage_run_logs_its_splits_with_the_fingerprint_as_digest(fake_stages, mlflow_store):
    cfg = load_config(overrides=["name=splits"])
    outcome = pipeline.run_recipe(cfg, say=lambda _: None)
    manifest = build_manifest(cfg)
    counts = manifest.df["split"].value_counts()
    client = MlflowClient()
    for stage in outcome.report["stages"]:
        inputs = client.get_run(stage["run_id"]).inputs.dataset_inputs
        got = {
            next(t.value for t in i.tags if t.key == "mlflow.data.context"): (
                i.dataset.name,
                i.dataset.digest,
                i.dataset,
            )
            for i in inputs
        }
        assert set(got) == {"train", "validation", "test"}
        for split, context in tracking.SPLIT_CONTEXTS.items():
            name, digest, ds = got[context]
            assert name == f"splits-{split}" and digest == manifest.fingerprint
            assert json.loads(ds.profile)["num_rows"] == counts[split]
    parent = client.get_run(outcome.report["parent_run_id"])
    assert parent.inputs.dataset_inputs == []  # the stages saw the data; the parent only groups them


def test_system_metrics_are_on_by_default_and_off_with_mlflows_setting(monkeypatch, mlflow_store):
    assert not tracking.system_metrics_enabled()  # tests/conftest.py turns them off
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    assert tracking.system_metrics_enabled()
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    assert not tracking.system_metrics_enabled()
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    tracking.setup("sysmetrics")
    import time

    with tracking.start_run("stage", {}, system_metrics=True) as run:
        time.sleep(1.5)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
