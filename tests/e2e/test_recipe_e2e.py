"""`make run` in miniature: the six real stages chained through the real CLI (`flows run recipe` in a subprocess),
the local Prefect server and a private MLflow store, on a real data set (scikit-learn's digits, 60 images a class)
with tiny budgets. Nothing is faked: each stage takes what the one before handed on.

Then the champion it registered predicts raw PNG files through `flows predict`, and the same command again reuses
all six stages' runs from MLflow (same config hash, same data fingerprint): nothing trains, the champion stays.

About 1.5 minutes on 2 busy cores. Marked ``e2e`` (``pytest -m e2e`` runs it alone); `make test` and so `.ci/run`
always run it: it has no skip condition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from recipe import tracking

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(540)]
REPO = Path(__file__).resolve().parents[2]
FLOWS = [sys.executable, "-c", "from flows.cli import main; main()"]
STAGES = ["inspect", "baselines", "overfit", "regularize", "tune", "squeeze"]
PER_CLASS = 60
# Tiny budgets that still let every stage pass or warn on 600 digits (measured: every gate passes, ~90 s on 2
# busy cores). The linear baseline gets 20 steps so that a width-8 CNN trained for seconds can beat it on 90
# validation images; every regularize / tune / squeeze knob is cut to one or two candidates.
TINY = [
    "name=e2e",
    "budget.epochs=20",
    "data.batch_size=32",
    "model.width=8",
    "optim.lr=3e-3",
    "trainer.progress=false",
    "stages.baselines.short_steps=40",
    "stages.baselines.hockey_steps=20",
    "stages.baselines.linear_steps=20",
    "stages.baselines.overfit_steps=200",
    "stages.baselines.plots=false",
    "stages.overfit.lr=3e-3",
    "stages.overfit.lr_finder=false",
    "stages.overfit.max_rungs=1",
    "stages.overfit.epochs=40",
    "stages.overfit.target_accuracy=0.95",
    "stages.regularize.epochs=12",
    "stages.regularize.augment=[]",
    "stages.regularize.weight_decay=[0.05]",
    "stages.regularize.dropout=[]",
    "stages.regularize.early_stopping=null",
    "stages.regularize.smaller_input=null",
    "stages.regularize.smaller_batch=null",
    "stages.tune.n_trials=2",
    "stages.tune.epochs=8",
    "stages.tune.seeds=[0]",
    "stages.tune.plots=false",
    "stages.tune.space.width=null",
    "stages.tune.space.depth=null",
    "stages.tune.space.batch_size=null",
    "stages.squeeze.members=2",
    "stages.squeeze.epochs=8",
    "stages.squeeze.longer=1",
    "stages.squeeze.snapshots=0",
    "stages.squeeze.bootstrap=100",
]


def _digits_subset(root: Path) -> Path:
    """``PER_CLASS`` of scikit-learn's digits per class, written as the digits source writes them (8-bit PNGs,
    ``root/<class>/<index>.png``), so the digits preset reads them with ``data.root``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)
    counts: dict[int, int] = {}
    for i, (img, target) in enumerate(zip(pixels, digits.target)):
        if counts.get(int(target), 0) == PER_CLASS:
            continue
        counts[int(target)] = counts.get(int(target), 0) + 1
        (root / str(target)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(target) / f"{i:04d}.png")
    return root


def _flows(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FLOWS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def _stage_runs(client: MlflowClient, parent_id: str) -> dict[str, object]:
    exp = client.get_experiment_by_name("e2e")
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' and tags.`{tracking.TAG_KIND}` = 'stage'"
    )
    return {r.data.tags[tracking.TAG_STAGE]: r for r in children}


def _handed_on(client: MlflowClient, run_id: str, folder: Path) -> dict[str, object]:
    """The flattened config a stage run handed on (its ``stage_result.json``)."""
    from recipe.config import RecipeConfig

    dest = folder / "handed" / run_id
    dest.mkdir(parents=True)
    data = json.loads(Path(client.download_artifacts(run_id, "stage_result.json", str(dest))).read_text())
    return RecipeConfig.model_validate(data["config"]).flat()


def _prefect_flow_runs(home: Path, what: str = "flow_runs") -> list[dict]:
    """The flow runs (or task runs: ``what="task_runs"``) on the local server, read as any client must: with its
    auth string and a CSRF token."""
    from flows.local_server import auth_string, read_info

    info = read_info(home)
    assert info is not None, "the run did not record a local Prefect server"
    auth = tuple(auth_string(home).split(":", 1))
    client = "e2e-test"
    token = httpx.get(f"{info.url}/csrf-token", params={"client": client}, auth=auth, timeout=30)
    token.raise_for_status()
    headers = {"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client}
    r = httpx.post(f"{info.url}/{what}/filter", json={}, auth=auth, headers=headers, timeout=30)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def e2e_env(tmp_path_factory, _mlflow_template):
    folder = tmp_path_factory.mktemp("e2e")
    # the session's migrated template store (tests/conftest.py): a new sqlite store's migrations cost the first
    # `flows run` seconds of CPU and are not what this test is about (tests/test_tracking.py and the spine test
    # start on new stores)
    (folder / "mlruns").mkdir()
    shutil.copy(_mlflow_template, folder / "mlruns" / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT__"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(folder / "prefect"),
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        RECIPE_DATA_DIR=str(folder / "cache"),
        RECIPE_LOG_DIR=str(folder / "logs"),
        RECIPE_PREFECT_SERVER_IDLE_S="120",
    )
    root = _digits_subset(folder / "digits")
    try:
        yield env, folder, root
    finally:
        _flows(env, "server", "stop", timeout=60)


def test_the_six_real_stages_register_a_champion_that_predicts_and_a_second_run_reuses_them(e2e_env):
    env, folder, root = e2e_env
    sets = [a for kv in [f"data.root={root}", *TINY] for a in ("--set", kv)]

    # 1. the whole recipe, as `make run` runs it
    first = _flows(env, "run", "recipe", "--preset", "digits", *sets, "--report", str(folder / "r1.json"))
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert "Traceback" not in first.stdout + first.stderr
    r1 = json.loads((folder / "r1.json").read_text())
    assert [s["stage"] for s in r1["stages"]] == STAGES
    assert all(s["verdict"] in ("pass", "warn") for s in r1["stages"]), [
        (s["stage"], c["name"]) for s in r1["stages"] for c in s["checks"] if c["verdict"] == "fail"
    ]
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(r1["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags[tracking.TAG_KIND] == "flow"
    runs = _stage_runs(client, r1["parent_run_id"])
    assert set(runs) == set(STAGES)
    assert all(runs[s].info.status == "FINISHED" for s in STAGES)
    assert [runs[s].info.run_id for s in STAGES] == [s["run_id"] for s in r1["stages"]]
    # real hand-offs: a stage run's params are the config it started from, i.e. what the stage before handed on
    for before, after in zip(STAGES[:-1], STAGES[1:]):
        handed = _handed_on(client, runs[before].info.run_id, folder)
        started = runs[after].data.params
        for key in ("optim.lr", "optim.weight_decay", "schedule.name", "model.dropout", "model.width", "budget.epochs"):
            assert started[key] == str(handed[key]), (before, after, key)
    sq = {c["name"]: c for c in r1["stages"][5]["checks"]}
    assert sq["beats_dumb_on_test"]["verdict"] == "pass" and sq["champion_round_trip"]["verdict"] == "pass"
    assert sq["test_split_fresh"]["verdict"] == "pass"

    # the flow ran on the local Prefect server: one flow run, completed, one task run per stage
    flow_runs = _prefect_flow_runs(Path(env["PREFECT_HOME"]))
    assert [fr["state_type"] for fr in flow_runs] == ["COMPLETED"]
    assert parent.data.tags.get("prefect.flow_run_id") == flow_runs[0]["id"]
    # Prefect records a task run from its client's events, in the server's task-run recorder (a service the local
    # server once left off: the flow run's page listed no stage); the events may land a moment after the flow
    # (tune's trials are tasks of the flow too: `trial-...`)
    deadline, stages, task_runs = time.monotonic() + 30, [], []
    while time.monotonic() < deadline and (
        len(stages) < len(STAGES) or any(t["state_type"] != "COMPLETED" for t in task_runs)
    ):
        time.sleep(0.5)
        task_runs = _prefect_flow_runs(Path(env["PREFECT_HOME"]), "task_runs")
        stages = sorted(t["name"].rsplit("-", 1)[0] for t in task_runs if t["name"].startswith("stage-"))
    assert stages == sorted(f"stage-{s}" for s in STAGES)
    assert {t["flow_run_id"] for t in task_runs} == {flow_runs[0]["id"]}
    assert {t["state_type"] for t in task_runs} == {"COMPLETED"}

    # 2. the champion is registered, and predicts raw PNG files in a fresh process
    version = client.get_model_version_by_alias("e2e", "champion")
    assert version.run_id == runs["squeeze"].info.run_id
    out = folder / "pred.csv"
    pred = _flows(env, "predict", "--model", "models:/e2e@champion", str(root), "--out", str(out), timeout=180)
    assert pred.returncode == 0, (pred.stdout + pred.stderr)[-3000:]
    table = pd.read_csv(out)
    assert len(table) == 10 * PER_CLASS
    probs = table[[f"prob_{c}" for c in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    truth = table["path"].map(lambda p: Path(p).parent.name).astype(str)
    accuracy = float((table["label"].astype(str) == truth).mean())
    assert accuracy >= 0.85, accuracy  # train, val and test images: the champion scored ~0.9 on test alone

    # 3. the same command again reuses all six stage runs (same settings, data and code): nothing trains again and
    # the champion stays the registered version (a second squeeze on the same data, which warns that the test split
    # was read before, is tests/stages/test_squeeze.py's)
    second = _flows(env, "run", "recipe", "--preset", "digits", *sets, "--report", str(folder / "r2.json"))
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    reused = dict(re.findall(r"stage (\w+): up to date, reused run (\w+)", second.stdout + second.stderr))
    assert reused == {s: runs[s].info.run_id for s in STAGES}
    r2 = json.loads((folder / "r2.json").read_text())
    assert [s["stage"] for s in r2["stages"]] == STAGES
    assert [s["run_id"] for s in r2["stages"]] == [s["run_id"] for s in r1["stages"]]
    assert _stage_runs(client, r2["parent_run_id"]) == {}  # nothing trained again
    assert client.get_model_version_by_alias("e2e", "champion").version == version.version
    assert len(_prefect_flow_runs(Path(env["PREFECT_HOME"]))) == 2
