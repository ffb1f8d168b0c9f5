"""Label-preserving augmentations by name (``data.augment: [crop, rotate]``), built on torchvision.transforms.v2.

Off by default: the recipe adds augmentation in the regularize stage, once the model can overfit.
Transforms run on already-normalised float batches, so the fill value 0 of crop/rotate/affine/erase is the
dataset mean, not black.

"hflip" is *not* label preserving for digits or text (a mirrored 3 is no digit, mirrored "b" reads "d");
it is offered for natural images, and choosing it is the user's call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import DataError, inline


class Augmentation(NamedTuple):
    make: Callable[..., Callable[[Tensor], Tensor]]  # (v2, in_shape) -> transform of one sample
    help: str


def _crop(v2, shape: tuple[int, ...]):
    h, w = shape[-2:]
    return v2.RandomCrop((h, w), padding=max(1, round(min(h, w) / 8)))


AUGMENTATIONS: dict[str, Augmentation] = {
    "crop": Augmentation(_crop, "random crop after zero-padding by 1/8 of the side (a shift of up to 12%)"),
    "rotate": Augmentation(lambda v2, s: v2.RandomRotation(10), "random rotation within +-10 degrees"),
    "affine": Augmentation(
        lambda v2, s: v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        "random shift up to 10% and scale 0.9-1.1",
    ),
    "noise": Augmentation(
        lambda v2, s: v2.GaussianNoise(sigma=0.1, clip=False), "gaussian noise, std 0.1 (of normalised inputs)"
    ),
    "erase": Augmentation(
        lambda v2, s: v2.RandomErasing(p=0.5, scale=(0.02, 0.2), value=0), "half the time, blank a random rectangle"
    ),
    "hflip": Augmentation(
        lambda v2, s: v2.RandomHorizontalFlip(), "mirror left-right half the time; NOT label preserving for digits/text"
    ),
}
TABULAR = {"noise"}  # the only one that means anything for a row of features


def _v2():
    from torchvision.transforms import v2  # imported on first use: it costs a second at import time

    return v2


class BatchAugment:
    """Applies the transforms to every sample of a batch separately.

    A v2 transform given a whole batch draws one set of random parameters for all of it (every image cropped
    at the same offset), which is a far weaker augmentation; so images are transformed one by one. Noise
    is elementwise anyway and runs on the whole batch. Randomness comes from torch's global RNG, which the
    trainer seeds and checkpoints.
    """

    def __init__(self, names: Sequence[str], transforms: list, per_sample: bool):
        self.names = list(names)
        self.transform = _v2().Compose(transforms) if transforms else None
        self.per_sample = per_sample

    def __call__(self, xb: Tensor) -> Tensor:
        if self.transform is None:
            return xb
        if not self.per_sample:
            return self.transform(xb)
        return torch.stack([self.transform(x) for x in xb])

    def __repr__(self) -> str:
        return f"BatchAugment({self.names})"


def build_augment(names: Sequence[str], in_shape: tuple[int, ...]) -> BatchAugment:
    """A callable on a batch ``(N, *in_shape)`` applying the named augmentations in order (none: identity)."""
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        known = "\n".join(f"    {k}: {a.help}" for k, a in AUGMENTATIONS.items())
        raise DataError(f"unknown augmentation(s) {inline(map(repr, unknown))} in data.augment; known:\n{known}")
    image = len(in_shape) == 3
    if not image and (wrong := [n for n in names if n not in TABULAR]):
        raise DataError(
            f"augmentation(s) {inline(map(repr, wrong))} need images; tabular data (in_shape {in_shape}) can only "
            f"use {inline(map(repr, sorted(TABULAR)))}"
        )
    transforms = [AUGMENTATIONS[n].make(_v2(), tuple(in_shape)) for n in names]
    return BatchAugment(names, transforms, per_sample=image and any(n != "noise" for n in names))
