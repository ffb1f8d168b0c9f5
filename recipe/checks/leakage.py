"""Leakage: what lets a model score well on data it should not know, named column by column or file by file.

- :func:`single_column_leak` (tables): each feature column alone, through a shallow decision tree
  (depth ``TREE_DEPTH``) scored out-of-sample by k-fold ``cross_val_predict``. A column that alone predicts the
  target far beyond all the other features together is a leak: a copy or an encoding of the target, or a
  value recorded after the outcome (Kaufman et al., "Leakage in Data Mining", TKDD 2012).
- :func:`identifier_columns` (tables): columns that look like row identifiers (every value distinct, and
  consecutive integers or monotone in row order). An identifier carries no information about the target;
  when it predicts the target anyway the rows were numbered in target order: a row-order leak. Whether the
  row order itself follows the target (a non-IID ordering) is said too; the recipe's random split makes that
  harmless unless a column carries the order.
- :func:`near_duplicates_across_splits` (images): near-identical samples in two splits (cleanlab's
  near-duplicate rule, :func:`recipe.checks.labels.near_duplicate_pairs`); the ``no_leakage_across_splits``
  check of :mod:`recipe.checks.data` sees only byte-identical content.

Skill, the scale every predictiveness number here is on: 0 = no better than chance, 1 = perfect.
Classification: (balanced accuracy - 1/K) / (1 - 1/K); regression: R² (out-of-sample). Tables larger than
``MAX_ROWS`` rows are subsampled (seeded) for the trees.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recipe.report import Verdict

from .base import CheckBuilder, Finding, names, plural

if TYPE_CHECKING:
    from recipe.config import RecipeConfig
    from recipe.data import Manifest

    from .labels import Evidence

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL

TREE_DEPTH = 4  # a shallow tree: at most 16 leaves, enough to read a copy of the target off one column
CV_FOLDS = 5
MAX_ROWS = 2000  # rows the predictiveness trees see at most (a leak needs no more to show)
LEAK_ALONE = 0.9  # skill of one column alone from which it can be a leak ...
LEAK_GAP = 0.2  # ... when it beats all the other features together by this much: FAIL
NEAR_PERFECT = 0.98  # one column alone this good, the others close behind: WARN (check how it is made)
ID_PREDICTS = 0.5  # an identifier-like column with this skill alone predicts the target: FAIL
ORDER_NOTED = 0.5  # row position alone with this skill: the rows are ordered by the target (said, not judged)
CROSS_SPLIT_FAIL = 0.01  # share of val/test samples with a near-copy in another split that fails

ADVICE = {
    "single_column_leak.fail": (
        "find out how the named column is made: a copy or encoding of the target, or a value known only after the "
        "outcome, must be dropped from the CSV (the model would learn it and fail on real inputs)"
    ),
    "single_column_leak.warn": (
        "one column alone determines the target almost perfectly: make sure it is not derived from the target "
        "or recorded after it; if it is a genuine, available-at-prediction-time input, this is fine"
    ),
    "identifier_columns.fail": (
        "leave the identifier column out of the inputs: it predicts the target only because the rows were numbered in "
        "target order (a row-order leak), which new data will not follow"
    ),
    "identifier_columns.warn": (
        "leave the identifier column out of the inputs: a row number carries no signal, and a model can memorise rows by "
        "it (a time or a measurement that only happens to be unique and ordered is fine to keep)"
    ),
    "near_duplicates_across_splits": (
        "near-identical copies in two splits inflate the val/test score: remove the val/test member of each listed "
        "pair, or group copies before splitting (a re-encoded, resized or brightened copy is still a copy)"
    ),
}


def skill_score(y: np.ndarray, pred: np.ndarray, classifier: bool, n_classes: int) -> float:
    """Skill of predictions ``pred`` (N,) for ``y`` (N,): classification (balanced accuracy - 1/K) / (1 - 1/K),
    regression R²; 0 is chance, 1 perfect (may be negative)."""
    from sklearn.metrics import balanced_accuracy_score, r2_score

    if classifier:
        k = max(2, int(n_classes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class absent from the predictions
            b = balanced_accuracy_score(y, pred)
        return float((b - 1 / k) / (1 - 1 / k))
    return float(r2_score(y, pred))


def cv_skill(x: np.ndarray, y: np.ndarray, classifier: bool, linear: bool = False, seed: int = 0) -> float:
    """Out-of-sample skill of a depth-``TREE_DEPTH`` tree (or, ``linear``, a logistic / ridge regression on
    standardised inputs) on ``x`` (N, F) for ``y`` (N,), by k-fold ``cross_val_predict`` (stratified and
    shuffled for classes, shuffled for regression); NaN cells are filled with the column median."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    x = _filled(x)
    if classifier:
        counts = np.unique(y, return_counts=True)[1]
        folds = int(min(CV_FOLDS, counts.min()))
        if folds < 2 or len(counts) < 2:
            return float("nan")
        cv: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
        model: Any = (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
            if linear
            else DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed)
        )
    else:
        cv = KFold(CV_FOLDS, shuffle=True, random_state=seed)
        model = (
            make_pipeline(StandardScaler(), Ridge(1.0))
            if linear
            else DecisionTreeRegressor(max_depth=TREE_DEPTH, random_state=seed)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = cross_val_predict(model, x, y, cv=cv)
    return skill_score(y, pred, classifier, len(np.unique(y)))


def _filled(x: np.ndarray) -> np.ndarray:
    x = np.where(np.isfinite(x), x, np.nan)
    if np.isnan(x).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(x, 0)
        x = np.where(np.isnan(x), np.where(np.isnan(med), 0.0, med), x)
    return x


def _table(m: Manifest, ev: Evidence, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The raw feature table (rows of ``ev``, at most MAX_ROWS, seeded), their targets and row positions."""
    if m.features is None:
        raise ValueError(f"{m.source} data has no feature table; the leakage checks on columns are for tables")
    pos, y = ev.positions, ev.labels
    if len(pos) > MAX_ROWS:
        pick = np.sort(np.random.default_rng(seed).choice(len(pos), MAX_ROWS, replace=False))
        pos, y = pos[pick], y[pick]
    return m.features.iloc[pos], y, pos


# Column names that say "identifier": id, idx, index, row, rownames (R's exported row names), row_id, row number,
# "Unnamed: 0" (pandas' name for an unnamed index column written by to_csv), anything ending in _id / -id / " id",
# and camel case customerId / CustomerID.
ID_NAME = re.compile(r"^(id|idx|index|row|rownames|row[ _.]?(id|num|number|no|index)|unnamed: ?\d+|.+[ _.-]id)$", re.I)
CAMEL_ID = re.compile(r"[a-z0-9]I[Dd]$")


def id_named(name: str) -> bool:
    """The column's name says it identifies rows (:data:`ID_NAME`, :data:`CAMEL_ID`)."""
    return bool(ID_NAME.match(name.strip()) or CAMEL_ID.search(name.strip()))


def identifier_like(col: pd.Series, positions: np.ndarray, name: str | None = None) -> str:
    """Why ``col`` (one value per row, rows in file order at ``positions``) looks like a row identifier:
    ``"unique consecutive integers"``, ``"unique, increasing with row order"`` (or both, or decreasing), or, for
    a column whose ``name`` says so (:func:`id_named`), ``"a unique integer per row, named like an identifier"``;
    ``""`` when it does not (a repeated or missing value, or none of these)."""
    v = col.to_numpy(np.float64)
    if len(v) < 3 or not np.isfinite(v).all() or len(np.unique(v)) < len(v):
        return ""
    why = []
    s = np.sort(v)
    integers = bool(np.all(v == np.round(v)))
    if integers and np.all(np.diff(s) == s[1] - s[0]):
        why.append(
            f"unique consecutive integers {s[0]:g}..{s[-1]:g}" + (f" step {s[1] - s[0]:g}" if s[1] - s[0] != 1 else "")
        )
    d = np.diff(v[np.argsort(positions, kind="stable")])
    if np.all(d > 0) or np.all(d < 0):
        why.append(f"{'increasing' if d[0] > 0 else 'decreasing'} with row order")
    if not why and integers and name is not None and id_named(name):
        why.append("a unique integer per row, named like an identifier")
    return ", ".join(why) if why else ""


def drop_setting(columns: list[str], already: list[str] | tuple[str, ...] = ()) -> str:
    """The setting that leaves ``columns`` out of the inputs, with what ``data.drop_columns`` already holds:
    ``--set data.drop_columns=[rownames,id]``."""
    names = list(dict.fromkeys([*already, *columns]))
    return f"--set data.drop_columns=[{','.join(names)}]"


def _classifier(ev: Evidence) -> bool:
    return ev.pred_probs is not None or ev.labels.dtype.kind in "iu"


def identifier_columns(
    m: Manifest, ev: Evidence, cap: int = 10, seed: int = 0, already: list[str] | tuple[str, ...] = ()
) -> Finding:
    """Identifier-like columns (:func:`identifier_like`, judged on every row of the table in file order), each
    with its skill alone (:func:`cv_skill`): FAIL when one predicts the target (skill ≥ ``ID_PREDICTS``: the rows
    were numbered in target order, a row-order leak), WARN otherwise (a row number is no signal, and a model can
    memorise rows by it). The advice names the setting that leaves them out (``data.drop_columns``, with what it
    already holds: ``already``). The observed text also says when the row position alone predicts the target (a
    non-IID order; harmless under the recipe's random split unless a column carries it). Items: column, why,
    skill_alone. Raises ValueError without a feature table."""
    f, y, pos = _table(m, ev, seed)
    whole = m.features
    classifier = _classifier(ev)
    found = []
    for c in f.columns:
        why = identifier_like(whole[c], np.arange(len(whole)), str(c))
        if why:
            found.append({"column": c, "why": why, "skill_alone": cv_skill(f[[c]].to_numpy(np.float64), y, classifier)})
    order = cv_skill(pos[:, None].astype(np.float64), y, classifier)
    leaking = [i for i in found if i["skill_alone"] >= ID_PREDICTS]
    listing = names(
        (f"{i['column']} ({i['why']}; alone predicts the target with skill {i['skill_alone']:.2f})" for i in found), cap
    )
    if leaking:
        observed = f"row-order leak: {plural(len(leaking), 'identifier-like column')} predict the target: {listing}"
    elif found:
        observed = (
            f"{plural(len(found), 'identifier-like column')}, below the leak bar (skill < {ID_PREDICTS}): {listing}"
        )
    else:
        observed = f"no identifier-like column among {f.shape[1]}"
    if order >= ORDER_NOTED:
        observed += (
            f"; the rows are ordered by the target (row position alone predicts it with skill {order:.2f}): "
            "harmless under the recipe's random split unless a column carries the order"
        )
    verdict = FAIL if leaking else WARN if found else PASS
    advice = ADVICE["identifier_columns.fail" if leaking else "identifier_columns.warn"]
    if found:
        advice += f"; leave it out with {drop_setting([str(i['column']) for i in found], already)}"
    return CheckBuilder(
        "identifier_columns", "no feature column is a row identifier (unique, consecutive or monotone in row order)"
    )(
        verdict,
        observed,
        f"no identifier-like column; one that predicts the target (skill ≥ {ID_PREDICTS}) fails",
        advice,
        items=found,
        metrics={"data/n_identifier_columns": len(found), "data/row_order_skill": order},
    )


def single_column_leak(m: Manifest, ev: Evidence, cap: int = 10, seed: int = 0) -> Finding:
    """Each feature column alone (identifier-like ones are :func:`identifier_columns`' business) through a
    shallow tree, out-of-sample (:func:`cv_skill`); for the best columns, every other feature together (the
    better of a tree and a linear model). FAIL when a column alone reaches ``LEAK_ALONE`` and beats the rest by
    ``LEAK_GAP``; WARN when it alone reaches ``NEAR_PERFECT`` with the others close behind. Items: column,
    skill_alone, skill_rest (ranked, the top five). Raises ValueError without a feature table."""
    f, y, pos = _table(m, ev, seed)
    classifier = _classifier(ev)
    whole = m.features
    cols = [c for c in f.columns if not identifier_like(whole[c], np.arange(len(whole)), str(c))]
    if not cols:
        return CheckBuilder("single_column_leak", "no single column predicts the target far beyond the others")(
            PASS, "no feature column besides identifiers", "-"
        )
    x = f[cols].to_numpy(np.float64)
    alone = np.array([cv_skill(x[:, [j]], y, classifier, seed=seed) for j in range(len(cols))])
    order = np.argsort(-np.nan_to_num(alone, nan=-np.inf), kind="stable")[:5]
    items = []
    for j in order:
        rest = np.delete(x, j, axis=1)
        skill_rest = (
            max(cv_skill(rest, y, classifier, seed=seed), cv_skill(rest, y, classifier, linear=True, seed=seed))
            if rest.shape[1] and alone[j] >= LEAK_ALONE / 2
            else (0.0 if not rest.shape[1] else float("nan"))
        )
        items.append({"column": cols[j], "skill_alone": float(alone[j]), "skill_rest": skill_rest})
    leaks = [i for i in items if i["skill_alone"] >= LEAK_ALONE and i["skill_alone"] - i["skill_rest"] >= LEAK_GAP]
    perfect = [i for i in items if i["skill_alone"] >= NEAR_PERFECT and i not in leaks]

    def said(i: dict[str, Any]) -> str:
        rest = i["skill_rest"]
        return f"{i['column']} alone {i['skill_alone']:.2f}" + (
            f" vs {rest:.2f} for all other features" if rest == rest else ""
        )

    if leaks:
        observed = (
            f"{plural(len(leaks), 'column')} alone predict the target far beyond every other feature together "
            f"(out-of-sample skill, 0 chance, 1 perfect): {names(map(said, leaks), cap)}: a copy or encoding of the "
            "target, or a value recorded after the outcome"
        )
    elif perfect:
        observed = f"one column alone determines the target almost perfectly: {names(map(said, perfect), cap)}"
    else:
        observed = f"best single columns (out-of-sample skill, 0 chance, 1 perfect): {names(map(said, items[:3]), cap)}"
    verdict = FAIL if leaks else WARN if perfect else PASS
    return CheckBuilder("single_column_leak", "no single column predicts the target far beyond the others")(
        verdict,
        observed,
        f"no column alone ≥ {LEAK_ALONE} skill and ≥ {LEAK_GAP} above the rest; none alone ≥ {NEAR_PERFECT}",
        ADVICE["single_column_leak.fail" if leaks else "single_column_leak.warn"],
        items=items if verdict is not PASS else [],
        metrics={"data/best_single_column_skill": float(np.nanmax(alone)) if np.isfinite(alone).any() else 0.0},
    )


def near_duplicates_across_splits(ev: Evidence, cap: int = 10, fail: float = CROSS_SPLIT_FAIL) -> Finding:
    """Near-duplicate pairs (:func:`recipe.checks.labels.near_duplicate_pairs`) whose members are in different
    splits: WARN for any, FAIL when the val/test samples with a near-copy elsewhere exceed ``fail`` of val + test
    (their score is inflated by up to that share). Items: one per pair (a, a_split, b, b_split, distance)."""
    from .labels import NEAR_DUP_RATIO, near_duplicate_pairs, pair_items

    pairs = near_duplicate_pairs(ev)
    i, j = pairs["i"].to_numpy(np.int64), pairs["j"].to_numpy(np.int64)
    across = pairs[ev.splits[i] != ev.splits[j]]
    ai, aj = across["i"].to_numpy(np.int64), across["j"].to_numpy(np.int64)
    held = {int(k) for k in np.concatenate([ai, aj]) if ev.splits[k] != "train"}
    n_held = int((ev.splits != "train").sum())
    share = len(held) / n_held if n_held else 0.0
    listing = names((f"{ev.ids[a]} ({ev.splits[a]}) ≈ {ev.ids[b]} ({ev.splits[b]})" for a, b in zip(ai, aj)), cap)
    observed = (
        f"{plural(len(across), 'near-duplicate pair')} across splits: {len(held)} of {n_held} val/test samples "
        f"({100 * share:.1f}%) have a near-copy in another split (closer than {NEAR_DUP_RATIO} x the median "
        f"nearest-neighbour distance{ev.subsampled}): {listing}"
        if len(across)
        else f"no near-duplicates across splits (none closer than {NEAR_DUP_RATIO} x the median nearest-neighbour "
        f"distance{ev.subsampled})"
    )
    return CheckBuilder(
        "near_duplicates_across_splits", "no val/test sample is a near-identical copy of a sample in another split"
    )(
        FAIL if share >= fail else WARN if len(across) else PASS,
        observed,
        f"no pair across splits; fails from {100 * fail:.0f}% of val/test samples",
        ADVICE["near_duplicates_across_splits"],
        items=pair_items(ev, across),
        metrics={"data/n_near_duplicates_across": len(across)},
    )


def leakage_checks(m: Manifest, cfg: RecipeConfig, ev: Evidence | None) -> list[Finding]:
    """The checks of this module that apply to ``m``: the two column checks for tables, the cross-split
    near-duplicates for images; none when ``ev`` is None."""
    if ev is None:
        return []
    cap = cfg.stages.inspect.max_listed
    if m.features is not None:
        return [
            single_column_leak(m, ev, cap, cfg.seed),
            identifier_columns(m, ev, cap, cfg.seed, cfg.data.drop_columns),
        ]
    if m.image_mode is not None:
        return [near_duplicates_across_splits(ev, cap)]
    return []
