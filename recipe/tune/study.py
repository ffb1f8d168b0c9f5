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
- **Resume**: trials left RUNNING by a dead process are marked FAIL with the user attribute ``orphaned`` and do
  not count towards ``n_trials``; completed, pruned and failed trials do, so they are not run again. One tune of
  a study at a time is assumed (a second concurrent one would have its running trials reaped).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from recipe import tracking
from recipe.config import RecipeConfig, TuneConfig, config_hash
from recipe.secrets import reveal

ENV_STORAGE = "RECIPE_OPTUNA_STORAGE"
ORPHANED = "orphaned"
RUN_ID = "mlflow_run_id"
PARENT_RUN_ID = "mlflow_parent_run_id"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# How a search is run, not which trials it holds: changing these resumes the same study (a bigger n_trials adds
# trials to it; parallel, storage, engine and timeout only change how they run).
EXECUTION_ONLY = ("n_trials", "timeout_s", "parallel", "dask_address", "storage", "seeds", "noise_z", "plots")


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
        uri = tracking.tracking_uri()
        root = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path("mlruns")
        path = root / "optuna" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Storage(journal=str(path.resolve()))


def open_storage(spec: str) -> optuna.storages.BaseStorage | str:
    """The Optuna storage for a :attr:`Storage.spec` (in the stage or a trial process)."""
    if spec.startswith("journal:"):
        return JournalStorage(JournalFileBackend(spec.removeprefix("journal:")))
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
    return optuna.create_study(
        study_name=name,
        storage=open_storage(storage.spec),
        sampler=make_sampler(s, seed),
        pruner=make_pruner(s.pruner, s.epochs),
        direction="minimize",
        load_if_exists=True,
    )


def reap_orphans(study: optuna.Study) -> list[FrozenTrial]:
    """Mark trials left RUNNING (by a process that died) FAIL and ``orphaned``; return them as they were."""
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    for t in orphans:
        study._storage.set_trial_user_attr(t._trial_id, ORPHANED, True)
        study.tell(t.number, state=TrialState.FAIL)
    return orphans


def counted(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards the budget: finished ones, but not orphans of a dead process."""
    return [t for t in study.get_trials(deepcopy=False, states=COUNTED) if not t.user_attrs.get(ORPHANED)]
