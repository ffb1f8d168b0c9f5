"""A stage run's MLflow description (``mlflow.note.content``): its verdict table, advice and child runs."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pytest
from mlflow import MlflowClient

from recipe import pipeline, tracking
from recipe.config import load_config
from recipe.description import MAX_CHILDREN, NOTE_TAG, stage_description
from recipe.report import Check, StageResult, Verdict
from tests.fakes import fake_stage


def _with_children(name: str, n: int):
    inner = fake_stage(name, Verdict.WARN)

    def run(ctx):
        for i in range(n):
            with mlflow.start_run(run_name=f"trial_{i}", nested=True):
                pass
        return inner.run(ctx)

    return SimpleNamespace(run=run)


def test_each_stage_run_is_described_by_its_verdict_table_advice_and_children(mlflow_store, monkeypatch):
    mods = {"a": fake_stage("a"), "b": _with_children("b", 2)}
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    outcome = pipeline.run_recipe(load_config(overrides=["name=note-test"]), say=lambda m: None)
    client = MlflowClient()
    notes = {r.stage: client.get_run(r.run_id).data.tags[NOTE_TAG] for r in outcome.results}

    assert notes["a"].startswith("**stage a: PASS**")
    assert "| a_ok | PASS | yes | yes |" in notes["a"] and "What to do" not in notes["a"] and "Child" not in notes["a"]
    assert "| b_ok | WARN | no | yes |" in notes["b"] and "- **b_ok** (WARN): look here" in notes["b"]
    exp = client.get_experiment_by_name("note-test").experiment_id
    children = {
        r.info.run_name: r.info.run_id
        for r in client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{outcome.results[1].run_id}'")
    }
    assert set(children) == {"trial_0", "trial_1"}
    assert all(f"- {name}: `{rid}`" in notes["b"] for name, rid in children.items())
    assert tracking.child_runs(outcome.results[0].run_id) == []


@pytest.mark.parametrize("n", [0, MAX_CHILDREN + 5])
def test_long_values_pipes_and_many_children_keep_the_table_readable(n):
    cfg = load_config()
    check = Check("c", "h", "x | y\n" + "z" * 500, 0.123456, Verdict.FAIL, "")
    text = stage_description(StageResult.from_checks("s", [check], {}, cfg), [(f"t{i}", f"id{i}") for i in range(n)])
    row = next(line for line in text.splitlines() if line.startswith("| c |"))
    assert "x \\| y z" in row and row.endswith("| 0.1235 |") and len(row) < 250
    assert "- **c** (FAIL): h" in text  # no advice: the hypothesis says what was expected
    listed = [line for line in text.splitlines() if line.startswith("- t")]
    assert len(listed) == min(n, MAX_CHILDREN)
    assert ("and 5 more" in text) == (n > MAX_CHILDREN)
