"""Squeeze through the Prefect flow, as `make run` runs it: its members are Prefect tasks on the flow's trial map
(a TrialMap object, not the in-process function the stage tests use), and the champion is registered."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from flows.recipe_flow import recipe as recipe_flow
from recipe import pipeline, tracking
from recipe.config import load_config
from recipe.report import Check, StageResult, Verdict
from recipe.stages import STAGES

pytestmark = [pytest.mark.usefixtures("prefect_harness", "mlflow_store"), pytest.mark.slow]
TINY = [
    "name=squeeze-flow",
    "budget.epochs=3",
    "model.width=8",
    "optim.lr=3e-3",
    "trainer.progress=false",
    "stages.squeeze.members=2",
    "stages.squeeze.longer=1",
    "stages.squeeze.snapshots=0",
    "stages.squeeze.distill=false",
    "stages.squeeze.classical=false",
    "stages.squeeze.bootstrap=100",
]


def _fake(name, metrics):
    def run(ctx):
        return StageResult.from_checks(name, [Check(f"{name}_ok", "x", "y", "y", Verdict.PASS, "")], metrics, ctx.cfg)

    return SimpleNamespace(run=run)


def test_squeeze_members_run_as_flow_tasks_and_the_champion_is_registered(monkeypatch):
    mods = {
        "baselines": _fake("baselines", {"baseline/majority_accuracy": 0.1, "baseline/linear_accuracy": 0.5}),
        "squeeze": STAGES["squeeze"],
    }
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    state = recipe_flow(config=load_config(overrides=TINY), return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, dict), report  # a crash comes back as the exception
    squeeze = report["stages"][-1]
    assert squeeze["stage"] == "squeeze" and squeeze["verdict"] in ("pass", "warn"), squeeze["checks"]
    client = MlflowClient()
    assert client.get_model_version_by_alias("squeeze-flow", "champion").version
    exp = client.get_experiment_by_name("squeeze-flow")
    members = client.search_runs([exp.experiment_id], f"tags.`{tracking.TAG_KIND}` = 'member'")
    assert len(members) == 2 and all(r.info.status == "FINISHED" for r in members)
