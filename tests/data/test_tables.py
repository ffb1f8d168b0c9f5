"""The csv source: task detection, encoding, missing values, embedded scikit-learn tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recipe.config import load_config
from recipe.data import DataError, build_manifest, load_data
from recipe.report import Verdict

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.integers(0, 100, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "flag": rng.choice([True, False], n),
            "species": rng.choice(["setosa", "virginica"], n),
            "price": rng.normal(100, 15, n),
        }
    )


def test_csv_classification_one_hot_encodes_small_text_columns(make_csv, make_cfg):
    frame = _frame().drop(columns="price")
    bundle = load_data(make_cfg(source="csv", root=make_csv(frame), target="species"))
    m = bundle.manifest
    assert (m.task, m.classes, bundle.num_classes) == ("classification", ["setosa", "virginica"], 2)
    assert m.feature_columns == ["x1", "x2", "colour=blue", "colour=green", "colour=red", "flag"]
    assert bundle.in_shape == (6,) and m.df["id"].iloc[3] == "row:3" and m.df["row"].iloc[3] == 3
    x, y = bundle.tensors("train")
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (len(y), 6)
    # numbers robustly scaled with train statistics (median 0, soft-clipped inside ±3); one-hot levels stay 0/1
    # (through the same soft clip: 1 -> 0.949)
    assert torch.allclose(x[:, :2].median(0).values, torch.zeros(2), atol=0.1) and x.abs().max() < bundle.squash
    assert torch.allclose(x[:, 2:5].unique(), torch.tensor([0.0, (1 + 1 / 9) ** -0.5]))
    assert sum(bundle.class_counts) == len(y) and bundle.target_mean is None


def test_csv_regression_targets_are_standardised_with_train_statistics(make_csv, make_cfg):
    frame = _frame().drop(columns="species")
    bundle = load_data(make_cfg(source="csv", root=make_csv(frame), target="price"))
    assert (bundle.task, bundle.classes, bundle.num_classes, bundle.class_counts) == ("regression", [], 1, [])
    x, y = bundle.tensors("train")
    assert y.dtype == torch.float32 and y.shape == (len(x),)
    train = bundle.rows("train")["label"].to_numpy(np.float64)
    assert bundle.target_shift == pytest.approx(train.mean()) and bundle.target_scale == pytest.approx(train.std())
    assert (bundle.target_mean, bundle.target_std) == (0.0, 1.0)  # what the model sees
    assert y.mean().item() == pytest.approx(0.0, abs=1e-5) and y.std(correction=0).item() == pytest.approx(
        1.0, rel=1e-4
    )
    raw = load_data(make_cfg(source="csv", root=make_csv(frame), target="price", standardize_target=False))
    assert raw.target_scale is None and raw.tensors("train")[1].mean().item() == pytest.approx(train.mean(), rel=1e-5)


@pytest.mark.parametrize(
    ("values", "forced", "task"),
    [
        (lambda n: np.arange(n) % 3, "auto", "classification"),  # few integer values: class labels
        (lambda n: np.arange(n) % 25, "auto", "regression"),  # more than 20 integer values: a quantity
        (lambda n: (np.arange(n) % 3).astype(float), "auto", "classification"),  # 0.0/1.0/2.0 are still classes
        (lambda n: np.linspace(0, 1, n), "auto", "regression"),
        (lambda n: np.arange(n) % 3, "regression", "regression"),
        (lambda n: np.linspace(0, 1, n), "classification", "classification"),
    ],
)
def test_task_detection(make_csv, make_cfg, values, forced, task):
    frame = pd.DataFrame({"x": np.arange(60.0), "y": values(60)})
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="y", task=forced))
    assert m.task == task
    if task == "classification" and forced == "auto":
        assert m.classes == ["0", "1", "2"]


def test_regression_on_a_text_target_is_refused(make_csv, make_cfg):
    with pytest.raises(DataError, match="target column 'species' is not numeric .* data.task=regression is imposs"):
        build_manifest(make_cfg(source="csv", root=make_csv(_frame()), target="species", task="regression"))


def test_missing_target_column_lists_the_columns(make_csv, make_cfg):
    path = make_csv(_frame())
    message = r"target column 'specie' not found; did you mean 'species'\? \(columns: x1, x2, colour"
    with pytest.raises(DataError, match=message):
        build_manifest(make_cfg(source="csv", root=path, target="specie"))
    with pytest.raises(DataError, match="data.target is not set; pass --set data.target=COLUMN, one of: x1, x2, col"):
        build_manifest(make_cfg(source="csv", root=path))


def test_a_header_without_rows_is_refused_before_anything_is_judged(make_csv, make_cfg):
    """A header alone used to reach inspect, which failed three checks on "0 classes" and advised a regression."""
    path = make_csv(_frame().iloc[:0])
    with pytest.raises(DataError, match=r"has a header \(x1, x2, colour.*\) but no data rows; add the samples"):
        build_manifest(make_cfg(source="csv", root=path, target="species"))


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("nowhere.csv", "data.root .*nowhere.csv does not exist; point data.root at a .csv file"),
        (".", "is a folder; data.source=csv needs a .csv file"),
    ],
)
def test_csv_paths_that_are_not_files(tmp_path, make_cfg, root, message):
    with pytest.raises(DataError, match=message):
        build_manifest(make_cfg(source="csv", root=tmp_path / root, target="y"))


def test_missing_features_are_filled_with_train_medians_and_a_missing_target_is_unreadable(make_csv, make_cfg):
    frame = _frame()
    frame.loc[3, "x1"] = np.nan
    frame.loc[5, "colour"] = np.nan
    frame.loc[7, "species"] = np.nan
    cfg = make_cfg(source="csv", root=make_csv(frame), target="species")
    df = build_manifest(cfg).df.set_index("id")
    assert df.loc["row:3", "readable"] and df.loc["row:5", "readable"]  # kept, to be filled
    assert df.loc["row:7", "error"] == "missing target" and not df.loc["row:7", "readable"]
    with pytest.raises(DataError, match=r"1 unreadable rows \(fix or remove them\):\n    row:7: missing target"):
        load_data(cfg)
    frame = frame.drop(index=7)
    bundle = load_data(make_cfg(source="csv", root=make_csv(frame, name="kept.csv"), target="species"))
    train = bundle.rows("train")
    median = float(np.nanmedian(bundle.manifest.features["x1"].to_numpy()[train.index]))
    assert bundle.feature_fill[0] == pytest.approx(median)
    x, _ = bundle.tensors(bundle.manifest.df.set_index("id").loc["row:3", "split"])
    assert not torch.isnan(x).any()


def test_placeholder_tokens_in_a_number_column_are_missing_cells_not_text(make_csv, make_cfg):
    frame = _frame().astype({"x1": object, "x2": object})
    frame.loc[[4, 9], "x2"] = "?"
    frame.loc[11, "x2"] = " n/a "
    frame.loc[12, "x1"] = "-"
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="species"))
    assert m.feature_columns[:4] == ["x1", "x1=<missing>", "x2", "x2=<missing>"]  # numbers, not one-hot levels
    assert m.feature_kinds["x2"] == ("x2", "number") and m.features["x2=<missing>"].sum() == 3
    assert m.missing_tokens == {"x1": {"-": [12]}, "x2": {"?": [4, 9], "n/a": [11]}}
    assert np.isnan(m.features["x2"].to_numpy()[[4, 9, 11]]).all() and m.df["readable"].all()
    assert any("x2: '?' in 2 rows (4, 9), 'n/a' in 1 row (11)" in n for n in m.notes)
    assert not m.dropped_columns


def test_missing_cells_get_an_indicator_and_text_gets_a_missing_level(make_csv, make_cfg):
    frame = _frame()
    frame.loc[:40, "x1"] = np.nan  # mostly empty: kept, with its indicator (missingness can be the signal)
    frame.loc[[2, 8], "colour"] = np.nan
    frame["empty"] = np.nan  # not a single value: left out, with a note
    bundle = load_data(make_cfg(source="csv", root=make_csv(frame), target="species"))
    m = bundle.manifest
    assert m.dropped_columns == {"empty": "all 60 cells missing: nothing to learn from"}
    assert m.feature_kinds["x1=<missing>"] == ("x1", "<missing>")
    assert m.features["x1=<missing>"].sum() == 41 and m.features["colour=<missing>"].tolist().count(1.0) == 2
    levels = m.features[["colour=blue", "colour=green", "colour=red"]].to_numpy()
    assert not np.isnan(levels).any() and levels[[2, 8]].sum() == 0  # a missing colour is no colour level
    assert any("dropped feature column 'empty'" in n for n in m.notes)
    assert not torch.isnan(bundle.tensors("train")[0]).any()


def test_text_columns_of_any_cardinality_are_encoded(make_csv, make_cfg):
    rng = np.random.default_rng(1)
    frame = _frame(n=300)
    frame["town"] = rng.choice([f"town{i:02d}" for i in range(30)], 300)  # 30 values, about 10 rows each
    frame.loc[:2, "town"] = ["hamlet-a", "hamlet-b", "hamlet-c"]  # seen once: pooled in <other>
    frame["name"] = [f"sample {i}" for i in range(len(frame))]  # an identifier: every value once
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="species"))
    town = [c for c in m.feature_columns if c.startswith("town=")]
    assert len(town) == 31 and town[-1] == "town=<other>" and m.features["town=<other>"].sum() == 3
    assert m.dropped_columns["name"].startswith("text with 300 distinct values in 300 rows, none in 5 or more")
    assert not any(c.startswith("name") for c in m.feature_columns)


def test_embedded_wine_table_is_the_tabular_preset(data_home):
    bundle = load_data(load_config("tabular"))
    m = bundle.manifest
    assert (data_home / "wine.csv").is_file() and m.root == data_home / "wine.csv"
    assert len(m.df) == 178 and m.classes == ["0", "1", "2"] and bundle.in_shape == (13,)
    assert "alcohol" in m.feature_columns and m.df["readable"].all()
    # said first: a user who forgot data.root must not take a passing run on wine for one on their table
    assert m.notes[0].startswith("no data.root: scikit-learn's wine table") and "--set data.root=FILE.csv" in m.notes[0]


def test_a_csv_of_ones_own_has_no_example_table_note(make_csv, make_cfg):
    m = build_manifest(make_cfg(source="csv", root=str(make_csv(_frame())), target="species"))
    assert not any(n.startswith("no data.root") for n in m.notes)


def test_embedded_diabetes_is_regression(make_cfg, data_home):
    bundle = load_data(make_cfg(source="csv", name="diabetes"))
    assert bundle.task == "regression" and bundle.in_shape == (10,) and len(bundle.manifest.df) == 442
    assert 100 < bundle.target_shift < 200 and bundle.target_mean == 0.0  # standardised for training


def test_unknown_embedded_table(make_cfg):
    with pytest.raises(DataError, match="data.name='iris' is not an embedded table \\(wine, breast_cancer, diab"):
        build_manifest(make_cfg(source="csv", name="iris"))


def test_missing_values_are_reported_once_per_csv_column_not_per_one_hot_column(make_csv, make_cfg):
    from recipe.checks import tables as T

    frame = _frame(n=200).astype({"x1": object})
    frame["home"] = np.random.default_rng(2).choice(["rent", "owner", "parents", "other", "priv", "ignore"], 200)
    frame.loc[[3, 50, 120], "home"] = ""  # 3 missing cells of a 6-valued text column
    frame.loc[[7, 8], "x1"] = "?"
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="species"))
    f = T.feature_nulls(m)
    assert f.verdict is WARN and f.metrics["data/n_missing_values"] == 5  # cells, not cells x levels
    assert "home: 3 of 200 (1.5%, written as empty), rows row:3, row:50, row:120" in f.check.observed
    assert "x1: 2 of 200 (1.0%, written as '?'), rows row:7, row:8" in f.check.observed
    assert "home=" not in f.check.observed and {i["column"] for i in f.items} == {"home", "x1"}
    types = T.feature_types(m)
    assert types.verdict is PASS and "home (6 + <missing>)" in types.check.observed


def test_a_dropped_column_warns_instead_of_stopping_the_flow(make_csv, make_cfg):
    from recipe.checks import tables as T

    frame = _frame()
    frame["name"] = [f"sample {i}" for i in range(len(frame))]
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="species"))
    f = T.feature_types(m)
    assert f.verdict is WARN and "left out: name (text with 60 distinct values in 60 rows" in f.check.observed
    assert load_data(make_cfg(source="csv", root=make_csv(frame), target="species")).in_shape == (7,)


def test_a_duplicate_pair_and_alike_rows_with_different_outcomes_do_not_fail_a_table(make_csv, make_cfg):
    from recipe.checks.data import inspect_manifest

    frame = _frame(n=300)
    frame.loc[1] = frame.loc[0]  # one row entered twice
    frame.loc[3] = frame.loc[2]
    frame.loc[3, "species"] = "virginica" if frame.loc[2, "species"] == "setosa" else "setosa"  # alike, other outcome
    cfg = make_cfg(source="csv", root=make_csv(frame), target="species", split={"val": 0.5, "test": 0.0, "seed": 3})
    m = build_manifest(cfg)
    checks = {f.check.name: f for f in inspect_manifest(m, cfg).findings}
    assert not [n for n, f in checks.items() if f.verdict is FAIL]
    conflicts = checks["duplicate_labels_agree"]
    assert conflicts.verdict is WARN and "two alike cases" in conflicts.check.advice
    n_train = int((m.df["split"] == "train").sum())
    both_in_train = set(m.df.loc[[2, 3], "split"]) == {"train"}
    assert conflicts.metrics["data/train_accuracy_ceiling"] == pytest.approx(1 - both_in_train / n_train)
    assert checks["no_leakage_across_splits"].verdict in (PASS, WARN)


def test_many_copies_across_the_splits_of_a_table_still_fail(make_csv, make_cfg):
    from recipe.checks.data import inspect_manifest

    frame = pd.concat([_frame(n=100)] * 2, ignore_index=True)  # every row twice: the split leaks
    cfg = make_cfg(source="csv", root=make_csv(frame), target="species")
    checks = {f.check.name: f for f in inspect_manifest(build_manifest(cfg), cfg).findings}
    assert checks["no_leakage_across_splits"].verdict is FAIL
