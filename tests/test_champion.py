"""The champion pyfunc: raw inputs in, the training pipeline's preprocessing inside, labels and probabilities out,
registered with an alias and loadable in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recipe import tracking
from recipe.champion import (
    ChampionSpec,
    Member,
    PredictInputError,
    build_members,
    log_champion,
    predict_frame,
    spec_for,
)
from recipe.config import RecipeConfig
from recipe.data import load_data
from recipe.fit import fit


@pytest.fixture(scope="module")
def digits_fit(tmp_path_factory):
    home = tmp_path_factory.mktemp("champion")
    with pytest.MonkeyPatch.context() as mp:  # restored after the module: later tests see the session's folder
        mp.setenv("RECIPE_DATA_DIR", str(home / "data"))
        cfg = RecipeConfig().with_overrides({"budget.epochs": 3, "trainer.progress": False, "model.width": 8})
        result = fit(cfg, log=False)
        yield cfg, result


def _spec(cfg, result) -> ChampionSpec:
    return spec_for(result.data, [Member(cfg.model.model_dump(mode="json"), "m0.pt")], description="test")


def _test_files(data, n: int | None = None) -> list[str]:
    rows = data.rows("test")
    return rows["path"].tolist()[:n]


def test_predictions_from_raw_files_match_the_trained_network(digits_fit, tmp_path):
    cfg, result = digits_fit
    spec = _spec(cfg, result)
    torch.save(result.model.state_dict(), tmp_path / "m0.pt")
    nets = build_members(spec, tmp_path)
    frame = predict_frame(spec, nets, pd.DataFrame({"path": _test_files(result.data)}))
    x, y = result.data.tensors("test")
    with torch.no_grad():
        expected = result.model.eval()(x).softmax(-1).numpy()
    probs = frame[[f"prob_{c}" for c in spec.classes]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)  # the same preprocessing, exactly
    assert list(frame.columns) == spec.output_columns and frame["label"].tolist() == [
        spec.classes[i] for i in expected.argmax(1)
    ]


def test_bad_inputs_are_named(digits_fit, tmp_path):
    cfg, result = digits_fit
    spec = _spec(cfg, result)
    torch.save(result.model.state_dict(), tmp_path / "m0.pt")
    nets = build_members(spec, tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PredictInputError, match=r"1 input\(s\) cannot be read as images:\n  - .*empty.png: empty file"):
        predict_frame(spec, nets, pd.DataFrame({"path": [str(tmp_path / "empty.png"), *_test_files(result.data, 2)]}))
    with pytest.raises(PredictInputError, match="a DataFrame with a 'path' column"):
        predict_frame(spec, nets, pd.DataFrame({"file": ["x.png"]}))


def test_the_spec_round_trips_through_json(digits_fit):
    cfg, result = digits_fit
    spec = _spec(cfg, result)
    assert ChampionSpec.from_json(spec.to_json()) == spec
    assert (spec.kind, spec.mode, spec.in_shape, spec.classes[:2]) == ("image", "L", [1, 8, 8], ["0", "1"])


def test_table_rows_take_the_training_encoding_with_placeholders_and_unseen_levels(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data"))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=80),
            "colour": rng.choice(["red", "blue"], 80),
            "flag": rng.choice([True, False], 80),
            "y": rng.choice(["a", "b"], 80),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_data(RecipeConfig(data={"source": "csv", "root": str(tmp_path / "t.csv"), "target": "y"}))
    spec = spec_for(data, [])
    assert spec.columns == ["x", "colour", "flag"] and spec.encoded == ["x", "colour=blue", "colour=red", "flag"]
    rows = data.rows("train")
    x_train, _ = data.tensors("train")
    raw = frame.loc[rows.index, ["x", "colour", "flag"]].astype(str)  # as text, as a CSV reader may give them
    from recipe.champion import table_inputs

    np.testing.assert_allclose(table_inputs(spec, raw), x_train.numpy(), atol=1e-5)
    odd = table_inputs(spec, pd.DataFrame({"x": ["?"], "colour": ["green"], "flag": ["TRUE"]}))
    fill = (np.asarray(spec.fill) - np.asarray(spec.mean)) / np.asarray(spec.std)
    assert odd[0, 0] == pytest.approx(fill[0])  # '?' -> the train median
    assert odd[0, 1] == pytest.approx(-spec.mean[1] / spec.std[1])  # an unseen level: no level set
    with pytest.raises(PredictInputError, match="lack the feature column\\(s\\) 'flag'"):
        table_inputs(spec, pd.DataFrame({"x": [1.0], "colour": ["red"]}))


@pytest.mark.slow
def test_registered_champion_loads_in_a_fresh_process_and_predicts_from_files(
    digits_fit, mlflow_store, tmp_path, capsys
):
    import mlflow
    from mlflow.utils import logging_utils

    cfg, result = digits_fit
    spec = _spec(cfg, result)
    files = _test_files(result.data, 20)
    tracking.setup("digits")  # artifacts beside the private store, not in ./mlruns
    capsys.readouterr()
    with mlflow.start_run():
        version = log_champion(
            spec, [result.model.state_dict()], registered_name="digits", example=pd.DataFrame({"path": files[:2]})
        )
    assert str(version.version) == "1"
    # MLflow's own event lines stay off the terminal while registering, and its logging is on again after
    printed = capsys.readouterr()
    assert "Successfully registered" not in printed.err + printed.out and "Created version" not in printed.err
    assert logging_utils.MLFLOW_LOGGING_STREAM.enabled
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/digits@champion')\n"
        "out = m.predict(pd.DataFrame({'path': json.loads(sys.argv[1])}))\n"
        "print(json.dumps(out['label'].tolist()))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(files)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = json.loads(proc.stdout.strip().splitlines()[-1])
    nets = build_members(spec, _weights_dir(tmp_path, result))
    assert labels == predict_frame(spec, nets, pd.DataFrame({"path": files}))["label"].tolist()


def _weights_dir(tmp_path: Path, result) -> Path:
    d = tmp_path / "w"
    d.mkdir(exist_ok=True)
    torch.save(result.model.state_dict(), d / "m0.pt")
    return d


def test_a_table_with_many_levels_and_missing_cells_predicts_with_the_training_encoding(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data"))
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame(
        {
            "x": rng.lognormal(size=n).round(3),  # skewed: robustly scaled and soft-clipped
            "town": rng.choice([f"t{i:02d}" for i in range(30)], n),  # 30 levels
            "y": rng.choice(["a", "b"], n),
        }
    )
    frame.loc[:2, "town"] = ["rare1", "rare2", "rare3"]  # pooled in town=<other>
    frame.loc[[5, 6], "x"] = np.nan
    frame.loc[[7], "town"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_data(RecipeConfig(data={"source": "csv", "root": str(tmp_path / "t.csv"), "target": "y"}))
    spec = ChampionSpec.from_json(spec_for(data, []).to_json())
    assert spec.columns == ["x", "town"] and spec.squash == data.squash
    assert {"x=<missing>", "town=<other>", "town=<missing>"} <= set(spec.encoded)
    from recipe.champion import table_inputs

    for split in ("train", "val"):
        rows = data.rows(split)
        raw = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False).loc[rows.index, ["x", "town"]]
        np.testing.assert_allclose(table_inputs(spec, raw), data.tensors(split)[0].numpy(), atol=1e-5)
    unseen = table_inputs(spec, pd.DataFrame({"x": ["1.0"], "town": ["elsewhere"]}))
    assert unseen[0, spec.encoded.index("town=<other>")] > 0.9  # never seen: the rare levels' column
