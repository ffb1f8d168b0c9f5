"""One training run of one config: the only way the recipe trains a config.

:func:`fit` builds the config's model (seeded; "init well": the final bias set from the data), optionally
loads a checkpoint into it, fits it with the config's callbacks plus early stopping
(``budget.early_stopping``) and MLflow logging into the active run, then evaluates the final weights in eval
mode on the whole training split (no augmentation) and the validation split, keeping per-sample scores and
losses for paired comparisons. ``flows train`` and every stage (baselines' runs, overfit's rungs, regularize's
candidates, tune's trials) call it; the result is one frozen-by-convention :class:`FitResult`.

Divergence is trainer state: the NaN guard leaves its message in ``trainer.diverged``, and
:attr:`FitResult.diverged` / :attr:`FitResult.divergence` read it.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from recipe import tracking
from recipe.config import RecipeConfig
from recipe.data import DataBundle, load_data
from recipe.models import build_model
from recipe.tasks import task_for
from recipe.train import Callback, Trainer, make_trainer, save_checkpoint, seed_everything
from recipe.train.cadence import EpochGroups, epochs_per_eval
from recipe.train.callbacks import EarlyStopping
from recipe.train.utils import to_device

BATCHING_ONLY = {"batch_size", "eval_batch_size", "augment", "num_workers"}
MLFLOW_SCHEMES = {"runs", "models", "mlflow-artifacts", "dbfs", "s3", "gs", "wasbs", "hdfs"}


@dataclass
class Evaluation:
    """A model's numbers on one split, in eval mode. Arrays are (N,), float64 (targets: the split's dtype)."""

    loss: float  # mean of ``losses``
    metrics: dict[str, float]  # accuracy, or mae and mse (Task.summarise)
    metric: float  # the task's headline metric
    scores: np.ndarray  # per sample: 1.0 / 0.0 correct, or the absolute error (Task.scores)
    losses: np.ndarray  # per sample: the training loss unreduced (cross-entropy in nats, or squared error)
    targets: np.ndarray


@dataclass
class FitResult:
    """What one :func:`fit` left behind."""

    cfg: RecipeConfig
    model: nn.Module
    trainer: Trainer
    data: DataBundle  # the bundle trained on (a fresh one when cfg's data settings differ from the given one's)
    history: list[dict[str, float]]  # one row of metrics per validation (per epoch, or every few on tiny data)
    train: Evaluation | None  # None when fit(evaluate=False)
    val: Evaluation | None
    seconds: float  # wall-clock seconds of the whole call
    stop_reason: str  # why the fit ended early ("" when it ran every epoch)
    diverged: bool  # the NaN guard stopped it (the message: ``divergence``)
    init_note: str = ""  # what a checkpoint given by init_path / model.init_from loaded
    weights_path: Path | None = None  # set by :meth:`save`
    metrics: dict[str, float] = field(default_factory=dict)  # the trainer's last metrics (train/loss, val/loss...)

    @property
    def divergence(self) -> str:
        """The NaN guard's message ("" when the loss stayed finite)."""
        return self.trainer.diverged

    @property
    def epochs(self) -> int:
        """Data epochs trained (history rows are every few epochs on tiny data: ``trainer.eval_min_steps``)."""
        return int(self.history[-1]["epoch"]) + 1 if self.history else 0

    @property
    def losses(self) -> list[float]:
        """The training loss of every step (the recorder's)."""
        rec = self.trainer.cb("recorder")
        return list(rec.losses) if rec is not None else []

    @property
    def smooth_losses(self) -> list[float]:
        """The debiased EMA of the training loss at every step (the recorder's)."""
        rec = self.trainer.cb("recorder")
        return list(rec.smooth_losses) if rec is not None else []

    def save(self, path: Path) -> Path:
        """Write a checkpoint (model, optimiser, callbacks, config) to ``path``; returns it and keeps it as
        ``weights_path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.weights_path = save_checkpoint(self.trainer, path, config=self.cfg.to_dict())
        return self.weights_path

    def summary(self, prefix: str) -> dict[str, float]:
        """The eval-mode numbers under ``prefix`` (e.g. "overfit/"): train/val loss and metrics, epochs, seconds.

        Raises ValueError when the fit was not evaluated."""
        if self.train is None or self.val is None:
            raise ValueError("summary() needs an evaluated fit (fit(..., evaluate=True))")
        out = {
            f"{prefix}train_loss": self.train.loss,
            f"{prefix}val_loss": self.val.loss,
            f"{prefix}epochs": float(self.epochs),
            f"{prefix}seconds": self.seconds,
        }
        out.update({f"{prefix}train_{k}": v for k, v in self.train.metrics.items()})
        out.update({f"{prefix}val_{k}": v for k, v in self.val.metrics.items()})
        return out


def build_for(cfg: RecipeConfig, data: DataBundle) -> nn.Module:
    """The config's model for ``data``, seeded, with the final bias set from the training split when
    ``model.init_bias`` ("init well"). Raises ModelConfigError for a model that cannot be built."""
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    model = build_model(cfg.model, data.in_shape, data.num_classes)
    if cfg.model.init_bias:
        task_for(data).init_final_bias(model, data)
    return model


def fit(
    cfg: RecipeConfig,
    data: DataBundle | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    epochs: int | None = None,
    evaluate: bool = True,
    init_path: Path | str | None = None,
    log: bool = True,
    validate: bool = True,
    augment: bool | None = None,
    steps_per_epoch: int | None = None,
    workdir: Path | None = None,
) -> FitResult:
    """Train ``cfg``'s model on ``data`` (loaded from ``cfg`` when None); see the module docstring.

    Args:
        callbacks: added to the config's (schedule, budget, clipping, EMA, precision) and the defaults.
        epochs: default ``cfg.budget.epochs``.
        evaluate: evaluate the final weights on train and val (``FitResult.train`` / ``.val``).
        init_path: a checkpoint to start from (default ``cfg.model.init_from``); tensors matching by name and
            shape are loaded, the rest keep their init.
        log: log curves to the active MLflow run (an ``MLflowLogger(every=5)``); pass your own logger in
            ``callbacks`` with ``log=False`` for another cadence.
        validate: validate on the val split after every epoch (``val/*`` metrics in each history row); on tiny
            epochs every few epochs (``trainer.eval_min_steps``, :mod:`recipe.train.cadence`), unless a callback
            counts data epochs (``Callback.every_epoch``).
        augment: train with ``cfg.data.augment`` (default: when it lists any transform).
        steps_per_epoch: use only the first this many batches of each epoch's (seeded) order.
        workdir: where a checkpoint fetched from MLflow is put (default: a temporary folder, removed after).

    Raises DataError (data), ModelConfigError (model), ValueError / FileNotFoundError (a checkpoint);
    an exception from the model or a callback propagates (a diverging loss does not: see ``diverged``).
    """
    start = time.perf_counter()
    data = data if data is not None else load_data(cfg)
    bundle = bundle_for(cfg, data)
    model = build_for(cfg, bundle)
    init_note = _load_init(model, init_path or cfg.model.init_from, workdir)
    cbs = list(callbacks)
    if cfg.budget.early_stopping:
        cbs.append(EarlyStopping("val/loss", "min", patience=cfg.budget.early_stopping, restore_best=True))
    if log:
        cbs.append(tracking.MLflowLogger(every=5))
    trainer = make_trainer(cfg, model, bundle, cbs=cbs, augment=augment, valid_split="val" if validate else None)
    if steps_per_epoch is not None and steps_per_epoch < len(trainer.train_data):
        trainer.train_data = FirstBatches(trainer.train_data, steps_per_epoch)
    n_epochs = epochs or cfg.budget.epochs
    per_eval = epochs_per_eval(n_epochs, len(trainer.train_data), cfg.trainer.eval_min_steps)
    if per_eval > 1 and not any(c.every_epoch for c in trainer.cbs):
        trainer.train_data = EpochGroups(trainer.train_data, per_eval, n_epochs)
        n_epochs = trainer.train_data.groups
    trainer.fit(n_epochs)
    from recipe.pipeline import emit

    emit("run_done")  # the live view counts a stage's runs (the budget's warm-up fits come before its stage starts)
    train_eval = val_eval = None
    if evaluate:
        bs, device = cfg.data.eval_batch_size, trainer.device
        task = task_for(bundle)  # a regression task reports MAE and MSE in the target's units
        train_eval = evaluate_model(model, bundle.batches("train", batch_size=bs, device=device), task, device)
        val_eval = evaluate_model(model, bundle.batches("val", batch_size=bs, device=device), task, device)
    return FitResult(
        cfg=cfg,
        model=model,
        trainer=trainer,
        data=bundle,
        history=[dict(h) for h in trainer.history],
        train=train_eval,
        val=val_eval,
        seconds=time.perf_counter() - start,
        stop_reason=trainer.stop_reason,
        diverged=bool(trainer.diverged),
        init_note=init_note,
        metrics={k: float(v) for k, v in trainer.metrics.items() if isinstance(v, (int, float))},
    )


@torch.no_grad()
def evaluate_model(model: nn.Module, batches: Any, task: Any, device: torch.device) -> Evaluation:
    """Loss, metrics and per-sample scores of ``model`` over ``batches`` in eval mode; ``task`` is a name or
    :class:`~recipe.tasks.Task` (its loss with ``reduction="none"`` and its scores)."""
    task = task_for(task)
    model.eval()
    scores, losses, targets = [], [], []
    for xb, yb in batches:
        xb, yb = to_device(xb, device), to_device(yb, device)
        pred = model(xb).float()
        scores.append(task.scores(pred, yb).cpu())
        losses.append(task.loss(pred, yb, reduction="none").cpu())
        targets.append(yb.cpu())
    s = torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros(0)
    ls = torch.cat(losses).numpy().astype(np.float64) if losses else np.zeros(0)
    t = torch.cat(targets).numpy() if targets else np.zeros(0)
    metrics = task.summarise(s)
    return Evaluation(float(ls.mean()) if len(s) else math.nan, metrics, metrics[task.metric], s, ls, t)


class FirstBatches:
    """The first ``n`` batches of each epoch's (seeded, reshuffled) order: "epochs" of ``n`` steps, so a short
    run on a large training split still validates and snapshots its predictions several times."""

    def __init__(self, batches: Any, n: int) -> None:
        self.batches, self.n = batches, n

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return min(self.n, len(self.batches))

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.batches), len(self))


def epochs_for(epochs: int, cfg: RecipeConfig, data: DataBundle) -> int:
    """``epochs`` (a run's, or a stage's own), scaled up for small data when ``cfg.budget.min_steps`` is set.

    When ``cfg.budget.epochs`` over ``data``'s training split at ``cfg.data.batch_size`` gives fewer optimiser
    steps than ``min_steps``, every run's epochs grow by the same factor ``min_steps / budget steps`` (rounded
    up), so the budget takes at least ``min_steps`` steps and a stage that trains for half the budget (tune's
    trials) still trains for half. A preset sized in epochs for 10,000 images would otherwise give a 300-image
    folder a few dozen steps. Returns ``epochs`` unchanged when ``min_steps`` is None, the budget already has
    the steps, or the split is empty. The arithmetic is :func:`min_steps_epochs` (the wall-clock budget sizes
    stages with it too)."""
    n_train = len(data.rows("train"))
    if n_train == 0:
        return epochs
    steps_per_epoch = math.ceil(n_train / cfg.data.batch_size)
    return min_steps_epochs(epochs, cfg.budget.epochs, steps_per_epoch, cfg.budget.min_steps or 0)


def min_steps_epochs(epochs: int, budget_epochs: int, steps_per_epoch: int, min_steps: int) -> int:
    """The epochs a run of ``epochs`` really trains under ``budget.min_steps``: ``epochs`` times ``min_steps``
    over the budget's steps (``budget_epochs x steps_per_epoch``), rounded up, when the budget has fewer steps
    than ``min_steps``; else ``epochs``. ``min_steps`` 0 is off. Used by :func:`epochs_for` (every stage) and
    by ``recipe.budget`` (the sizing), so a budgeted stage is sized on the epochs it will really run."""
    budget_steps = budget_epochs * steps_per_epoch
    if not min_steps or budget_steps <= 0 or budget_steps >= min_steps:
        return epochs
    return max(epochs, math.ceil(epochs * min_steps / budget_steps))


def with_min_steps(section: Any, cfg: RecipeConfig, data: DataBundle, notes: list[str]) -> Any:
    """A stage's config ``section`` (with an ``epochs`` field) with its epochs raised by :func:`epochs_for`;
    a raise is explained in ``notes``. ``section`` itself is returned when nothing changes."""
    epochs = epochs_for(section.epochs, cfg, data)
    if epochs == section.epochs:
        return section
    notes.append(_min_steps_note(section.epochs, epochs, cfg))
    return section.model_copy(update={"epochs": epochs})


def _min_steps_note(before: int, after: int, cfg: RecipeConfig) -> str:
    return (
        f"small data: {before} -> {after} epochs per run, so the budget takes at least budget.min_steps = "
        f"{cfg.budget.min_steps} optimiser steps at batch size {cfg.data.batch_size}"
    )


def bundle_for(cfg: RecipeConfig, data: DataBundle) -> DataBundle:
    """``data`` for ``cfg``: shared (tensors and all) when only batching settings differ, else loaded afresh.

    Batch size and augmentations need no new bundle: ``make_trainer`` takes both from ``cfg``."""
    a, b = data.config.model_dump(exclude=BATCHING_ONLY), cfg.data.model_dump(exclude=BATCHING_ONLY)
    return data if a == b else load_data(cfg)


def _load_init(model: nn.Module, source: Path | str | None, workdir: Path | None) -> str:
    """Load ``source`` into ``model`` (see :func:`load_matching`); returns a note saying what was loaded."""
    if source is None:
        return ""
    with tempfile.TemporaryDirectory(prefix="recipe-init-") as tmp:
        loaded, skipped = load_matching(model, resolve_checkpoint(str(source), workdir or Path(tmp)))
    note = f"initialised {len(loaded)} tensors from {source}"
    if skipped:
        more = ", ..." if len(skipped) > 3 else ""
        note += f"; {len(skipped)} kept their init ({', '.join(skipped[:3])}{more})"
    return note


def resolve_checkpoint(source: str, workdir: Path) -> Path:
    """A local file for ``source``: a path (or file:// URI) as is, an MLflow URI fetched from the tracking store
    into ``workdir``.

    Nothing is downloaded from anywhere else: http(s) and other schemes raise ValueError; a missing file raises
    FileNotFoundError. A folder (an MLflow model or artifact directory) must hold exactly one ``*.pt`` /
    ``*.pth`` file."""
    parsed = urlparse(source)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and source[1:3] in (":\\", ":/")):
        path = Path(parsed.path if parsed.scheme == "file" else source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {source!r} does not exist")
    elif parsed.scheme in MLFLOW_SCHEMES:
        path = tracking.download_artifacts(source, workdir / "downloaded")
    else:
        schemes = ", ".join(sorted(MLFLOW_SCHEMES))
        raise ValueError(
            f"checkpoint {source!r}: only local files and MLflow URIs ({schemes}) are read; nothing is downloaded "
            "from the web"
        )
    if path.is_dir():
        found = sorted([*path.rglob("*.pt"), *path.rglob("*.pth")])
        if len(found) != 1:
            listed = ", ".join(str(f) for f in found[:5]) or "none"
            raise ValueError(
                f"checkpoint folder {str(path)!r} holds {len(found)} .pt/.pth files; point at one of them: {listed}"
            )
        path = found[0]
    return path


def load_matching(model: nn.Module, path: Path) -> tuple[list[str], list[str]]:
    """Load the tensors of a checkpoint (or plain state_dict) whose names and shapes match ``model``'s;
    return (loaded, skipped) names. ``weights_only`` loading: a file holding pickled code is refused
    (ValueError), as is a file with no matching tensor."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot load {str(path)!r} as weights (a state_dict or recipe checkpoint): {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} does not hold a state_dict")
    own = model.state_dict()
    loaded = [k for k, v in state.items() if k in own and hasattr(v, "shape") and v.shape == own[k].shape]
    skipped = [k for k in own if k not in loaded]
    if not loaded:
        raise ValueError(
            f"no tensor of {str(path)!r} matches the model by name and shape (the model has "
            f"{', '.join(list(own)[:4])}, ...)"
        )
    own.update({k: state[k] for k in loaded})
    model.load_state_dict(own)
    return loaded, skipped


def describe_model(cfg: RecipeConfig) -> str:
    """The model in a few words: "cnn width 32 depth 2", "resnet18", "my.module:Net {...}"."""
    m = cfg.model
    if m.name in ("linear", "resnet18", "resnet34") or ":" in m.name:
        extra = f" {m.kwargs}" if m.kwargs else ""
        return f"{m.name}{extra}"
    return f"{m.name} width {m.width} depth {m.depth}"


def safe_name(name: str) -> str:
    """``name`` with every character outside [A-Za-z0-9-_.] replaced by "_" (for file names)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


__all__ = [
    "Evaluation",
    "FirstBatches",
    "FitResult",
    "build_for",
    "bundle_for",
    "describe_model",
    "evaluate_model",
    "fit",
    "load_matching",
    "resolve_checkpoint",
    "safe_name",
]
