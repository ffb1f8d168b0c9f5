"""Session-wide test isolation: nothing a test does touches the repo's data/ or mlruns/ folders.

- RECIPE_DATA_DIR points at one session folder, so the digits PNGs are materialised once per session.
- ``mlflow_store``: a fresh sqlite tracking store per test, copied from one migrated template (a new
  sqlite store costs seconds of migrations).
- ``prefect_harness``: flows run in the test process use the session PREFECT_HOME's local Prefect server.
- ``RECIPE_PREFECT_DB_TEMPLATE``: the local Prefect servers of the tests' many PREFECT_HOMEs start from one
  migrated database per session (the first server to migrate one saves it).
- Under ``CI=true`` a skipped test fails (tests/ci_skips.py): a missing PostgreSQL or Chromium turns CI red.
- Under pytest-xdist (``make test`` runs ``-n 2 --dist loadfile``) each worker is its own session: its own
  temporary folder, PREFECT_HOME, MLflow template and Prefect test server, so no two workers share a file, a store
  or a port. Each worker, and every process it starts, runs torch with one intra-op thread (OMP_NUM_THREADS=1,
  unless set already): two workers on two cores with torch's default of one thread per core oversubscribe the CPU,
  and the tiny models here gain nothing from a second thread (measured: the digits overfit/regularize and squeeze
  modules took 106 s instead of 135 s under ``-n 2``). The one test whose outcome depends on the thread count
  (tests/train/test_precise_bn.py, a chaotic run at lr=0.2) pins its own. The modules marked
  ``e2e``, ``ops`` or ``slow`` are handed out first, so the longest files do not start last and leave one worker
  idle at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.ci_skips import pytest_runtest_makereport  # noqa: F401  (a hook: under CI a skip is a failure)

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="recipe-tests-"))
os.environ["RECIPE_DATA_DIR"] = str(_SESSION_TMP / "data")
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# every new PREFECT_HOME's local server (flows/local_server.py) starts from one migrated database per session
# instead of running Prefect's migrations itself: about 4 CPU-s a home, over the suite's dozens of homes
os.environ["RECIPE_PREFECT_DB_TEMPLATE"] = str(_SESSION_TMP / "prefect-db-template")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_TMP / 'mlruns-unused' / 'mlflow.db'}"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"  # stage runs sample system metrics outside tests
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as flows/__init__.py: spinning OpenMP threads starve each other
if os.environ.get("PYTEST_XDIST_WORKER"):  # one intra-op thread per worker (and its subprocesses): see above
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
# Modules with a test marked so are scheduled first under xdist (``--dist loadfile --no-loadscope-reorder`` keeps
# the collection order this hook sets); the order of tests within a module is unchanged.
_LONG_MARKERS = ("e2e", "ops", "slow")


def pytest_collection_modifyitems(session, config, items):
    """Under xdist, long modules first (a stable sort: otherwise the collection order), so they start first."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def rank(module: str) -> int:
        marks = long_modules.get(module, set())
        return next((i for i, m in enumerate(_LONG_MARKERS) if m in marks), len(_LONG_MARKERS))

    long_modules: dict[str, set[str]] = {}
    for item in items:
        long_modules.setdefault(item.nodeid.split("::")[0], set()).update(
            m.name for m in item.iter_markers() if m.name in _LONG_MARKERS
        )
    items.sort(key=lambda item: rank(item.nodeid.split("::")[0]))


def pytest_sessionfinish(session, exitstatus):
    if (_SESSION_TMP / "prefect").is_dir():  # the session home's local server: it would idle 10 minutes
        from flows import local_server

        local_server.stop_server(_SESSION_TMP / "prefect")
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of an MLflow run (``client``: an ``MlflowClient``), as paths relative to its root."""
    out: set[str] = set()
    for a in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, a.path) if a.is_dir else {a.path}
    return out


@pytest.fixture(scope="session")
def _mlflow_template() -> Path:
    from mlflow import MlflowClient

    db = _SESSION_TMP / "mlflow-template" / "mlflow.db"
    db.parent.mkdir(parents=True)
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # creates and migrates the schema
    return db


@contextmanager
def private_mlflow_store(template: Path, folder: Path) -> Iterator[str]:
    """A copy of the migrated template store under ``folder/mlruns``, active (and in the environment) for the
    block; for module-scoped fixtures, which cannot use ``mlflow_store``."""
    import mlflow

    db = folder / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copy(template, db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            while mlflow.active_run():
                mlflow.end_run()


@pytest.fixture
def mlflow_store(_mlflow_template: Path, tmp_path: Path) -> Iterator[str]:
    """A private, migrated sqlite store under tmp_path/mlruns; returns its URI (also set in the environment)."""
    with private_mlflow_store(_mlflow_template, tmp_path) as uri:
        yield uri


@pytest.fixture(scope="session")
def prefect_harness():
    """Flows run in this process talk to the session PREFECT_HOME's local server (flows/local_server.py): the
    one the `flows run` subprocesses of this session without a PREFECT_HOME of their own share, its database
    from the session's template. (Prefect's ``prefect_test_harness`` started a second server per worker and
    migrated a database of its own for it.)"""
    import prefect.context
    import prefect.settings
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from flows import local_server

    url, lease = local_server.ensure_server()
    settings = prefect.settings.temporary_settings(updates=local_server.client_settings(url))
    try:
        with settings, prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            yield
            APILogWorker.drain_all()  # logs and events reach the server before the session ends
            EventsWorker.drain_all()
    finally:
        lease.release()
