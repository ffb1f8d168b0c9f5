"""Stage 6, squeeze, end to end on digits with a tiny budget behind fake baselines and tune stages: the candidates
nested under the squeeze run, the once-read test table, the registered champion (loaded back in a fresh process
through `flows predict`, reproducing the reported test accuracy from the raw PNG files), the model card, and the
ledger that marks a second read of the test split."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from recipe import pipeline, tracking
from recipe.config import load_config
from recipe.report import Check, StageResult, Verdict
from recipe.squeeze import publish
from recipe.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "name=squeeze-test",
    "budget.epochs=4",
    "model.width=8",
    "optim.lr=3e-3",
    "trainer.progress=false",
    "stages.squeeze.members=3",
    "stages.squeeze.longer=1.5",
    "stages.squeeze.snapshots=2",
    "stages.squeeze.bootstrap=200",
]
BASELINES = {"baseline/majority_accuracy": 0.1, "baseline/linear_accuracy": 0.5, "val/accuracy": 0.6}


def _fake(name, metrics):
    def run(ctx):
        return StageResult.from_checks(name, [Check(f"{name}_ok", "x", "y", "y", Verdict.PASS, "")], metrics, ctx.cfg)

    return SimpleNamespace(run=run)


@pytest.fixture
def squeeze_only(monkeypatch):
    mods = {
        "baselines": _fake("baselines", BASELINES),
        "tune": _fake("tune", {"val/accuracy": 0.9}),
        "squeeze": STAGES["squeeze"],
    }
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))


def _runs(experiment):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_squeeze_registers_a_champion_that_reproduces_its_test_score_from_raw_files(
    mlflow_store, squeeze_only, tmp_path
):
    out = pipeline.run_recipe(load_config(overrides=TINY), say=lambda m: None)
    sq = out.results[-1]
    checks = {c.name: c for c in sq.checks}
    assert sq.stage == "squeeze" and sq.verdict.value in ("pass", "warn"), [
        c for c in sq.checks if c.verdict.value == "fail"
    ]
    assert checks["champion_round_trip"].verdict.value == "pass"
    assert checks["champion_promoted"].verdict.value == "pass"  # the first model registered under the name
    assert checks["beats_dumb_on_test"].verdict.value == "pass"
    assert {
        "champion_chosen",
        "matches_best_single",
        "beats_linear_on_test",
        "versus_classical",
        "test_split_fresh",
        "gain_ensemble",
        "gain_swa",
        "leave_it_training",
        "distilled_student",
    } <= set(checks)
    assert "val/loss" in sq.metrics and "val/accuracy" in sq.metrics and "test/champion_accuracy" in sq.metrics

    client, runs = _runs("squeeze-test")
    stage_run = next(
        r
        for r in runs
        if r.data.tags.get(tracking.TAG_STAGE) == "squeeze" and r.data.tags.get(tracking.TAG_KIND) == "stage"
    )
    assert stage_run.data.tags["recipe.test_read"] == "true"
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_run.info.run_id]
    kinds = sorted(r.data.tags[tracking.TAG_KIND] for r in nested)
    assert kinds.count("member") == 3 and kinds.count("candidate") == 3  # longer, snapshots, student
    # SWA and EMA come from member 0's run (its training left as it is): no averaging run of their own
    member0 = next(r for r in nested if r.data.tags["mlflow.runName"] == "squeeze:member0")
    averages = {f.path for f in client.list_artifacts(member0.info.run_id, "checkpoint")}
    assert {"checkpoint/member0_swa.pt", "checkpoint/member0_ema.pt"} <= averages
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the champion's test metric is on its logged model, against the test split (the Models tab ranks by it)
    version = client.get_model_version_by_alias("squeeze-test", "challenger")
    model_metrics = {m.key: m for m in mlflow.get_logged_model(publish.logged_model_id(version)).metrics}
    assert model_metrics["test_accuracy"].value == pytest.approx(sq.metrics["test/champion_accuracy"])
    assert model_metrics["test_accuracy"].dataset_name == "squeeze-test-test"
    files = {f.path for f in client.list_artifacts(stage_run.info.run_id)}
    assert {"model_card.md", "squeeze"} <= files
    parent_files = {f.path for f in client.list_artifacts(stage_run.data.tags["mlflow.parentRunId"])}
    assert "model_card.md" in parent_files
    assert "plots/recipe_progress.png" in {f.path for f in client.list_artifacts(stage_run.info.run_id, "plots")}
    card = Path(client.download_artifacts(stage_run.info.run_id, "model_card.md", str(tmp_path))).read_text()
    assert "## Test split (read once, by squeeze)" in card and "### squeeze:" in card
    version = client.get_model_version_by_alias("squeeze-test", "champion")
    assert "## Test split" in version.description

    # a fresh process: flows predict on the raw test PNGs reproduces the reported test accuracy
    from recipe.data import load_data

    data = load_data(load_config(overrides=TINY))
    folder = tmp_path / "test_pngs"
    for path, label in zip(data.rows("test")["path"], data.rows("test")["label"], strict=True):
        (folder / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / label / Path(path).name)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PYTHONPATH": str(ROOT)}
    flows = str(Path(sys.executable).parent / "flows")  # the console script, as a user runs it
    done = subprocess.run(
        [flows, "predict", str(folder), "--model", "models:/squeeze-test@champion", "--out", str(tmp_path / "p.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"label": str})
    truth = pred["path"].map(lambda p: Path(p).parent.name)
    assert (pred["label"] == truth).mean() == pytest.approx(sq.metrics["test/champion_accuracy"], abs=1e-12)
    test_json = json.loads(
        Path(client.download_artifacts(stage_run.info.run_id, "squeeze/test.json", str(tmp_path))).read_text()
    )
    assert {r["kind"] for r in test_json} >= {"champion", "majority", "linear", "classical"}
    assert all(r["low"] <= r["value"] <= r["high"] for r in test_json)


@pytest.mark.slow
def test_a_second_squeeze_on_the_same_data_says_the_test_split_was_read(mlflow_store, squeeze_only):
    small = [
        *TINY,
        "stages.squeeze.members=1",
        "stages.squeeze.longer=1",
        "stages.squeeze.snapshots=0",
        "stages.squeeze.distill=false",
        "stages.squeeze.classical=false",
        "stages.squeeze.registry=false",
    ]
    first = pipeline.run_recipe(load_config(overrides=small), say=lambda m: None).results[-1]
    # the same config, data and code would reuse the first run: --fresh squeezes (and reads the test split) again
    second = pipeline.run_recipe(load_config(overrides=small), fresh=True, say=lambda m: None).results[-1]
    fresh = {c.name: c for c in first.checks}["test_split_fresh"]
    again = {c.name: c for c in second.checks}["test_split_fresh"]
    assert fresh.verdict.value == "pass" and again.verdict.value == "warn"
    assert "no longer an unbiased estimate" in again.observed
    # the runs its settings switch off are said to be off, not "skipped by settings, or diverged"
    assert "not trained, off in this run's settings: longer, snapshots, student" in first.notes, first.notes


VMAPPABLE = [*TINY, "model.name=cnn"]  # the zoo cnn: no batch norm, no dropout; digits has no augmentation


@pytest.mark.slow
def test_members_train_together_as_one_vectorised_model_when_they_would_run_one_after_another(
    mlflow_store, squeeze_only
):
    out = pipeline.run_recipe(load_config(overrides=[*VMAPPABLE, "name=squeeze-vmap"]), say=lambda m: None)
    sq = out.results[-1]
    assert sq.verdict.value in ("pass", "warn"), [c for c in sq.checks if c.verdict.value == "fail"]
    assert "3 members trained together as one vectorised model (torch.func.vmap)" in sq.notes
    client, runs = _runs("squeeze-vmap")
    members = [r for r in runs if r.data.tags.get("recipe.candidate", "").startswith("member")]
    assert len(members) == 3
    for r in members:  # each member is recorded as a member trained on its own is
        assert r.info.status == "FINISHED" and r.data.tags["recipe.trained_with"] == "vmap"
        assert r.data.tags["recipe.trial_state"] == "complete"
        assert 0.0 < r.data.metrics["eval/val_metric"] <= 1.0 and r.data.params["model.name"] == "cnn"
        assert client.list_artifacts(r.info.run_id, "checkpoint")
    assert len({r.data.metrics["eval/val_loss"] for r in members}) == 3  # three seeds, three models


def test_members_fall_back_to_separate_runs_when_the_vectorised_fit_raises(mlflow_store, squeeze_only, monkeypatch):
    import recipe.train.vmap as vmap

    def broken(*a, **k):
        raise RuntimeError("vmap: an op without a batching rule")

    monkeypatch.setattr(vmap, "fit_members", broken)
    cfg = load_config(overrides=[*VMAPPABLE, "name=squeeze-vmap-fallback", "stages.squeeze.members=2"])
    sq = pipeline.run_recipe(cfg, say=lambda m: None).results[-1]
    assert sq.verdict.value in ("pass", "warn")
    assert any(
        n.startswith("members trained as separate runs: the vectorised fit raised RuntimeError: vmap: an op")
        for n in sq.notes
    ), sq.notes
    _, runs = _runs("squeeze-vmap-fallback")
    members = [r for r in runs if r.data.tags.get("recipe.candidate", "").startswith("member")]
    assert len(members) == 2 and all("recipe.trained_with" not in r.data.tags for r in members)
    assert all(r.data.tags["recipe.trial_state"] == "complete" for r in members)
