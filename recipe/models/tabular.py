"""``mlp_plr``: the default network for tables, an MLP on periodic embeddings of every input column.

Gorishniy, Rubachev and Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning" (NeurIPS
2022): a plain MLP becomes competitive with gradient-boosted trees when each scalar feature ``x_j`` is first
mapped to a vector ``ReLU(Linear([cos(2 pi c_j x_j), sin(2 pi c_j x_j)]))`` with trainable frequencies
``c_j ~ N(0, sigma^2)`` ("PLR" embeddings). The "lite" form, one Linear shared by all features, is the one the
TabM paper (Gorishniy et al., ICLR 2025) uses as its MLP-PLR baseline; ``lite=False`` gives every feature
its own. Written here (about 60 lines) rather than adding the ``rtdl_num_embeddings``/``tabm`` dependencies:
the champion must rebuild the network from this package's registry alone.

Every input column is embedded, the 0/1 columns of one-hot levels and missing-value indicators too (the
network sees ``(n_features,)`` and cannot tell them apart; for a two-valued input the embedding is a learned
pair of vectors, i.e. a categorical embedding). The periodic features need inputs on a common scale, which the
table scaling gives (robust centre and scale, soft-clipped to ±3: :mod:`recipe.data.bundle`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recipe.config import ModelConfig
from recipe.models.registry import ModelConfigError, register_model
from recipe.models.zoo import mlp_layers


class PeriodicEmbeddings(nn.Module):
    """(N, F) -> (N, F, d): ``ReLU(Linear([cos(2 pi c x), sin(2 pi c x)]))`` per feature, ``c`` (F, k) trainable.

    ``lite``: one Linear(2k, d) shared by the features; otherwise one per feature (an (F, 2k, d) weight)."""

    def __init__(self, n_features: int, n_frequencies: int, d_embedding: int, sigma: float, lite: bool) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, n_frequencies) * sigma)
        self.lite = lite
        if lite:
            self.linear = nn.Linear(2 * n_frequencies, d_embedding)
        else:
            bound = 1 / math.sqrt(2 * n_frequencies)  # nn.Linear's default init, feature by feature
            self.weight = nn.Parameter(torch.empty(n_features, 2 * n_frequencies, d_embedding).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(n_features, d_embedding).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * self.frequencies * x[..., None]
        z = torch.cat([torch.cos(z), torch.sin(z)], -1)
        z = self.linear(z) if self.lite else torch.einsum("nfk,fkd->nfd", z, self.weight) + self.bias
        return torch.relu(z)


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
    Dropout) -> Linear. Tables only (``in_shape`` (n_features,)); ``sigma`` (the frequencies' initial scale) is
    the knob the paper tunes (0.01 .. 100): larger fits finer detail of a feature. Raises ModelConfigError for
    image shapes or sizes below 1."""
    if len(in_shape) != 1:
        raise ModelConfigError(f"model.name='mlp_plr' is for tables of shape (n_features,), got {in_shape}; use cnn")
    if min(n_frequencies, d_embedding) < 1 or sigma <= 0:
        raise ModelConfigError(
            f"mlp_plr needs n_frequencies >= 1, d_embedding >= 1 and sigma > 0; got {n_frequencies}, "
            f"{d_embedding}, {sigma}"
        )
    (n_features,) = in_shape
    embeddings = PeriodicEmbeddings(n_features, n_frequencies, d_embedding, sigma, lite)
    return nn.Sequential(embeddings, nn.Flatten(), *mlp_layers(cfg, n_features * d_embedding, num_classes, activation))
