"""The model registry and ``build_model``: turn a ``ModelConfig`` into an ``nn.Module``.

A builder is ``builder(cfg, in_shape, num_classes, **extra) -> nn.Module``. Its keyword-only
parameters (after ``num_classes``) are the extras ``cfg.kwargs`` may set; anything else in
``cfg.kwargs`` is an error that lists what the builder accepts, because a misspelt option that
is silently dropped still trains -- only worse.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from torch import nn

from recipe.config import ConfigError, ModelConfig

CUSTOM_CONTRACT = (
    "model.name may also be 'package.module:callable'; the callable is called as "
    "callable(in_shape=(C, H, W) or (n_features,), num_classes=K, **model.kwargs) and must return an nn.Module "
    "whose output has shape (N, K) (K = 1 for regression)"
)


class ModelConfigError(ConfigError):
    """``model.*`` settings that cannot build a model; the message says what to change."""


class ModelBuilder(Protocol):
    """A model builder: ``builder(cfg, in_shape, num_classes, **extra) -> nn.Module``, ``in_shape`` (C, H, W) or
    (n_features,), outputs (N, num_classes); its keyword-only parameters are the ``model.kwargs`` it accepts."""

    def __call__(self, cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int, **extra: Any) -> nn.Module: ...


MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str, *, overwrite: bool = False) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make ``builder`` buildable as ``model.name=<name>``."""
    if ":" in name or not name.strip():
        raise ValueError(f"model name {name!r} must be non-blank and contain no ':' (that marks module:callable)")

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in MODELS and not overwrite and MODELS[name] is not builder:
            raise ValueError(f"model {name!r} is already registered; pass overwrite=True to replace it")
        MODELS[name] = builder
        return builder

    return decorate


def build_model(cfg: ModelConfig, in_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Build the network ``cfg`` names for inputs of ``in_shape`` and ``num_classes`` outputs.

    ``in_shape`` is (C, H, W) for images or (n_features,) for tables; ``num_classes`` is 1 for
    regression. The model maps a batch (N, *in_shape) to logits (N, num_classes).
    """
    shape = _check_shape(in_shape)
    if num_classes < 1:
        raise ModelConfigError(f"num_classes must be >= 1 (1 for regression), got {num_classes}")
    if ":" in cfg.name:
        return _build_custom(cfg, shape, num_classes)
    builder = MODELS.get(cfg.name)
    if builder is None:
        raise ModelConfigError(_unknown_name_message(cfg.name))
    _check_extra_kwargs(cfg.name, builder, cfg.kwargs)
    return builder(cfg, shape, num_classes, **cfg.kwargs)


def is_image_shape(in_shape: Sequence[int]) -> bool:
    return len(in_shape) == 3


def require_images(model: str, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Conv builders call this first: a table has no spatial axes to convolve over."""
    if not is_image_shape(in_shape):
        raise ModelConfigError(
            f"model.name={model!r} needs images of shape (C, H, W), got tabular in_shape {in_shape}; "
            "use mlp or linear for tabular data"
        )
    c, h, w = in_shape
    return c, h, w


# --- helpers ---------------------------------------------------------------------------------------------


def _check_shape(in_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in in_shape)
    if len(shape) not in (1, 3) or any(d < 1 for d in shape):
        raise ModelConfigError(
            f"in_shape must be (C, H, W) for images or (n_features,) for tables, with positive sizes; got {shape}"
        )
    return shape


def _unknown_name_message(name: str) -> str:
    names = sorted(MODELS)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if "." in name and not close:
        head, _, tail = name.rpartition(".")
        hint = f"; for a model of your own write it as {head + ':' + tail!r} (module:callable)"
    return f"unknown model.name {name!r}{hint} (registered: {', '.join(names)}). {CUSTOM_CONTRACT}"


def _extra_params(builder: ModelBuilder) -> dict[str, Any]:
    """The keyword-only parameters of a builder and their defaults: what ``model.kwargs`` may set."""
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_extra_kwargs(name: str, builder: ModelBuilder, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return  # a builder taking **extra checks its own
    accepted = _extra_params(builder)
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    known = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
    close = [c for u in unknown for c in difflib.get_close_matches(u, list(accepted), n=1)]
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ModelConfigError(
        f"model.kwargs has {', '.join(map(repr, unknown))}, which model {name!r} does not take{hint} "
        f"(it takes: {known})"
    )


def _build_custom(cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from recipe.policy import check_build

    module_name, _, attr_path = cfg.name.partition(":")
    if not module_name or not attr_path:
        raise ModelConfigError(f"model.name={cfg.name!r}: expected 'package.module:callable'. {CUSTOM_CONTRACT}")
    # Every path to a custom model ends here (config, tune trials, squeeze members, a champion's spec): an
    # untrusted run's import is checked against the operator's allow-list before anything is imported.
    check_build(cfg.name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelConfigError(
            f"model.name={cfg.name!r}: cannot import module {module_name!r} ({e}); make sure it is on the Python "
            f"path (installed, or run from the folder that holds it). {CUSTOM_CONTRACT}"
        ) from e
    target: Any = module
    for part in attr_path.split("."):  # "mod:Class.factory" works too
        if not hasattr(target, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            close = difflib.get_close_matches(part, public, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ModelConfigError(
                f"model.name={cfg.name!r}: module {module_name!r} has no attribute {attr_path!r}{hint}. "
                f"{CUSTOM_CONTRACT}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelConfigError(
            f"model.name={cfg.name!r}: {attr_path!r} is not callable (got {type(target).__name__}). {CUSTOM_CONTRACT}"
        )
    try:
        model = target(in_shape=in_shape, num_classes=num_classes, **cfg.kwargs)
    except TypeError as e:
        # Most often a signature mismatch: say what was passed, keep the original on the chain.
        passed = ", ".join(["in_shape", "num_classes", *cfg.kwargs])
        raise ModelConfigError(
            f"model.name={cfg.name!r}: calling it with keyword arguments ({passed}) failed: {e}. {CUSTOM_CONTRACT}"
        ) from e
    if not isinstance(model, nn.Module):
        raise ModelConfigError(
            f"model.name={cfg.name!r} returned a {type(model).__name__}, not a torch.nn.Module. {CUSTOM_CONTRACT}"
        )
    return model
