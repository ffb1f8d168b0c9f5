"""Device choice, seeding and RNG state: the small things reproducibility hangs on."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


class DebiasedEMA:
    """Exponential moving average with the bias correction of Adam (Kingma & Ba, 2015, section 3): after ``n``
    values, ``avg_n / (1 - beta**n)``, so the first values are not pulled towards the zero it starts from. The
    one smoothing of the training loss (the Recorder's and the LR finder's).

    Args: ``beta`` in [0, 1) (0.98: about the last 50 values); ``avg`` and ``n`` resume a saved state."""

    def __init__(self, beta: float = 0.98, avg: float = 0.0, n: int = 0) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.beta, self.avg, self.n = beta, avg, n

    def update(self, value: float) -> float:
        """Add ``value``; return the debiased average so far."""
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        return self.avg / (1 - self.beta**self.n)


def smooth(values: Any, beta: float = 0.98) -> list[float]:
    """The debiased EMA (:class:`DebiasedEMA`) after each of ``values``."""
    ema = DebiasedEMA(beta)
    return [ema.update(v) for v in values]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; an explicit device that is not there is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={device!r} but torch sees no CUDA device; use trainer.device=auto or cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("trainer.device='mps' but MPS is not available; use trainer.device=auto or cpu")
    return torch.device(device)


def to_device(x: Any, device: torch.device) -> Any:
    """``x`` with every tensor moved to ``device`` (non-blocking), through lists, tuples and dicts; other values
    and tensors already there are returned as they are."""
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict[str, Any]:
    """All RNG states, as plain tensors / lists so ``torch.load(weights_only=True)`` accepts them."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the Python, NumPy, torch CPU and (when present and available) CUDA RNG states from
    :func:`get_rng_state`'s dict. Raises KeyError when a required entry is missing."""
    random.setstate(_to_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
