import math

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from recipe import tracking
from recipe.config import load_config
from recipe.tracking import MLflowLogger
from tests.train.conftest import make_trainer


def test_default_store_is_the_project_sqlite_file(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_experiment_per_recipe_with_artifacts_beside_the_store(mlflow_store, tmp_path):
    exp_id = tracking.setup("my-recipe")
    assert tracking.setup("my-recipe") == exp_id  # idempotent
    exp = MlflowClient().get_experiment(exp_id)
    assert exp.name == "my-recipe"
    assert exp.artifact_location == (tmp_path / "mlruns" / "artifacts" / "my-recipe").as_uri()


def test_logger_records_every_step_and_epoch(mlflow_store):
    tracking.setup("logger")
    t = make_trainer([MLflowLogger()])
    with tracking.start_run("fit", {"recipe.stage": "test"}) as run:
        t.fit(3)
    hist = MlflowClient().get_metric_history
    steps = hist(run.info.run_id, "train/step_loss")
    assert [m.step for m in steps] == list(range(1, t.step + 1))
    assert [m.value for m in steps] == pytest.approx(t.cb("recorder").losses)
    val = hist(run.info.run_id, "val/loss")
    assert [m.step for m in val] == [0, 1, 2]
    assert [m.value for m in val] == pytest.approx([row["val/loss"] for row in t.history])
    assert len(hist(run.info.run_id, "step/lr")) == 1  # constant: logged once, not every step


def test_logger_needs_an_active_run():
    t = make_trainer([MLflowLogger()])
    with pytest.raises(RuntimeError, match="needs an active MLflow run"):
        t.fit(1)


def test_a_raising_body_ends_the_run_failed(mlflow_store):
    tracking.setup("fails")
    with pytest.raises(ZeroDivisionError):
        with tracking.start_run("boom", {}) as run:
            tracking.log_metrics({"before": 1.0})
            1 / 0
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FAILED" and got.data.metrics["before"] == 1.0
    assert mlflow.active_run() is None


def test_params_are_the_flattened_config(mlflow_store):
    cfg = load_config()
    tracking.setup("params")
    with tracking.start_run("p", {}, params=cfg.flat()) as run:
        pass
    params = MlflowClient().get_run(run.info.run_id).data.params
    assert params["optim.lr"] == "0.0003" and params["data.split.seed"] == "0" and params["budget.max_steps"] == "null"
    assert params["data.augment"] == "[]"


def test_latest_stage_verdicts_for_flows_stages(mlflow_store):
    cfg = load_config(overrides=["name=verdicts"])
    tracking.setup(cfg.name)
    for verdict in ("fail", "pass"):
        with tracking.start_run("inspect", tracking.run_tags(cfg, "f" * 12, "inspect", "stage")):
            tracking.set_tags({tracking.TAG_VERDICT: verdict})
    latest = tracking.latest_stage_verdicts(cfg.name, cfg.config_hash())
    assert latest["inspect"]["verdict"] == "pass"
    assert tracking.latest_stage_verdicts("no-such-recipe", "x") == {}


def test_log_metrics_records_every_real_scalar_and_refuses_the_rest(mlflow_store):
    tracking.setup("scalars")
    values = {"py": 1, "flag": True, "f32": np.float32(0.25), "i64": np.int64(3), "arr0": np.array(0.5),
              "t0": torch.tensor(2.5), "t1": torch.tensor([1.5]), "nan": float("nan")}
    with tracking.start_run("scalars", {}) as run:
        tracking.log_metrics(values)
        for bad in ("text", None, np.array([1.0, 2.0]), torch.zeros(3), 1 + 2j):
            with pytest.raises(TypeError, match="is not a real scalar"):
                tracking.log_metrics({"bad": bad, "fine": 1.0})
    got = MlflowClient().get_run(run.info.run_id).data.metrics
    assert {k: got[k] for k in values if k != "nan"} == {
        "py": 1.0, "flag": 1.0, "f32": 0.25, "i64": 3.0, "arr0": 0.5, "t0": 2.5, "t1": 1.5,
    }
    assert math.isnan(got["nan"]) and "fine" not in got  # nothing of a refused call is logged
