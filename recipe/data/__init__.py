"""The data layer: sources -> manifest (one row per sample, fixed splits, fingerprint) -> tensors and batches.

Two entry points, on purpose:

* :func:`build_manifest` is tolerant. Corrupt files, empty class folders and odd sizes become rows and
  fields that the inspect stage reports; it raises only when no manifest can exist at all.
* :func:`load_data` is strict. It raises one :class:`DataError` listing every problem, so what it returns
  is safe to train on: a :class:`DataBundle` with shapes, train-split statistics, tensors and batches.

Sources (``data.source``): ``digits`` (scikit-learn's digits, written as PNGs under ``data_dir()/digits`` on
first use), ``imagefolder``, ``csv`` (or an embedded scikit-learn table by ``data.name``), ``torchvision``
(MNIST, FashionMNIST, CIFAR10 from disk; downloaded only with ``data.download=true``).
"""

from .augment import AUGMENTATIONS, BatchAugment, build_augment
from .batching import EpochSampler, InMemoryBatcher, LoaderBatcher, epoch_permutation
from .bundle import DataBundle, load_data, strict_problems
from .errors import DataError
from .manifest import Manifest, build_manifest, fingerprint
from .sources import EMBEDDED_TABLES, IMAGE_EXTENSIONS, TORCHVISION_DATASETS, clear_cache, data_dir

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
