"""The champion's test metric is logged against its logged model and the test dataset (issue #20, item 4), so
the experiment's Models tab ranks champions across runs; a tracking error is a note, not a crash."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pandas as pd

from recipe import tracking
from recipe.squeeze import publish


def _rows(value: float, low: float, high: float) -> list[SimpleNamespace]:
    interval = SimpleNamespace(value=value, low=low, high=high)
    dumb = SimpleNamespace(value=0.1, low=0.05, high=0.15)
    return [SimpleNamespace(kind="dumb", interval=dumb), SimpleNamespace(kind="champion", interval=interval)]


def _manifest(tmp_path) -> SimpleNamespace:
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1], "split": ["train", "train", "test", "test"]})
    return SimpleNamespace(df=df, root=tmp_path, fingerprint="f1ng3rpr1nt")


def test_the_champions_test_metric_is_logged_against_its_model_and_the_test_set(mlflow_store, tmp_path):
    tracking.setup("model-metrics")
    with mlflow.start_run():
        model = mlflow.initialize_logged_model(name="champion")
        test_set = tracking.split_dataset(_manifest(tmp_path), "digits", "test")
        note = publish.log_test_metrics(
            publish.Registered(model_id=model.model_id), _rows(0.97, 0.95, 0.99), "accuracy", test_set
        )
    assert note is None
    metrics = {m.key: m for m in mlflow.get_logged_model(model.model_id).metrics}
    assert metrics["test_accuracy"].value == 0.97
    assert (metrics["test_accuracy_low"].value, metrics["test_accuracy_high"].value) == (0.95, 0.99)
    assert metrics["test_accuracy"].dataset_name == "digits-test"
    assert metrics["test_accuracy"].dataset_digest == "f1ng3rpr1nt"


def test_nothing_is_logged_without_a_model_or_a_champion_row(mlflow_store):
    assert publish.log_test_metrics(publish.Registered(), _rows(0.9, 0.8, 1.0), "accuracy", None) is None
    rows = [r for r in _rows(0.9, 0.8, 1.0) if r.kind != "champion"]
    assert publish.log_test_metrics(publish.Registered(model_id="m-1"), rows, "accuracy", None) is None


def test_a_tracking_error_becomes_a_note(mlflow_store):
    tracking.setup("model-metrics")
    with mlflow.start_run():
        note = publish.log_test_metrics(
            publish.Registered(model_id="m-does-not-exist"), _rows(0.9, 0.8, 1.0), "accuracy", None
        )
    assert note is not None and "m-does-not-exist" in note


def test_the_model_id_comes_from_the_version_or_its_source():
    assert publish.logged_model_id(SimpleNamespace(model_id="m-1", source="models:/m-2")) == "m-1"
    assert publish.logged_model_id(SimpleNamespace(model_id=None, source="models:/m-2")) == "m-2"
    assert publish.logged_model_id(SimpleNamespace(model_id=None, source="runs:/abc/model")) is None


def test_an_empty_split_has_no_dataset(tmp_path):
    assert tracking.split_dataset(_manifest(tmp_path), "digits", "val") is None
