"""Stage 1's checks on hand-made manifests: each finds its problem, names every offender, and passes clean data."""

from __future__ import annotations

import numpy as np
import pytest

from recipe.checks import data as C
from recipe.checks.base import names, robust_bounds
from recipe.config import RecipeConfig
from recipe.report import Verdict

from .factories import image_rows, make

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL


def _set(rows, i, **values):
    rows[i] = {**rows[i], **values}
    return rows


# --- robust bounds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "k", "outside"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], 3.0, []),
        ([1.0, 2.0, 3.0, 4.0, 100.0], 6.0, [100.0]),  # one wild value cannot widen the range meant to catch it
        ([-50.0, 10.0, 11.0, 12.0, 13.0, 14.0], 6.0, [-50.0]),
        ([5.0] * 8 + [5.5, 50.0], 6.0, [50.0]),  # MAD = 0: the mean absolute deviation measures the rest
        ([7.0] * 5, 6.0, []),  # no spread at all: nothing is an outlier
        ([1.0, 2.0, np.nan, 3.0, np.inf], 3.0, [np.inf]),  # bounds from the finite values; inf lies beyond
    ],
)
def test_robust_bounds_flag_only_the_wild_values(values, k, outside):
    b = robust_bounds(values, k)
    x = np.asarray(values)
    assert x[b.outside(x)].tolist() == outside
    assert b.lo <= b.median <= b.hi


def test_robust_bounds_are_median_plus_minus_k_scaled_mad():
    b = robust_bounds([1.0, 2.0, 3.0, 4.0, 5.0], 2.0)
    assert (b.median, b.scale) == (3.0, pytest.approx(1.4826))
    assert (b.lo, b.hi) == (pytest.approx(3 - 2 * 1.4826), pytest.approx(3 + 2 * 1.4826))
    assert b.z([3.0 + 1.4826])[0] == pytest.approx(1.0)
    assert robust_bounds([np.nan], 3.0) is None


def test_names_caps_the_listing():
    assert names(["a", "b", "c"], 2) == "a, b, ... and 1 more"
    assert names(["a"], 0) == "1 items"


# --- readability, nulls, labels, classes --------------------------------------------------------------------


def test_files_readable_fails_naming_every_bad_file_with_its_error():
    rows = image_rows({"a": 6, "b": 6})
    error = "UnidentifiedImageError: cannot identify image file '/data/images/a/001.png'"
    _set(rows, 1, readable=False, hash="", error=error)
    _set(rows, 8, readable=False, hash="", error="OSError: image file is truncated (3 bytes not processed)")
    f = C.files_readable(make(rows))
    assert f.verdict is FAIL
    assert f.check.observed.startswith("2 of 12 files cannot be read: ")
    assert "a/001.png (UnidentifiedImageError: cannot identify image file)" in f.check.observed  # path not repeated
    assert "b/002.png (OSError: image file is truncated" in f.check.observed
    assert [i["id"] for i in f.items] == ["a/001.png", "b/002.png"]
    assert f.items[0]["path"] == "/data/images/a/001.png" and "/data/images/a/001.png" in f.items[0]["error"]
    assert f.metrics == {"data/n_unreadable": 2} and "inspect/problems.json" in f.check.advice


def test_files_readable_caps_the_observed_listing_but_keeps_every_item():
    rows = [{**r, "readable": False, "hash": "", "error": "bad"} for r in image_rows({"a": 15})]
    f = C.files_readable(make(rows), cap=3)
    assert f.check.observed.endswith("... and 12 more") and len(f.items) == 15


def test_clean_files_pass_without_advice():
    f = C.files_readable(make(image_rows({"a": 5, "b": 5})))
    assert (f.verdict, f.check.observed, f.check.advice) == (PASS, "all 10 files decode", "")


@pytest.mark.parametrize(
    ("column", "row", "fragment"),
    [
        ("label", 2, "label: 1 missing (a/002.png)"),
        ("split", 7, "split: 1 missing (b/001.png)"),
        ("path", 0, "path: 1 missing (a/000.png)"),
        ("id", 3, "id: 1 missing (row 3)"),
    ],
)
def test_no_nulls_fails_naming_the_column_and_row(column, row, fragment):
    rows = image_rows({"a": 6, "b": 6})
    rows = _set(rows, row, **{column: None}) if column != "path" else rows
    m = make(rows)
    if column == "path":
        m.df.loc[row, "path"] = None
    f = C.no_nulls(m)
    assert f.verdict is FAIL and fragment in f.check.observed
    assert len(f.items) == 1 and f.items[0]["column"] == column


def test_no_nulls_passes_clean_rows():
    f = C.no_nulls(make(image_rows({"a": 3})))
    assert (f.verdict, f.check.observed) == (PASS, "no nulls in 3 rows")


def test_labels_outside_the_class_set_fail_with_their_ids():
    rows = _set(image_rows({"cat": 4, "dog": 4}), 5, label="dgo")
    f = C.labels_in_class_set(make(rows, classes=["cat", "dog"]))
    assert f.verdict is FAIL and "dog/001.png ('dgo')" in f.check.observed
    assert f.items == [{"id": "dog/001.png", "label": "dgo", "label_idx": None}]


def test_a_class_index_that_names_another_class_fails():
    rows = _set(image_rows({"cat": 4, "dog": 4}), 0, label_idx=1)
    f = C.labels_in_class_set(make(rows))
    assert f.verdict is FAIL and f.items[0]["id"] == "cat/000.png"


def test_labels_in_class_set_ignores_missing_labels_and_passes_clean_ones():
    rows = _set(image_rows({"cat": 4, "dog": 4}), 0, label=None)
    f = C.labels_in_class_set(make(rows, classes=["cat", "dog"]))
    assert (f.verdict, f.check.observed) == (PASS, "all 7 labels are among the 2 classes")


def test_empty_class_folders_fail_naming_the_folders():
    f = C.no_empty_classes(make(image_rows({"a": 4, "b": 4}), empty_classes=["c", "d"]))
    assert f.verdict is FAIL
    assert f.check.observed == "2 empty class folders: /data/images/c, /data/images/d"
    assert f.metrics == {"data/n_empty_classes": 2}


@pytest.mark.parametrize(
    ("counts", "verdict", "observed"),
    [
        ({"a": 5}, FAIL, "1 class: a"),
        ({"a": 5, "b": 5}, PASS, "2 classes: a, b"),
    ],
)
def test_at_least_two_classes(counts, verdict, observed):
    f = C.at_least_two_classes(make(image_rows(counts)))
    assert (f.verdict, f.check.observed) == (verdict, observed)


def test_ignored_files_warn_naming_them():
    f = C.ignored_files(make(image_rows({"a": 3, "b": 3}), ignored_files=["notes.txt", "a/labels.csv"]))
    assert f.verdict is WARN and f.check.observed == "2 files skipped: notes.txt, a/labels.csv"


# --- shapes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("odd", "image_size", "verdict", "fragments"),
    [
        ({}, None, PASS, ["all 10 images are 8x8", "1 channel"]),
        ({"height": 12, "width": 9}, None, FAIL, ["2 sizes", "8x8 (9), 12x9 (1)", "not 8x8: a/003.png (12x9)"]),
        ({"height": 12, "width": 9}, 16, PASS, ["2 source sizes", "all resized to 16x16"]),
        (
            {"channels": 3, "mode": "RGB"},
            None,
            WARN,
            ["channels vary (1: 9, 3: 1)", "converted to L", "not 1-channel: a/003.png (RGB)"],
        ),
    ],
)
def test_consistent_shapes(odd, image_size, verdict, fragments):
    rows = _set(image_rows({"a": 5, "b": 5}), 3, **odd)
    f = C.consistent_shapes(make(rows, image_size=image_size))
    assert f.verdict is verdict
    for text in fragments:
        assert text in f.check.observed
    assert bool(f.items) == (verdict is not PASS)


def test_consistent_shapes_ignores_unreadable_files():
    rows = _set(image_rows({"a": 5}), 0, readable=False, height=None, width=None, channels=None)
    assert C.consistent_shapes(make(rows)).verdict is PASS


# --- splits and balance -------------------------------------------------------------------------------------


def test_an_empty_split_fails_and_reports_the_sizes():
    f = C.split_sizes(make(image_rows({"a": {"train": 5, "test": 2}, "b": {"train": 5, "test": 2}})))
    assert f.verdict is FAIL and f.check.observed.startswith("usable samples: train 10, val 0, test 4")
    assert {"split": "val", "problem": "empty"} in f.items
    assert f.metrics == {"data/n_train": 10, "data/n_val": 0, "data/n_test": 4}


def test_no_test_split_is_fine_when_none_is_asked_for():
    m = make(image_rows({"a": {"train": 5, "val": 2}, "b": {"train": 5, "val": 2}}))
    assert C.split_sizes(m, need_test=False).verdict is PASS
    assert C.split_sizes(m, need_test=True).verdict is FAIL


def test_a_class_missing_from_a_held_out_split_warns():
    m = make(image_rows({"a": 10, "tiny": {"train": 2}}))
    f = C.split_sizes(m)
    assert f.verdict is WARN
    assert "classes absent from val: tiny" in f.check.observed and "classes absent from test: tiny" in f.check.observed


@pytest.mark.parametrize(
    ("counts", "ratio", "verdict", "fragment"),
    [
        ({"a": 10, "b": 8}, 5.0, PASS, "largest / smallest = 1.25: 'a' (10) vs 'b' (8)"),
        ({"a": 30, "b": 2}, 5.0, WARN, "largest / smallest = 15: 'a' (30) vs 'b' (2)"),
        ({"a": 30, "b": 2}, 20.0, PASS, "= 15"),
        ({"a": 30, "b": 4, "c": 3}, 5.0, WARN, "below 1/5 of the largest: 'b' (4), 'c' (3)"),
    ],
)
def test_class_balance(counts, ratio, verdict, fragment):
    f = C.class_balance(make(image_rows(counts)), ratio)
    assert f.verdict is verdict and fragment in f.check.observed
    assert f.metrics["data/imbalance_ratio"] == pytest.approx(max(counts.values()) / min(counts.values()))
    assert f.metrics["data/n_classes"] == len(counts)


def test_class_balance_counts_only_readable_samples():
    rows = image_rows({"a": 10, "b": 10})
    for i in range(10, 18):
        _set(rows, i, readable=False)
    f = C.class_balance(make(rows), 4.0)
    assert f.verdict is WARN and "'a' (10) vs 'b' (2)" in f.check.observed


# --- outliers -----------------------------------------------------------------------------------------------


def test_a_blank_image_is_listed_as_an_outlier_along_both_pixel_statistics():
    rows = _set(image_rows({"a": 20, "b": 20}), 25, mean=0.0, std=0.0)
    f = C.pixel_stats_outliers(make(rows), k=6.0)
    assert f.verdict is WARN
    assert f.check.observed.startswith("1 sample beyond median ± 6 robust SD: b/005.png (")
    assert {i["property"] for i in f.items} == {"mean", "std"}
    assert all(i["id"] == "b/005.png" and i["value"] == 0.0 and i["z"] < -6 for i in f.items)
    assert f.metrics["data/n_outliers"] == 1
    assert "mean in [" in f.check.expected and "std in [" in f.check.expected


def test_outliers_are_listed_most_extreme_first_and_capped():
    rows = image_rows({"a": 40})
    for i, v in [(1, 0.9), (2, 2.0), (3, 1.2)]:
        _set(rows, i, mean=v)
    f = C.pixel_stats_outliers(make(rows), k=6.0, cap=2)
    assert [i["id"] for i in f.items] == ["a/002.png", "a/003.png", "a/001.png"]
    assert f.check.observed.endswith("... and 1 more")


def test_sizes_become_outlier_properties_when_they_vary():
    rows = _set(image_rows({"a": 30}), 4, height=400, width=20)
    m = make(rows, image_size=16)
    assert set(C.property_bounds(m, 6.0)) == {"mean", "std", "pixels", "aspect"}
    f = C.pixel_stats_outliers(m, k=6.0)
    assert f.verdict is WARN and {i["property"] for i in f.items} == {"pixels", "aspect"}
    assert set(C.property_bounds(make(image_rows({"a": 30})), 6.0)) == {"mean", "std"}


def test_no_outliers_pass_and_report_train_pixel_statistics():
    f = C.pixel_stats_outliers(make(image_rows({"a": 20, "b": 20})))
    assert f.verdict is PASS and f.check.observed.startswith("no outliers among 40 images")
    assert 0.3 <= f.metrics["data/pixel_mean"] <= 0.37 and 0.25 <= f.metrics["data/pixel_std"] <= 0.3


# --- duplicates ---------------------------------------------------------------------------------------------


def _dups(rows):
    return {f.name: f for f in C.duplicates(make(rows))}


def test_a_copy_inside_one_split_warns_naming_both_files():
    rows = image_rows({"a": {"train": 6, "val": 2}})
    _set(rows, 4, hash=rows[1]["hash"])
    d = _dups(rows)
    f = d["duplicates_within_split"]
    assert f.verdict is WARN and "train: a/001.png = a/004.png" in f.check.observed
    assert f.metrics == {"data/n_duplicates_within": 1}
    assert d["no_leakage_across_splits"].verdict is PASS and d["duplicate_labels_agree"].verdict is PASS


def test_a_copy_in_another_split_fails_as_leakage_naming_the_pair():
    rows = image_rows({"a": {"train": 6, "val": 2, "test": 2}})
    _set(rows, 7, hash=rows[2]["hash"])  # a val file identical to a train file
    f = _dups(rows)["no_leakage_across_splits"]
    assert f.verdict is FAIL
    assert "2 files in 1 group shared across splits: a/002.png (train) = a/007.png (val)" == f.check.observed
    assert f.items[0]["members"] == [
        {"id": "a/002.png", "split": "train", "label": "a"},
        {"id": "a/007.png", "split": "val", "label": "a"},
    ]
    assert f.metrics == {"data/n_duplicates_across": 2}


def test_identical_samples_with_different_labels_warn():
    rows = image_rows({"cat": 4, "dog": 4})
    _set(rows, 5, hash=rows[0]["hash"], split=rows[0]["split"])
    f = _dups(rows)["duplicate_labels_agree"]
    assert f.verdict is WARN and "cat/000.png ('cat') vs dog/001.png ('dog')" in f.check.observed


def test_unreadable_files_are_not_duplicates_of_each_other():
    rows = image_rows({"a": 8})
    for i in (0, 6):
        _set(rows, i, readable=False, hash="")
    assert all(f.verdict is PASS for f in C.duplicates(make(rows)))


def test_regression_data_has_no_label_agreement_check():
    rows = [{"label": float(i), "split": "train"} for i in range(5)]
    m = make(rows, task="regression", image_mode=None, source="csv")
    assert [f.name for f in C.duplicates(m)] == ["duplicates_within_split", "no_leakage_across_splits"]


# --- all of them --------------------------------------------------------------------------------------------


def test_inspect_manifest_runs_the_image_checks_in_reading_order_and_collects_metrics():
    report = C.inspect_manifest(make(image_rows({"a": 20, "b": 20})), RecipeConfig())
    assert [c.name for c in report.checks] == [
        "files_readable",
        "no_nulls",
        "labels_in_class_set",
        "at_least_two_classes",
        "label_names_distinct",
        "no_empty_classes",
        "ignored_files",
        "folder_layout",
        "image_decoding",
        "channel_order",
        "consistent_shapes",
        "split_sizes",
        "class_balance",
        "pixel_stats_outliers",
        "duplicates_within_split",
        "no_leakage_across_splits",
        "duplicate_labels_agree",
    ]
    assert all(c.verdict is PASS for c in report.checks)
    assert report.problems() == {}
    assert {
        "data/n_samples",
        "data/n_train",
        "data/n_val",
        "data/n_test",
        "data/n_classes",
        "data/imbalance_ratio",
        "data/n_unreadable",
        "data/n_duplicates_within",
        "data/n_duplicates_across",
        "data/n_outliers",
        "data/pixel_mean",
        "data/pixel_std",
    } <= set(report.metrics)
    assert report.metrics["data/n_samples"] == 40


def test_inspect_manifest_reports_every_problem_in_one_pass():
    rows = image_rows({"a": 20, "b": 20, "c": {"train": 2}})
    _set(rows, 0, readable=False, hash="", error="broken")
    _set(rows, 1, readable=False, hash="", error="broken too")
    _set(rows, 17, hash=rows[3]["hash"])  # a/017.png (test) is a copy of a/003.png (train)
    m = make(rows, empty_classes=["d"], ignored_files=["x.txt"])
    report = C.inspect_manifest(m, RecipeConfig())
    verdicts = {c.name: c.verdict for c in report.checks if c.verdict is not PASS}
    assert verdicts == {
        "files_readable": FAIL,
        "no_empty_classes": FAIL,
        "ignored_files": WARN,
        "split_sizes": WARN,
        "class_balance": WARN,
        "no_leakage_across_splits": FAIL,
    }
    problems = report.problems()
    assert [i["id"] for i in problems["files_readable"]["items"]] == ["a/000.png", "a/001.png"]
    assert problems["no_empty_classes"]["items"] == [{"folder": "/data/images/d"}]
    assert report["no_leakage_across_splits"].metrics["data/n_duplicates_across"] == 2
    with pytest.raises(KeyError, match="no check named 'nope'; checks: files_readable, no_nulls"):
        report["nope"]


def test_a_manifest_without_one_readable_file_is_still_reported_in_full():
    rows = [
        {
            **r,
            "readable": False,
            "hash": "",
            "error": "truncated",
            "height": None,
            "width": None,
            "channels": None,
            "mean": np.nan,
            "std": np.nan,
        }
        for r in image_rows({"a": 5, "b": 5})
    ]
    report = C.inspect_manifest(make(rows), RecipeConfig())
    checks = {c.name: c for c in report.checks}
    assert {n for n, c in checks.items() if c.verdict is not PASS} == {"files_readable", "split_sizes"}
    assert checks["split_sizes"].observed == "usable samples: train 0, val 0, test 0"
    assert checks["pixel_stats_outliers"].observed == "no readable images to compare"
    assert report.metrics["data/n_unreadable"] == 10
