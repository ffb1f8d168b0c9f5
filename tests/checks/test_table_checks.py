"""The CSV checks: column types, missing values, constant columns, val/test ranges, the target."""

from __future__ import annotations

import numpy as np
import pytest

from recipe.checks import tables as T
from recipe.checks.data import inspect_manifest
from recipe.config import RecipeConfig
from recipe.report import Verdict

from .factories import table

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
N = 20


def _clean(**extra):
    rng = np.random.default_rng(0)
    return {"x1": rng.normal(size=N).tolist(), "x2": rng.uniform(0, 1, N).tolist(), **extra}


def _labels():
    return [str(i % 2) for i in range(N)]


def test_feature_types_report_how_columns_were_encoded():
    m = table(_clean(**{"colour=red": [1.0, 0.0] * 10, "colour=blue": [0.0, 1.0] * 10}), _labels())
    f = T.feature_types(m)
    assert f.verdict is PASS
    assert f.check.observed == "2 numeric columns; 1 text column one-hot encoded into 2: colour (2)"
    assert f.metrics == {"data/n_features": 4, "data/n_bad_columns": 0, "data/n_dropped_columns": 0}


def test_unusable_columns_fail_with_the_reason():
    why = "text with 20 distinct values (e.g. 'a', 'b', 'c'); one-hot encoding stops at 20: remove the column"
    f = T.feature_types(table(_clean(), _labels(), bad_columns={"name": why}))
    assert f.verdict is FAIL
    assert "unusable: name (text with 20 distinct values (e.g. 'a', 'b', 'c'))" in f.check.observed
    assert f.items == [{"column": "name", "reason": why}]


def test_missing_values_warn_naming_column_and_rows_and_what_is_done():
    x2 = _clean()["x2"]
    x2[3] = x2[17] = np.nan
    f = T.feature_nulls(table(_clean(x2=x2), _labels()))
    assert f.verdict is WARN  # filled with the train median by the loader: worth a look, not a stop
    assert f.check.observed == "2 missing values: x2: 2 of 20 (10.0%), rows row:3, row:17"
    assert "filled with its column's train median" in f.check.advice
    assert [(i["column"], i["id"], i["problem"]) for i in f.items] == [
        ("x2", "row:3", "missing"),
        ("x2", "row:17", "missing"),
    ]
    assert f.metrics == {"data/n_missing_values": 2, "data/n_infinite_values": 0, "data/max_null_fraction": 0.1}


def test_infinite_values_fail_naming_column_and_rows():
    x2 = _clean()["x2"]
    x2[3] = x2[17] = np.inf
    f = T.feature_nulls(table(_clean(x2=x2), _labels()))
    assert f.verdict is FAIL
    assert f.check.observed == "2 infinite values: x2: 2 of 20 (10.0%, infinite), rows row:3, row:17"
    assert "infinite values cannot be trained on" in f.check.advice


def test_no_missing_values_pass():
    f = T.feature_nulls(table(_clean(), _labels()))
    assert (f.verdict, f.check.observed) == (PASS, "no missing values in 2 columns")


def test_a_column_constant_in_train_warns_when_val_test_differ_beyond_chance():
    unseen = [0.0] * 12 + [1.0] * 8  # a category that only val/test hold, in all 8 of their rows
    f = T.constant_features(table(_clean(const=[5.0] * N, unseen=unseen), _labels()))
    assert f.verdict is WARN
    assert f.check.observed == (
        "2 constant columns in train: const (= 5.0), unseen (= 0.0; 8 val/test rows differ); "
        "differing in val/test more often than chance (> 5 rows): unseen"
    )
    assert f.metrics == {"data/n_constant_features": 2, "data/n_unseen_in_train": 1}


def test_a_column_constant_everywhere_or_differing_by_chance_passes():
    rare = [0.0] * 12 + [1.0] + [0.0] * 7  # one val row differs: 12 train rows cannot rule out chance
    f = T.constant_features(table(_clean(const=[5.0] * N, rare=rare), _labels()))
    assert f.verdict is PASS
    assert "const (= 5.0), rare (= 0.0; 1 val/test rows differ)" in f.check.observed


@pytest.mark.parametrize(("n_train", "n_held", "bound"), [(12, 8, 6), (1257, 540, 6), (10_000, 10, 1), (200, 100, 6)])
def test_chance_outside_is_the_binomial_bound_of_exchangeable_data(n_train, n_held, bound):
    assert T.chance_outside(n_train, n_held, alpha=0.01 / 64) == bound


@pytest.mark.parametrize(
    ("row", "value", "verdict"),
    [
        (15, 100.0, WARN),  # val, far above train's 0..1
        (19, -3.0, WARN),  # test, far below
        (15, 1.3, PASS),  # beyond train's max, but by less than half its range
        (15, 1.8, PASS),  # beyond half a range, under two: once is chance
        (2, 100.0, PASS),  # train rows define the range; they are never flagged
    ],
)
def test_held_out_values_far_outside_the_train_range_warn(row, value, verdict):
    x2 = [float(i % 2) for i in range(12)] + [0.5] * 8  # train (rows 0-11) spans 0..1
    x2[row] = value
    f = T.feature_ranges(table(_clean(x2=x2), _labels()), margin=0.5)
    assert f.verdict is verdict
    if verdict is WARN:
        split = "val" if row < 16 else "test"
        assert f"x2 = {value:.4g} (row:{row}, {split}; train 0..1)" in f.check.observed
        assert f.items[0]["id"] == f"row:{row}" and f.metrics == {"data/n_out_of_range": 1}


def test_many_held_out_values_beyond_half_a_range_warn_though_none_is_far():
    x2 = [float(i % 2) for i in range(12)] + [1.8] * 6 + [0.5] * 2  # 6 > the chance bound of 4 (12 train rows)
    f = T.feature_ranges(table(_clean(x2=x2), _labels()), margin=0.5)
    assert f.verdict is WARN and f.metrics == {"data/n_out_of_range": 6}
    assert "6 val/test values in 1 column outside the train range beyond chance" in f.check.observed


def test_classification_target_warns_when_a_class_has_no_training_samples():
    labels = _labels()
    labels[19] = "2"  # the only "2" is in test
    f = T.target_values(table(_clean(), labels))
    assert f.verdict is WARN and "absent from train: 2" in f.check.observed
    assert "3 classes: '0' (10), '1' (9), '2' (1)" in f.check.observed


@pytest.mark.parametrize(("value", "verdict"), [(10.0, PASS), (1000.0, WARN)])
def test_regression_target_outside_the_train_range_warns(value, verdict):
    y = np.array([20.0 * (i % 2) for i in range(12)] + [10.0] * 8)  # train (rows 0-11) spans 0..20
    y[18] = value
    f = T.target_values(table(_clean(), y.tolist(), task="regression"))
    assert f.verdict is verdict
    assert f.check.observed.startswith("train target 0..20 (mean 10, std 10; the model trains on it standardised")
    assert f.metrics["data/target_mean"] == pytest.approx(y[:12].mean())
    if verdict is WARN:
        assert "row:18 (1000, test)" in f.check.observed


def test_inspect_manifest_adds_the_table_checks_for_csv_data():
    x2 = _clean()["x2"]
    x2[4] = np.nan
    report = inspect_manifest(table(_clean(x2=x2, const=[1.0] * N), _labels()), RecipeConfig())
    names = [c.name for c in report.checks]
    assert names[-5:] == ["feature_types", "feature_nulls", "constant_features", "feature_ranges", "target_values"]
    assert "files_readable" not in names and "pixel_stats_outliers" not in names
    assert {c.name: c.verdict for c in report.checks if c.verdict is not PASS} == {
        "feature_nulls": WARN,  # filled with the train median; the constant column is constant everywhere: PASS
    }
    assert report.metrics["data/n_unreadable"] == 1 and report.metrics["data/n_features"] == 3


def test_table_checks_refuse_image_manifests():
    from .factories import image_rows, make

    with pytest.raises(ValueError, match="imagefolder data has no feature table"):
        T.feature_nulls(make(image_rows({"a": 3})))
