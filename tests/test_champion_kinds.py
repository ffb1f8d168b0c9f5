"""The champion beyond one image classifier: `flows predict` on a table champion (a CSV in, labels out), a
regression champion's output in the target's units, and an ensemble champion averaging its members'
probabilities. Each is a real (briefly trained) network logged and registered through ``log_champion``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from flows.cli import app
from recipe import tracking
from recipe.champion import Member, build_members, log_champion, predict_frame, spec_for
from recipe.config import RecipeConfig
from recipe.fit import fit

runner = CliRunner()


def _table(tmp_path, n: int = 120, regression: bool = False) -> tuple[pd.DataFrame, str]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "blue"], n)
    y = 1000.0 + 250.0 * x + 100.0 * (colour == "red") if regression else np.where(x > 0, "high", "low")
    frame = pd.DataFrame({"x": x, "colour": colour, "noise": rng.normal(size=n), "y": y})
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return frame, str(path)


def _fit_table(path: str, monkeypatch, tmp_path, **data):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "cache"))
    cfg = RecipeConfig(
        data={"source": "csv", "root": path, "target": "y", **data},
        model={"name": "mlp", "width": 16, "depth": 1},
        optim={"lr": 1e-2},
        budget={"epochs": 30},
        trainer={"progress": False},
    )
    result = fit(cfg, log=False)
    return cfg, result, spec_for(result.data, [Member(cfg.model.model_dump(mode="json"), "m0.pt")])


def _register(spec, states, name: str, example: pd.DataFrame) -> None:
    import mlflow

    tracking.setup(name)
    # tagged as the squeeze stage tags its run: flows predict loads only champions a squeeze run registered
    with mlflow.start_run(tags={tracking.TAG_STAGE: "squeeze", tracking.TAG_CONFIG_HASH: name}):
        log_champion(spec, states, registered_name=name, example=example)


def test_flows_predict_on_a_table_champion_writes_a_label_per_csv_row(mlflow_store, monkeypatch, tmp_path):
    frame, path = _table(tmp_path)
    cfg, result, spec = _fit_table(path, monkeypatch, tmp_path)
    features = frame.drop(columns="y")
    _register(spec, [result.model.state_dict()], "table-champ", features.head(2).astype(str))

    new_rows = tmp_path / "new_rows.csv"
    features.to_csv(new_rows, index=False)  # raw feature columns, as a user's CSV has them
    out = tmp_path / "pred.csv"
    done = runner.invoke(app, ["predict", str(new_rows), "--model", "models:/table-champ@champion", "--out", str(out)])
    assert done.exit_code == 0, done.output
    pred = pd.read_csv(out)
    assert len(pred) == len(frame) and list(pred.columns) == ["row", "label", "prob_high", "prob_low"]
    assert pred[["prob_high", "prob_low"]].sum(axis=1).round(4).eq(1).all()
    assert (pred["label"] == frame["y"]).mean() > 0.9  # x > 0 is one linear cut: learnt in 30 epochs
    # the file's rows in the file's order: the network's own answers on the same rows
    x, _ = result.data.tensors("train")
    rows = result.data.rows("train").index
    with torch.no_grad():
        own = result.model.eval()(x).argmax(1).numpy()
    assert (pred.loc[rows, "label"].to_numpy() == np.asarray(spec.classes)[own]).all()


def test_a_regression_champion_answers_in_the_targets_units(monkeypatch, tmp_path):
    frame, path = _table(tmp_path, regression=True)
    cfg, result, spec = _fit_table(path, monkeypatch, tmp_path, task="regression")
    assert not spec.classifier and spec.target_std > 1  # trained on the standardised target
    nets = build_members(spec, _saved(spec, [result.model.state_dict()], tmp_path))
    answers = predict_frame(spec, nets, frame.drop(columns="y").astype(str))
    assert list(answers.columns) == ["prediction"] and len(answers) == len(frame)
    # not the network's standardised output: its output times the target's std plus its mean
    x, _ = result.data.tensors("train")
    rows = result.data.rows("train").index
    with torch.no_grad():
        raw = result.model.eval()(x).numpy()[:, 0]
    np.testing.assert_allclose(answers.loc[rows, "prediction"], raw * spec.target_std + spec.target_mean, rtol=1e-4)
    error = (answers["prediction"] - frame["y"]).abs()
    assert error.mean() < 0.5 * frame["y"].std(), error.mean()  # in the target's units, and learnt


def _saved(spec, states, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir(parents=True)
    for member, state in zip(spec.members, states, strict=True):
        torch.save(state, folder / member.weights)
    return folder


def test_an_ensemble_champion_averages_its_members_probabilities(mlflow_store, monkeypatch, tmp_path):
    frame, path = _table(tmp_path)
    cfg, first, _ = _fit_table(path, monkeypatch, tmp_path)
    second = fit(cfg.with_overrides({"seed": 1}), log=False)
    model = cfg.model.model_dump(mode="json")
    one = spec_for(first.data, [Member(model, "m0.pt")])
    both = spec_for(first.data, [Member(model, "m0.pt"), Member(model, "m1.pt")])
    states = [first.model.state_dict(), second.model.state_dict()]
    features = frame.drop(columns="y").astype(str)
    _register(both, states, "ensemble-champ", features.head(2))

    import mlflow

    loaded = mlflow.pyfunc.load_model("models:/ensemble-champ@champion").predict(features)
    probs = [c for c in loaded.columns if c.startswith("prob_")]
    members = [
        predict_frame(one, build_members(one, _saved(one, [s], tmp_path / f"m{i}")), features)[probs].to_numpy()
        for i, s in enumerate(states)
    ]
    np.testing.assert_allclose(loaded[probs].to_numpy(), (members[0] + members[1]) / 2, atol=1e-5)
    assert np.abs(members[0] - members[1]).max() > 1e-3  # two seeds, two networks: the average is not either one
