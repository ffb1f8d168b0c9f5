"""Fixed train/val/test splits: stratified, seeded, and saved so that every stage and every later run agree.

A split that silently changes between stages would let baselines, tuning and the final test score be measured
on different samples (and leak test samples into training). So the first run writes
``data_dir()/.splits/<key>.csv`` (id -> split) and later runs read it back. The key hashes the sorted sample
ids, the fractions and the seed -- not the labels, so fixing a label keeps the split (the fingerprint still
changes).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import inline
from .sources import data_dir

SPLITS = ("train", "val", "test")
MIN_STRATIFIED = 3  # a class needs a sample in each of train/val/test to be stratified


def split_key(ids: pd.Series, val: float, test: float, seed: int, fixed: pd.Series | None = None) -> str:
    """16 hex digits of sha256 over the sorted sample ids, the val/test fractions, the seed and whether the
    dataset fixes its own test split: the name of the saved split file (labels are not hashed)."""
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode() + b"\n")
    h.update(f"val={val} test={test} seed={seed} source_test={fixed is not None}".encode())
    return h.hexdigest()[:16]


def assign_splits(
    ids: pd.Series,
    labels: pd.Series | None,
    *,
    val: float,
    test: float,
    seed: int,
    fixed: pd.Series | None = None,
) -> tuple[pd.Series, Path, list[str]]:
    """Split per row (aligned with ``ids``), the file it is saved in, and notes for the inspect report.

    ``labels`` (classification) stratifies; ``fixed`` holds splits the dataset dictates (None elsewhere),
    and the remaining rows are then split into train and val only.
    """
    path = data_dir() / ".splits" / f"{split_key(ids, val, test, seed, fixed)}.csv"
    by_id = _read(path)
    if len(by_id) == len(ids) and set(by_id.values()) <= set(SPLITS) and all(i in by_id for i in ids):
        return ids.map(by_id).rename("split"), path, [f"splits read from {path}"]
    split, notes = _draw(ids, labels, val, test, seed, fixed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    pd.DataFrame({"id": ids.to_numpy(), "split": split.to_numpy()}).to_csv(tmp, index=False)
    os.replace(tmp, path)  # atomic: a concurrent stage reads the old file or the whole new one
    return split, path, [*notes, f"splits saved to {path}"]


def _read(path: Path) -> dict[str, str]:
    """The saved id -> split mapping; empty when missing or unreadable (then it is drawn and saved again)."""
    try:
        saved = pd.read_csv(path, dtype=str, keep_default_na=False)
        return dict(zip(saved["id"], saved["split"]))
    except (OSError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}


def _draw(ids, labels, val, test, seed, fixed) -> tuple[pd.Series, list[str]]:
    notes: list[str] = []
    split = np.full(len(ids), "train", dtype=object)
    pool = np.arange(len(ids))
    if fixed is not None:
        given = fixed.notna().to_numpy()
        split[given] = fixed.to_numpy()[given]
        pool, test = pool[~given], 0.0
    y = None if labels is None else labels.to_numpy()
    if y is not None:
        counts = pd.Series(y[pool]).value_counts()
        rare = counts[counts < MIN_STRATIFIED].index
        if len(rare):
            notes.append(
                f"classes with fewer than {MIN_STRATIFIED} samples are kept in train (too few to stratify): "
                f"{inline(f'{c!r} ({counts[c]})' for c in sorted(rare))}"
            )
            pool = pool[~np.isin(y[pool], rare)]
    pool, held = _holdout(pool, y, test, seed, "test", notes)
    split[held] = "test"
    pool, held = _holdout(pool, y, val / (1 - test), seed, "val", notes)
    split[held] = "val"
    return pd.Series(split, index=ids.index, name="split"), notes


def _holdout(pool, y, frac, seed, name, notes) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``frac`` of ``pool``: stratified when it can be, at random when it cannot, never crashing."""
    from sklearn.model_selection import train_test_split

    if frac <= 0 or len(pool) < 2:
        return pool, pool[:0]
    if y is not None:
        try:
            return tuple(train_test_split(pool, test_size=frac, random_state=seed, stratify=y[pool]))
        except ValueError as e:  # e.g. fewer held-out samples than classes
            notes.append(f"the {name} split could not be stratified by label ({e}); it was drawn at random")
    try:
        return tuple(train_test_split(pool, test_size=frac, random_state=seed))
    except ValueError as e:
        notes.append(f"no {name} split: {e}")
        return pool, pool[:0]
