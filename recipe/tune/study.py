"""The persisted Optuna study: its name, storage, sampler and pruner, and resuming an interrupted one.

- **Name**: ``<recipe>-tune-<hash>-<data fingerprint>``, the hash over what changes the trials: the starting
  config (with ``stages.tune``: space, sampler, pruner, epochs; without the later stages' settings and the
  execution-only ones, :data:`recipe.config.EXECUTION_ONLY`) and the code version (:func:`recipe.reuse.code_version`).
  A changed search or changed code is a new study; a rerun of the same one resumes it, also with a bigger
  ``n_trials`` or another ``parallel``, engine or storage. ``flows run --fresh`` starts a new study.
- **Storage**: ``stages.tune.storage`` or ``$RECIPE_OPTUNA_STORAGE``: an RDB URL (the stack's PostgreSQL,
  ``postgresql://...``; ``sqlite:///...``) or a journal file path (a folder: ``<folder>/<study>.log``).
  Default: an Optuna journal file beside the MLflow store, ``<store folder>/optuna/<study>.log`` (for a tracking
  server, ``mlruns/optuna/`` under the working directory). A journal file works across the processes of one
  machine (file locks); a remote Dask cluster needs storage its workers can reach for pruning (an RDB URL).
- **One tune at a time**: the stage holds the study's lock (:mod:`recipe.tune.lock`) while it runs, so a second
  run of the same study waits (or, asked not to wait, stops with :class:`recipe.tune.lock.StudyBusy`).
- **Resume**: each trial records its owner, the tune process that asked for it (host, pid, process start time:
  :mod:`recipe.owner`). Trials left RUNNING by an owner that is certainly dead are marked FAIL with the user
  attribute ``orphaned`` and do not count towards ``n_trials``; a live owner's trials, and another host's, are
  never touched. Completed, pruned and failed trials count, so they are not run again.
- **Retry**: a trial lost with its worker (an orphan, or a trial whose worker process died under a live stage) is
  retried once with the same parameters, through Optuna's retry callback (``RetryHeartbeatStaleTrialCallback``,
  formerly ``RetryFailedTrialCallback``; ``max_retry=1``): a WAITING copy that the next ``ask`` returns. On an RDB storage the stage also records
  heartbeats, so trials of a dead owner on another host are failed (and retried) by Optuna's stale-trial rule
  (:func:`optuna.storages.fail_stale_trials`) after ``HEARTBEAT_GRACE_S``; a journal has no heartbeats, and the
  owner rule does the same there for the machine that holds it.
- **Unreachable storage**: :class:`StudyStorageError` (a :class:`recipe.tracking.TrackingError`: exit code 3).
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from recipe import owner, tracking
from recipe.config import RecipeConfig, TuneConfig, config_hash
from recipe.secrets import reveal
from recipe.tracking import TrackingError

ENV_STORAGE = "RECIPE_OPTUNA_STORAGE"
ORPHANED = "orphaned"
LOST = "lost"  # user attribute: the trial's worker died under a live stage (the reason in "note")
RETRIED = "retried_as"  # user attribute: the number of the trial that retries this one
OWNER = "owner"  # user attribute: "host|pid|start" of the tune process that asked for the trial
HEARTBEAT_S = 30  # RDB storage: a running trial's heartbeat period, and the silence after which it is stale
HEARTBEAT_GRACE_S = 120
# What a retry must not inherit from the trial it retries (its runs, its fate); its parameters it keeps.
RUN_ID = "mlflow_run_id"
PARENT_RUN_ID = "mlflow_parent_run_id"
_NOT_INHERITED = (ORPHANED, LOST, RETRIED, OWNER, RUN_ID, PARENT_RUN_ID, "state", "note", "seconds")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# How a search is run, not which trials it holds: changing these resumes the same study (a bigger n_trials adds
# trials to it; parallel, storage, engine and timeout only change how they run).
EXECUTION_ONLY = ("n_trials", "timeout_s", "parallel", "dask_address", "storage", "seeds", "noise_z", "plots", "wait")


def study_name(base: RecipeConfig, fingerprint: str, fresh: str | None = None) -> str:
    """``<recipe>-tune-<hash>-<data fingerprint>``; the hash covers the code version and the starting config as
    the tune stage's result depends on it (:func:`recipe.reuse.stage_settings`) without the
    :data:`EXECUTION_ONLY` settings of ``stages.tune``. ``fresh`` (a run id): a new study of its own,
    ``...-fresh-<fresh>``, so that ``--fresh`` searches again instead of resuming finished trials."""
    from recipe.reuse import code_version, stage_settings
    from recipe.stages import stage_names

    data = stage_settings(base, "tune", stage_names())
    for key in EXECUTION_ONLY:
        data["stages"]["tune"].pop(key, None)
    data["code_version"] = code_version()
    return f"{base.name}-tune-{config_hash(data)}-{fingerprint}" + (f"-fresh-{fresh}" if fresh else "")


@dataclass(frozen=True)
class Storage:
    """Where the study lives: ``url`` for an RDB, else ``journal`` (a file path). ``spec`` is what a trial
    process opens (picklable text)."""

    url: str | None = None
    journal: str | None = None

    @property
    def spec(self) -> str:
        return self.url or f"journal:{self.journal}"

    def describe(self) -> str:
        return self.url.split("@")[-1] if self.url else f"journal file {self.journal}"

    def lock_path(self, name: str) -> Path:
        """The study's lock file (:func:`recipe.tune.lock.file_study_lock`): beside the journal, or for an RDB
        study in the local ``optuna`` folder beside the MLflow store."""
        if self.journal:
            return Path(f"{self.journal}.study-lock")
        return _local_folder() / f"{name}.study-lock"


class StudyStorageError(TrackingError):
    """The study's storage cannot be opened or written (exit code 3); the message names it (without password)."""


def _local_folder() -> Path:
    uri = tracking.tracking_uri()
    root = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path("mlruns")
    return root / "optuna"


def storage_for(s: TuneConfig, name: str) -> Storage:
    """The study's storage (see the module docstring)."""
    where = reveal(s.storage) or os.environ.get(ENV_STORAGE)
    if where and "://" in where:
        return Storage(url=where)
    if where:
        path = Path(where).expanduser()
        if path.is_dir() or where.endswith(("/", os.sep)):
            path = path / f"{name}.log"
    else:
        path = _local_folder() / f"{name}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudyStorageError(
            f"the Optuna journal folder {path.parent} cannot be created ({e.strerror or e}); make it writable, or "
            f"set stages.tune.storage / {ENV_STORAGE} to another place"
        ) from e
    return Storage(journal=str(path.resolve()))


def open_storage(spec: str, *, heartbeat: bool = False) -> optuna.storages.BaseStorage | str:
    """The Optuna storage for a :attr:`Storage.spec` (in the stage or a trial process). ``heartbeat``: an RDB
    storage with heartbeats and the retry-once rule for stale trials (the stage's; trial processes only report)."""
    if spec.startswith("journal:"):
        return JournalStorage(JournalFileBackend(spec.removeprefix("journal:")))
    if heartbeat:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                spec,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=retry_once,
            )
    return spec


def make_sampler(s: TuneConfig, seed: int) -> optuna.samplers.BaseSampler:
    """qmc: scrambled Sobol points (the Tuning Playbook's choice for exploration); tpe (with the constant liar
    when trials run in parallel), random, gp: Optuna's. Seeded by the config's seed."""
    if s.sampler == "qmc":
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0; the interface we use is stable
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=seed, warn_asynchronous_seeding=False
            )
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=s.parallel > 1)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(kind: str, epochs: int) -> optuna.pruners.BasePruner:
    """none; median (after 4 trials and 3 epochs: the trial's val loss worse than the median of earlier trials
    at the same epoch); hyperband (from 2 epochs to ``epochs``, reduction factor 3)."""
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=min(3, max(0, epochs - 1)))
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min(2, epochs), max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: Storage, s: TuneConfig, seed: int) -> optuna.Study:
    """Create the study, or load it when it exists (resume). Objective: the validation loss, minimised."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(
            study_name=name,
            storage=open_storage(storage.spec, heartbeat=True),
            sampler=make_sampler(s, seed),
            pruner=make_pruner(s.pruner, s.epochs),
            direction="minimize",
            load_if_exists=True,
        )
    except (ImportError, OSError, optuna.exceptions.StorageInternalError) as e:
        raise _unreachable(storage, e) from e
    except Exception as e:  # sqlalchemy's OperationalError and kin: the database does not answer or refuses us
        if type(e).__module__.startswith(("sqlalchemy", "psycopg", "pymysql", "MySQLdb")):
            raise _unreachable(storage, e) from e
        raise


def _unreachable(storage: Storage, e: BaseException) -> StudyStorageError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    if storage.url:  # the driver's message may quote the URL: say it without the password
        first = first.replace(storage.url, storage.describe())
    return StudyStorageError(
        f"the tune study's storage {storage.describe()} cannot be opened ({type(e).__name__}: {first}); start "
        f"that database or fix stages.tune.storage / {ENV_STORAGE}. Stages that finished before are recorded in "
        f"MLflow and reused by `flows run recipe --stage tune`"
    )


def owner_tag() -> str:
    """This process as a trial's :data:`OWNER` attribute: ``host|pid|start``."""
    me = owner.me()
    return f"{me['host']}|{me['pid']}|{me['start']}"


def owner_dead(trial: FrozenTrial) -> bool:
    """Whether the tune process that asked for ``trial`` is certainly dead (:func:`recipe.owner.owner_gone`). A
    trial without an owner (asked by an older version, or by a process that died before recording it) counts as
    dead: the caller holds the study's lock, so no live tune of this study can own it."""
    tag = trial.user_attrs.get(OWNER)
    if not tag:
        return True
    host, _, rest = str(tag).partition("|")
    pid, _, start = rest.partition("|")
    return owner.owner_gone(host, pid, start)


def reap_orphans(study: optuna.Study) -> list[FrozenTrial]:
    """Mark the RUNNING trials whose owner is dead FAIL and ``orphaned``, and retry each once
    (:func:`retry_once`); return them as they were. A live owner's trials, and another host's, are left alone;
    WAITING trials (retries, enqueued points) are left for the next ``ask``. On an RDB storage, trials whose
    heartbeat stopped are failed and retried by Optuna's stale-trial rule first."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the interface we use is stable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if owner_dead(t)]
    for t in orphans:
        study._storage.set_trial_user_attr(t._trial_id, ORPHANED, True)
        retry_once(study, study._storage.get_trial(t._trial_id))
        study.tell(t.number, state=TrialState.FAIL)
    return orphans


def retry_once(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """Retry ``trial``, lost with its worker, once with the same parameters: Optuna's retry callback
    (``RetryHeartbeatStaleTrialCallback(max_retry=1)``, formerly ``RetryFailedTrialCallback``) adds a WAITING copy
    (``system_attrs["failed_trial"]`` names the original) that the next ``ask`` returns. The copy starts clean (no
    runs, owner or fate of the original); the original no longer counts, and gets :data:`RETRIED` when it is still
    running (call this before telling it failed; Optuna's stale-trial rule calls it after). Returns the retry's
    number, or None when ``trial`` is itself a retry (no second retry)."""
    if trial.system_attrs.get("retry_history"):
        return None
    clean = copy.deepcopy(trial)
    clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _NOT_INHERITED}
    with warnings.catch_warnings():  # "experimental"; the callback's interface is the one Optuna documents
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=1)(study, clean)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    number = max(t.number for t in waiting if t.system_attrs.get("failed_trial") == trial.number)
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_user_attr(trial._trial_id, RETRIED, number)
    return number


def counted(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards the budget: finished ones, but not orphans of a dead process nor lost trials
    that a retry replaces."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return [t for t in trials if t.state in COUNTED and not t.user_attrs.get(ORPHANED) and t.number not in retried]


@contextlib.contextmanager
def heartbeats(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """Record a heartbeat for each of ``trial_ids`` every :data:`HEARTBEAT_S` seconds for the block, when the
    study's storage keeps heartbeats (RDB); otherwise nothing. The trials run in other processes (or on other
    machines), so the stage, their owner, beats for them: if it dies, they go stale together."""
    storage = study._storage
    if not trial_ids or not (isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for tid in trial_ids:
                with contextlib.suppress(Exception):  # a finished trial, a database hiccup: the next beat retries
                    storage.record_heartbeat(tid)
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name="tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
