import math
import time

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
    assert (
        params["optim.lr"] == str(cfg.optim.lr)
        and params["data.split.seed"] == "0"
        and params["budget.max_steps"] == "null"
    )
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
    values = {
        "py": 1,
        "flag": True,
        "f32": np.float32(0.25),
        "i64": np.int64(3),
        "arr0": np.array(0.5),
        "t0": torch.tensor(2.5),
        "t1": torch.tensor([1.5]),
        "nan": float("nan"),
    }
    with tracking.start_run("scalars", {}) as run:
        tracking.log_metrics(values)
        for bad in ("text", None, np.array([1.0, 2.0]), torch.zeros(3), 1 + 2j):
            with pytest.raises(TypeError, match="is not a real scalar"):
                tracking.log_metrics({"bad": bad, "fine": 1.0})
    got = MlflowClient().get_run(run.info.run_id).data.metrics
    assert {k: got[k] for k in values if k != "nan"} == {
        "py": 1.0,
        "flag": 1.0,
        "f32": 0.25,
        "i64": 3.0,
        "arr0": 0.5,
        "t0": 2.5,
        "t1": 1.5,
    }
    assert math.isnan(got["nan"]) and "fine" not in got  # nothing of a refused call is logged


def _spawn_and_reap() -> int:
    """The pid of a process that has exited (and been reaped): free, or soon reused by another process."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_runs_carry_their_owner_process(mlflow_store):
    import os

    from recipe.owner import hostname, process_start_time

    tracking.setup("owner")
    with tracking.start_run("r", {}) as run:
        pass
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags[tracking.TAG_OWNER_HOST] == hostname() and tags[tracking.TAG_OWNER_PID] == str(os.getpid())
    assert float(tags[tracking.TAG_OWNER_START]) == pytest.approx(process_start_time(os.getpid()))


def test_an_interrupt_ends_the_run_killed_with_a_note(mlflow_store):
    tracking.setup("interrupt")
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("parent", {}) as parent:
            with tracking.start_run("child", {}, nested=True) as child:
                raise KeyboardInterrupt("interrupted by SIGINT (pid 1)")
    client = MlflowClient()
    for run in (parent, child):
        got = client.get_run(run.info.run_id)
        assert got.info.status == "KILLED"
        assert got.data.tags[tracking.TAG_ENDED_BY] == "interrupted by SIGINT (pid 1)"
        assert run.info.run_id in tracking.KILLED_RUNS


def test_an_interrupt_inside_a_store_write_still_ends_the_run_killed(mlflow_store):
    """Ctrl-C landing between two statements of one sqlite transaction (a statement stepped after a write, as a
    SIGINT sent while a stage started did): the interrupted connection holds the write lock until the frames the
    interrupt unwound let go of its cursor. Without :func:`tracking.release_interrupted_frames` the KILLED record
    waits out sqlite's busy timeout twice and fails "database is locked", leaving the run RUNNING."""
    import sqlalchemy

    tracking.setup("interrupted-write")
    engine = mlflow.tracking._get_store().engine
    state = {"armed": False}

    def interrupt_after_a_write(conn, cursor, statement, params, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if state["armed"] and verb in ("INSERT", "UPDATE"):
            state["armed"] = "wrote"
        elif state["armed"] == "wrote" and verb == "SELECT":
            state["armed"] = False
            raise KeyboardInterrupt("interrupted by SIGINT (pid 1)")

    sqlalchemy.event.listen(engine, "after_cursor_execute", interrupt_after_a_write)
    try:
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt), tracking.start_run("stage", {}) as run:
            state["armed"] = True
            mlflow.log_param("a", "b")  # its INSERT, then the SELECTs of the next write inside the transaction
            mlflow.set_tag("c", "d")
            state["body ended"] = True
        took = time.monotonic() - start
    finally:
        sqlalchemy.event.remove(engine, "after_cursor_execute", interrupt_after_a_write)
    assert state["armed"] is False and "body ended" not in state  # the interrupt landed inside the body's writes
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "KILLED" and "SIGINT" in got.data.tags[tracking.TAG_ENDED_BY]
    assert took < 15, took  # not a busy timeout (20 s) waited out


def test_runs_of_dead_processes_are_ended_killed_and_live_ones_are_left(mlflow_store):
    import os

    from recipe.owner import hostname, process_start_time

    exp_id = tracking.setup("orphans")
    client = MlflowClient()
    me = {
        tracking.TAG_OWNER_HOST: hostname(),
        tracking.TAG_OWNER_PID: str(os.getpid()),
        tracking.TAG_OWNER_START: f"{process_start_time(os.getpid()):.2f}",
    }
    dead = {**me, tracking.TAG_OWNER_PID: str(_spawn_and_reap())}
    reused = {**me, tracking.TAG_OWNER_START: "1000.00"}  # this pid, but a process started long ago: not us
    elsewhere = {**dead, tracking.TAG_OWNER_HOST: "another-host"}
    runs = {
        name: client.create_run(exp_id, tags=tags, run_name=name).info.run_id
        for name, tags in [("dead", dead), ("reused", reused), ("live", me), ("elsewhere", elsewhere), ("untagged", {})]
    }
    ended = tracking.end_orphaned_runs()
    assert sorted(ended) == sorted([runs["dead"], runs["reused"]])
    status = {name: client.get_run(rid).info.status for name, rid in runs.items()}
    assert status == {
        "dead": "KILLED",
        "reused": "KILLED",
        "live": "RUNNING",
        "elsewhere": "RUNNING",
        "untagged": "RUNNING",
    }
    note = client.get_run(runs["dead"]).data.tags[tracking.TAG_ENDED_BY]
    assert "orphan" in note and f"pid {dead[tracking.TAG_OWNER_PID]}" in note


def test_a_new_store_is_initialised_by_the_first_setup_and_swept_once(tmp_path, monkeypatch, capfd):
    db = tmp_path / "new" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    tracking.setup("fresh")
    assert db.is_file() and (tmp_path / "new" / "mlflow.db.lock").exists()
    assert f"sqlite:///{db}" in tracking._READY
    # MLflow's own INFO lines about creating the tables stay off the terminal (the CLI says "a new store")
    err = capfd.readouterr().err
    assert "database tables" not in err, err


def test_an_unopenable_store_is_a_tracking_error_naming_the_path(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    db = tmp_path / "file" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(tracking.TrackingError, match="file/mlflow.db"):
        tracking.setup("nowhere")


def test_latest_stage_verdicts_reads_sqlite_without_creating_it(tmp_path, monkeypatch):
    db = tmp_path / "absent" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert tracking.latest_stage_verdicts("digits", "abc") == {}
    assert not db.parent.exists()
