"""A tuned classical baseline and bootstrap intervals: the numbers a network's test score is read against.

"Get dumb baselines" (seed 004) sets the floor; a classical model tuned with a small cross-validated grid sets
the bar a network must clear to be worth its cost. scikit-learn does the work: an RBF support-vector machine on
the flattened, standardised training images (the classic digits baseline), gradient-boosted trees
(``HistGradientBoosting*``) on tables, with native categoricals: each text column one integer-coded feature
(``categorical_features``), numbers raw with their missing cells left to the trees' own missing-value
branches (:func:`native_table`). Both fit on the train split only (grid search included), on the same split as
the network.

Intervals: :func:`bootstrap_ci` resamples the test samples' per-sample scores (1/0 correct, or absolute error)
with replacement (percentile bootstrap, Efron & Tibshirani 1993, via :func:`scipy.stats.bootstrap`).
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

SVM_GRID = {"C": [1.0, 10.0, 100.0], "gamma": ["scale", 0.01]}
TREES_GRID = {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]}


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap confidence interval (same units as the scores)."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


def bootstrap_ci(scores: np.ndarray, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean of per-sample ``scores`` (shape (N,)) with a percentile-bootstrap ``level`` interval.

    Raises ValueError for an empty array. All-equal scores give a zero-width interval.
    """
    from scipy.stats import bootstrap

    s = np.asarray(scores, dtype=np.float64).ravel()
    if not len(s):
        raise ValueError("bootstrap_ci needs at least one score")
    mean = float(s.mean())
    if np.all(s == s[0]):
        return Interval(mean, mean, mean, level)
    res = bootstrap(
        (s,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), level)


@dataclass
class Classical:
    """A fitted classical baseline: what it is, its chosen grid point, and per-sample scores by split."""

    name: str  # "rbf_svm" | "gradient_boosted_trees"
    estimator: Any
    best_params: dict[str, Any]
    cv_score: float
    seconds: float

    def scores(self, x: np.ndarray, y: np.ndarray, task: Any) -> np.ndarray:
        """Per-sample scores on (N, F) inputs: 1/0 correct, or the absolute error in the target's units (``task``:
        :func:`recipe.tasks.task_for` of the data, which knows the targets' scaling)."""
        import torch

        from recipe.tasks import task_for

        t = task_for(task)
        pred = torch.as_tensor(self.estimator.predict(x))
        if t.classifier:
            return (pred == torch.as_tensor(y)).double().numpy()
        return t.scores(pred.double(), torch.as_tensor(y).double()).double().numpy()


def flat(data: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's inputs for the classical model and its targets (N,): images flattened to (N, F) float64 as the
    network sees them; tables as :func:`native_table` gives them."""
    x, y = data.tensors(split)
    if len(data.in_shape) != 3 and getattr(data.manifest, "feature_kinds", None):
        return native_table(data, split)[0], y.numpy()
    return x.reshape(len(x), -1).numpy().astype(np.float64), y.numpy()


def native_table(data: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A table split as gradient-boosted trees take it: ``(x, categorical)``, x (N, C) float64 with one column per
    CSV column -- numbers raw (missing: NaN), a text column the index of its level among its one-hot columns
    (``<other>`` and ``<missing>`` included) -- and ``categorical`` (C,) bool marking the text columns."""
    m = data.manifest
    f = m.features.to_numpy(np.float64)[data.rows(split).index.to_numpy()]
    groups: dict[str, list[tuple[int, str]]] = {}
    for j, c in enumerate(m.feature_columns):
        source, kind = m.feature_kinds.get(c, (c, "number"))
        groups.setdefault(source, []).append((j, kind))
    columns, categorical = [], []
    for enc in groups.values():
        numbers = [j for j, kind in enc if kind == "number"]
        if numbers:  # a number column (its <missing> indicator is the trees' NaN branch)
            columns.append(f[:, numbers[0]])
            categorical.append(False)
        else:
            columns.append(np.argmax(f[:, [j for j, _ in enc]], 1).astype(np.float64))
            categorical.append(True)
    return np.stack(columns, 1) if columns else np.zeros((len(f), 0)), np.asarray(categorical, bool)


# Fits kept per loaded bundle (a bundle is loaded once per flow run and handed to every stage): the budget times
# squeeze's classical fit when it sizes the stage (recipe.budget.fixed_work), and the stage scores that fit.
_FITS: weakref.WeakKeyDictionary[Any, dict[tuple[int, int], Classical]] = weakref.WeakKeyDictionary()


def fit_classical(data: Any, *, seed: int = 0, cv: int = 3) -> Classical:
    """Fit the classical baseline for ``data`` (a DataBundle) with a small grid search on the train split.

    Images (classification): an RBF SVM over :data:`SVM_GRID`. Tables: gradient-boosted trees over
    :data:`TREES_GRID`. Cross-validation folds are stratified for classification. The fit is kept for the
    bundle's lifetime: the same bundle, seed and folds return the same fit (its ``seconds`` those of the search
    that made it), not a second grid search.
    """
    try:
        kept = _FITS.setdefault(data, {})
    except TypeError:  # not weak-referenceable: fit every time
        kept = {}
    if (seed, cv) not in kept:
        kept[(seed, cv)] = _fit_classical(data, seed, cv)
    return kept[(seed, cv)]


def _fit_classical(data: Any, seed: int, cv: int) -> Classical:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC, SVR

    x, y = flat(data, "train")
    image = len(data.in_shape) == 3
    from recipe.tasks import task_for

    classify = task_for(data).classifier
    if image:
        name, grid = "rbf_svm", SVM_GRID
        est = SVC(kernel="rbf") if classify else SVR(kernel="rbf")
    else:
        name, grid = "gradient_boosted_trees", TREES_GRID
        cats = native_table(data, "train")[1] if getattr(data.manifest, "feature_kinds", None) else None
        kind = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        est = kind(random_state=seed, categorical_features=cats if cats is not None and cats.any() else None)
    scoring = "accuracy" if classify else "neg_mean_absolute_error"
    folds = max(2, min(cv, int(np.bincount(y.astype(np.int64)).min()) if classify else cv))
    start = time.perf_counter()
    search = GridSearchCV(est, grid, cv=folds, scoring=scoring, n_jobs=1).fit(x, y)
    return Classical(
        name,
        search.best_estimator_,
        dict(search.best_params_),
        float(search.best_score_) if math.isfinite(search.best_score_) else math.nan,
        time.perf_counter() - start,
    )
