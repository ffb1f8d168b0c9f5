"""Label-preserving augmentations by name (``data.augment: [crop, rotate]``), applied to whole batches with Kornia.

Off by default: the recipe adds augmentation in the regularize stage, once the model can overfit.
Transforms run on already-normalised float batches, so the fill value 0 of crop/rotate/affine/erase is the
dataset mean, not black.

Every transform is a ``kornia.augmentation`` module applied to the whole ``(N, C, H, W)`` batch tensor at once,
on the device the batch lives on, with its random parameters drawn per sample (each image of a batch gets
its own crop offset, angle, ...; ``same_on_batch=False``, Kornia's default). That replaces a loop over the
samples of the batch through ``torchvision.transforms.v2`` (a v2 transform given a batch draws one set of
parameters for all of it), which cost more than the model on small images: ``bench/augment.py`` measures
the two side by side. None of the offered transforms needs PIL, so there is no per-sample path left.

"hflip" is *not* label preserving for digits or text (a mirrored 3 is no digit, mirrored "b" reads "d");
it is offered for natural images, and choosing it is the user's call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import DataError, inline


class Augmentation(NamedTuple):
    """A named augmentation: ``make(in_shape)`` returns a transform of a whole (N, C, H, W) float batch on its
    device (Kornia, per-sample random parameters); ``help`` is the one-line text listed to users."""

    make: Callable[[tuple[int, ...]], Callable[[Tensor], Tensor]]  # in_shape -> transform of a (N, C, H, W) batch
    help: str


def _K():
    import kornia.augmentation as K  # imported on first use: it costs about a second at import time

    return K


def _crop(shape: tuple[int, ...]):
    h, w = shape[-2:]
    # zero-pad by 1/8 of the side, then crop back to (h, w) at a random offset: an integer shift, as
    # torchvision's RandomCrop(size, padding) does
    return _K().RandomCrop((h, w), padding=max(1, round(min(h, w) / 8)), fill=0, cropping_mode="slice")


AUGMENTATIONS: dict[str, Augmentation] = {
    "crop": Augmentation(_crop, "random crop after zero-padding by 1/8 of the side (a shift of up to 12%)"),
    # nearest-neighbour resampling, as torchvision's v2 transforms (what these replaced) do by default: bilinear
    # resampling blurs small images (an 8x8 digit) and made the same augmentation measurably worse in regularize
    "rotate": Augmentation(
        lambda s: _K().RandomRotation(10.0, p=1.0, resample="nearest"), "random rotation within +-10 degrees"
    ),
    "affine": Augmentation(
        lambda s: _K().RandomAffine(degrees=0.0, translate=(0.1, 0.1), scale=(0.9, 1.1), p=1.0, resample="nearest"),
        "random shift up to 10% and scale 0.9-1.1",
    ),
    "noise": Augmentation(
        lambda s: _K().RandomGaussianNoise(mean=0.0, std=0.1, p=1.0), "gaussian noise, std 0.1 (of normalised inputs)"
    ),
    "erase": Augmentation(
        lambda s: _K().RandomErasing(scale=(0.02, 0.2), ratio=(0.3, 3.3), value=0.0, p=0.5),
        "half the time, blank a random rectangle",
    ),
    "hflip": Augmentation(
        lambda s: _K().RandomHorizontalFlip(p=0.5),
        "mirror left-right half the time; NOT label preserving for digits/text",
    ),
}
TABULAR = {"noise"}  # the only one that means anything for a row of features


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with torch's RNG for ``device`` (and the CPU's, where Kornia draws its parameters) started at
    ``seed``; both are restored on exit, so the caller's global random state is untouched."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(seed)
        yield


class BatchAugment:
    """Applies the named transforms, in order, to a whole batch with per-sample random parameters.

    ``aug(xb)`` draws from torch's global RNG (which the trainer seeds and checkpoints);
    ``aug(xb, generator=g)`` draws one seed from ``g`` and runs the transforms from it without touching the
    global RNG, so the same generator state gives the same batch on any run. The batchers pass a generator
    seeded from ``(seed, epoch)``, which makes augmentation a function of the seed, the epoch and the batch.

    Args:
        names: the augmentation names (keys of :data:`AUGMENTATIONS`).
        transforms: one batch transform per name.
        image: inputs are images ``(N, C, H, W)``; otherwise rows ``(N, F)`` (only "noise" applies), which are
            viewed as ``(N, 1, 1, F)`` for Kornia and handed back as ``(N, F)``.

    Returns a new tensor of the input's shape, dtype and device; the input is never modified in place.
    """

    def __init__(self, names: Sequence[str], transforms: list, image: bool = True):
        self.names = list(names)
        self.transforms = list(transforms)
        self.image = image

    def __call__(self, xb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.transforms:
            return xb
        if generator is None:
            return self._apply(xb)
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        with _seeded(seed, xb.device):
            return self._apply(xb)

    def _apply(self, xb: Tensor) -> Tensor:
        out = xb if self.image else xb.reshape(len(xb), 1, 1, -1)
        for t in self.transforms:
            out = t(out)
        return out if self.image else out.reshape(xb.shape)

    def __repr__(self) -> str:
        return f"BatchAugment({self.names})"


def build_augment(names: Sequence[str], in_shape: tuple[int, ...]) -> BatchAugment:
    """A callable on a batch ``(N, *in_shape)`` applying the named augmentations in order (none: identity).

    Raises :class:`DataError` for an unknown name (listing the known ones) and for an image-only
    augmentation on tabular data (``in_shape`` of length 1).
    """
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
    return BatchAugment(names, [AUGMENTATIONS[n].make(tuple(in_shape)) for n in names], image=image)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation generator of one epoch: a stream of its own, apart from the shuffle's ``seed + epoch``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**62 + 0x5EED)
