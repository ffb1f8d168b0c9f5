"""Strict loading: a manifest that passed every check, turned into normalised tensors and batch iterators.

``load_data`` refuses data a model should not be trained on (unreadable files, empty class folders, a
single class, images of different sizes with no ``data.image_size``, unusable columns, empty splits) and says
everything that is wrong in one error. Whatever it returns is safe to train on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from recipe.tasks import task_for

from .augment import build_augment
from .batching import InMemoryBatcher, LoaderBatcher
from .errors import DataError, listing
from .manifest import Manifest, build_manifest
from .splits import SPLITS

if TYPE_CHECKING:
    from recipe.config import DataConfig, RecipeConfig

Batches = InMemoryBatcher | LoaderBatcher


def soft_clip(x: Tensor, bound: float) -> Tensor:
    """``x / sqrt(1 + (x / bound)^2)``, in place: near ``x`` for small values, never beyond ``±bound`` (the soft
    clipping of skrub's ``SquashingScaler``; Holzmüller et al., "Better by default: strong pre-tuned MLPs and
    boosted trees on tabular data", 2024)."""
    return x.div_(torch.sqrt(1 + (x / bound) ** 2))


def unclip(x: Tensor, bound: float) -> Tensor:
    """The inverse of :func:`soft_clip` (values at ``±bound`` come back large but finite)."""
    r = (x / bound).clamp(-1 + 1e-6, 1 - 1e-6)
    return x / torch.sqrt(1 - r**2)


def _prepare(a: np.ndarray, image: bool, mean: Tensor, std: Tensor, squash: float | None = None) -> Tensor:
    """uint8 N x H x W (x 3) pixels or N x F features -> float32 N x C x H x W / N x F, standardised (tables with
    ``squash``: robustly centred and scaled, then soft-clipped to ``±squash``)."""
    if not a.flags.writeable:
        a = a.copy()  # PIL hands out read-only buffers, which torch.from_numpy warns about
    x = torch.from_numpy(a)
    if image:
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        shape = (1, -1, 1, 1)
    else:
        shape = (1, -1)
    # always a fresh contiguous copy, so the in-place ops below never touch the reader's arrays
    x = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if image:
        x.div_(255)
    x = x.sub_(mean.view(shape)).div_(std.view(shape))
    return soft_clip(x, squash) if squash else x


class RowDataset(Dataset):
    """One split read sample by sample through the manifest's reader (the DataLoader path)."""

    def __init__(self, bundle: DataBundle, split: str):
        rows = bundle.rows(split)
        self.read, self.positions = bundle.read_rows, rows.index.to_numpy()
        self.targets = bundle._targets(rows)
        self.image, self.mean, self.std = bundle.manifest.image_mode is not None, bundle._mean, bundle._std
        self.squash = bundle.squash

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        a = self.read(self.positions[i : i + 1])[0]
        return _prepare(a[None], self.image, self.mean, self.std, self.squash)[0], self.targets[i]


@dataclass(eq=False)  # holds DataFrames: identity is the only sensible ==
class DataBundle:
    """A loaded dataset: shapes and statistics for building models, and tensors / batches for training.

    Inputs are always ``(raw - mean) / std`` with ``mean``/``std`` from the TRAIN split (per channel for
    images, on the 0..1 pixel scale); with ``data.normalize=false`` they are 0 and 1. Tables are scaled robustly
    (:func:`table_scaling`): number columns by skrub's ``SquashingScaler`` (median and interquartile range,
    then soft-clipped to ``±squash``: one outlier neither squeezes the other values nor blows up an input), the
    0/1 columns of the one-hot levels and missing-value indicators as they are.
    Regression targets are standardised the same way (``data.standardize_target``, default on): the model trains
    on ``(y - target_shift) / target_scale`` with the TRAIN split's mean and std, so a target in raw units (house
    prices in the 100,000s) meets the same learning rates, initialisation and loss-at-init rules as any other;
    ``target_mean`` and ``target_std`` describe the targets as the model sees them (0 and 1 when standardised),
    for the output bias and the baselines (``data.target_scaling=robust``: the train median and interquartile
    range / 1.349 instead, so a few extreme targets do not squash the rest), and :func:`recipe.tasks.task_for` on the bundle reports MAE and MSE
    back in the target's own units. Champions undo the scaling (:mod:`recipe.champion`).
    """

    manifest: Manifest
    config: DataConfig
    task: str
    classes: list[str]
    num_classes: int  # 1 for regression
    in_shape: tuple[int, ...]  # (C, H, W) for images, (n_features,) for tables
    fingerprint: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_counts: list[int]  # train samples per class, index = label_idx; empty for regression
    target_mean: float | None
    target_std: float | None
    split_sizes: dict[str, int]
    feature_fill: tuple[float, ...] | None = None  # tables: the train median of each feature, which fills its
    # missing cells (see recipe.data.sources.read_table); None for images
    target_shift: float | None = None  # regression: the train target mean subtracted before training (raw units)
    target_scale: float | None = None  # regression: the train target std divided by (raw units); None: raw targets
    squash: float | None = None  # tables: the soft-clip bound applied after scaling (None: none)
    _tensors: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._mean = torch.tensor(self.mean, dtype=torch.float32)
        self._std = torch.tensor(self.std, dtype=torch.float32)

    @property
    def nbytes(self) -> int:
        """Memory the float32 inputs of all splits take."""
        return sum(self.split_sizes.values()) * math.prod(self.in_shape) * 4

    @property
    def in_memory(self) -> bool:
        """Whether batches index tensors in memory ("auto": if they fit in data.max_memory_mb)."""
        mode = self.config.in_memory
        return mode == "always" or (mode == "auto" and self.nbytes <= self.config.max_memory_mb * 2**20)

    def rows(self, split: str) -> pd.DataFrame:
        """The manifest rows of a split, in the order of :meth:`tensors` (to map predictions back to files)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        df = self.manifest.df
        return df[(df["split"] == split) & df["readable"]]

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """The whole split: float32 inputs and int64 class indices (float32 (N,) targets for regression)."""
        if split not in self._tensors:
            rows = self.rows(split)
            if len(rows):
                a = self.read_rows(rows.index.to_numpy())
                x = _prepare(a, self.manifest.image_mode is not None, self._mean, self._std, self.squash)
            else:
                x = torch.empty((0, *self.in_shape))
            self._tensors[split] = (x, self._targets(rows))
        return self._tensors[split]

    def decode(self, x: Tensor) -> Tensor:
        """Network inputs (N, C, H, W) or (N, F) back in data units (0..1 pixels, raw feature values): the
        inverse of the scaling, soft clip included."""
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        x = unclip(x.float(), self.squash) if self.squash else x.float()
        return x * self._std.view(shape) + self._mean.view(shape)

    def read_rows(self, positions: np.ndarray) -> np.ndarray:
        """Raw arrays of manifest rows (uint8 pixels, or float32 features with missing cells filled)."""
        a = self.manifest.reader.read_many(positions)
        if self.feature_fill is not None and np.isnan(a).any():
            a = np.where(np.isnan(a), np.asarray(self.feature_fill, dtype=a.dtype), a)
        return a

    def batches(
        self,
        split: str,
        *,
        batch_size: int | None = None,
        shuffle: bool = False,
        augment: bool | Sequence[str] = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ) -> Batches:
        """Batches of one split; call ``set_epoch(e)`` on the result each epoch when shuffling.

        Args:
            batch_size: default data.batch_size for "train", data.eval_batch_size otherwise.
            shuffle: a new order each epoch, from ``seed + epoch`` (default False).
            augment: True applies data.augment; a list of names applies those (default False: none).
            seed: see ``shuffle`` (default 0).
            device: where batches are delivered; in memory, the whole split is moved there once (default: CPU).
            drop_last: skip the last short batch (default False).
        """
        bs = batch_size or (self.config.batch_size if split == "train" else self.config.eval_batch_size)
        names = list(self.config.augment) if augment is True else list(augment or [])
        transform = build_augment(names, self.in_shape) if names else None
        if self.in_memory:
            x, y = self._on(split, device)
            return InMemoryBatcher(x, y, bs, shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transform)
        return LoaderBatcher(
            RowDataset(self, split),
            bs,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            transform=transform,
            num_workers=self.config.num_workers,
            device=device,
        )

    def _on(self, split: str, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
        x, y = self.tensors(split)
        if device is None or torch.device(device) == x.device:
            return x, y
        key = (split, str(torch.device(device)))
        if key not in self._tensors:
            self._tensors[key] = (x.to(device), y.to(device))
        return self._tensors[key]

    def _targets(self, rows: pd.DataFrame) -> Tensor:
        if not task_for(self).classifier:
            y = rows["label"].to_numpy(np.float64)
            if self.target_scale:
                y = (y - (self.target_shift or 0.0)) / self.target_scale
            return torch.tensor(y.astype(np.float32))
        return torch.tensor(rows["label_idx"].to_numpy(np.int64))


def strict_problems(m: Manifest, cfg: DataConfig) -> list[str]:
    """Everything that stops ``m`` from being trained on, one entry per kind of problem (empty: fine)."""
    problems = []
    df, files = m.df, m.image_mode is not None and m.source != "torchvision"
    bad = df[~df["readable"]]
    if len(bad):
        what = "files" if files else "rows"
        where = bad["path"] if files else bad["id"]
        problems.append(
            f"{len(bad)} unreadable {what} (fix or remove them):\n"
            + listing(f"{w}: {e}" for w, e in zip(where, bad["error"]))
        )
    if m.empty_classes:
        problems.append(
            f"{len(m.empty_classes)} empty class folder(s) (add images or delete the folder):\n"
            + listing(m.root / c for c in m.empty_classes)
        )
    if m.bad_columns:
        problems.append(
            f"{len(m.bad_columns)} unusable feature column(s) in {m.root}:\n"
            + listing(f"{c}: {why}" for c, why in m.bad_columns.items())
        )
    if task_for(m).classifier and len(m.classes) < 2:
        only = f"only one class ({m.classes[0]!r})" if m.classes else "no classes"
        fix = f"add a sub-folder per class under {m.root}" if files else "check data.target, or use data.task"
        problems.append(f"{only}: a classifier needs at least two; {fix}")
    ok = df[df["readable"]]
    if m.image_mode and not m.image_size and len(ok):
        where = ok["path"] if files else ok["id"]
        sizes = where.groupby([ok["height"], ok["width"]]).agg(["size", "first"]).sort_values("size", ascending=False)
        if len(sizes) > 1:
            problems.append(
                f"images come in {len(sizes)} sizes; set data.image_size=N to resize them all to N x N "
                "(sizes as height x width):\n"
                + listing(f"{h}x{w}: {n} images, e.g. {first}" for (h, w), n, first in sizes.itertuples(name=None))
            )
    needed = ("train", "val", "test") if cfg.split.test > 0 else ("train", "val")
    for s in needed:
        if not (ok["split"] == s).any():
            problems.append(f"the {s} split is empty ({len(ok)} usable samples in all); add data or change data.split")
    return problems


def load_data(cfg: RecipeConfig) -> DataBundle:
    """Build the manifest and refuse it unless every sample is usable; raises one :class:`DataError` for all."""
    m = build_manifest(cfg)
    d = cfg.data
    problems = strict_problems(m, d)
    if problems:
        raise DataError(f"cannot load {m.source} data from {m.root}:\n" + "\n".join(f"  - {p}" for p in problems))
    df = m.df
    train = df.index[df["split"] == "train"].to_numpy()
    if m.image_mode:
        first = df.iloc[0]
        side = (m.image_size, m.image_size) if m.image_size else (int(first["height"]), int(first["width"]))
        in_shape = (1 if m.image_mode == "L" else 3, *side)
        cs = m.chan_stats[train]
        mean = cs[:, 0].mean(0)
        std = np.sqrt(np.maximum(cs[:, 1].mean(0) - mean**2, 0))
    else:
        in_shape = (len(m.feature_columns),)
        f = m.features.to_numpy(np.float64)[train]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no train value: filled with 0
            fill = np.nanmedian(f, 0) if len(f) else np.zeros(f.shape[1])
        fill = np.where(np.isnan(fill), 0.0, fill)
        f = np.where(np.isnan(f), fill, f)
        mean, std = table_scaling(f, _numbers(m))
    build_augment(d.augment, in_shape)  # a bad data.augment fails now, not stages later in regularize
    squash = None if m.image_mode or not d.normalize else SQUASH
    if not d.normalize:
        mean, std = np.zeros_like(mean), np.ones_like(std)
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel/feature: centre it, do not blow it up
    if task_for(m).classifier:
        counts = np.bincount(df["label_idx"].to_numpy(np.int64)[train], minlength=len(m.classes)).tolist()
        t_mean = t_std = None
    else:
        y = df["label"].to_numpy(np.float64)[train]
        counts, t_mean, t_std = [], float(y.mean()), float(y.std())
    shift = scale = None
    if t_std is not None and d.standardize_target and t_std > 0:  # the model sees (y - mean) / std: mean 0, std 1
        shift, scale = t_mean, t_std
        if d.target_scaling == "robust":  # median and IQR / 1.349 (the normal's SD): outliers move neither
            q1, q2, q3 = np.percentile(y, [25, 50, 75])
            shift, scale = float(q2), float(q3 - q1) / 1.349 or t_std
        t_mean, t_std = (t_mean - shift) / scale, t_std / scale  # the targets as the model sees them
    return DataBundle(
        manifest=m,
        config=d,
        task=m.task,
        classes=m.classes,
        num_classes=len(m.classes) if task_for(m).classifier else 1,
        in_shape=in_shape,
        fingerprint=m.fingerprint,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_counts=counts,
        target_mean=t_mean,
        target_std=t_std,
        split_sizes=m.split_sizes(),
        feature_fill=None if m.image_mode else tuple(float(v) for v in fill),
        target_shift=shift,
        target_scale=scale,
        squash=squash,
    )


SQUASH = 3.0  # skrub SquashingScaler's default max_absolute_value


def _numbers(m: Manifest) -> np.ndarray:
    """Which encoded columns hold numbers (the rest are 0/1 levels and indicators); without kinds, all."""
    kinds = m.feature_kinds
    return np.array([kinds.get(c, (c, "number"))[1] == "number" for c in m.feature_columns], dtype=bool)


def table_scaling(f: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(centre, scale)`` of filled train features ``f`` (N, F) such that ``(x - centre) / scale``
    is skrub's ``SquashingScaler`` before its soft clip: for the ``numbers`` columns the median and the
    interquartile range (the min-max range where that is 0; a constant column: centred, scale 1); 0 and 1 for
    the others (one-hot levels and indicators stay 0/1). Source: skrub 0.11's SquashingScaler, after Holzmüller
    et al. (2024), whose robust scaling and soft clipping let MLPs on tables shrug off outliers."""
    centre, scale = np.zeros(f.shape[1]), np.ones(f.shape[1])
    if not numbers.any() or not len(f):
        return centre, scale
    from skrub import SquashingScaler

    sq = SquashingScaler(max_absolute_value=SQUASH).fit(f[:, numbers])
    c, s = np.zeros(int(numbers.sum())), np.ones(int(numbers.sum()))
    if sq.robust_cols_.any():
        c[sq.robust_cols_], s[sq.robust_cols_] = sq.robust_scaler_.center_, sq.robust_scaler_.scale_
    if sq.minmax_cols_.any():
        c[sq.minmax_cols_], s[sq.minmax_cols_] = sq.minmax_scaler_.median_, 1 / sq.minmax_scaler_.scale_
    if sq.zero_cols_.any():
        c[sq.zero_cols_] = np.median(f[:, numbers][:, sq.zero_cols_], 0)
    centre[numbers], scale[numbers] = c, s
    return centre, scale
