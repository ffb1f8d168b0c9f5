"""The data layer: sources -> manifest (one row per sample, fixed splits, fingerprint) -> tensors and batches.

Two entry points, on purpose:

* :func:`build_manifest` is tolerant. Corrupt files, empty class folders and odd sizes become rows and
  fields that the inspect stage reports; it raises only when no manifest can exist at all.
* :func:`load_data` is strict. It raises one :class:`DataError` listing every problem, so what it returns
  is safe to train on: a :class:`DataBundle` with shapes, train-split statistics, tensors and batches.

Sources (``data.source``): ``digits`` (scikit-learn's digits, written as PNGs under ``data_dir()/digits`` on
first use), ``imagefolder``, ``csv`` (or an embedded scikit-learn table by ``data.name``), ``torchvision``
(MNIST, FashionMNIST, CIFAR10 from disk; downloaded only with ``data.download=true``).

The names below are imported on first use (PEP 562), so a light submodule (``recipe.data.decoding``,
``recipe.data.folders``, ``recipe.data.sources``' decoder) can be imported without torch: ``flows predict``
checks its input files before the heavy imports, and says what is wrong with them in about a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .augment import AUGMENTATIONS, BatchAugment, build_augment
    from .batching import EpochSampler, InMemoryBatcher, LoaderBatcher, epoch_permutation
    from .bundle import DataBundle, load_data, strict_problems
    from .errors import DataError
    from .manifest import Manifest, build_manifest, fingerprint
    from .sources import EMBEDDED_TABLES, IMAGE_EXTENSIONS, TORCHVISION_DATASETS, clear_cache, data_dir

_SOURCES = {
    ".augment": ("AUGMENTATIONS", "BatchAugment", "build_augment"),
    ".batching": ("EpochSampler", "InMemoryBatcher", "LoaderBatcher", "epoch_permutation"),
    ".bundle": ("DataBundle", "load_data", "strict_problems"),
    ".errors": ("DataError",),
    ".manifest": ("Manifest", "build_manifest", "fingerprint"),
    ".sources": ("EMBEDDED_TABLES", "IMAGE_EXTENSIONS", "TORCHVISION_DATASETS", "clear_cache", "data_dir"),
}
_SUBMODULES = frozenset(
    {"augment", "batching", "bundle", "decoding", "errors", "folders", "manifest", "sources", "splits"}
)
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "AUGMENTATIONS",
    "EMBEDDED_TABLES",
    "IMAGE_EXTENSIONS",
    "TORCHVISION_DATASETS",
    "BatchAugment",
    "DataBundle",
    "DataError",
    "EpochSampler",
    "InMemoryBatcher",
    "LoaderBatcher",
    "Manifest",
    "build_augment",
    "build_manifest",
    "clear_cache",
    "data_dir",
    "epoch_permutation",
    "fingerprint",
    "load_data",
    "strict_problems",
]


def __getattr__(name: str):
    """The public name ``name`` from its submodule, imported on first use (then kept as a module attribute)."""
    module = _WHERE.get(name)
    if module is None:
        if name in _SUBMODULES:  # ``recipe.data.sources`` after a bare ``import recipe.data``, as before
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
