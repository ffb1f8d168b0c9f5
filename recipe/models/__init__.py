"""The model zoo: ``build_model(cfg.model, in_shape, num_classes)`` and the "init well" helpers.

Registered models (``model.name``):

========== ====================================================================== =====================
name       what                                                                   model.kwargs
========== ====================================================================== =====================
linear     flatten -> Linear; the dumb baseline (ignores width, depth, dropout)    --
mlp        flatten -> depth x (Linear(width) -> ReLU -> Dropout) -> Linear         activation
mlp_plr    tables: periodic embeddings of each column (Gorishniy et al. 2022,      n_frequencies,
           rtdl_num_embeddings) -> flatten -> the mlp above                        d_embedding, sigma, lite
tabm       tables, the tabular preset's default: TabM (Gorishniy et al. 2025),     k, arch_type,
           k weight-sharing MLPs (depth x width) each trained on its own loss,     embeddings, n_frequencies,
           predicting their mean; optional periodic embeddings                     d_embedding, sigma
cnn        depth x [conv3x3 -> ReLU -> conv3x3 -> ReLU -> maxpool], widths          activation
           width*2**i; global avg pool -> Dropout -> Linear; no BatchNorm
resnet     narrow CIFAR-style ResNet: 3x3 stem, depth stages of BasicBlocks,       blocks, zero_init_residual
           widths width*2**i; global avg pool -> Dropout -> Linear
resnet18   torchvision's, weights=None; 3x3 stride-1 stem, no maxpool below 64 px   zero_init_residual
resnet34   as resnet18                                                            zero_init_residual
========== ====================================================================== =====================

``in_shape`` is (C, H, W) for images or (n_features,) for tables; ``num_classes`` is 1 for regression.
Every model maps a batch (N, *in_shape) to logits (N, num_classes). Conv models refuse tables (use mlp
or linear). Unknown ``model.kwargs`` are errors that list what the model takes.

Your own model
--------------
Set ``model.name`` to ``package.module:callable`` (e.g. ``--set model.name=mypkg.nets:MyNet``). The module
must be importable (installed, or on the Python path of the working directory). It is called as::

    callable(in_shape=(C, H, W) or (n_features,), num_classes=K, **model.kwargs)

and must return a ``torch.nn.Module`` whose output has shape (N, K). ``model.width``/``depth``/``dropout``
are not passed -- put what your model needs in ``model.kwargs`` (``--set model.kwargs.width=64``); the
capacity ladder (``grow``) turns integer ``width``/``depth`` entries there. For ``init_final_bias`` to find
the output layer, make it an ``nn.Linear`` registered last. A module that cannot be imported, a missing
attribute, a call that fails with a TypeError, or a result that is not an nn.Module raise
``ModelConfigError`` (a ``ValueError``) naming the module, the attribute and this contract.

Register a builder with ``@register_model("name")``: ``builder(cfg, in_shape, num_classes, *, extra=...)``,
whose keyword-only parameters are what ``model.kwargs`` may set.
"""

from recipe.models.init import count_parameters, final_linear, init_final_bias, scale_final_weights
from recipe.models.ladder import grow
from recipe.models.registry import (
    CUSTOM_CONTRACT,
    MODELS,
    ModelBuilder,
    ModelConfigError,
    build_model,
    register_model,
)

# Imported for their side effect: each registers its builders in MODELS.
from recipe.models import zoo as _zoo  # noqa: E402,F401  isort: skip
from recipe.models import resnet as _resnet  # noqa: E402,F401  isort: skip
from recipe.models import tabular as _tabular  # noqa: E402,F401  isort: skip

__all__ = [
    "CUSTOM_CONTRACT",
    "MODELS",
    "ModelBuilder",
    "ModelConfigError",
    "build_model",
    "count_parameters",
    "final_linear",
    "grow",
    "init_final_bias",
    "register_model",
    "scale_final_weights",
]
