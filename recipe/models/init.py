"""Init helpers: "init well" from the recipe, and small model facts the stages check.

``init_final_bias`` sets only the bias of the layer that produces the logits: log class priors for
classification (softmax at init then predicts the priors), the target mean for regression. The
loss at init equals the entropy of the priors (or the target variance, for MSE) only when the
weight part of the logits is small next to the bias; ``scale_final_weights(model, 0.0)`` (or a
small factor) makes it so. The recipe's "verify loss at init" check relies on that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

MIN_PRIOR = 1e-6  # a class absent from the training split gets log(1e-6), not -inf (which would poison the grads)


def final_linear(model: nn.Module) -> nn.Linear:
    """The layer that produces the logits: the model's ``logits_layer`` when it names one (a module with
    ``weight``, ``bias`` and ``out_features``, e.g. TabM's per-member heads, bias (k, C)), else the last
    ``nn.Linear`` in module (registration) order.

    For custom models, register the output layer last (as the zoo does) for this to find it.
    """
    named = getattr(model, "logits_layer", None)
    if isinstance(named, nn.Module):
        return named  # type: ignore[return-value]
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer; the init helpers need the layer that produces "
            "the logits to be an nn.Linear registered last"
        )
    return last


@torch.no_grad()
def init_final_bias(
    model: nn.Module,
    *,
    class_priors: Sequence[float] | Tensor | None = None,
    target_mean: float | None = None,
) -> nn.Module:
    """Set the logits' bias from the data; give exactly one of ``class_priors`` or ``target_mean``.

    Args:
        class_priors: per-class frequencies in the training split (normalised here; need not sum to 1).
            bias = log(priors). With a single output unit (binary, sigmoid) and two priors, bias = log(p1 / p0).
        target_mean: regression: bias = the mean training target.

    Returns the model, changed in place.
    """
    if (class_priors is None) == (target_mean is None):
        raise ValueError(
            "init_final_bias needs exactly one of class_priors (classification) or target_mean (regression)"
        )
    layer = final_linear(model)
    if layer.bias is None:
        raise ValueError("the final nn.Linear has no bias (bias=False); there is nothing to initialise")
    if target_mean is not None:
        layer.bias.fill_(float(target_mean))
        return model
    priors = torch.as_tensor(class_priors, dtype=torch.float64).flatten()
    if priors.numel() == 0 or (priors < 0).any() or priors.sum() <= 0 or not torch.isfinite(priors).all():
        raise ValueError(f"class_priors must be non-negative, finite and not all zero; got {priors.tolist()}")
    priors = (priors / priors.sum()).clamp_min(MIN_PRIOR)
    if layer.out_features == 1 and priors.numel() == 2:
        bias = torch.log(priors[1] / priors[0]).reshape(1)
    elif priors.numel() == layer.out_features:
        bias = torch.log(priors)
    else:
        raise ValueError(
            f"{priors.numel()} class priors for a final layer with {layer.out_features} outputs; they must match"
        )
    layer.bias.copy_(bias.to(layer.bias.dtype))
    return model


@torch.no_grad()
def scale_final_weights(model: nn.Module, factor: float) -> nn.Module:
    """Multiply the final layer's weights by ``factor`` (0 zeroes them), so the logits at init are the bias."""
    final_linear(model).weight.mul_(factor)
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
