"""`flows predict`: a registered champion on raw PNG files or a CSV, predictions as a CSV, bad input as exit 2."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from recipe import tracking
from recipe.champion import Member, log_champion, spec_for
from recipe.config import RecipeConfig
from recipe.fit import fit
from tests.conftest import private_mlflow_store

runner = CliRunner()


@pytest.fixture(scope="module")
def champion(_mlflow_template, tmp_path_factory):
    """digits trained briefly and registered as models:/digits@champion in a private store."""
    import mlflow

    tmp = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp, private_mlflow_store(_mlflow_template, tmp):
        mp.setenv("RECIPE_DATA_DIR", str(tmp / "data"))  # restored after the module
        cfg = RecipeConfig().with_overrides({"budget.epochs": 8, "trainer.progress": False})
        result = fit(cfg, log=False)
        spec = spec_for(result.data, [Member(cfg.model.model_dump(mode="json"), "m0.pt")])
        rows = result.data.rows("test")
        tracking.setup("digits")  # artifacts beside the private store, not in ./mlruns
        with mlflow.start_run():
            log_champion(
                spec,
                [result.model.state_dict()],
                registered_name="digits",
                example=pd.DataFrame({"path": rows["path"].tolist()[:2]}),
            )
        yield rows, tmp


def test_predict_on_a_folder_writes_one_row_per_file_with_probabilities(champion, tmp_path):
    rows, _ = champion
    folder = tmp_path / "test_pngs"
    for p, label in zip(rows["path"], rows["label"]):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / os.path.basename(p)).write_bytes(open(p, "rb").read())
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(folder), "--model", "models:/digits@champion", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out, dtype={"label": str})
    assert len(pred) == len(rows) and f"{len(rows)} predictions written to {out}" in result.output
    assert list(pred.columns[:2]) == ["path", "label"] and [f"prob_{c}" for c in range(10)] == list(pred.columns[2:])
    truth = pred["path"].map(lambda p: os.path.basename(os.path.dirname(p)))
    assert (pred["label"] == truth).mean() > 0.8  # 8 epochs of the small CNN
    assert pred[[f"prob_{c}" for c in range(10)]].sum(axis=1).round(4).eq(1).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder"], "does not exist; pass a folder of images"),
        (["{empty}"], "no image files under"),
        (["{empty}", "--model", "models:/nosuch@champion"], "no image files under"),
        (["{pngs}", "--model", "models:/nosuch@champion"], "no model at models:/nosuch@champion"),
        (["{csv}"], "takes inputs with the column(s) 'path', but a CSV of rows from"),
    ],
)
def test_bad_input_is_exit_2_with_the_problem_named(champion, tmp_path, args, message):
    rows, _ = champion
    (tmp_path / "empty").mkdir()
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    (pngs / "a.png").write_bytes(open(rows["path"].iloc[0], "rb").read())
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    args = [a.format(empty=tmp_path / "empty", pngs=pngs, csv=tmp_path / "t.csv") for a in args]
    result = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
