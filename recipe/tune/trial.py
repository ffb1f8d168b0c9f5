"""One trial, or one retraining, from a small picklable spec: the function the trial map runs in any process.

:func:`run_trial` is the single place the tune stage trains a model (so the trainer entry point can change in
one line). It sets torch's threads for its process (``spec.threads``: the machine's cores split between the
trials running at once; ``torch.set_num_threads`` is process-wide, so parallel trials run in processes), loads
the data once per process, trains ``spec.config`` for ``spec.epochs`` epochs and logs into its own MLflow run,
which the stage created with an explicit parent (``spec.run_id``; MLflow's active run is thread-local, so no
active run is relied on): the flattened config as params, per-epoch curves (``train/loss``, ``val/loss``,
``val/<metric>``, with the epoch as step), the eval-mode summary (``eval/*``) and the tag
``recipe.trial_state`` = complete | pruned | failed | diverged. The run ends FINISHED (complete, pruned) or
FAILED.

With ``spec.storage`` set, every epoch's validation loss is reported to the Optuna study through its storage
and the study's pruner may stop the trial (a journal file works across the processes of one machine; when a
trial process cannot reach the storage -- a remote Dask worker without the file -- it trains without pruning
and its note says so).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric

from recipe.train.callbacks import Callback

TAG_STATE = "recipe.trial_state"
TAG_WORKER = "recipe.trial_worker"  # host:pid of the process that ran it
_DATA: dict[str, Any] = {}  # per process: data config JSON -> DataBundle


@dataclass(frozen=True)
class TrialSpec:
    """What a trial process needs; plain values only (it is pickled to other processes and machines)."""

    config: dict[str, Any]  # the RecipeConfig to train, as RecipeConfig.to_dict()
    name: str  # "trial_7", "retrain_best_seed1"
    run_id: str  # its MLflow run (created by the stage, nested under the tune run)
    tracking_uri: str
    epochs: int
    workdir: str  # where the checkpoint goes
    threads: int = 1  # torch threads in this process
    number: int | None = None  # the Optuna trial number (None: a retraining)
    trial_id: int | None = None
    study_name: str | None = None
    storage: str | None = None  # Storage.spec, for pruning; None: no pruning
    pruner: str = "none"
    keep_scores: bool = False  # return per-sample validation losses and scores (retrainings)
    log_checkpoint: bool = False  # log the checkpoint as an artifact of the run (for processes on other machines)
    # (SWA's first epoch, 0-based; the EMA decay): also average the run's weights (SWA and Polyak callbacks, which
    # leave its trajectory as it is) and return them (squeeze's member 0: its averages need no run of their own)
    averages: tuple[int, float] | None = None


@dataclass
class TrialResult:
    """What :func:`run_trial` returns for one trial or retraining: its state, the objective ``value`` (final
    eval-mode validation loss, the task's loss units), val/train metric and loss, the per-epoch val-loss curve,
    wall times in seconds, per-sample val losses and scores (N,) when asked, the checkpoint, and the traceback of
    a trial that raised. ``ok``: complete or pruned with a finite value."""

    name: str
    state: str  # complete | pruned | failed | diverged
    number: int | None = None
    value: float = math.nan  # the final validation loss (eval mode), the study's objective
    val_metric: float = math.nan
    train_loss: float = math.nan
    train_metric: float = math.nan
    curve: list[float] = field(default_factory=list)  # validation loss per epoch
    epochs: int = 0
    seconds: float = 0.0  # wall time of run_trial
    fit_seconds: float = 0.0  # of which training and evaluation
    note: str = ""
    pruning: bool = False  # whether the trial could report to the study
    val_losses: np.ndarray | None = None
    val_scores: np.ndarray | None = None
    checkpoint: str | None = None
    checkpoint_uri: str | None = None  # runs:/<run>/checkpoint/<file> when spec.log_checkpoint
    averages: dict[str, str] = field(default_factory=dict)  # spec.averages: "swa"/"ema" -> their weights' file
    averages_uri: dict[str, str] = field(default_factory=dict)  # and their runs:/ URIs when spec.log_checkpoint
    pid: int = 0
    error: str = ""  # the traceback of a trial that raised

    @property
    def ok(self) -> bool:
        return self.state in ("complete", "pruned") and math.isfinite(self.value)


def _key(data_cfg: Any) -> str:
    from recipe.fit import BATCHING_ONLY

    return json.dumps(data_cfg.model_dump(mode="json", exclude=BATCHING_ONLY), sort_keys=True)


def _data_for(cfg: Any) -> Any:
    """The loaded data for ``cfg``, once per process (batch size and augmentation need no reload)."""
    from recipe.data import load_data

    key = _key(cfg.data)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(cfg)
    return _DATA[key]


def share_data(data: Any) -> None:
    """Let trials run in this process use an already-loaded bundle (the in-process map)."""
    _DATA.clear()
    _DATA[_key(data.config)] = data


def init_worker() -> None:
    """A trial process's initializer: import the heavy modules once, keep OpenMP threads from spinning, and ignore
    SIGINT: Ctrl-C in a terminal signals the whole process group, and the main process handles it alone (it ends
    the trials' MLflow runs KILLED and terminates the pool, :meth:`flows.trials.TrialMap.close`); a worker that
    took it printed a KeyboardInterrupt traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch  # noqa: F401

    import recipe.fit  # noqa: F401


class Reporter(Callback):
    """A trainer callback: per-epoch metrics kept for MLflow, the validation loss reported to the study (whose
    pruner may stop the fit)."""

    order = 75  # after the metrics callback has filled trainer.metrics

    def __init__(self, trial: Any = None) -> None:
        self.trial = trial
        self.metrics: list[Metric] = []
        self.curve: list[float] = []
        self.pruned_at: int | None = None

    def after_epoch(self) -> None:
        t = self.trainer
        now = int(time.time() * 1000)
        epoch = int(t.metrics.get("epoch", t.epoch))  # the data epoch (several per trainer epoch on tiny data)
        for k, v in t.metrics.items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = float(v)
                self.metrics.append(Metric(k, v if math.isfinite(v) else math.nan, now, epoch))
        val = float(t.metrics.get("val/loss", math.nan))
        self.curve.append(val)
        step = len(self.curve)  # epochs done: the study's step (the stage reports a curve the same way)
        if self.trial is not None and math.isfinite(val):
            self.trial.report(val, step)
            if self.trial.should_prune():
                self.pruned_at = step
                t.stop(f"pruned by the study after epoch {step}")


def _open_trial(spec: TrialSpec) -> tuple[Any, str]:
    """The Optuna trial handle for pruning, or None and why not."""
    if spec.storage is None or spec.trial_id is None or spec.pruner == "none":
        return None, ""
    if spec.storage.startswith("journal:") and not Path(spec.storage.removeprefix("journal:")).exists():
        return None, "the study's journal file is not reachable from this process: trained without pruning"
    import optuna

    from recipe.tune.study import make_pruner, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=spec.study_name, storage=open_storage(spec.storage), pruner=make_pruner(spec.pruner, spec.epochs)
    )
    return optuna.trial.Trial(study, spec.trial_id), ""


def run_trial(spec: TrialSpec) -> TrialResult:
    """Train one trial or retraining (see the module docstring). Never raises for a training error: a trial that
    raises is a ``failed`` result with the exception in its note, and its MLflow run ends FAILED."""
    start = time.perf_counter()
    import torch
    from mlflow import MlflowClient

    from recipe.config import RecipeConfig
    from recipe.fit import fit, safe_name

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, spec.threads))
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    result = TrialResult(spec.name, "failed", number=spec.number, pid=os.getpid())
    reporter = None
    try:
        cfg = RecipeConfig.model_validate(spec.config)
        log_config(client, spec.run_id, cfg)
        data = _data_for(cfg)
        trial, why = _open_trial(spec)
        result.pruning, result.note = trial is not None, why
        reporter = Reporter(trial)
        fit_start = time.perf_counter()
        averagers = _averagers(spec.averages)
        t = fit(cfg, data, epochs=spec.epochs, callbacks=[reporter, *averagers.values()], log=False)
        saved = t.save(Path(spec.workdir) / f"{safe_name(spec.name)}.pt")
        result.checkpoint_uri = _log_checkpoint(spec, client, saved)
        if not t.diverged:
            _save_averages(spec, client, result, averagers)
        result.fit_seconds = time.perf_counter() - fit_start
        result.value, result.val_metric = t.val.loss, t.val.metric
        result.train_loss, result.train_metric = t.train.loss, t.train.metric
        result.epochs, result.checkpoint = t.epochs, str(t.weights_path)
        if spec.keep_scores:
            result.val_losses, result.val_scores = t.val.losses, t.val.scores
        if t.diverged or not math.isfinite(t.val.loss):
            result.state = "diverged"
            result.note = "; ".join(x for x in (result.note, f"diverged: {t.stop_reason or 'non-finite loss'}") if x)
        elif reporter.pruned_at is not None:
            result.state = "pruned"
            result.note = "; ".join(x for x in (result.note, t.stop_reason) if x)
        else:
            result.state = "complete"
    except Exception as e:  # one broken trial must not sink the study
        result.note = f"{type(e).__name__}: {e}"
        result.error = traceback.format_exc(limit=8)
    finally:
        torch.set_num_threads(old_threads)
    result.curve = list(reporter.curve) if reporter is not None else []
    record_result(client, spec.run_id, result, list(reporter.metrics) if reporter is not None else [])
    result.seconds = time.perf_counter() - start
    return result


def _averagers(averages: tuple[int, float] | None) -> dict[str, Callback]:
    """``TrialSpec.averages``' callbacks by name: SWA from its first epoch and Polyak (EMA) weights; none without."""
    if averages is None:
        return {}
    from recipe.train.callbacks import SWA, Polyak

    return {"swa": SWA(start_epoch=int(averages[0])), "ema": Polyak(float(averages[1]))}


def _save_averages(spec: TrialSpec, client: Any, result: TrialResult, averagers: dict[str, Any]) -> None:
    """Each averaged model's weights beside the checkpoint (``<name>_swa.pt``, ``<name>_ema.pt``, a plain state
    dict), logged as checkpoint artifacts with ``spec.log_checkpoint``; noted in ``result.averages`` (and
    ``averages_uri``)."""
    import torch

    from recipe.fit import safe_name

    for kind, cb in averagers.items():
        path = Path(spec.workdir) / f"{safe_name(spec.name)}_{kind}.pt"
        torch.save(cb.averaged.module.state_dict(), path)
        result.averages[kind] = str(path)
        if uri := _log_checkpoint(spec, client, path):
            result.averages_uri[kind] = uri


def _log_checkpoint(spec: TrialSpec, client: Any, path: Path) -> str | None:
    """With ``spec.log_checkpoint``, ``path`` logged under the run's ``checkpoint/`` artifacts; its ``runs:/`` URI,
    else None."""
    if not spec.log_checkpoint:
        return None
    client.log_artifact(spec.run_id, str(path), "checkpoint")
    return f"runs:/{spec.run_id}/checkpoint/{path.name}"


def log_config(client: Any, run_id: str, cfg: Any) -> None:
    """Log ``cfg``'s flattened keys as the params of run ``run_id`` (values cut at 6,000 characters, 100 a
    request: MLflow's limits)."""
    from mlflow.entities import Param

    params = [Param(k, (str(v) if v is not None else "null")[:6000]) for k, v in cfg.flat().items()]
    for i in range(0, len(params), 100):  # MLflow's per-request limit on params
        client.log_batch(run_id, params=params[i : i + 100])


def record_result(
    client: Any, run_id: str, result: TrialResult, metrics: list[Metric], tags: dict[str, str] | None = None
) -> None:
    """End run ``run_id`` with ``result``: its curve ``metrics``, the summary (``eval/*`` of the final weights,
    ``trial/epochs``, ``trial/fit_seconds``), the state, worker and note tags plus ``tags``, then FINISHED
    (complete or pruned) or FAILED."""
    from mlflow.entities import RunTag

    now = int(time.time() * 1000)
    summary = {
        "eval/val_loss": result.value,
        "eval/val_metric": result.val_metric,
        "eval/train_loss": result.train_loss,
        "eval/train_metric": result.train_metric,
        "trial/epochs": float(result.epochs),
        "trial/fit_seconds": result.fit_seconds,
    }
    metrics = metrics + [Metric(k, v, now, 0) for k, v in summary.items() if math.isfinite(v)]
    run_tags = [RunTag(TAG_STATE, result.state), RunTag(TAG_WORKER, f"{socket.gethostname()}:{os.getpid()}")]
    run_tags += [RunTag("recipe.trial_note", result.note[:5000])] if result.note else []
    run_tags += [RunTag(k, v) for k, v in (tags or {}).items()]
    for i in range(0, max(1, len(metrics)), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000], tags=run_tags if i == 0 else [])
    client.set_terminated(run_id, "FINISHED" if result.state in ("complete", "pruned") else "FAILED")
