"""Batch iterators with one interface: ``for xb, yb in batches``, ``len(batches)``, ``batches.set_epoch(e)``.

Small datasets are indexed directly as tensors (:class:`InMemoryBatcher`): a DataLoader's per-sample Python
and collation cost more than the model on data like digits. Large folders go through a DataLoader
(:class:`LoaderBatcher`). Both draw the epoch's order from a private ``torch.Generator`` seeded with
``seed + epoch``, never from the global RNG, so the order depends only on (seed, epoch): resuming a
checkpoint at epoch k replays exactly the batches an uninterrupted run would have seen, and both paths
yield the same samples in the same order. As with DistributedSampler, call ``set_epoch`` every epoch, or
every epoch repeats the same order.

Augmentation (``transform``) runs on whole batches where they live (after the move to the device, for the
DataLoader path). A :class:`~recipe.data.augment.BatchAugment` transform is handed a generator seeded from
``(seed, epoch)`` as well, so the augmented batches too depend only on (seed, epoch) and not on the global
RNG; any other callable is called with the batch alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import BatchAugment, epoch_generator

Transform = Callable[[Tensor], Tensor]


def _augmenter(transform: Transform | None, seed: int, epoch: int) -> Transform | None:
    """The epoch's batch transform: a BatchAugment bound to this epoch's generator, anything else as it is."""
    if isinstance(transform, BatchAugment):
        g = epoch_generator(seed, epoch)
        return lambda xb: transform(xb, generator=g)
    return transform


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of one epoch; on the CPU so it is the same whatever device the data is on."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


class InMemoryBatcher:
    """Batches of ``(x[i], y[i])`` from tensors on any device, indexing whole batches at once.

    Args:
        x, y: inputs and targets, same length (``y`` is moved to ``x``'s device).
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: draw a new order each epoch (default False: the stored order).
        seed: the order of epoch ``e`` comes from ``seed + e`` (default 0).
        drop_last: skip the final short batch (default False).
        transform: applied to each input batch, e.g. :func:`recipe.data.augment.build_augment`, which is
            seeded from ``(seed, epoch)`` (default None).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: Transform | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.x, self.y = x, y.to(x.device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, bs = len(self.x), self.batch_size
        return n // bs if self.drop_last else math.ceil(n / bs)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = epoch_permutation(len(self.x), self.seed, self.epoch).to(self.x.device) if self.shuffle else None
        transform = _augmenter(self.transform, self.seed, self.epoch)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is None:  # slices are views: no copy at all
                xb, yb = self.x[sl], self.y[sl]
            else:
                xb, yb = self.x[order[sl]], self.y[order[sl]]
            yield (transform(xb) if transform else xb), yb


class EpochSampler(Sampler[int]):
    """The DataLoader's sampler: the same per-epoch order as :class:`InMemoryBatcher`."""

    def __init__(self, n: int, shuffle: bool = False, seed: int = 0):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


class LoaderBatcher:
    """A DataLoader behind the :class:`InMemoryBatcher` interface, for data read lazily from disk.

    Workers only read and decode; ``transform`` runs on the collated batch in the main process (on the
    device, when one is given), so augmentation randomness does not depend on ``num_workers``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: Transform | None = None,
        num_workers: int = 0,
        device: torch.device | str | None = None,
    ):
        self.sampler = EpochSampler(len(dataset), shuffle, seed)  # type: ignore[arg-type]
        self.seed = seed
        self.device = torch.device(device) if device is not None else None
        self.transform = transform
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            pin_memory=self.device is not None and self.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        transform = _augmenter(self.transform, self.seed, self.sampler.epoch)
        for xb, yb in self.loader:
            if self.device is not None:
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            yield (transform(xb) if transform else xb), yb
