"""Every MLflow call goes through here.

Conventions:
- Store: ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
  ``MLFLOW_TRACKING_URI`` overrides (a server, another database).
- Experiment: the recipe's name. Parent run: one flow run. Child run: one stage.
  Grandchild runs: ablations, trials, ensemble members.
- Tags on every run: recipe.stage, recipe.verdict, recipe.data_fingerprint, recipe.config_hash,
  and prefect.flow_run_id when there is one. Params: the flattened config.
- Per stage: checks.json, stage_result.json (what the next stage starts from), plots/*.png.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus

from recipe.config import RecipeConfig
from recipe.description import NOTE_TAG, stage_description
from recipe.report import Check, StageResult, Verdict, reused_note
from recipe.secrets import redact_text
from recipe.train.callbacks.base import Callback

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
TAG_STAGE = "recipe.stage"
TAG_VERDICT = "recipe.verdict"
TAG_FINGERPRINT = "recipe.data_fingerprint"
TAG_CONFIG_HASH = "recipe.config_hash"
TAG_CODE_VERSION = "recipe.code_version"  # recipe.reuse.code_version(): a hash of the package sources
TAG_REUSE_KEY = "recipe.reuse_key"  # on stage runs: recipe.reuse.stage_key (config + data + code)
TAG_FORCED = "recipe.forced"
TAG_FLOW_RUN = "prefect.flow_run_id"
TAG_KIND = "recipe.kind"  # "flow" | "stage" | "candidate" | "ablation"
# Who started a run, so a later process can tell a run left RUNNING by a dead process from a live one.
TAG_OWNER_HOST = "recipe.owner.host"
TAG_OWNER_PID = "recipe.owner.pid"
TAG_OWNER_START = "recipe.owner.start"  # the owner's process start time, seconds since the epoch
TAG_OWNER_BOOT = "recipe.owner.boot_id"  # the owner machine's boot id: cloned machines share a hostname
TAG_OWNER_PIDNS = "recipe.owner.pidns"  # the owner's pid namespace: containers may share a hostname
# How the MLflow UI opens a recipe experiment. MLflow 3.17 opens every experiment on the GenAI overview unless the
# browser's workflow switch (sidebar: GenAI / Machine learning, kept in localStorage) or the URL's
# ``workflowType=machine_learning`` says otherwise; the experiment's kind tag is what its header's kind selector
# writes (``mlflow.experimentKind`` = ``custom_model_development``). A shared view (the experiment tag
# ``mlflow.sharedViewState.<key>``, opened with ``viewStateShareKey=<key>``) chooses the runs table's columns.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
VIEW_KEY = "recipe-runs"
TAG_SHARED_VIEW = f"mlflow.sharedViewState.{VIEW_KEY}"
RUNS_VIEW_COLUMNS = [
    "attributes.`Dataset`",
    "tags.`recipe.stage`",
    "tags.`recipe.verdict`",
    "metrics.`val/loss`",
]
SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}  # manifest split -> MLflow input context
TAG_ENDED_BY = "recipe.ended_by"  # why a run ended KILLED: an interrupt, or its owner found dead later


class TrackingError(RuntimeError):
    """The tracking store cannot be opened or written (exit code 3 on the command line)."""


class BackendFailure(TrackingError):
    """A backend (the MLflow store, its artifact storage, the Prefect API, the tune study's storage) failed in the
    middle of a run (exit code 3); the message says what failed, what was recorded and how to resume."""


# A write that failed because of the storage, not the caller: disk full, quota, I/O error, read-only file system.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def backend_failure(e: BaseException) -> tuple[str, str] | None:
    """``(what failed, detail)`` when ``e`` or an exception in its cause/context chain is a backend failure, else
    None (a bug or bad input, which keep their own exit codes).

    Backend failures: a :class:`TrackingError`; an ``OSError`` in :data:`STORAGE_ERRNOS` (an artifact write on a full
    disk); an MLflow REST call that got no answer or a server error (``MlflowException`` "API request to ... failed",
    ``requests``/``urllib3`` errors); a database error (SQLAlchemy); an error of the Prefect API client (``httpx``,
    ``prefect.exceptions.PrefectHTTPStatusError``)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        module, text = type(cur).__module__, _first_line(cur)[:300]
        if isinstance(cur, TrackingError):
            return "the tracking backend", text
        if isinstance(cur, OSError) and cur.errno in STORAGE_ERRNOS:
            where = f" ({cur.filename})" if cur.filename else ""
            return f"the artifact storage of {tracking_uri()}", f"a write failed: {cur.strerror or cur}{where}"
        if isinstance(cur, mlflow.exceptions.MlflowException) and text.startswith("API request to"):
            return f"the MLflow tracking server {tracking_uri()}", text
        if module.startswith(("requests", "urllib3", "sqlalchemy")):
            return f"the MLflow store {tracking_uri()}", f"{type(cur).__name__}: {text}"
        if module.startswith("httpx") or type(cur).__name__ == "PrefectHTTPStatusError":
            return "the Prefect API", f"{type(cur).__name__}: {text}"
        cur = cur.__cause__ or cur.__context__
    return None


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _local_artifact_root() -> str | None:
    """Artifacts beside a local sqlite store (mlruns/artifacts); a server decides for itself."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def setup(experiment: str) -> str:
    """Point MLflow at the store and make the experiment (created if need be) the active one; returns its id.

    On the first use of a store in this process: a new sqlite store's schema is created under a file lock
    beside the database (two processes creating it at once race on the schema otherwise), and runs left
    RUNNING by a dead process are ended KILLED (:func:`end_orphaned_runs`).

    Raises:
        TrackingError: the store cannot be opened or written; the message names the URI.
    """
    try:
        exp_id = _ensure_experiment(experiment)
        mlflow.set_experiment(experiment_id=exp_id)
    except mlflow.exceptions.MlflowException as e:
        raise TrackingError(f"the MLflow store {tracking_uri()} cannot be used: {_first_line(e)}") from e
    return exp_id


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


_READY: set[str] = set()  # stores initialised (and swept for orphans) by this process


def init_store(uri: str | None = None) -> None:
    """Create a local sqlite store's schema under a file lock (once per process), then end orphaned runs.

    Raises:
        TrackingError: the database cannot be created or opened (the message names its path).
    """
    uri = uri or tracking_uri()
    if uri in _READY:
        return
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        from filelock import FileLock

        db = Path(uri.removeprefix("sqlite:///"))
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            # MLflow says "Creating initial MLflow database tables..." at INFO on stderr, in the middle of the run's
            # log; the CLI has already said "a new store" and where
            quiet = logging.getLogger("mlflow.store.db.utils")
            level = quiet.level
            quiet.setLevel(max(level, logging.WARNING))
            try:
                with FileLock(str(db) + ".lock", timeout=300):
                    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates and migrates
            finally:
                quiet.setLevel(level)
        except Exception as e:  # OSError, MlflowException, sqlalchemy's OperationalError: all "cannot open"
            raise TrackingError(
                f"cannot open the MLflow database {db} (tracking URI {uri}): "
                f"{_first_line(e)}; check that the folder exists and is writable"
            ) from e
    _READY.add(uri)
    try:
        end_orphaned_runs()
    except mlflow.exceptions.MlflowException as e:
        raise TrackingError(f"the MLflow store {uri} cannot be used: {_first_line(e)}") from e


def end_orphaned_runs() -> list[str]:
    """End KILLED every RUNNING run of the store whose owner process is gone; returns their ids.

    A run is an orphan when its owner tags name this host (and this boot and pid namespace, where recorded) and a
    pid that no longer runs, or runs a process started at another time (a reused pid). Runs of live processes, of
    other hosts, boots or pid namespaces, and runs without owner tags are left alone. Each ended run gets a ``recipe.ended_by`` tag saying why.
    """
    from recipe.owner import owner_gone

    client = MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    ended: list[str] = []
    for i in range(0, len(exps), 100):
        runs = client.search_runs(exps[i : i + 100], filter_string="attributes.status = 'RUNNING'", max_results=1000)
        for run in runs:
            tags = run.data.tags
            host, pid = tags.get(TAG_OWNER_HOST), tags.get(TAG_OWNER_PID)
            boot, pidns = tags.get(TAG_OWNER_BOOT, ""), tags.get(TAG_OWNER_PIDNS, "")
            if not host or not pid or not owner_gone(host, pid, tags.get(TAG_OWNER_START, ""), boot, pidns):
                continue
            client.set_tag(
                run.info.run_id,
                TAG_ENDED_BY,
                f"orphan: its process (pid {pid} on {host}) ended without closing it; "
                f"found and ended KILLED at {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()}",
            )
            client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
            ended.append(run.info.run_id)
    return ended


def _ensure_experiment(experiment: str) -> str:
    uri = tracking_uri()
    init_store(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        _mark_training_experiment(client, exp.experiment_id, exp.tags)
        return exp.experiment_id
    root = _local_artifact_root()
    try:
        exp_id = client.create_experiment(experiment, artifact_location=f"{root}/{experiment}" if root else None)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return client.get_experiment_by_name(experiment).experiment_id
    _mark_training_experiment(client, exp_id, {})
    return exp_id


def runs_view_state() -> str:
    """The shared view of the recipe's runs table (JSON, as the MLflow UI's *Share* button stores it): the
    columns dataset, stage, verdict and validation loss, runs expanded to their stages."""
    return json.dumps({"selectedColumns": RUNS_VIEW_COLUMNS, "runsHiddenMode": "SHOW_ALL"})


def _mark_training_experiment(client: MlflowClient, exp_id: str, tags: dict[str, str]) -> None:
    """Tag the experiment as model training (not GenAI) and store the recipe's runs view; see
    :data:`TAG_EXPERIMENT_KIND` and :func:`experiment_runs_url`."""
    want = {TAG_EXPERIMENT_KIND: EXPERIMENT_KIND, TAG_SHARED_VIEW: runs_view_state()}
    for key, value in want.items():
        if tags.get(key) != value:
            client.set_experiment_tag(exp_id, key, value)


def experiment_runs_url(server: str, experiment_id: str) -> str:
    """The MLflow UI page that opens a recipe experiment on its training runs with the recipe's columns
    (``server``: the UI's base URL, e.g. ``http://127.0.0.1:5000``)."""
    return (
        f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
    )


def split_dataset(manifest: Any, recipe: str, split: str) -> Any:
    """One split of the manifest as an MLflow pandas dataset named ``<recipe>-<split>`` (the split's sample ids
    and labels, the data fingerprint as digest), or None when the split is empty. ``split``: train, val or test."""
    import warnings

    import mlflow.data

    df = manifest.df
    part = df.loc[df["split"] == split, ["id", "label"]].reset_index(drop=True)
    if part.empty:
        return None
    with warnings.catch_warnings():  # MLflow 3.17 registers its local source class twice and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(
            part, source=str(manifest.root), targets="label", name=f"{recipe}-{split}", digest=manifest.fingerprint
        )


def log_splits(manifest: Any, recipe: str) -> None:
    """Log the dataset's splits as the active run's inputs (``mlflow.log_input``): one pandas dataset per split
    (:func:`split_dataset`), with the context train, validation or test, so the runs table can show and filter
    which data a stage saw. ``manifest``: a :class:`recipe.data.Manifest`."""
    import mlflow

    for split, context in SPLIT_CONTEXTS.items():
        ds = split_dataset(manifest, recipe, split)
        if ds is not None:
            mlflow.log_input(ds, context=context)


def run_tags(
    cfg: RecipeConfig, fingerprint: str | None, stage: str, kind: str, flow_run_id: str | None = None
) -> dict[str, str]:
    """The tags every recipe MLflow run carries: stage, kind, config hash, code version, and the data fingerprint
    and Prefect flow run id when given."""
    from recipe.reuse import code_version

    tags = {TAG_STAGE: stage, TAG_CONFIG_HASH: cfg.config_hash(), TAG_KIND: kind, TAG_CODE_VERSION: code_version()}
    if fingerprint:
        tags[TAG_FINGERPRINT] = fingerprint
    if flow_run_id:
        tags[TAG_FLOW_RUN] = flow_run_id
    return tags


@contextmanager
def start_run(
    name: str,
    tags: dict[str, str],
    params: dict[str, Any] | None = None,
    nested: bool = False,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """A run that ends FAILED when its body raises (and re-raises), KILLED when it is interrupted
    (``KeyboardInterrupt`` or a subclass, e.g. SIGTERM turned into one; the exception's text goes in the
    ``recipe.ended_by`` tag), FINISHED otherwise, unless the body already ended it with another status
    through :func:`end_run`. The run is tagged with its owner process (host, boot id, pid namespace, pid, start time).
    ``system_metrics``: sample CPU, memory, disk, network (and GPU) usage as ``system/*`` metrics every 10 s while
    the run is active (:func:`system_metrics_enabled`)."""
    from recipe.owner import me

    owner = me()
    tags = {
        **tags,
        TAG_OWNER_HOST: owner["host"],
        TAG_OWNER_BOOT: owner["boot"],
        TAG_OWNER_PIDNS: owner["pidns"],
        TAG_OWNER_PID: owner["pid"],
        TAG_OWNER_START: owner["start"],
    }
    if system_metrics:  # its monitor says at INFO, per run, which samplers it skips (no GPU): noise on a terminal
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    run = mlflow.start_run(run_name=name, nested=nested, tags=tags, log_system_metrics=system_metrics)
    try:
        if params:
            log_params(params)
        yield run
    except BaseException as e:
        if mlflow.active_run() and mlflow.active_run().info.run_id == run.info.run_id:
            if not isinstance(e, Exception):  # stopped from outside: Ctrl-C, SIGTERM, SystemExit
                release_interrupted_frames(e)
                try:
                    mlflow.set_tag(TAG_ENDED_BY, interrupt_note(e))
                finally:
                    mlflow.end_run(status=RunStatus.to_string(RunStatus.KILLED))
                    KILLED_RUNS.append(run.info.run_id)
            else:
                mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        if mlflow.active_run() and mlflow.active_run().info.run_id == run.info.run_id:
            mlflow.end_run()


KILLED_RUNS: list[str] = []  # runs this process ended KILLED because it was interrupted, in order


def system_metrics_enabled() -> bool:
    """Whether stage runs record system metrics (MLflow's ``system/*`` metrics: CPU, memory, disk, network, GPU):
    MLflow's own setting ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` when it is set (the test suite sets it false),
    on otherwise."""
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").strip().lower() in {"true", "1"}


def release_interrupted_frames(e: BaseException) -> None:
    """Free what the frames that ``e`` unwound still hold, so that the store can be written again.

    An interrupt can land in the middle of a store write: a sqlite statement stepped inside a transaction that has
    already written, so the connection holds the database's write lock. SQLAlchemy then closes that connection, but
    sqlite only finishes closing a connection once its statements are finalized, and the cursor stays alive in the
    locals of the frames the exception's traceback keeps. Until those go, every other connection, this run's
    KILLED record included, waits out the busy timeout and fails "database is locked" (found by a SIGINT sent as a
    stage started). Clearing the finished frames' locals (``traceback.clear_frames``; frames still executing are
    left alone) and collecting cycles finalizes the statement and lets the close complete, which rolls back the
    interrupted write. The traceback keeps its lines; only the unwound frames' local variables are dropped."""
    import gc
    import traceback

    traceback.clear_frames(e.__traceback__)
    gc.collect()


def interrupt_note(e: BaseException) -> str:
    """The ``recipe.ended_by`` text for a run stopped by ``e`` (KeyboardInterrupt, a termination signal)."""
    import signal

    text = str(e).strip()
    if text:
        return text
    signum = getattr(e, "signal", None) or getattr(e, "signum", None)
    if signum:
        return f"interrupted by {signal.Signals(signum).name} (pid {os.getpid()})"
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted by SIGINT (Ctrl-C) (pid {os.getpid()})"
    return f"stopped by {type(e).__name__} (pid {os.getpid()})"


def end_run(failed: bool) -> None:
    mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED))


def log_params(params: dict[str, Any]) -> None:
    # MLflow params are strings of at most 6000 characters; lists and None are written as text.
    # A password in a URL never reaches the store (recipe.secrets); configs are redacted already, this is the net.
    mlflow.log_params({k: redact_text(str(v) if v is not None else "null")[:6000] for k, v in params.items()})


def metric_value(key: str, value: Any) -> float:
    """``value`` as the float MLflow records: any real scalar -- a Python int/float/bool, a numpy scalar (float32
    included) or 0-d array, a one-element torch tensor. NaN and inf pass through (MLflow stores them).

    Raises TypeError for anything else (a string, None, a complex number, a tensor or array of several values):
    a recorded number must never be dropped without a word."""
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        return float(value)
    shape = getattr(value, "shape", None)
    if shape is not None and int(np.prod(shape)) == 1 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, (bool, int, float)):
            return float(item)
    raise TypeError(
        f"metric {key!r}: {value!r} ({type(value).__name__}) is not a real scalar; log a number "
        "(or a one-element array/tensor)"
    )


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log ``metrics`` (name -> a real scalar, see :func:`metric_value`) to the active run at ``step``.

    Raises TypeError, before logging anything, when a value is not a real scalar."""
    clean = {k: metric_value(k, v) for k, v in metrics.items()}
    if clean:
        mlflow.log_metrics(clean, step=step)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags({k: redact_text(v) if isinstance(v, str) else v for k, v in tags.items()})


def log_dict(data: Any, artifact_file: str) -> None:
    mlflow.log_dict(data, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_figure(fig: Figure, artifact_file: str) -> None:
    """Log a matplotlib figure as PNG and close it (figures left open leak memory over many stages)."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file, or every file of a folder, to the active MLflow run (MLflow starts one when none is active)
    under ``artifact_path``. Raises what MLflow raises, e.g. for a path that does not exist."""
    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def artifact_uri(artifact_path: str = "") -> str:
    return mlflow.get_artifact_uri(artifact_path)


def download_artifacts(uri: str, dst_dir: str | Path) -> Path:
    """Fetch an artifact or model by MLflow URI (``runs:/<id>/path``, ``models:/name/version``,
    ``mlflow-artifacts:/...``) from the configured tracking store into ``dst_dir``; returns the local path."""
    import mlflow.artifacts

    mlflow.set_tracking_uri(tracking_uri())
    Path(dst_dir).mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst_dir)))


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def log_stage_result(result: StageResult) -> None:
    """Metrics, the JSON artifacts that let a later ``--stage`` run reuse this result, the run's description (its
    verdict table, advice and child runs: :func:`recipe.description.stage_description`), then the verdict tag.

    The verdict goes last: a stage whose artifacts could not all be written (a full disk, a store that went away)
    carries no verdict, so it never counts as passing, whatever status its run ends with."""
    # Stages may have logged some of these already; logging them again would add duplicate history points.
    logged = MlflowClient().get_run(active_run_id()).data.metrics
    log_metrics({k: v for k, v in result.metrics.items() if logged.get(k) != v})
    log_dict([c.to_dict() for c in result.checks], "checks.json")
    log_dict(
        {**result.to_dict(), "config": result.config.to_dict(), "artifacts": result.artifacts},
        "stage_result.json",
    )
    set_tags({NOTE_TAG: stage_description(result, child_runs(active_run_id()))})
    set_tags({TAG_VERDICT: result.verdict.value})


def child_runs(run_id: str) -> list[tuple[str, str]]:
    """``(name, run_id)`` of the runs nested directly under ``run_id``, oldest first."""
    client = MlflowClient()
    exp = client.get_run(run_id).info.experiment_id
    runs = client.search_runs(
        [exp], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", order_by=["attributes.start_time ASC"]
    )
    return [(r.info.run_name or r.info.run_id, r.info.run_id) for r in runs]


def _latest_finished(
    experiment: str, filter_string: str, max_results: int, ended: bool = False
) -> tuple[MlflowClient, list]:
    """The latest FINISHED runs of ``experiment`` matching ``filter_string``, newest first, with the client; with
    ``ended``, every run that is no longer RUNNING (FINISHED, FAILED or KILLED)."""
    setup(experiment)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    status = "attributes.status != 'RUNNING'" if ended else "attributes.status = 'FINISHED'"
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"{filter_string} and {status}",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    return client, runs


def _artifact_json(client: MlflowClient, run_id: str, path: str) -> Any:
    """The JSON artifact ``path`` of run ``run_id``, or None when it is missing or unreadable."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(client.download_artifacts(run_id, path, tmp)).read_text())
        except Exception:  # missing (MlflowException, OSError) or not JSON
            return None


def latest_budget_plan(experiment: str, config_hash: str, fingerprint: str, minutes: float) -> dict[str, Any] | None:
    """The budget plan (``budget_plan.json``, :mod:`recipe.budget`) of the latest ended recipe run of
    ``experiment`` (finished, or stopped: FAILED, KILLED; a run logs its plan as each stage ends, so a stopped
    run's plan holds the stages it finished) with this config hash, data fingerprint and ``budget.minutes`` (not in
    the hash: an execution setting) that sized at least one stage, as recorded: ``{"version", "budget_minutes",
    "overrides", ...}``; None when there is none (or it cannot be read)."""
    from recipe.budget import PLAN_FILE, PLAN_VERSION

    client, runs = _latest_finished(
        experiment,
        f"tags.`{TAG_KIND}` = 'flow' and tags.`{TAG_CONFIG_HASH}` = '{config_hash}' and "
        f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}'",
        max_results=10,
        ended=True,
    )
    for run in runs:
        doc = _artifact_json(client, run.info.run_id, PLAN_FILE)  # None: an unbudgeted run, or unreadable
        if (
            isinstance(doc, dict)
            and doc.get("version") == PLAN_VERSION
            and doc.get("budget_minutes") == minutes
            and doc.get("overrides")
        ):
            return doc
    return None


def find_passing_stage(experiment: str, stage: str, reuse_key: str) -> StageResult | None:
    """The latest finished ``stage`` run that passed (or warned) with this reuse key
    (:func:`recipe.reuse.stage_key`: the config it depends on, the data, the code), rebuilt from its artifacts;
    None when there is none (runs recorded before reuse keys existed have none, so they are never reused)."""
    client, runs = _latest_finished(
        experiment,
        f"tags.`{TAG_STAGE}` = '{stage}' and tags.`{TAG_KIND}` = 'stage' and "
        f"tags.`{TAG_REUSE_KEY}` = '{reuse_key}' and tags.`{TAG_VERDICT}` != 'fail'",
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    data = _artifact_json(client, run.info.run_id, "stage_result.json")
    if data is None:  # an older or broken run: treat as missing rather than guess
        return None
    return StageResult(
        stage=data["stage"],
        verdict=Verdict(data["verdict"]),
        checks=[Check.from_dict(c) for c in data["checks"]],
        metrics={k: float(v) for k, v in data["metrics"].items() if _is_number(v)},
        config=RecipeConfig.model_validate(data["config"]),
        checkpoint_uri=data.get("checkpoint_uri"),
        run_id=run.info.run_id,
        artifacts=data.get("artifacts", {}),
        notes=[*data.get("notes", []), reused_note(run.info.run_id)],
        diagnosis=data.get("diagnosis"),  # the leading cause the stage found, shown again when it is reused
    )


def latest_stage_verdicts(experiment: str, config_hash: str) -> dict[str, dict[str, Any]]:
    """For ``flows stages``: the latest run of each stage for this config: verdict, run id, start time.

    Read-only: a local sqlite store is read with ``sqlite3`` (no MLflow import, no schema created; a missing
    store means no runs); other stores through the MLflow client."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        from recipe.store_sqlite import latest_stage_verdicts as from_sqlite

        return from_sqlite(Path(uri.removeprefix("sqlite:///")), experiment, config_hash)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'stage' and tags.`{TAG_CONFIG_HASH}` = '{config_hash}'",
        order_by=["attributes.start_time DESC"],
        max_results=500,
    )
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        stage = run.data.tags.get(TAG_STAGE)
        if stage and stage not in out:
            out[stage] = {
                "verdict": run.data.tags.get(TAG_VERDICT, run.info.status.lower()),
                "run_id": run.info.run_id,
                "start_time": run.info.start_time,
                "fingerprint": run.data.tags.get(TAG_FINGERPRINT, ""),
            }
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class MLflowLogger(Callback):
    """Log training metrics to the active MLflow run without slowing training.

    Per-step values (``train/step_loss`` every ``every`` steps; ``step/lr`` whenever it changes) and
    per-epoch metrics (the epoch as their step) are buffered and sent in one asynchronous
    ``log_batch`` at most every ``flush_s`` seconds and at the end of fit, so the store is written
    a few times per fit rather than every step, off the training thread. ``after_fit`` waits for
    the writes once, so the run holds every value when fit returns.

    Args:
        every: log the step loss on every this-many-th step. Default 1.
        flush_s: send buffered values at most this often, in seconds. Default 5.0.
        prefix: prepended to every key (e.g. "candidate/"). Default "".
        synchronous: write each batch before going on. For short fits: ending a run after asynchronous
            writes waits out MLflow's logging thread (~1 s), more than such a fit takes. Default False.
    """

    order = 70  # after metrics and everything that adds to them

    def __init__(self, every: int = 1, flush_s: float = 5.0, prefix: str = "", synchronous: bool = False) -> None:
        self.every, self.flush_s, self.prefix, self.synchronous = every, flush_s, prefix, synchronous

    def before_fit(self) -> None:
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("MLflowLogger needs an active MLflow run (use recipe.tracking.start_run)")
        self.run_id = run.info.run_id
        self.client = MlflowClient()
        self._losses: list[tuple[Any, int, int]] = []  # (loss tensor, timestamp, step): read at flush time
        self._metrics: list[Metric] = []
        self._pending: list[Any] = []
        self._last_lr: float | None = None
        self._last_flush = time.perf_counter()

    def after_step(self) -> None:
        t = self.trainer
        now = int(time.time() * 1000)
        if t.step % self.every == 0:
            # the loss stays a tensor until the flush: converting here would sync a GPU every step
            self._losses.append((t.loss.detach(), now, t.step))
        lr = t.lr
        if lr != self._last_lr:  # a constant schedule logs its lr once, not once per step
            self._metrics.append(Metric(self.prefix + "step/lr", lr, now, t.step))
            self._last_lr = lr

    def after_epoch(self) -> None:
        t = self.trainer
        now = int(time.time() * 1000)
        epoch = int(t.metrics.get("epoch", t.epoch))  # the data epoch (several per trainer epoch on tiny data)
        for key, value in t.metrics.items():
            if key not in ("epoch", "step") and _is_number(value):
                value = float(value)
                self._metrics.append(
                    Metric(self.prefix + key, value if math.isfinite(value) else float("nan"), now, epoch)
                )
        if time.perf_counter() - self._last_flush >= self.flush_s:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.perf_counter()
        metrics = self._metrics
        if self._losses:
            import torch

            values = torch.stack([v for v, _, _ in self._losses]).float().cpu().tolist()
            metrics += [
                Metric(self.prefix + "train/step_loss", v if math.isfinite(v) else float("nan"), ts, step)
                for v, (_, ts, step) in zip(values, self._losses, strict=True)
            ]
        self._losses, self._metrics = [], []
        for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
            op = self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000], synchronous=self.synchronous)
            if op is not None:
                self._pending.append(op)

    def after_fit(self) -> None:
        self._flush()
        for op in self._pending:
            op.wait()
        self._pending = []
