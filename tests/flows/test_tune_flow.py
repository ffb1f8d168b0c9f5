"""The tune stage's trials as Prefect tasks: on a local process pool (``stages.tune.parallel=2``) and on a real
``dask.distributed`` LocalCluster on loopback (``stages.tune.dask_address``), with their MLflow runs nested
under the tune stage's run. Fake baselines and regularize stages keep these about the plumbing."""

from __future__ import annotations

import asyncio
import os

import pytest
from mlflow import MlflowClient

from flows.recipe_flow import recipe as recipe_flow
from recipe import tracking
from tests.tune.helpers import config, install

pytestmark = pytest.mark.usefixtures("prefect_harness", "mlflow_store")
SMALL = ["stages.tune.n_trials=2", "stages.tune.seeds=[0]", "stages.tune.plots=false"]


def task_run_names(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def names():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return sorted(r.name for r in runs)

    return asyncio.run(names())


def check_nested(experiment, n_trials, n_retrains):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=500)
    tune = next(
        r for r in runs if r.data.tags.get(tracking.TAG_KIND) == "stage" and r.data.tags[tracking.TAG_STAGE] == "tune"
    )
    trials = [r for r in runs if r.data.tags.get(tracking.TAG_KIND) in ("trial", "retrain")]
    assert len(trials) == n_trials + n_retrains
    for r in trials:
        assert r.data.tags["mlflow.parentRunId"] == tune.info.run_id
        assert r.info.status == "FINISHED" and r.data.tags["recipe.trial_state"] == "complete"
        assert r.data.params["model.width"] and client.get_metric_history(r.info.run_id, "val/loss")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return {r.data.tags["recipe.trial_worker"] for r in trials}


@pytest.mark.slow
def test_parallel_trials_run_as_tasks_in_worker_processes(monkeypatch):
    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    state = recipe_flow(config=config(*SMALL, "stages.tune.parallel=2", name="tune-pool"), return_state=True)
    assert state.is_completed(), state.message
    names = task_run_names(state.state_details.flow_run_id)
    assert {"trial-trial_0", "trial-trial_1", "trial-retrain_best_seed0", "trial-retrain_handed_on_seed0"} <= set(names)
    workers = check_nested("tune-pool", 2, 2)
    pids = {w.rsplit(":", 1)[1] for w in workers}
    assert str(os.getpid()) not in pids and len(pids) == 2  # two worker processes, not this one


@pytest.mark.slow
def test_trials_run_on_a_dask_cluster_through_prefect_dask(monkeypatch):
    from distributed import LocalCluster

    install(monkeypatch, hand_on={"data.augment": ["crop"]})
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster:
        cfg = config(*SMALL, f"stages.tune.dask_address={cluster.scheduler_address}", name="tune-dask")
        state = recipe_flow(config=cfg, return_state=True)
        assert state.is_completed(), state.message
        worker_pids = {str(w.pid) for w in cluster.workers.values() if getattr(w, "pid", None)}
    names = task_run_names(state.state_details.flow_run_id)
    assert {"trial-trial_0", "trial-trial_1"} <= set(names)
    workers = check_nested("tune-dask", 2, 2)
    pids = {w.rsplit(":", 1)[1] for w in workers}
    assert str(os.getpid()) not in pids and (not worker_pids or pids <= worker_pids)
