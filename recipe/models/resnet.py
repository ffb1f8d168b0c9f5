"""Residual networks: a narrow CIFAR-style ResNet sized by width/depth, and torchvision's resnet18/34.

Both use BatchNorm, so unlike the plain zoo their train-mode output depends on the rest of the batch.
torchvision's models are built with ``weights=None``: nothing is ever downloaded.
"""

from __future__ import annotations

from torch import nn

from recipe.config import ModelConfig
from recipe.models.registry import ModelConfigError, register_model, require_images

SMALL_IMAGE_SIDE = 64  # below this, an ImageNet stem (7x7 stride 2 + maxpool) throws away most of the image


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al., 2016), as ``torchvision.models.resnet.BasicBlock`` with its defaults:
    conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the identity (or ``downsample(x)``), then ReLU.

    The same submodule names (conv1, bn1, conv2, bn2, downsample), so state dicts are torchvision's, and the
    same arithmetic (tests/models compare the two outputs). Stated here because importing torchvision costs
    every process that builds a network about 1.3 s (``torchvision`` imports its ops, which import
    ``torch._dynamo``); one prediction with ``flows predict`` took 6.5 s, a fifth of it that import. torchvision
    is still imported, lazily, for ``resnet18``/``resnet34``.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class NarrowResNet(nn.Module):
    """3x3 stem (``width`` channels) -> ``depth`` stages of ``blocks`` BasicBlocks, widths ``width * 2**i``
    -> global average pool -> Dropout -> Linear.

    Stages after the first downsample with stride 2, but only while the spatial size is >= 4, so an
    8x8 digit is never reduced below 2x2 (a 1x1 map has nothing left for a 3x3 conv to mix).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        width: int,
        depth: int,
        dropout: float,
        blocks: int = 1,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        channels, height, width_px = require_images("resnet", in_shape)
        side = min(height, width_px)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        channels = width
        for i in range(depth):
            out = width * 2**i
            stride = 2 if i > 0 and side >= 4 else 1
            side = side // stride
            stage = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                shortcut = None
                if s != 1 or channels != out:  # the identity no longer matches: project it
                    shortcut = nn.Sequential(nn.Conv2d(channels, out, 1, stride=s, bias=False), nn.BatchNorm2d(out))
                stage.append(BasicBlock(channels, out, stride=s, downsample=shortcut))
                channels = out
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self._init(zero_init_residual)

    def _init(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each block starts as the identity, so the net at init is shallow and trains stably
            # (Goyal et al., 2017); the blocks then learn their residuals.
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        return self.head(self.dropout(self.pool(self.stages(self.stem(x)))))


@register_model("resnet")
def build_resnet(
    cfg: ModelConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
    *,
    blocks: int = 1,
    zero_init_residual: bool = True,
) -> nn.Module:
    """``blocks``: BasicBlocks per stage (1 keeps it fast on a CPU; 3 per stage at depth 3 is ResNet-20)."""
    if blocks < 1:
        raise ModelConfigError(f"model.kwargs.blocks must be >= 1, got {blocks}")
    return NarrowResNet(in_shape, num_classes, cfg.width, cfg.depth, cfg.dropout, blocks, zero_init_residual)


def adapt_torchvision_resnet(
    model: nn.Module, in_shape: tuple[int, ...], num_classes: int, dropout: float
) -> nn.Module:
    """Fit an ImageNet-shaped torchvision ResNet to ``in_shape`` and ``num_classes``."""
    channels, height, width_px = in_shape
    stem_out = model.conv1.out_channels
    if min(height, width_px) < SMALL_IMAGE_SIDE:
        # CIFAR-style stem: 3x3 stride 1 and no maxpool, so a 28 px image reaches the last stage at 4x4, not 1x1.
        model.conv1 = nn.Conv2d(channels, stem_out, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != model.conv1.in_channels:
        model.conv1 = nn.Conv2d(channels, stem_out, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if model.fc.out_features != num_classes:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model


def _torchvision_builder(name: str):
    def build(
        cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int, *, zero_init_residual: bool = False
    ) -> nn.Module:
        import torchvision.models  # here, not at import: see BasicBlock

        shape = require_images(name, in_shape)
        factory = getattr(torchvision.models, name)
        model = factory(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
        return adapt_torchvision_resnet(model, shape, num_classes, cfg.dropout)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"torchvision's {name} (weights=None), adapted; fixed size, so width and depth are ignored."
    return register_model(name)(build)


build_resnet18 = _torchvision_builder("resnet18")
build_resnet34 = _torchvision_builder("resnet34")
