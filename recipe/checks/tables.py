"""Stage 1's checks on tabular (CSV) data: feature types, missing values, constant columns, ranges, target.

Ranges come from the train split, the only data the model's normalisation and the user's intuitions are
built on; a val/test value far outside them (``range_margin`` x the train range beyond it) is a unit
mix-up, a sentinel such as -999 or 99999, or a category the model never saw in training.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recipe.report import Verdict
from recipe.tasks import task_for

from .base import Finding, finding, fmt, json_value, names, plural

if TYPE_CHECKING:
    from recipe.config import InspectConfig
    from recipe.data import Manifest


def _features(m: Manifest) -> pd.DataFrame:
    if m.features is None:
        raise ValueError(f"{m.source} data has no feature table; the table checks are for data.source=csv")
    return m.features


def _train(m: Manifest) -> np.ndarray:
    return (m.df["split"] == "train").to_numpy()


def train_ranges(m: Manifest) -> pd.DataFrame:
    """Per feature: min and max of the finite train values (NaN when a column has none)."""
    f = _features(m).to_numpy(np.float64)[_train(m)]
    f = np.where(np.isfinite(f), f, np.nan)
    lo = hi = np.full(f.shape[1], np.nan)
    if len(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN, said by feature_nulls
            lo, hi = np.nanmin(f, 0), np.nanmax(f, 0)
    return pd.DataFrame({"min": lo, "max": hi}, index=_features(m).columns)


def one_hot_groups(columns: list[str]) -> dict[str, list[str]]:
    """Source column -> its encoded columns, for text columns one-hot encoded as ``col=value``."""
    groups: dict[str, list[str]] = {}
    for c in columns:
        if "=" in c:
            groups.setdefault(c.split("=", 1)[0], []).append(c)
    return groups


def feature_types(m: Manifest, cap: int = 10) -> Finding:
    """FAIL naming columns that cannot be features (text with too many values); otherwise report how each
    column was turned into numbers."""
    cols = list(_features(m).columns)
    groups = one_hot_groups(cols)
    n_numeric = len(cols) - sum(len(g) for g in groups.values())
    parts = [plural(n_numeric, "numeric column")]
    if groups:
        parts.append(
            f"{plural(len(groups), 'text column')} one-hot encoded into {sum(len(g) for g in groups.values())}: "
            + names((f"{c} ({len(g)})" for c, g in groups.items()), cap)
        )
    bad = m.bad_columns
    if bad:
        parts.append("unusable: " + names((f"{c} ({why.split(';')[0]})" for c, why in bad.items()), cap))
    return finding(
        "feature_types", "every column besides the target is a number, a bool or a small set of categories",
        "; ".join(parts), "0 unusable columns", Verdict.FAIL if bad else Verdict.PASS,
        "drop the listed columns from the CSV, or turn them into numbers (ids and free text carry no signal a "
        "small model can use; dates: split them into numeric parts)",
        [{"column": c, "reason": why} for c, why in bad.items()],
        {"data/n_features": len(cols), "data/n_bad_columns": len(bad)},
    )


def feature_nulls(m: Manifest, cap: int = 10) -> Finding:
    """FAIL naming every column with missing (or infinite) values and the rows that have them: such rows
    cannot be used by the strict loader."""
    f = _features(m)
    values = f.to_numpy(np.float64)
    bad = ~np.isfinite(values)
    ids = m.df["id"].to_numpy()
    items, parts = [], []
    for j in np.flatnonzero(bad.any(0)):
        rows = np.flatnonzero(bad[:, j])
        col = f.columns[j]
        items += [{"column": col, "id": ids[r], "value": json_value(values[r, j])} for r in rows]
        parts.append(f"{col}: {len(rows)} of {len(f)} ({100 * len(rows) / len(f):.1f}%, {names(ids[rows], cap)})")
    n = int(bad.sum())
    fraction = float(bad.mean(0).max()) if bad.size else 0.0
    return finding(
        "feature_nulls", "no feature value is missing or infinite",
        f"{plural(n, 'missing value')}: " + "; ".join(parts) if n else f"no missing values in {f.shape[1]} columns",
        "0 missing values", Verdict.FAIL if n else Verdict.PASS,
        "fill the listed cells (e.g. with the train median, plus an 'is missing' column if missingness means "
        "something) or drop those rows or columns from the CSV: rows with missing values cannot be trained on",
        items, {"data/n_missing_values": n, "data/max_null_fraction": fraction},
    )


def constant_features(m: Manifest, cap: int = 10) -> Finding:
    """WARN naming columns with a single value in the train split: they carry no information there."""
    f = _features(m)
    train = f[_train(m)]
    const = [c for c in f.columns if train[c].dropna().nunique() <= 1]
    items = [{"column": c, "value": json_value(train[c].dropna().iloc[0]) if train[c].notna().any() else None}
             for c in const]
    observed = f"all {f.shape[1]} columns vary"
    if const:
        observed = f"{plural(len(const), 'constant column')}: " + names(
            (f"{c} (= {i['value']})" for c, i in zip(const, items)), cap
        )
    return finding(
        "constant_features", "every feature varies in the train split", observed, "0 constant columns",
        Verdict.WARN if const else Verdict.PASS,
        "drop the listed columns (a constant column is noise to the model; a one-hot column constant in train "
        "but not in val/test is a category the model never saw)",
        items, {"data/n_constant_features": len(const)},
    )


def _far_outside(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    span = hi - lo
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & ((values < lo - margin * span) | (values > hi + margin * span))


def feature_ranges(m: Manifest, margin: float = 0.5, cap: int = 10) -> Finding:
    """WARN naming val/test values beyond the train range by more than ``margin`` x that range."""
    f = _features(m)
    ranges = train_ranges(m)
    lo, hi = ranges["min"].to_numpy(), ranges["max"].to_numpy()
    held = ~_train(m)
    values = f.to_numpy(np.float64)
    far = _far_outside(values, lo, hi, margin) & held[:, None]
    ids, splits = m.df["id"].to_numpy(), m.df["split"].to_numpy()
    items = []
    for r, j in zip(*np.nonzero(far)):
        items.append({"column": f.columns[j], "id": ids[r], "split": splits[r], "value": float(values[r, j]),
                      "train_min": float(lo[j]), "train_max": float(hi[j])})
    items.sort(key=lambda i: -abs(i["value"] - (i["train_min"] + i["train_max"]) / 2))
    cols = sorted({i["column"] for i in items})
    observed = (
        f"{plural(len(items), 'val/test value')} in {plural(len(cols), 'column')} far outside the train range: "
        + names((f"{i['column']} = {fmt(i['value'])} ({i['id']}, {i['split']}; train {fmt(i['train_min'])}.."
                 f"{fmt(i['train_max'])})" for i in items), cap)
        if items else f"val/test values within the train ranges of all {f.shape[1]} columns (± {fmt(margin)} x range)"
    )
    return finding(
        "feature_ranges", "val/test feature values lie within the range seen in training",
        observed, f"within train [min, max] ± {fmt(margin)} x (max - min)", Verdict.WARN if items else Verdict.PASS,
        "check the listed cells for unit mix-ups, sentinel values (-1, 999, 99999) or categories absent from "
        "train; the model extrapolates there (stages.inspect.range_margin sets how far is too far)",
        items, {"data/n_out_of_range": len(items)},
    )


def target_values(m: Manifest, margin: float = 0.5, cap: int = 10) -> Finding:
    """Classification: every class has train samples (else WARN). Regression: val/test targets within the
    train range (± ``margin`` x range; else WARN); reports the target's train mean and std."""
    df = m.df[m.df["label"].notna()]
    train = df[df["split"] == "train"]
    if task_for(m).classifier:
        counts = df["label"].astype(str).value_counts()
        in_train = set(train["label"].astype(str))
        missing = [c for c in m.classes if c not in in_train]
        observed = f"{plural(len(m.classes), 'class', 'classes')}: " + names(
            (f"{c!r} ({counts.get(c, 0)})" for c in m.classes), cap
        )
        if missing:
            observed += f"; absent from train: {names(missing, cap)}"
        return finding(
            "target_values", "the target is a class label and every class has training samples", observed,
            "every class in train", Verdict.WARN if missing else Verdict.PASS,
            "a class without training samples cannot be predicted: add data for it or drop its rows",
            [{"class": c, "problem": "absent from train"} for c in missing],
        )
    y = df["label"].astype(np.float64)
    ty = train["label"].astype(np.float64)
    ty = ty[np.isfinite(ty)].to_numpy()  # numpy std (ddof=0), as DataBundle.target_std
    if not len(ty):
        return finding("target_values", "the target has training values", "no finite train targets",
                       "finite train targets", Verdict.FAIL, "check data.target and the target column")
    lo, hi = float(ty.min()), float(ty.max())
    held = df["split"] != "train"
    far = _far_outside(y.to_numpy(), np.array(lo), np.array(hi), margin) & held.to_numpy()
    bad = df[far]
    items = [{"id": i, "split": s, "value": float(v), "train_min": lo, "train_max": hi}
             for i, s, v in zip(bad["id"], bad["split"], bad["label"])]
    observed = f"train target {fmt(lo)}..{fmt(hi)} (mean {fmt(ty.mean())}, std {fmt(ty.std())})"
    if items:
        observed += "; far outside it: " + names((f"{i['id']} ({fmt(i['value'])}, {i['split']})" for i in items), cap)
    return finding(
        "target_values", "val/test targets lie within the range seen in training", observed,
        f"within train [min, max] ± {fmt(margin)} x (max - min)", Verdict.WARN if items else Verdict.PASS,
        "check the listed targets for unit mix-ups or sentinel values; a regressor cannot extrapolate far",
        items, {"data/target_mean": float(ty.mean()), "data/target_std": float(ty.std())},
    )


def table_checks(m: Manifest, ic: InspectConfig) -> list[Finding]:
    cap = ic.max_listed
    return [
        feature_types(m, cap),
        feature_nulls(m, cap),
        constant_features(m, cap),
        feature_ranges(m, ic.range_margin, cap),
        target_values(m, ic.range_margin, cap),
    ]
