"""Sample-level diagnosis, each fault rebuilt as a small input: flipped labels (cleanlab), a leaking column, an id
column monotone with the target, a regression target with a unit slip, near-duplicates across splits; and clean
controls that raise no WARN from these checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine

from recipe.checks import labels as L
from recipe.checks import leakage as K
from recipe.checks import tables as T
from recipe.config import RecipeConfig
from recipe.data.sources import ArrayReader
from recipe.report import Verdict

from .factories import make, table

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
CFG = RecipeConfig()


def _splits(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return list(rng.choice(["train", "val", "test"], n, p=[0.7, 0.15, 0.15]))


def _digits_manifest(n: int = 600, flip: float = 0.0, copies: int = 0, seed: int = 0):
    """An image manifest of ``n`` digits (8x8 uint8 pixels through an ArrayReader), ``flip`` of the labels
    replaced by another class, and ``copies`` val images that are slightly brightened copies of train images."""
    d = load_digits()
    rng = np.random.default_rng(seed)
    pixels = (d.images[:n] * 255 / 16).astype(np.uint8)
    y = d.target[:n].copy()
    flipped = rng.choice(n, int(flip * n), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    splits = _splits(n, seed)
    if copies:
        train = [i for i in range(n) if splits[i] == "train"][:copies]
        near = np.clip(pixels[train].astype(int) + 3, 0, 255).astype(np.uint8)  # brightened: a new hash
        pixels = np.concatenate([pixels, near])
        y = np.concatenate([y, y[train]])
        splits += ["val"] * copies
    rows = [{"id": f"{c}/{i:04d}.png", "label": str(c), "split": s} for i, (c, s) in enumerate(zip(y, splits))]
    m = make(rows, classes=[str(c) for c in range(10)], reader=ArrayReader(pixels))
    return m, {f"{y[i]}/{i:04d}.png" for i in flipped}


def _by_name(found):
    return {f.name: f for f in found}


def test_flipped_labels_are_named_with_given_and_likely_label_and_a_noise_rate():
    m, flipped = _digits_manifest(flip=0.10)
    f = L.label_issues(L.evidence(m))
    assert f.verdict is WARN
    assert "estimated" in f.check.observed and "% of labels wrong" in f.check.observed
    assert 0.06 <= f.metrics["data/label_noise_rate"] <= 0.16
    named = {i["id"] for i in f.items}
    assert len(named & flipped) >= 0.7 * len(flipped)  # most flipped labels are found
    first = f.items[0]
    assert first["id"] in flipped and first["given"] != first["likely"]
    assert f"{first['id']} ({first['split']}): given {first['given']}, likely {first['likely']}" in f.check.observed


def test_clean_digits_raise_no_warning_from_the_new_checks():
    m, _ = _digits_manifest()
    ev = L.evidence(m)
    found = L.label_checks(m, CFG, ev) + K.leakage_checks(m, CFG, ev)
    assert {f.name for f in found} == {"label_issues", "near_duplicates", "outliers", "near_duplicates_across_splits"}
    assert [f.name for f in found if f.verdict is not PASS] == []


def test_a_small_clean_set_of_separable_images_raises_no_label_warning(tmp_path, monkeypatch):
    """A new user's folder: 40 16-bit 16x16 PNGs in two classes that a linear model separates perfectly (class b is
    brighter, more so in its top half) over sensor noise, decoded the real way. No label is wrong. Whitened
    principal components gave the noise components the weight of the few that carry the signal, and named clean
    files as mislabelled (WARN, 5% of labels)."""
    from PIL import Image

    from recipe.data import build_manifest

    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    rng = np.random.default_rng(0)
    for c, level in (("a", 30000), ("b", 32000)):
        (tmp_path / "i16" / c).mkdir(parents=True)
        for i in range(20):
            arr = rng.normal(level, 500, (16, 16)).clip(0, 65535).astype(np.uint16)
            if c == "b":
                arr[:8] += 2000
            Image.fromarray(arr).save(tmp_path / "i16" / c / f"{i}.png")
    cfg = RecipeConfig(name="i16", data={"source": "imagefolder", "root": tmp_path / "i16"})
    f = L.label_issues(L.evidence(build_manifest(cfg)))
    assert f.verdict is PASS, f.check.observed
    assert f.metrics["data/label_noise_rate"] == 0.0


def test_near_duplicates_across_splits_fail_naming_both_files():
    m, _ = _digits_manifest(copies=12)
    f = K.near_duplicates_across_splits(L.evidence(m))
    assert f.verdict is FAIL
    assert "near-duplicate pair" in f.check.observed and "across splits" in f.check.observed
    pair = f.items[0]
    assert {pair["a_split"], pair["b_split"]} == {"train", "val"}
    assert f"{pair['a']} ({pair['a_split']}) ≈ {pair['b']} ({pair['b_split']})" in f.check.observed
    assert len(f.items) >= 12


def _weak_table(extra=None, sort=False, rows=None):
    """Diabetes' ten features with a binary target (above the median), which they predict only moderately."""
    d = load_diabetes()
    x, y = d.data, (d.target > np.median(d.target)).astype(int)
    order = np.argsort(y, kind="stable") if sort else np.arange(len(y))
    x, y = x[order], y[order]
    feats = {name: x[:, j].tolist() for j, name in enumerate(d.feature_names)}
    feats.update(extra(y) if extra else {})
    return table(feats, [str(v) for v in y], splits=_splits(len(y)))


def test_a_column_that_leaks_the_target_fails_naming_it():
    rng = np.random.default_rng(0)
    m = _weak_table(lambda y: {"followup_code": (3 * y + rng.normal(0, 0.3, len(y))).tolist()})
    f = K.single_column_leak(m, L.evidence(m))
    assert f.verdict is FAIL
    assert "followup_code alone 1.00 vs" in f.check.observed
    assert "a copy or encoding of the target" in f.check.observed
    assert f.items[0]["column"] == "followup_code"


def test_an_id_column_monotone_with_the_target_is_a_row_order_leak():
    m = _weak_table(lambda y: {"patient_id": list(range(1000, 1000 + len(y)))}, sort=True)
    ev = L.evidence(m)
    f = K.identifier_columns(m, ev)
    assert f.verdict is FAIL
    assert f.check.observed.startswith("row-order leak: 1 identifier-like column predict the target: patient_id")
    assert "unique consecutive integers 1000..1441, increasing with row order" in f.check.observed
    assert "the rows are ordered by the target" in f.check.observed
    assert K.single_column_leak(m, ev).verdict is PASS  # the identifier is judged once, by identifier_columns


def test_an_id_column_in_shuffled_rows_warns_as_no_signal():
    m = _weak_table(lambda y: {"patient_id": list(range(len(y)))})
    f = K.identifier_columns(m, L.evidence(m))
    assert f.verdict is WARN
    assert "1 identifier-like column, below the leak bar (skill < 0.5): patient_id" in f.check.observed


def _regression(targets, feats):
    return table(feats, list(targets), splits=_splits(len(targets)), task="regression")


def test_a_regression_target_with_a_unit_slip_fails_naming_rows_and_factor():
    d = load_diabetes()
    y = d.target.copy()
    slipped = [3, 50, 120, 200, 310, 400]
    y[slipped] *= 100
    m = _regression(y, {n: d.data[:, j].tolist() for j, n in enumerate(d.feature_names)})
    f = T.target_outliers(m)
    assert f.verdict is FAIL
    assert f.check.observed.startswith("6 of 442 targets are gross outliers")
    assert "they are ~100x the median, a power of ten: a unit slip" in f.check.observed
    assert {i["id"] for i in f.items} == {f"row:{r}" for r in slipped}
    assert "data.target_scaling=robust" in f.check.advice
    assert f.metrics["data/target_outlier_variance_share"] > 0.9
    from recipe.checks.data import inspect_manifest

    assert inspect_manifest(m, CFG)["target_outliers"].verdict is FAIL  # wired into inspect's table checks


def test_extreme_targets_that_continue_the_tail_warn_and_isolated_ones_fail():
    # ames-like sale prices: log-normal with a heavy lower tail reaching 1/4.5 of the median, and two sales at
    # 1/12 of it (2.7x below the next cheapest): real cheap houses, not a unit slip
    rng = np.random.default_rng(0)
    bulk = np.exp(rng.normal(np.log(160_000), 0.3, 600))
    tail = 160_000 / np.linspace(2.2, 4.6, 12)
    y = np.concatenate([bulk, tail, [12_789, 13_100]])
    feats = {"x": rng.normal(size=len(y)).tolist()}
    f = T.target_outliers(_regression(y, feats))
    assert f.verdict is WARN and f.check.observed.startswith("heavy tail:"), f.check.observed
    assert {i["value"] for i in f.items} >= {12_789.0, 13_100.0}
    y[:2] = [1_300.0, 1_600.0]  # the same table with two prices a factor 10 below everything else: isolated
    f = T.target_outliers(_regression(y, feats))
    assert f.verdict is FAIL and f.check.observed.startswith("2 of 614 targets are gross outliers"), f.check.observed


def test_a_heavy_tailed_target_warns_and_a_clean_one_passes():
    rng = np.random.default_rng(0)
    feats = {"x": rng.normal(size=400).tolist()}
    tail = rng.standard_t(1.5, 400)  # negative values too: judged on the linear scale
    assert T.target_outliers(_regression(tail, feats)).verdict in (WARN, FAIL)
    f = T.target_outliers(_regression(load_diabetes().target[:400], feats))
    assert f.verdict is PASS and f.check.observed.startswith("all 400 targets within 6 robust SDs")


@pytest.mark.parametrize("loader", [load_wine, load_breast_cancer])
def test_clean_tables_raise_no_warning_from_the_new_checks(loader):
    d = loader()
    m = table(
        {n: d.data[:, j].tolist() for j, n in enumerate(d.feature_names)},
        [str(v) for v in d.target],
        splits=_splits(len(d.target)),
    )
    ev = L.evidence(m)
    found = L.label_checks(m, CFG, ev) + K.leakage_checks(m, CFG, ev)
    assert {f.name for f in found} == {"label_issues", "outliers", "single_column_leak", "identifier_columns"}
    assert [(f.name, f.check.observed) for f in found if f.verdict is not PASS] == []


def test_conflicting_duplicate_rows_are_ambiguous_not_wrong_labels():
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] > 0).astype(int)
    x[150:160] = x[140:150]  # ten rows repeat others' features ...
    y[150:160] = 1 - y[140:150]  # ... with the other label
    m = table({f"x{j}": x[:, j].tolist() for j in range(3)}, [str(v) for v in y], splits=_splits(n))
    f = L.label_issues(L.evidence(m), warn=0.0)  # every suspect listed in items
    ambiguous = {i["id"] for i in f.items if i["ambiguous"]}
    assert ambiguous and ambiguous <= {f"row:{r}" for r in range(140, 160)}
    assert "features identical to a row labelled otherwise" in f.check.observed
    assert f.metrics["data/n_label_issues"] == len(f.items) - len(ambiguous)


def test_robust_target_scaling_uses_median_and_iqr(tmp_path):
    import pandas as pd

    from recipe.config import load_config
    from recipe.data import load_data

    d = load_diabetes()
    y = d.target.copy()
    y[:6] *= 100
    csv = tmp_path / "t.csv"
    pd.DataFrame({"bmi": d.data[:, 2], "y": y}).to_csv(csv, index=False)
    over = [f"data.root={csv}", "data.target=y", "data.task=regression"]
    std = load_data(load_config("tabular", overrides=over))
    rob = load_data(load_config("tabular", overrides=[*over, "data.target_scaling=robust"]))
    ty = std.tensors("train")[1].numpy() * std.target_scale + std.target_shift
    q1, q2, q3 = np.percentile(ty, [25, 50, 75])
    assert rob.target_shift == pytest.approx(q2) and rob.target_scale == pytest.approx((q3 - q1) / 1.349)
    assert rob.target_scale < std.target_scale / 5  # the outliers inflate the std, not the IQR
    assert std.target_mean == 0.0 and std.target_std == 1.0
