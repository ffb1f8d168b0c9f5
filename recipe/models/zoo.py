"""The plain models: linear (the dumb baseline), mlp (tables, or images as flat vectors) and a small cnn.

Hidden layers get Kaiming (He) init for their activation so the signal keeps its scale through depth.
The final layer starts small (PyTorch's default weights x ``FINAL_WEIGHT_SCALE``) and the stages set its
bias from the data with ``init_final_bias`` ("init well"): the logits at init are then close to the bias,
so the loss at init is what the baselines stage expects (-log(1/C), or the entropy of the class priors).
(With PyTorch's default final weights the Kaiming-scaled features put the cnn ~0.3 nats above that.)

No BatchNorm here: these models behave the same for any batch size in train mode, so a single-example
overfit or a batch-dependence check means what it says.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recipe.config import ModelConfig
from recipe.models.registry import ModelConfigError, register_model, require_images

# name -> (module factory, the gain name torch.nn.init understands for Kaiming init)
ACTIVATIONS: dict[str, tuple[type[nn.Module], str]] = {
    "relu": (nn.ReLU, "relu"),
    "leaky_relu": (nn.LeakyReLU, "leaky_relu"),
    "gelu": (nn.GELU, "relu"),  # close enough to ReLU's gain
    "silu": (nn.SiLU, "relu"),
    "tanh": (nn.Tanh, "tanh"),
}


def get_activation(name: str) -> tuple[type[nn.Module], str]:
    """``(module class, Kaiming gain name)`` of activation ``name`` (see ``ACTIVATIONS``).

    Raises ModelConfigError listing the known activations when ``name`` is not one."""
    if name not in ACTIVATIONS:
        raise ModelConfigError(f"model.kwargs.activation={name!r} is not one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


FINAL_WEIGHT_SCALE = 0.1  # small logits at init; x0.1 keeps the RNG stream of the default init unchanged


def small_head_(layer: nn.Linear) -> nn.Linear:
    """Shrink the output layer's default weights so the logits at init are about the bias alone."""
    with torch.no_grad():
        layer.weight.mul_(FINAL_WEIGHT_SCALE)
    return layer


def kaiming_(layer: nn.Linear | nn.Conv2d, gain_name: str) -> None:
    """Kaiming (He) normal init in place, fan-in mode with the gain of ``gain_name``, bias zeroed (He et al.,
    2015, "Delving Deep into Rectifiers"): keeps the activations' scale through depth."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=gain_name)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@register_model("linear")
def build_linear(cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Flatten -> Linear. Ignores width, depth and dropout: the baseline nothing can go wrong with."""
    return nn.Sequential(nn.Flatten(), small_head_(nn.Linear(math.prod(in_shape), num_classes)))


@register_model("mlp")
def build_mlp(cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int, *, activation: str = "relu") -> nn.Module:
    """Flatten -> depth x (Linear(width) -> act -> Dropout) -> Linear."""
    return nn.Sequential(nn.Flatten(), *mlp_layers(cfg, math.prod(in_shape), num_classes, activation))


def mlp_layers(cfg: ModelConfig, features: int, num_classes: int, activation: str = "relu") -> list[nn.Module]:
    """``depth`` x (Linear(width), Kaiming-initialised -> act -> Dropout) on ``features`` inputs, then the small
    head (Linear -> ``num_classes``): the body shared by ``mlp`` and ``mlp_plr``."""
    act, gain = get_activation(activation)
    layers: list[nn.Module] = []
    for _ in range(cfg.depth):
        hidden = nn.Linear(features, cfg.width)
        kaiming_(hidden, gain)
        layers += [hidden, act(), nn.Dropout(cfg.dropout)]
        features = cfg.width
    layers.append(small_head_(nn.Linear(features, num_classes)))
    return layers


class SmallCNN(nn.Module):
    """``depth`` blocks of [conv3x3 -> act -> conv3x3 -> act -> maxpool], widths ``width * 2**i``,
    then global average pooling -> Dropout -> Linear.

    A block halves the spatial size only while it is >= 4, so 8x8 digits keep a 2x2 map after two
    blocks instead of collapsing to 1x1, and deeper ladders still build on tiny images. Global
    average pooling makes the head independent of the input size (8, 28 or 32 px alike).
    """

    def __init__(
        self, in_shape: tuple[int, ...], num_classes: int, width: int, depth: int, dropout: float, act_name: str
    ) -> None:
        super().__init__()
        channels, height, width_px = require_images("cnn", in_shape)
        side = min(height, width_px)
        act, gain = get_activation(act_name)
        blocks: list[nn.Module] = []
        for i in range(depth):
            out = width * 2**i
            convs = [nn.Conv2d(channels, out, 3, padding=1), nn.Conv2d(out, out, 3, padding=1)]
            for conv in convs:
                kaiming_(conv, gain)
            block = [convs[0], act(), convs[1], act()]
            if side >= 4:
                block.append(nn.MaxPool2d(2))
                side //= 2
            blocks.append(nn.Sequential(*block))
            channels = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = small_head_(nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.dropout(self.pool(self.features(x))))


@register_model("cnn")
def build_cnn(cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int, *, activation: str = "relu") -> nn.Module:
    return SmallCNN(in_shape, num_classes, cfg.width, cfg.depth, cfg.dropout, activation)
