"""The Great Expectations suite: planned from the data (no GX import), then validated (one GX run)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from recipe.checks import expectations as X
from recipe.checks import tables as T
from recipe.checks.data import inspect_manifest
from recipe.config import RecipeConfig
from recipe.report import Verdict

from .factories import image_rows, make, table


def _by_check(specs):
    out = {}
    for s in specs:
        out.setdefault(s.check, []).append(s)
    return out


def test_the_suite_is_derived_from_the_data():
    rows = image_rows({"a": 20, "b": 10})
    cfg = RecipeConfig()
    specs = X.plan_suite(make(rows), cfg)
    by = _by_check(specs)
    assert by["labels_in_class_set"][0].kwargs == {"column": "label", "value_set": ["a", "b"]}
    assert [s.kwargs for s in by["consistent_shapes"]] == [
        {"column": "height", "value_set": [8]},
        {"column": "width", "value_set": [8]},
        {"column": "channels", "value_set": [1]},
    ]
    assert by["class_balance"][0].kwargs == {"column": "class_count", "min_value": 20 / 5.0}
    mean = next(s for s in by["pixel_stats_outliers"] if s.kwargs["column"] == "mean")
    assert mean.kwargs["min_value"] < 0.30 and mean.kwargs["max_value"] > 0.36
    assert {s.check for s in specs} == {
        "no_nulls",
        "split_sizes",
        "files_readable",
        "labels_in_class_set",
        "at_least_two_classes",
        "class_balance",
        "consistent_shapes",
        "pixel_stats_outliers",
        "duplicates_within_split",
        "no_leakage_across_splits",
        "duplicate_labels_agree",
    }


@pytest.mark.parametrize(
    ("check", "severity"),
    [
        ("files_readable", "critical"),
        ("labels_in_class_set", "critical"),
        ("no_leakage_across_splits", "critical"),
        ("class_balance", "warning"),
        ("pixel_stats_outliers", "warning"),
        ("duplicates_within_split", "warning"),
    ],
)
def test_severity_follows_the_verdict_the_check_gives(check, severity):
    specs = X.plan_suite(make(image_rows({"a": 20, "b": 10})), RecipeConfig())
    assert {s.severity for s in specs if s.check == check} == {severity}


def test_a_declared_resize_drops_the_size_expectations():
    specs = X.plan_suite(make(image_rows({"a": 10}), image_size=32), RecipeConfig())
    assert [s.kwargs["column"] for s in specs if s.check == "consistent_shapes"] == ["channels"]


def test_csv_suites_check_every_feature_and_ranges_come_from_train():
    m = table(
        {"x": [0.0, 10.0] * 6 + [5.0] * 8, "y": list(range(20)), "c": [1.0] * 20}, [str(i % 2) for i in range(20)]
    )
    specs = X.plan_suite(m, RecipeConfig())
    feats = [s for s in specs if s.batch == "features"]
    assert Counter(s.check for s in feats) == {
        "feature_types": 1,
        "feature_nulls": 3,
        "feature_ranges": 2,
        "constant_features": 1,
    }
    x_range = next(s for s in feats if s.check == "feature_ranges" and s.kwargs["column"] == "x")
    assert (x_range.kwargs["min_value"], x_range.kwargs["max_value"]) == (-20.0, 30.0)  # 0..10 ± 2 x 10
    const = next(s for s in feats if s.check == "constant_features")
    # constant in train: other values only in as many rows as chance allows (tables.chance_outside)
    bound = T.chance_outside(12, 8, T.CHANCE_ALPHA / 3)
    assert const.kwargs == {"column": "c", "min_value": 1.0, "max_value": 1.0, "mostly": 1 - bound / 20}


def test_gx_frames_carry_the_derived_columns():
    rows = image_rows({"a": {"train": 4, "val": 2}})
    rows[5] = {**rows[5], "hash": rows[0]["hash"]}  # a/005.png (val) = a/000.png (train)
    rows[3] = {**rows[3], "readable": False, "hash": ""}
    frames = X.gx_frames(make(rows))
    s = frames["samples"]
    assert list(frames) == ["samples"]
    assert s["splits_sharing_content"].tolist()[:3] == [2, 1, 1] and s["splits_sharing_content"].isna()[3]
    assert s["class_count"].tolist() == [5] * 6  # readable samples of the class
    assert s["hash"].isna()[3]  # unreadable rows share no content


def test_summarise_fails_on_critical_and_warns_on_warning_failures():
    crit = {
        "expectation": "expect_column_values_to_be_in_set",
        "column": "readable",
        "check": "files_readable",
        "severity": "critical",
        "unexpected_count": 2,
    }
    warn = {
        "expectation": "expect_column_values_to_be_between",
        "column": "mean",
        "check": "pixel_stats_outliers",
        "severity": "warning",
        "unexpected_count": 1,
    }
    assert X.summarise([], 10).verdict is Verdict.PASS
    assert X.summarise([warn], 10).verdict is Verdict.WARN
    f = X.summarise([warn, crit], 10)
    assert f.verdict is Verdict.FAIL
    assert f.check.observed == (
        "2 of 10 expectations failed: expect_column_values_to_be_between(mean): 1 row unexpected -> "
        "pixel_stats_outliers, expect_column_values_to_be_in_set(readable): 2 rows unexpected -> files_readable"
    )
    assert f.metrics == {"data/gx_expectations": 10, "data/gx_failed_expectations": 2}


@pytest.fixture(scope="module")
def bad_images_validation(tmp_path_factory):
    """One GX run on a manifest with a corrupt file, a leaked copy, a within-split copy, a blank image, a
    tiny class and an odd size."""
    rows = image_rows({"a": 20, "b": 20, "c": {"train": 2}})
    rows[0] = {
        **rows[0],
        "readable": False,
        "hash": "",
        "error": "broken",
        "height": None,
        "width": None,
        "channels": None,
        "mean": np.nan,
        "std": np.nan,
    }
    rows[17] = {**rows[17], "hash": rows[3]["hash"]}  # test copy of a train file
    rows[5] = {**rows[5], "hash": rows[4]["hash"]}  # train copy of a train file
    rows[25] = {**rows[25], "mean": 0.0, "std": 0.0}
    rows[30] = {**rows[30], "height": 9}
    m = make(rows)
    docs = tmp_path_factory.mktemp("gx") / "docs"
    return m, X.validate(m, RecipeConfig(), docs), docs


def test_gx_fails_exactly_the_expectations_behind_the_failing_checks(bad_images_validation):
    m, outcome, _ = bad_images_validation
    report = inspect_manifest(m, RecipeConfig())
    not_passing = {c.name for c in report.checks if c.verdict is not Verdict.PASS}
    assert not_passing == {
        "files_readable",
        "image_decoding",  # the blank image: one value in every pixel
        "consistent_shapes",
        "split_sizes",
        "class_balance",
        "pixel_stats_outliers",
        "duplicates_within_split",
        "no_leakage_across_splits",
    }
    failed = {f["check"] for f in outcome.failed}
    # "class absent from val/test" and "decodes to one value" have no row-level expectation (the blank image's
    # std is also pixel_stats_outliers', which GX backs)
    assert failed == not_passing - {"split_sizes", "image_decoding"}
    assert outcome.finding.verdict is Verdict.FAIL and not outcome.result["success"]
    leak = next(f for f in outcome.failed if f["check"] == "no_leakage_across_splits")
    assert leak["unexpected_count"] == 2
    assert {e["id"] for e in leak["examples"]} == {"a/003.png", "a/017.png"}  # GX names the rows by id
    odd = next(f for f in outcome.failed if f["column"] == "height")
    assert odd["examples"] == [{"id": "b/010.png", "height": 9}]


def test_the_validation_result_is_json_and_data_docs_are_built(bad_images_validation):
    _, outcome, docs = bad_images_validation
    text = json.dumps(outcome.result)
    assert json.loads(text)["statistics"]["evaluated_expectations"] == outcome.n_expectations > 15
    assert (docs / "index.html").is_file()
    pages = [p.name for p in docs.rglob("*.html")]
    assert "samples.html" in pages and len(pages) == 3  # index, suite, validation
    assert not (docs / "static" / "images" / "glossary_scroller.gif").exists()  # unreferenced assets pruned
    assert sum(p.stat().st_size for p in docs.rglob("*") if p.is_file()) < 1_000_000


def test_csv_validation_flags_nulls_constants_and_ranges(tmp_path):
    x = [float(i % 2) for i in range(12)] + [0.5, 99.0] + [0.5] * 6  # row 13 (val) far outside train's 0..1
    z = [1.0] * 20
    w = [(i % 3) / 2 for i in range(20)]
    w[2] = np.nan
    m = table({"x": x, "z": z, "w": w}, [str(i % 2) for i in range(20)])
    outcome = X.validate(m, RecipeConfig(), None)
    failed = {(f["check"], f["column"]) for f in outcome.failed}
    # z is constant in every split: nothing to flag; w's missing cell is filled by the loader: a warning
    assert failed == {("feature_ranges", "x"), ("feature_nulls", "w")}
    assert {f["severity"] for f in outcome.failed} == {"warning"}
    assert outcome.docs_dir is None and outcome.finding.verdict is Verdict.WARN
    assert [v["meta"] for v in outcome.result["validations"]] and len(outcome.result["validations"]) == 2
