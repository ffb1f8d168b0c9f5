"""The manifest: one row per sample, the shared picture of the data that every stage starts from.

``build_manifest`` is tolerant on purpose: the inspect stage wants to *see* corrupt files, empty classes and
odd sizes so it can report them all, so bad samples become rows with ``readable=False`` and an ``error``.
It only raises when no manifest can exist at all (missing path, no class folders, no target column, ...).
The strict counterpart is :func:`recipe.data.load_data`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recipe.tasks import task_for

from .folders import FolderScan
from .sources import _CACHE, Reader, load_source
from .splits import assign_splits

if TYPE_CHECKING:
    from recipe.config import RecipeConfig

COLUMNS = ("id", "path", "row", "label", "label_idx", "split")  # always first; source-specific columns follow


@dataclass(eq=False)  # holds DataFrames: identity is the only sensible ==
class Manifest:
    """Every sample of a dataset, with its split, shape, pixel statistics, content hash and readability.

    ``df`` columns: id (stable: relative path, ``row:N`` or ``train:N``), path, row, label (class name, or
    the float target), label_idx, split, then for images height/width/channels/mode (of the file as stored),
    mean/std (pixels on the 0..1 scale; for tables, the row's features), hash (of the decoded values, so
    re-encoded duplicates collide), readable, error; image folders also ``decoding`` (what decoding did to
    reach 8-bit pixels: bit depth scaled, alpha composited, palette expanded; "" when nothing). torchvision rows also have ``subset`` (its train/test).
    The index is the row position 0..N-1, which ``reader.read(i)`` and ``chan_stats[i]`` also use.
    """

    df: pd.DataFrame
    task: str  # "classification" | "regression"
    classes: list[str]  # index = label_idx; empty for regression
    source: str
    root: Path  # the folder, or the CSV file
    fingerprint: str  # 12 hex digits; changes when any sample's content, label or split changes
    image_mode: str | None = None  # "L" | "RGB" for images, None for tables
    image_size: int | None = None  # the resize side, if data.image_size is set
    feature_columns: list[str] = field(default_factory=list)  # csv: encoded feature names (one-hot: "col=value")
    features: pd.DataFrame | None = None  # csv: encoded feature values, aligned with df
    feature_kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # csv: encoded column -> (source
    # column, kind: "number" | "level" | "<other>" | "<missing>"); see recipe.data.sources.encode_features
    dropped_columns: dict[str, str] = field(default_factory=dict)  # csv columns left out (all empty, an id), why
    empty_classes: list[str] = field(default_factory=list)  # class folders holding no image files
    ignored_files: list[str] = field(default_factory=list)  # files skipped for lack of an image extension
    bad_columns: dict[str, str] = field(default_factory=dict)  # csv columns that cannot be features, and why
    missing_tokens: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # csv: column -> placeholder
    # token ("?", "n/a", "" ...) -> row positions of the cells read as missing (filled with train medians)
    notes: list[str] = field(default_factory=list)  # things inspect should tell the user
    layout: FolderScan | None = field(default=None, repr=False)  # image folders: hidden entries, split-named
    # class folders, nested folders (see recipe.data.folders)
    label_variants: dict[str, dict[str, int]] = field(default_factory=dict)  # labels equal up to case/whitespace:
    # normalised label -> {label as written: samples}
    merged_labels: dict[str, str] = field(default_factory=dict)  # variant -> label it was merged into
    split_file: Path | None = None
    reader: Reader | None = field(default=None, repr=False)
    chan_stats: np.ndarray | None = field(default=None, repr=False)  # images: (N, 2, C) channel mean, mean sq

    @property
    def unreadable(self) -> pd.DataFrame:
        return self.df[~self.df["readable"]]

    def split_sizes(self) -> dict[str, int]:
        return {s: int((self.df["split"] == s).sum()) for s in ("train", "val", "test")}


def fingerprint(df: pd.DataFrame) -> str:
    """12 hex digits of sha256 over the sorted (id, hash, label, split) of every row."""
    lines = sorted(f"{i}\t{h}\t{lab}\t{s}" for i, h, lab, s in zip(df["id"], df["hash"], df["label"], df["split"]))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def build_manifest(cfg: RecipeConfig) -> Manifest:
    """Describe every sample of ``cfg.data``, assign (or read back) the fixed splits, and fingerprint it all.

    Raises :class:`DataError` only when no manifest is possible; bad samples are rows with readable=False.
    """
    d = cfg.data
    _CACHE.budget = 0 if d.in_memory == "never" else d.max_memory_mb * 2**20
    src = load_source(d)
    df = src.df
    # stratify on class names; rows without a label (unreadable) form a stratum of their own
    labels = df["label"].fillna("<missing>").astype(str) if task_for(src).classifier else None
    split, split_file, notes = assign_splits(
        df["id"], labels, val=d.split.val, test=d.split.test, seed=d.split.seed, fixed=src.fixed_split
    )
    df.insert(df.columns.get_loc("label_idx") + 1, "split", split)
    return Manifest(
        df=df,
        task=src.task,
        classes=src.classes,
        source=d.source,
        root=src.root,
        fingerprint=fingerprint(df),
        image_mode=src.image_mode,
        image_size=d.image_size if src.image_mode else None,
        feature_columns=[] if src.features is None else list(src.features.columns),
        features=src.features,
        feature_kinds=src.feature_kinds,
        dropped_columns=src.dropped_columns,
        empty_classes=src.empty_classes,
        ignored_files=src.ignored_files,
        bad_columns=src.bad_columns,
        missing_tokens=src.missing_tokens,
        notes=[*src.notes, *notes],
        layout=src.layout,
        label_variants=src.label_variants,
        merged_labels=src.merged_labels,
        split_file=split_file,
        reader=src.reader,
        chan_stats=src.chan_stats,
    )
