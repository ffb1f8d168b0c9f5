"""Training helpers the overfit and regularize stages share: train one config, evaluate it, keep its weights.

:func:`train` builds the config's model (seeded, "init well"), optionally loads a checkpoint into it, fits it
with the config's callbacks plus early stopping (``budget.early_stopping``) and MLflow logging into the active
run, then evaluates the final weights in eval mode on the whole training split (no augmentation) and the
validation split, keeping per-sample scores for paired comparisons, and saves a checkpoint.
"""

from __future__ import annotations

import math
import time
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
from recipe.fit import build_for
from recipe.train import Trainer, make_trainer, save_checkpoint
from recipe.train.callbacks import Callback, EarlyStopping, UpdateRatio
from recipe.train.utils import to_device

# The headline metric per task and whether higher is better (the baselines stage reports the same ones).
TASK_METRIC = {"classification": ("accuracy", True), "regression": ("mae", False)}
BATCHING_ONLY = {"batch_size", "eval_batch_size", "augment", "num_workers"}
MLFLOW_SCHEMES = {"runs", "models", "mlflow-artifacts", "dbfs", "s3", "gs", "wasbs", "hdfs"}


@dataclass
class Evaluation:
    loss: float
    metrics: dict[str, float]  # accuracy, or mse and mae
    metric: float  # the headline metric (TASK_METRIC)
    scores: np.ndarray  # per sample: 1.0 / 0.0 correct, or the absolute error
    losses: np.ndarray  # per sample: cross-entropy, or squared error (the training losses, unreduced)
    targets: np.ndarray


@dataclass
class Trained:
    name: str
    cfg: RecipeConfig
    model: nn.Module
    trainer: Trainer
    data: DataBundle
    train: Evaluation
    val: Evaluation
    history: list[dict[str, float]]
    seconds: float
    stop_reason: str
    diverged: bool
    weights_path: Path
    init_note: str = ""
    smooth_losses: list[float] = field(default_factory=list)
    update_ratios: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.history)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Any, task: str, device: torch.device) -> Evaluation:
    """Loss, metrics and per-sample scores of ``model`` over ``batches`` in eval mode (the losses are the
    trainer's: cross-entropy for classification, squared error for regression)."""
    model.eval()
    scores, losses, targets = [], [], []
    for xb, yb in batches:
        xb, yb = to_device(xb, device), to_device(yb, device)
        pred = model(xb).float()
        if task == "classification":
            scores.append((pred.argmax(-1) == yb).float().cpu())
            losses.append(nn.functional.cross_entropy(pred, yb, reduction="none").cpu())
        else:
            err = pred.reshape(yb.shape) - yb.float()
            scores.append(err.abs().cpu())
            losses.append((err * err).cpu())
        targets.append(yb.cpu())
    s = torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros(0)
    ls = torch.cat(losses).numpy().astype(np.float64) if losses else np.zeros(0)
    t = torch.cat(targets).numpy() if targets else np.zeros(0)
    n = len(s)
    loss = float(ls.mean()) if n else math.nan
    if task == "classification":
        metrics = {"accuracy": float(s.mean()) if n else math.nan}
    else:
        metrics = {"mae": float(s.mean()) if n else math.nan, "mse": float((s**2).mean()) if n else math.nan}
    return Evaluation(loss, metrics, metrics[TASK_METRIC[task][0]], s, ls, t)


def bundle_for(cfg: RecipeConfig, data: DataBundle) -> DataBundle:
    """``data`` for ``cfg``: shared (tensors and all) when only batching settings differ, else loaded afresh.

    Batch size and augmentations need no new bundle: ``make_trainer`` takes both from ``cfg``."""
    a, b = data.config.model_dump(exclude=BATCHING_ONLY), cfg.data.model_dump(exclude=BATCHING_ONLY)
    return data if a == b else load_data(cfg)


def resolve_checkpoint(source: str, workdir: Path) -> Path:
    """A local file for ``source``: a path (or file:// URI) as is, an MLflow URI fetched from the tracking store.

    Nothing is downloaded from anywhere else: http(s) and other schemes are refused. A folder (an MLflow model
    or artifact directory) must hold exactly one ``*.pt`` / ``*.pth`` file."""
    parsed = urlparse(source)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and source[1:3] in (":\\", ":/")):
        path = Path(parsed.path if parsed.scheme == "file" else source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {source!r} does not exist")
    elif parsed.scheme in MLFLOW_SCHEMES:
        path = tracking.download_artifacts(source, workdir / "downloaded")
    else:
        schemes = ", ".join(sorted(MLFLOW_SCHEMES))
        raise ValueError(f"checkpoint {source!r}: only local files and MLflow URIs ({schemes}) are read; nothing "
                         "is downloaded from the web")  # fmt: skip
    if path.is_dir():
        found = sorted([*path.rglob("*.pt"), *path.rglob("*.pth")])
        if len(found) != 1:
            raise ValueError(f"checkpoint folder {str(path)!r} holds {len(found)} .pt/.pth files; point at one of "
                             f"them: {', '.join(str(f) for f in found[:5]) or 'none'}")  # fmt: skip
        path = found[0]
    return path


def load_matching(model: nn.Module, path: Path) -> tuple[list[str], list[str]]:
    """Load the tensors of a checkpoint (or plain state_dict) whose names and shapes match ``model``'s;
    return (loaded, skipped) names. ``weights_only`` loading: a file holding pickled code is refused."""
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
        raise ValueError(f"no tensor of {str(path)!r} matches the model by name and shape (the model has "
                         f"{', '.join(list(own)[:4])}, ...)")  # fmt: skip
    own.update({k: state[k] for k in loaded})
    model.load_state_dict(own)
    return loaded, skipped


def train(cfg: RecipeConfig, data: DataBundle, *, name: str, workdir: Path, epochs: int | None = None,
          cbs: list[Callback] | None = None, init_path: Path | None = None, update_ratio: bool = False,
          log: bool = True) -> Trained:  # fmt: skip
    """Train ``cfg``'s model on ``data`` (see the module docstring); logs to the active MLflow run when ``log``."""
    start = time.perf_counter()
    bundle = bundle_for(cfg, data)
    model = build_for(cfg, bundle)
    init_note = ""
    source = init_path or (resolve_checkpoint(cfg.model.init_from, workdir) if cfg.model.init_from else None)
    if source is not None:
        loaded, skipped = load_matching(model, Path(source))
        init_note = f"initialised {len(loaded)} tensors from {source}" + (
            f"; {len(skipped)} kept their init ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})"
            if skipped else ""
        )  # fmt: skip
    callbacks = list(cbs or [])
    if cfg.budget.early_stopping:
        callbacks.append(EarlyStopping("val/loss", "min", patience=cfg.budget.early_stopping, restore_best=True))
    ratio = UpdateRatio(every=10) if update_ratio else None
    if ratio is not None:
        callbacks.append(ratio)
    if log:
        callbacks.append(tracking.MLflowLogger(every=5))
    trainer = make_trainer(cfg, model, bundle, cbs=callbacks)
    trainer.fit(epochs or cfg.budget.epochs)
    guard = trainer.cb("nan_guard")
    recorder = trainer.cb("recorder")
    device, bs = trainer.device, cfg.data.eval_batch_size
    train_eval = evaluate(model, bundle.batches("train", batch_size=bs, device=device), bundle.task, device)
    val_eval = evaluate(model, bundle.batches("val", batch_size=bs, device=device), bundle.task, device)
    workdir.mkdir(parents=True, exist_ok=True)
    weights = save_checkpoint(trainer, workdir / f"{_safe(name)}.pt", config=cfg.to_dict())
    return Trained(
        name=name, cfg=cfg, model=model, trainer=trainer, data=bundle, train=train_eval, val=val_eval,
        history=[dict(h) for h in trainer.history], seconds=time.perf_counter() - start,
        stop_reason=trainer.stop_reason, diverged=bool(guard and guard.tripped), weights_path=weights,
        init_note=init_note, smooth_losses=list(getattr(recorder, "smooth_losses", [])),
        update_ratios=list(ratio.history) if ratio is not None else [],
    )  # fmt: skip


def summary_metrics(t: Trained, prefix: str) -> dict[str, float]:
    """The eval-mode numbers of a trained model under ``prefix`` (e.g. "overfit/")."""
    out = {f"{prefix}train_loss": t.train.loss, f"{prefix}val_loss": t.val.loss, f"{prefix}epochs": float(t.epochs),
           f"{prefix}seconds": t.seconds}  # fmt: skip
    out.update({f"{prefix}train_{k}": v for k, v in t.train.metrics.items()})
    out.update({f"{prefix}val_{k}": v for k, v in t.val.metrics.items()})
    return out


def loss_at_init(data: DataBundle) -> float | None:
    """The loss a well-initialised model starts at: the entropy of the class priors (nats), or the target
    variance for MSE regression."""
    if data.task == "classification" and data.class_counts:
        p = np.asarray(data.class_counts, dtype=np.float64)
        p = p[p > 0] / p.sum()
        return float(-(p * np.log(p)).sum())
    if data.target_std is not None:
        return float(data.target_std**2)
    return None


def describe_model(cfg: RecipeConfig) -> str:
    m = cfg.model
    if m.name in ("linear", "resnet18", "resnet34") or ":" in m.name:
        extra = f" {m.kwargs}" if m.kwargs else ""
        return f"{m.name}{extra}"
    return f"{m.name} width {m.width} depth {m.depth}"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
