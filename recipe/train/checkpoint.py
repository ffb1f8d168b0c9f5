"""Checkpoints that resume exactly.

A checkpoint holds the model, the optimiser, every callback's ``state_dict`` (the schedule,
early stopping, EMA, metrics history ...), all RNG states, the epoch and the step, and the
run's config. It is written at the end of an epoch, so resuming starts the next epoch with
the RNG exactly where the uninterrupted run had it; the in-memory batcher reshuffles from
``seed + epoch``, so the batches match too.

Loading uses ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from recipe.train.utils import get_rng_state, set_rng_state

if TYPE_CHECKING:
    from recipe.train.trainer import Trainer

FORMAT_VERSION = 1


def save_checkpoint(trainer: Trainer, path: str | Path, config: dict | None = None) -> Path:
    """Write the trainer's epoch, step, model and optimiser state, callback states, RNG states and ``config``
    to ``path`` atomically (temp file, then rename). Returns ``path``."""
    path = Path(path)
    state = {
        "format_version": FORMAT_VERSION,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "model": trainer.model.state_dict(),
        "opt": trainer.opt.state_dict(),
        "callbacks": {key: cb.state_dict() for key, cb in _keyed(trainer.cbs)},
        "rng": get_rng_state(),
        "config": config or {},
    }
    # Write then rename, so an interrupted save never leaves a truncated checkpoint behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The state dict written by :func:`save_checkpoint`, loaded with ``weights_only=True`` onto
    ``map_location``.

    Raises FileNotFoundError when ``path`` is not a file, ValueError when it cannot be loaded safely (truncated,
    pickled code) or is not a checkpoint of this format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated file, or one holding pickled code
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded safely: {e}") from e
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is not a recipe-flows checkpoint (format {FORMAT_VERSION})")
    return state


def restore_trainer(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put ``trainer`` where it was when ``state`` was saved; fit then continues with the next epoch.

    Called by the trainer after ``before_fit``, so callbacks have built their objects (the scheduler, the EMA
    model) and only their state is loaded into them."""
    trainer.model.load_state_dict(state["model"])
    trainer.opt.load_state_dict(state["opt"])
    saved = state["callbacks"]
    for key, cb in _keyed(trainer.cbs):
        if key in saved:
            cb.load_state_dict(saved[key])
    trainer.step = int(state["step"])
    trainer.start_epoch = int(state["epoch"]) + 1
    set_rng_state(state["rng"])


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load only the model weights of a checkpoint (or of a plain state_dict file) into ``model``."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    return model


def _keyed(cbs: list[Any]) -> list[tuple[str, Any]]:
    # Class name plus position among callbacks of that class: stable while the same callbacks are used.
    seen: dict[str, int] = {}
    out = []
    for cb in cbs:
        name = type(cb).__name__
        out.append((f"{name}:{seen.get(name, 0)}", cb))
        seen[name] = seen.get(name, 0) + 1
    return out
