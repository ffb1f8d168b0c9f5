"""The csv source: task detection, encoding, missing values, embedded scikit-learn tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recipe.config import load_config
from recipe.data import DataError, build_manifest, load_data


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
    assert torch.allclose(x.mean(0), torch.zeros(6), atol=1e-5)  # standardised with train statistics
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
    assert m.feature_columns[:2] == ["x1", "x2"] and not m.bad_columns  # numeric, not one-hot or unusable
    assert m.missing_tokens == {"x1": {"-": [12]}, "x2": {"?": [4, 9], "n/a": [11]}}
    assert np.isnan(m.features["x2"].to_numpy()[[4, 9, 11]]).all() and m.df["readable"].all()
    assert any("x2: '?' in 2 rows (4, 9), 'n/a' in 1 row (11)" in n for n in m.notes)


def test_a_mostly_missing_column_is_unusable(make_csv, make_cfg):
    frame = _frame()
    frame.loc[:40, "x1"] = np.nan
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="species"))
    assert m.bad_columns["x1"].startswith("41 of 60 cells missing")


def test_text_column_with_many_values_is_unusable(make_csv, make_cfg):
    frame = _frame()
    frame["name"] = [f"sample {i}" for i in range(len(frame))]
    cfg = make_cfg(source="csv", root=make_csv(frame), target="species")
    m = build_manifest(cfg)
    assert "name" in m.bad_columns and not any(c.startswith("name") for c in m.feature_columns)
    with pytest.raises(DataError, match="unusable feature column.*\n    name: text with 60 distinct values"):
        load_data(cfg)


def test_embedded_wine_table_is_the_tabular_preset(data_home):
    bundle = load_data(load_config("tabular"))
    m = bundle.manifest
    assert (data_home / "wine.csv").is_file() and m.root == data_home / "wine.csv"
    assert len(m.df) == 178 and m.classes == ["0", "1", "2"] and bundle.in_shape == (13,)
    assert "alcohol" in m.feature_columns and m.df["readable"].all()


def test_embedded_diabetes_is_regression(make_cfg, data_home):
    bundle = load_data(make_cfg(source="csv", name="diabetes"))
    assert bundle.task == "regression" and bundle.in_shape == (10,) and len(bundle.manifest.df) == 442
    assert 100 < bundle.target_shift < 200 and bundle.target_mean == 0.0  # standardised for training


def test_unknown_embedded_table(make_cfg):
    with pytest.raises(DataError, match="data.name='iris' is not an embedded table \\(wine, breast_cancer, diab"):
        build_manifest(make_cfg(source="csv", name="iris"))
