"""Label and sample quality through cleanlab: wrong labels, near-duplicates and outliers, named sample by sample.

Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels",
JAIR 2021) finds the samples whose given label disagrees with out-of-sample predicted probabilities beyond each
class's own confidence threshold, and estimates how many labels are wrong. cleanlab implements it; this module
only feeds it and words the result. The probabilities come from a cheap model fitted with k-fold
``cross_val_predict`` (scikit-learn), so every sample is scored by a model that never saw it:

- images: the pixels (0..1; area-averaged to at most ``THUMBNAIL`` px a side) reduced to ``PCA_COMPONENTS`` principal components (randomised PCA fitted on at
  most ``PCA_FIT_ROWS`` samples), scaled by the first component's spread (not whitened), then the mean of a multinomial logistic regression's and a
  k-nearest-neighbour classifier's probabilities; more than
  ``MAX_SAMPLES`` images are subsampled (seeded; the observed text says so);
- tables: the encoded feature columns, missing cells filled with the column median, standardised (PCA only
  beyond ``PCA_COMPONENTS`` columns), then the same two models.

The baselines stage's linear model cannot serve: it is trained once on the train split, so its probabilities
for training samples are in-sample, and confident learning needs out-of-sample ones for every sample.

Checks (each returns a :class:`~recipe.checks.base.Finding` whose ``observed`` names the samples):

- :func:`label_issues` (classification): the suspect samples with their given and likely label, and the
  estimated share of wrong labels (``cleanlab.count.num_label_issues`` / N). WARN from ``NOISE_WARN``, FAIL
  from ``NOISE_FAIL``. Rows of a table with identical features and different labels are set apart as
  ambiguous: the features cannot tell them apart, which is not by itself proof that a label is wrong.
- :func:`near_duplicates` (images): pairs closer than ``NEAR_DUP_RATIO`` x the median nearest-neighbour
  distance (cleanlab Datalab's near-duplicate rule and default), exact copies left to the ``duplicates``
  check; within a split WARN beyond ``NEAR_DUP_WARN`` of the samples (across splits:
  :func:`recipe.checks.leakage.near_duplicates_across_splits`).
- :func:`outliers` (images and tables): cleanlab's ``OutOfDistribution`` scores on the same features (mean
  distance to the k nearest neighbours, mapped to (0, 1]); a sample whose log distance is beyond
  ``stages.inspect.outlier_mad`` robust SDs above the median is named; WARN beyond
  ``OUTLIER_WARN`` of the samples.

Class imbalance is the ``class_balance`` check of :mod:`recipe.checks.data`; non-IID row order is judged
where it can hurt, in :mod:`recipe.checks.leakage` (a column that encodes row order and the target).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recipe.report import Verdict
from recipe.tasks import task_for

from .base import CheckBuilder, Finding, fmt, json_value, names, plural, robust_bounds

if TYPE_CHECKING:
    from recipe.config import RecipeConfig
    from recipe.data import Manifest

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL

PCA_COMPONENTS = 32  # features the cheap model (and the neighbour searches) work on
PCA_FIT_ROWS = 2000  # randomised PCA is fitted on at most this many samples, then applied to all
MAX_SAMPLES = 20_000  # images beyond this are subsampled (seeded) for every check of this module
THUMBNAIL = 32  # images are area-averaged to at most this side before PCA (28x28 MNIST is kept as is)
CHUNK = 1024  # images read and shrunk at a time
NEIGHBOURS = 10  # k of the nearest-neighbour classifier
CV_FOLDS = 5  # folds of cross_val_predict (fewer when the smallest class is smaller)
NOISE_WARN = 0.05  # estimated share of wrong labels that warns (clean digits: 0.1%, MNIST-like: ~2%)
NOISE_FAIL = 0.25  # ... and fails: a quarter of the labels contradict the data (a broken label mapping)
NEAR_DUP_RATIO = 0.13  # cleanlab Datalab's near_duplicate threshold: x the median nearest-neighbour distance
NEAR_DUP_WARN = 0.01  # share of samples in near-duplicate pairs inside one split that warns
OUTLIER_WARN = 0.01  # share of samples beyond the robust bound that warns
WEAK_MODEL = 0.80  # below this out-of-sample accuracy, suspects may be hard cases (said in observed)
MIN_SKILL = 0.5  # the cheap model must close half the gap from the majority rate to 100% for labels to be judged
OUTLIER_NEIGHBOURS = 10  # k of cleanlab's OutOfDistribution

ADVICE = {
    "label_issues": (
        "look at the listed samples (inspect/problems.json has all, most suspect first): relabel the ones that "
        "are wrong, drop the ones that fit no class. Labels wrong at this rate cap the accuracy a model can "
        "reach and bias its validation score; re-run inspect after fixing"
    ),
    "near_duplicates": (
        "near-identical samples over-weight one example; keep one of each listed pair (a re-encoded, resized or "
        "slightly edited copy is still a copy)"
    ),
    "outliers": (
        "open the listed samples: a file from another dataset, a blank or corrupted image, or a row in other units "
        "lies far from every other sample; fix or drop it"
    ),
}


@dataclass(frozen=True)
class Evidence:
    """What the label and leakage checks read, all aligned on the same N samples.

    ``features``: (N, K) float64, standardised (PCA components for images); ``pred_probs``: (N, C)
    out-of-sample class probabilities (None for regression or when too few samples per class); ``labels``:
    (N,) class indices (regression: float targets); ``positions``: (N,) manifest row positions; ``ids``,
    ``splits``, ``hashes``: (N,) strings from the manifest; ``ambiguous``: (N,) bool, rows whose features equal
    another row's that has another label; ``model``: what produced ``pred_probs``, for observed texts;
    ``n_total``: usable samples before subsampling; ``seconds``: time to build it."""

    features: np.ndarray
    pred_probs: np.ndarray | None
    labels: np.ndarray
    positions: np.ndarray
    ids: np.ndarray
    splits: np.ndarray
    hashes: np.ndarray
    classes: list[str]
    ambiguous: np.ndarray
    model: str
    n_total: int
    seconds: float
    _graph: dict = field(default_factory=dict, repr=False, compare=False)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each (N, min(OUTLIER_NEIGHBOURS, N)): every sample's nearest neighbours in
        ``features`` (euclidean, brute force: BLAS), the sample itself (or an exact copy) first. Computed once and
        shared by the near-duplicate and outlier checks."""
        if "knn" not in self._graph:
            from sklearn.neighbors import NearestNeighbors

            k = min(OUTLIER_NEIGHBOURS, len(self.features))
            nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(self.features)
            self._graph["knn"] = nn.kneighbors(self.features)
        return self._graph["knn"]

    @property
    def subsampled(self) -> str:
        """'' or ', on a seeded subsample of N of M samples', for observed texts."""
        n = len(self.labels)
        return f", on a seeded subsample of {n} of {self.n_total} samples" if n < self.n_total else ""


def usable_rows(m: Manifest) -> pd.DataFrame:
    """The manifest rows the checks can use: readable, with a label."""
    df = m.df
    return df[df["readable"].astype(bool) & df["label"].notna()]


def images_comparable(m: Manifest) -> bool:
    """Whether every usable image decodes to one shape (resized by ``data.image_size`` or all alike)."""
    if m.image_size:
        return True
    ok = usable_rows(m)
    return ok[["height", "width"]].drop_duplicates().shape[0] <= 1


def raw_features(m: Manifest, rows: pd.DataFrame) -> np.ndarray:
    """(N, F) float64: flattened pixels on the 0..1 scale for images (at most ``THUMBNAIL`` px a side, area
    averaged), encoded features for tables (NaN kept).
    Raises ValueError for a manifest without a reader or feature table."""
    pos = rows.index.to_numpy()
    if m.image_mode is not None:
        if m.reader is None:
            raise ValueError("the manifest has no reader: the images cannot be read")
        chunks = [_thumbnails(m.reader.read_many(pos[i : i + CHUNK])) for i in range(0, len(pos), CHUNK)]
        return np.concatenate(chunks).astype(np.float64)
    if m.features is None:
        raise ValueError(f"{m.source} data has neither images nor a feature table")
    return m.features.to_numpy(np.float64)[pos]


def _thumbnails(a: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) or (n, H, W, 3) -> float32 (n, F) on the 0..1 scale, area-averaged down to at most
    THUMBNAIL x THUMBNAIL pixels per channel (memory stays ~n x 3 KB whatever the image size)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(a)).float().div_(255)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    if h > THUMBNAIL or w > THUMBNAIL:
        x = F.adaptive_avg_pool2d(x, (min(h, THUMBNAIL), min(w, THUMBNAIL)))
    return x.reshape(len(x), -1).numpy()


def reduce(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, F) -> (N, min(F, PCA_COMPONENTS)): missing cells filled with the column median; then either each column
    standardised (F <= PCA_COMPONENTS) or randomised PCA (fitted on at most PCA_FIT_ROWS rows) with every
    component divided by the first one's standard deviation (relative variances kept: no whitening)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.where(np.isfinite(x), x, np.nan)
    if np.isnan(x).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(x, 0)
        x = np.where(np.isnan(x), np.where(np.isnan(med), 0.0, med), x)
    if x.shape[1] > PCA_COMPONENTS:
        rng = np.random.default_rng(seed)
        fit_rows = rng.choice(len(x), min(len(x), PCA_FIT_ROWS), replace=False)
        k = min(PCA_COMPONENTS, len(fit_rows))
        pca = PCA(k, svd_solver="randomized", random_state=seed).fit(x[fit_rows])
        x = pca.transform(x)
        # One scale for all components, not one each: standardising every component (whitening) gives the
        # low-variance, mostly-noise components the weight of the signal, which on small sets (40 images) made
        # clean labels look wrong. The components keep their relative variance, as in the pixel space.
        return x / (float(x[:, 0].std()) or 1.0)
    return StandardScaler().fit_transform(x)


def out_of_sample_probs(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray | None:
    """(N, n_classes) class probabilities for every row of ``x`` (N, K) from models that never saw that row
    (stratified k-fold ``cross_val_predict``, k = min(CV_FOLDS, smallest class count)): the mean of a logistic
    regression's and a ``NEIGHBOURS``-nearest-neighbour classifier's probabilities. Either alone is too weak on
    some clean data (the linear model on affine-jittered digits: 80% accuracy, and confident learning then
    calls 6% of correct labels wrong; the average: 93%, 0.2%). None when the smallest class has fewer than 2
    samples. Classes absent from a fold get probability 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    folds = int(min(CV_FOLDS, present.min())) if len(present) > 1 else 0
    if folds < 2:
        return None
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    neighbours = max(1, min(NEIGHBOURS, len(y) - -(-len(y) // folds)))  # at most the smallest training fold
    p = np.zeros((len(y), len(present)))
    for model in (LogisticRegression(max_iter=200), KNeighborsClassifier(neighbours)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs' ConvergenceWarning: 200 iterations are plenty for the ranking
            p += cross_val_predict(model, x, y, cv=cv, method="predict_proba") / 2
    if p.shape[1] == n_classes:
        return p
    full = np.zeros((len(y), n_classes))
    full[:, np.flatnonzero(counts)] = p  # predict_proba's columns are the classes present, in order
    return full


def conflicting_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) bool: rows whose feature vector (N, F) is shared by another row with a different label."""
    keys = pd.Series([r.tobytes() for r in np.ascontiguousarray(x)])
    labels_per_key = pd.Series(y).groupby(keys.to_numpy()).nunique()
    return keys.map(labels_per_key).to_numpy() > 1


def evidence(m: Manifest, seed: int = 0) -> Evidence | None:
    """The features and out-of-sample probabilities for ``m`` (see the module docstring); None when there is
    nothing to judge (fewer than 20 usable samples, or images of several shapes)."""
    start = time.perf_counter()
    rows = usable_rows(m)
    n_total = len(rows)
    if n_total < 20 or (m.image_mode is not None and not images_comparable(m)):
        return None
    if m.image_mode is not None and n_total > MAX_SAMPLES:
        pick = np.sort(np.random.default_rng(seed).choice(n_total, MAX_SAMPLES, replace=False))
        rows = rows.iloc[pick]
    raw = raw_features(m, rows)
    classifier = task_for(m).classifier
    if classifier:
        labels = rows["label_idx"].to_numpy(np.int64)
    else:
        labels = rows["label"].to_numpy(np.float64)
    ambiguous = conflicting_rows(raw, labels) if m.image_mode is None else np.zeros(len(rows), dtype=bool)
    x = reduce(raw, seed)
    probs = out_of_sample_probs(x, labels, len(m.classes), seed) if classifier else None
    what = "pixels" if m.image_mode is not None else "features"
    model = (
        f"logistic regression + {NEIGHBOURS}-NN on {x.shape[1]} "
        f"{'principal components of the ' if raw.shape[1] > x.shape[1] else ''}{what}, "
        f"out-of-sample by {CV_FOLDS}-fold cross_val_predict"
    )
    return Evidence(
        features=x,
        pred_probs=probs,
        labels=labels,
        positions=rows.index.to_numpy(),
        ids=rows["id"].astype(str).to_numpy(),
        splits=rows["split"].astype(str).to_numpy(),
        hashes=rows["hash"].astype(str).to_numpy(),
        classes=list(m.classes),
        ambiguous=ambiguous,
        model=model,
        n_total=n_total,
        seconds=time.perf_counter() - start,
    )


# --- label issues -------------------------------------------------------------------------------------------

LABELS = CheckBuilder(
    "label_issues",
    "the given labels agree with out-of-sample predictions (confident learning, cleanlab): few labels are wrong",
)


def label_issues(ev: Evidence, cap: int = 10, warn: float = NOISE_WARN, fail: float = NOISE_FAIL) -> Finding:
    """Confident learning on ``ev``'s out-of-sample probabilities: ``cleanlab.filter.find_label_issues``
    (prune by noise rate, most suspect first by self-confidence) names the suspect samples, and
    ``cleanlab.count.num_label_issues`` / N estimates the share of wrong labels. Not judged (PASS, saying
    why) when the cheap model's out-of-sample accuracy closes less than ``MIN_SKILL`` of the gap between the
    majority-class rate and 100%: a model that learned little cannot tell a wrong label from a hard sample. Rows in ``ev.ambiguous``
    (identical features, different labels) are reported apart and left out of the estimate. Verdict on the
    estimate: WARN at ``warn``, FAIL at ``fail``. Items: one per suspect (id, split, given, likely,
    self_confidence, ambiguous). Raises ValueError when ``ev`` has no probabilities (regression)."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    if ev.pred_probs is None:
        raise ValueError("label_issues needs out-of-sample class probabilities (classification only)")
    y, p = ev.labels, ev.pred_probs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes with few samples; the estimate says enough
        # n_jobs=1: cleanlab would otherwise fork a multiprocessing pool per call (one worker per core), which on
        # small inputs costs more than it saves and, inside a Prefect flow, inherits its SIGTERM handler.
        ranked = find_label_issues(
            y, p, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence", n_jobs=1
        )
        n_est = int(num_label_issues(y, p))
    ranked = np.asarray(ranked, dtype=np.int64)
    clear = ranked[~ev.ambiguous[ranked]]
    n_ambiguous = int(ev.ambiguous[ranked].sum())
    n_est = max(0, n_est - n_ambiguous)
    rate = n_est / len(y)
    items = [_suspect(ev, i) for i in ranked]
    accuracy = float((p.argmax(1) == y).mean())
    majority = float(np.bincount(y).max() / len(y))
    skill = (accuracy - majority) / (1 - majority) if majority < 1 else 0.0
    judged = skill >= MIN_SKILL
    verdict = PASS if not judged else FAIL if rate >= fail else WARN if rate >= warn else PASS
    observed = (
        f"estimated {100 * rate:.1f}% of labels wrong ({n_est} of {len(y)}; {ev.model}{ev.subsampled}; "
        f"out-of-sample accuracy {100 * accuracy:.1f}%)"
    )
    if not judged:
        observed = (
            f"not judged: the cheap model ({ev.model}) reaches {100 * accuracy:.1f}% out-of-sample accuracy against "
            f"{100 * majority:.1f}% for always the largest class: too little learned from the data to question its "
            f"labels (small or hard data; confident learning would call {100 * rate:.0f}% wrong)"
        )
        clear = clear[:0]
        n_ambiguous = 0
    elif verdict is not PASS and accuracy < WEAK_MODEL:
        observed += (
            f"; the cheap model is weak here (accuracy under {100 * WEAK_MODEL:.0f}%), so part of the suspects may "
            "be hard cases near a class boundary rather than wrong labels"
        )
    if len(clear):
        listing = names(
            (
                f"{i['id']} ({i['split']}): given {i['given']}, likely {i['likely']}"
                for i in items
                if not i["ambiguous"]
            ),
            cap,
        )
        observed += f"; {plural(len(clear), 'suspect label')}, most suspect first: {listing}"
    if n_ambiguous:
        amb = [i["id"] for i in items if i["ambiguous"]]
        observed += (
            f"; {plural(n_ambiguous, 'row')} with features identical to a row labelled otherwise (the features "
            f"cannot separate them: a wrong label or an ambiguous case, not counted): {names(amb, cap)}"
        )
    return LABELS(
        verdict,
        observed,
        f"estimated wrong labels < {100 * warn:.0f}% (fails from {100 * fail:.0f}%)",
        ADVICE["label_issues"],
        items=items if verdict is not PASS else [],  # a passing check's suspects are in observed, not problems
        metrics={"data/label_noise_rate": rate, "data/n_label_issues": len(clear)},
    )


def _suspect(ev: Evidence, i: int) -> dict[str, Any]:
    p = ev.pred_probs
    assert p is not None
    given, likely = int(ev.labels[i]), int(p[i].argmax())
    return {
        "id": ev.ids[i],
        "split": ev.splits[i],
        "given": ev.classes[given] if given < len(ev.classes) else given,
        "likely": ev.classes[likely] if likely < len(ev.classes) else likely,
        "self_confidence": json_value(p[i, given]),
        "ambiguous": bool(ev.ambiguous[i]),
    }


# --- near-duplicates ----------------------------------------------------------------------------------------


def near_duplicate_pairs(ev: Evidence, ratio: float = NEAR_DUP_RATIO) -> pd.DataFrame:
    """Pairs (i < j, positions in ``ev``) closer than ``ratio`` x the median nearest-neighbour distance in
    ``ev.features`` (cleanlab Datalab's near_duplicate rule), exact copies (same content hash) left out.
    Columns: i, j, distance, ratio (distance / median NN distance). Costs one k-NN search (k = 5)."""
    dist, ind = ev.neighbours()
    dist, ind = dist[:, 1:6], ind[:, 1:6]  # column 0 is the sample itself (or an exact copy of it)
    same = ev.hashes[ind] == ev.hashes[:, None]
    nn = np.where(same, np.inf, dist).min(1)
    scale = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 0.0
    if scale <= 0:
        return pd.DataFrame(columns=["i", "j", "distance", "ratio"])
    close = (dist < ratio * scale) & ~same
    i, c = np.nonzero(close)
    j = ind[i, c]
    pairs = pd.DataFrame({"i": np.minimum(i, j), "j": np.maximum(i, j), "distance": dist[i, c]})
    pairs = pairs.drop_duplicates(["i", "j"]).sort_values("distance", kind="stable").reset_index(drop=True)
    pairs["ratio"] = pairs["distance"] / scale
    return pairs


def pair_items(ev: Evidence, pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows for near-duplicate pairs: both ids and splits, the distance as a share of the median."""
    return [
        {
            "a": ev.ids[i],
            "a_split": ev.splits[i],
            "b": ev.ids[j],
            "b_split": ev.splits[j],
            "distance_vs_median_nn": round(float(r), 4),
        }
        for i, j, r in zip(pairs["i"], pairs["j"], pairs["ratio"])
    ]


def near_duplicates(ev: Evidence, cap: int = 10, warn: float = NEAR_DUP_WARN) -> Finding:
    """Near-duplicate pairs inside one split (:func:`near_duplicate_pairs`); WARN when the samples in such pairs
    exceed ``warn`` of all. Items: one per pair. Rule: Recipe §1 (duplicates); cleanlab's near_duplicate rule."""
    pairs = near_duplicate_pairs(ev)
    within = pairs[ev.splits[pairs["i"].to_numpy(np.int64)] == ev.splits[pairs["j"].to_numpy(np.int64)]]
    n_samples = len(set(within["i"]) | set(within["j"]))
    share = n_samples / len(ev.labels)
    listing = names((f"{ev.ids[i]} ≈ {ev.ids[j]} ({ev.splits[i]})" for i, j in zip(within["i"], within["j"])), cap)
    observed = (
        f"{plural(len(within), 'near-duplicate pair')} inside a split ({n_samples} samples, {100 * share:.1f}%; "
        f"closer than {NEAR_DUP_RATIO} x the median nearest-neighbour distance{ev.subsampled}): {listing}"
        if len(within)
        else f"no near-duplicates inside a split (none closer than {NEAR_DUP_RATIO} x the median "
        f"nearest-neighbour distance{ev.subsampled})"
    )
    return CheckBuilder("near_duplicates", "no two samples of a split are near-identical copies")(
        WARN if share >= warn else PASS,
        observed,
        f"under {100 * warn:.0f}% of samples in near-duplicate pairs",
        ADVICE["near_duplicates"],
        items=pair_items(ev, within) if share >= warn else [],
        metrics={"data/n_near_duplicate_pairs": len(within)},
    )


# --- outliers -----------------------------------------------------------------------------------------------


def outliers(ev: Evidence, k: float = 6.0, cap: int = 10, warn: float = OUTLIER_WARN) -> Finding:
    """cleanlab ``OutOfDistribution`` scores (mean distance to the ``OUTLIER_NEIGHBOURS`` nearest neighbours,
    mapped to (0, 1], low = atypical) on ``ev.features``; a sample whose log mean distance lies beyond ``k`` robust
    SDs above the median is named, most atypical first; WARN when they exceed ``warn`` of the samples (a few
    atypical samples are the tail of any real dataset). Items: id, split, score, robust_z."""
    from cleanlab.outlier import OutOfDistribution

    n = len(ev.features)
    # the shared euclidean graph: cleanlab's default search took 6 s on 10,000 samples of 32 components. Each
    # sample is its own first neighbour at distance 0 there, so every mean distance covers k-1 neighbours
    ood = OutOfDistribution({"knn": _Precomputed(ev)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = _quiet(lambda: ood.fit_score(features=ev.features))  # float64, as fitted: sklearn's fast k-NN path
    # score = exp(-d / scale) for the mean neighbour distance d; judged on log d, since distances are positive and
    # right-skewed (on d itself, clean breast-cancer rows reached 9 beyond 6 robust SDs)
    d = -np.log(np.clip(scores, 1e-300, None))
    atyp = np.log(np.clip(d, np.min(d[d > 0]) if (d > 0).any() else 1e-300, None))
    b = robust_bounds(atyp, k)
    z = b.z(atyp) if b is not None else np.zeros(n)
    out = np.flatnonzero(z > k)
    out = out[np.argsort(-z[out], kind="stable")]
    share = len(out) / n
    items = [{"id": ev.ids[i], "split": ev.splits[i], "score": float(scores[i]), "robust_z": float(z[i])} for i in out]
    observed = (
        f"{plural(len(out), 'sample')} ({100 * share:.2f}%) far from every other (cleanlab OutOfDistribution "
        f"score beyond {fmt(k)} robust SDs{ev.subsampled}), most atypical first: "
        + names((f"{i['id']} ({i['split']}, z {i['robust_z']:.1f})" for i in items), cap)
        if len(out)
        else f"no sample beyond {fmt(k)} robust SDs of the typical distance to its neighbours{ev.subsampled}"
    )
    return CheckBuilder("outliers", "no sample lies far from all the others (cleanlab OutOfDistribution)")(
        WARN if share >= warn else PASS,
        observed,
        f"under {100 * warn:.0f}% of samples beyond {fmt(k)} robust SDs",
        ADVICE["outliers"],
        items=items if share >= warn else [],
        metrics={"data/n_outliers_knn": len(out)},
    )


class _Precomputed:
    """The k-NN graph of ``ev.neighbours()`` behind the two calls cleanlab's ``OutOfDistribution`` makes on a
    fitted estimator (``n_neighbors``, ``kneighbors(features)``), so the outlier check costs no search of its own
    (cleanlab queries twice)."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.n_neighbors = ev.neighbours()[0].shape[1]
        self.metric = "euclidean"

    def kneighbors(self, X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if X is not None and X is not self.ev.features:
            raise ValueError("the precomputed neighbour graph answers only for the evidence's own features")
        return self.ev.neighbours()


def _quiet(fn):
    """Run ``fn`` with its prints to stdout swallowed (cleanlab's OutOfDistribution announces its fitting)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def label_checks(m: Manifest, cfg: RecipeConfig, ev: Evidence | None) -> list[Finding]:
    """The checks of this module that apply to ``m``: label_issues (classification with probabilities),
    near_duplicates (images), outliers (all); none when ``ev`` is None (see :func:`evidence`)."""
    if ev is None:
        return []
    ic = cfg.stages.inspect
    found = []
    if ev.pred_probs is not None:
        found.append(label_issues(ev, ic.max_listed))
    if m.image_mode is not None:
        found.append(near_duplicates(ev, ic.max_listed))
    found.append(outliers(ev, ic.outlier_mad, ic.max_listed))
    return found
