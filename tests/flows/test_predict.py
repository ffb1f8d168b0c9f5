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
        with mlflow.start_run(tags=tracking.run_tags(cfg, None, stage="squeeze", kind="stage")):  # as squeeze does
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


def test_a_csv_given_to_the_default_image_model_names_the_other_champions(champion, tmp_path):
    """`flows predict` defaults to models:/digits@champion; a table's CSV given without --model names the store's
    other registered champions to pass instead."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.create_registered_model("attrition")
    try:
        version = client.create_model_version("attrition", source=str(tmp_path / "model"))
        client.set_registered_model_alias("attrition", "champion", version.version)
        (tmp_path / "t.csv").write_text("Age,Department\n41,Sales\n")
        result = runner.invoke(app, ["predict", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o.csv")])
    finally:
        client.delete_registered_model("attrition")
    assert result.exit_code == 2, result.output
    assert "other champions in this store: models:/attrition@champion (pass one with --model)" in result.output
    assert "models:/digits@champion (pass" not in result.output  # not the model that was just refused


def test_a_model_that_is_not_registered_names_the_champions_that_are(champion, tmp_path):
    """A new user's table CSV with a guessed or default --model: the error names the registered champions and says
    that the digits one is only --model's default (a new user followed 'run the recipe to squeeze' and met the same
    error again, the table's champion being models:/<its recipe name>@champion)."""
    import inspect

    from flows.cli import predict
    from flows.predict import DEFAULT_MODEL

    assert inspect.signature(predict).parameters["model"].default == DEFAULT_MODEL  # the CLI's default, named once
    (tmp_path / "t.csv").write_text("Age,Department\n41,Sales\n")
    args = ["predict", str(tmp_path / "t.csv"), "--model", "models:/attrition@champion"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "no model at models:/attrition@champion" in result.output
    assert "other champions in this store: models:/digits@champion (pass one with --model)" in result.output
    assert f"{DEFAULT_MODEL} is only --model's default" in result.output


def test_a_file_that_is_neither_an_image_nor_a_csv_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["predict", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'notes.txt'}: not an image or a .csv file" in result.output
    assert "no image files under" not in result.output and "Traceback" not in result.output


PLANTED = """
import pathlib

import mlflow
import pandas as pd


class Planted(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        pathlib.Path(r"{marker}").write_text("the model's own code ran")

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({{"label": ["0"] * len(model_input)}})


mlflow.models.set_model(Planted())
"""


def test_a_planted_model_from_code_champion_is_refused_unless_trusted(champion, tmp_path):
    """Anyone who can write the store can point digits@champion at a model whose code runs at load time; the
    data-only loader refuses it (even from a run tagged as squeeze's: tags can be written too) without running it."""
    import mlflow
    from mlflow import MlflowClient

    rows, _ = champion
    marker = tmp_path / "ran"
    code = tmp_path / "planted.py"
    code.write_text(PLANTED.format(marker=marker))
    client = MlflowClient()
    before = client.get_model_version_by_alias("digits", "champion").version
    with mlflow.start_run(tags={tracking.TAG_STAGE: "squeeze", tracking.TAG_CONFIG_HASH: "forged"}):
        info = mlflow.pyfunc.log_model(name="champion", python_model=str(code), registered_model_name="digits")
    client.set_registered_model_alias("digits", "champion", str(info.registered_model_version))
    marker.unlink(missing_ok=True)  # logging a model from code runs it once already
    try:
        pngs = tmp_path / "pngs"
        pngs.mkdir()
        (pngs / "a.png").write_bytes(open(rows["path"].iloc[0], "rb").read())
        out = tmp_path / "o.csv"
        refused = runner.invoke(app, ["predict", str(pngs), "--out", str(out)])
        assert refused.exit_code == 2, refused.output
        assert "not in the champion format" in refused.output and "--trust-model-code" in refused.output
        assert not marker.exists() and not out.exists()  # its code never ran
        trusted = runner.invoke(app, ["predict", str(pngs), "--out", str(out), "--trust-model-code"])
        assert trusted.exit_code == 0, trusted.output
        assert marker.exists()  # the user asked for it
    finally:
        client.set_registered_model_alias("digits", "champion", str(before))


def test_a_champion_from_a_run_that_is_not_squeeze_is_refused(champion, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    rows, _ = champion
    client = MlflowClient()
    good = client.get_model_version_by_alias("digits", "champion")
    with mlflow.start_run():  # an untagged run registering a copy of the real champion's files
        run_id = mlflow.active_run().info.run_id
    version = client.create_model_version("digits", good.source, run_id=run_id)
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    (pngs / "a.png").write_bytes(open(rows["path"].iloc[0], "rb").read())
    result = runner.invoke(
        app, ["predict", str(pngs), "--model", f"models:/digits/{version.version}", "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2, result.output
    assert "not registered by a squeeze run" in result.output and run_id in result.output


def test_predictions_go_in_chunks(champion, tmp_path, monkeypatch):
    import flows.predict as fp

    rows, _ = champion
    sizes = []
    real = fp.DataOnlyChampion.predict
    monkeypatch.setattr(
        fp.DataOnlyChampion, "predict", lambda self, frame: sizes.append(len(frame)) or real(self, frame)
    )
    folder = tmp_path / "pngs"
    folder.mkdir()
    for p in rows["path"].iloc[:7]:
        (folder / os.path.basename(p)).write_bytes(open(p, "rb").read())
    result = fp.predict_path("models:/digits@champion", folder, tmp_path / "o.csv", chunk=3)
    assert sizes == [3, 3, 1] and len(result.frame) == 7


def _copy_pngs(rows, folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in rows["path"].iloc[:n]:
        dst = folder / os.path.basename(p)
        dst.write_bytes(open(p, "rb").read())
        out.append(dst)
    return out


def test_an_unreadable_file_stops_with_exit_2_naming_it_and_the_flag_or_is_skipped_and_listed(champion, tmp_path):
    rows, _ = champion
    folder = tmp_path / "mixed"
    _copy_pngs(rows, folder, 4)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "p.csv"
    args = ["predict", str(folder), "--model", "models:/digits@champion", "--out", str(out)]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 2, stopped.output
    assert "broken.png" in stopped.output and "--skip-unreadable" in stopped.output and not out.exists()
    skipped = runner.invoke(app, [*args, "--skip-unreadable"])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped (unreadable): {folder / 'broken.png'}" in skipped.output
    assert "4 predictions written" in skipped.output and "1 unreadable file(s) skipped" in skipped.output
    assert len(pd.read_csv(out)) == 4


def test_files_that_are_not_images_are_skipped_and_counted_as_training_skips_them(champion, tmp_path):
    """A folder or a list with notes.txt beside the images: the notes are left out by extension (as the training
    loader's walk leaves them out), counted and named; the images are predicted."""
    rows, _ = champion
    folder = tmp_path / "mixed"
    images = _copy_pngs(rows, folder, 3)
    (folder / "notes.txt").write_text("taken on Monday")
    (folder / "sub").mkdir()
    (folder / "sub" / "labels.json").write_text("{}")
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped 2 file(s) that are not images" in text and str(folder / "notes.txt") in text
    assert "3 predictions written" in text and "2 file(s) that are not images skipped" in text
    listed = runner.invoke(app, ["predict", str(images[0]), str(folder / "notes.txt"), "--out", str(out)])
    assert listed.exit_code == 0, listed.output
    assert "skipped 1 file(s) that are not images" in listed.output and "1 prediction written" in listed.output
    assert len(pd.read_csv(out)) == 1


def test_an_unreadable_lone_file_is_named_without_the_skip_hint(champion, tmp_path):
    """--skip-unreadable "to predict the others" makes no sense when there are no others."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for args in ([str(broken)], [str(broken), "--skip-unreadable"]):
        result = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "p.csv")])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "the file cannot be read as an image" in text and str(broken) in text
        assert "--skip-unreadable" not in text and "Traceback" not in text
    (tmp_path / "b2.png").write_bytes(b"GIF89a")
    both = runner.invoke(app, ["predict", str(broken), str(tmp_path / "b2.png"), "--out", str(tmp_path / "p.csv")])
    assert both.exit_code == 2 and "none of the 2 file(s) can be read" in both.output
    assert "--skip-unreadable" not in both.output


def test_input_errors_come_before_the_heavy_imports_and_the_store(tmp_path):
    """A missing path and an unreadable image are said before torch, MLflow or the store is touched (a new user
    waited 4-7 s for them): in a fresh process, neither torch nor mlflow is imported by then."""
    import subprocess
    import sys
    from pathlib import Path

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    probe = (
        "import sys\n"
        "from flows.cli import main\n"
        "try:\n    main()\n"
        "finally:\n    print('heavy:', sorted(m for m in ('torch', 'mlflow') if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"  # never opened
    for arg, message in ((tmp_path / "missing", "does not exist"), (broken, "cannot be read as an image")):
        cmd = [sys.executable, "-c", probe, "predict", str(arg), "--out", str(tmp_path / "p.csv")]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "heavy: []" in done.stderr, done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_inputs_unlike_the_training_images_are_warned_about_with_counts(champion, tmp_path):
    import numpy as np
    from PIL import Image

    rows, _ = champion
    folder = tmp_path / "odd"
    files = _copy_pngs(rows, folder, 6)
    grey = [np.asarray(Image.open(f).convert("L")) for f in files]
    Image.fromarray(255 - grey[0]).save(folder / "inverted0.png")
    Image.fromarray(255 - grey[1]).save(folder / "inverted1.png")
    Image.fromarray(np.stack([grey[2], grey[2] // 3, grey[2] // 2], axis=-1)).save(folder / "colour.png")
    Image.fromarray(grey[3]).resize((grey[3].shape[1] * 4, grey[3].shape[0] * 4)).save(folder / "large.png")
    result = runner.invoke(app, ["predict", str(folder), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    h, w = grey[0].shape
    assert f"1 of 10 image(s) are not {h}x{w}" in text
    assert "1 of 10 image(s) are in colour" in text
    assert "2 of 10 image(s) look inverted" in text
    plain = runner.invoke(app, ["predict", str(files[0]), str(files[1]), "--out", str(tmp_path / "q.csv")])
    assert plain.exit_code == 0 and "warning" not in plain.output, plain.output  # the training images' own kind


def test_many_paths_are_served_from_one_model_load(champion, tmp_path, monkeypatch):
    import flows.predict as fp

    rows, _ = champion
    a = _copy_pngs(rows, tmp_path / "a", 3)
    _copy_pngs(rows.iloc[3:], tmp_path / "b", 2)
    loads = []
    real = fp.load_model
    monkeypatch.setattr(fp, "load_model", lambda *a, **k: loads.append(1) or real(*a, **k))
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(a[0]), str(tmp_path / "b"), str(a[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert loads == [1] and len(pd.read_csv(out)) == 4


def test_predict_outside_the_checkout_finds_the_store_above_and_never_creates_one(champion, tmp_path):
    """A real `flows predict` in a sub-folder of the folder holding mlruns/mlflow.db, MLFLOW_TRACKING_URI unset:
    it uses that store (and says so); in a folder with no store above it nothing is created (exit 2)."""
    import subprocess
    import sys
    from pathlib import Path

    rows, store_root = champion
    image = _copy_pngs(rows, tmp_path / "img", 1)[0]
    deeper = store_root / "work" / "deeper"
    deeper.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, "-c", "from flows.cli import main; main()", "predict", str(image), "--out", "p.csv"]
    found = subprocess.run(cmd, cwd=deeper, env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert f"found in {store_root}" in found.stderr and "1 prediction written" in found.stdout
    assert not (deeper / "mlruns").exists()


def test_a_read_only_command_with_no_store_anywhere_names_where_it_looked(tmp_path, monkeypatch):
    from recipe import preflight

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(preflight, "PACKAGE_ROOT", tmp_path / "checkout")
    monkeypatch.chdir(tmp_path)
    from PIL import Image

    (tmp_path / "img").mkdir()  # a readable input: the inputs are checked before the store
    Image.new("L", (8, 8)).save(tmp_path / "img" / "a.png")
    for args in (["predict", str(tmp_path / "img")], ["champion"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "no MLflow tracking store found" in text and str(tmp_path / "mlruns" / "mlflow.db") in text
        assert "export MLFLOW_TRACKING_URI=" in text
    assert not (tmp_path / "mlruns").exists()
    monkeypatch.setattr(preflight, "PACKAGE_ROOT", tmp_path)
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").touch()
    uri, origin = preflight.resolve_store(read_only=True, cwd=tmp_path / "mlruns")
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" and origin == f"found in {tmp_path}"


def test_a_run_says_before_it_starts_that_it_records_into_a_store_found_above(tmp_path, monkeypatch, capsys):
    """A fresh checkout inside a folder that holds a store records there: the run says so on stderr up front
    (a new user's trial found it only in the run's last line)."""
    from flows import cli
    from recipe import preflight

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(preflight, "PACKAGE_ROOT", tmp_path / "checkout")
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").touch()
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    uri = cli._use_store(read_only=False)
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert f"MLflow store: {uri} (found in {tmp_path})" in capsys.readouterr().err


def test_constant_images_are_named_in_a_warning_and_still_predicted(champion, tmp_path):
    """An all-black or all-white image has no picture to read: the prediction is written (exit 0, as before) and a
    warning names each such file and its value; a normal image alone gives no warning."""
    import numpy as np
    from PIL import Image

    rows, _ = champion
    folder = tmp_path / "blank"
    files = _copy_pngs(rows, folder, 2)
    h, w = np.asarray(Image.open(files[0])).shape[:2]
    Image.fromarray(np.zeros((h, w), np.uint8)).save(folder / "black.png")
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(folder / "white.png")
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 4 and "4 predictions written" in result.output
    text = " ".join(result.output.split())
    assert "warning: 2 of 4 image(s) are constant, every pixel the same value:" in text
    assert f"{folder / 'black.png'} (all black)" in text and f"{folder / 'white.png'} (all white)" in text
    assert "look inverted" not in text  # the white one is not a digit to invert
    plain = runner.invoke(app, ["predict", str(files[0]), "--out", str(tmp_path / "q.csv")])
    assert plain.exit_code == 0 and "warning" not in plain.output, plain.output


def test_table_rows_with_every_feature_missing_are_named():
    from flows.predict import blank_row_warning

    frame = pd.DataFrame(
        {"x": ["1.5", "", "?", " n/a ", "2"], "town": ["a", "NA", "-", "", ""], "id": ["1", "2", "3", "4", "5"]}
    )
    (warning,) = blank_row_warning(frame, ["x", "town"], "rows.csv")
    assert warning.startswith("rows.csv: 3 of 5 row(s) have every feature missing") and "row 1, 2, 3;" in warning
    assert blank_row_warning(frame, ["x", "id"], "rows.csv") == []  # a column the model ignores does not count
    assert blank_row_warning(frame.iloc[[0, 4]], ["x", "town"], "rows.csv") == []


def test_a_csv_with_blank_rows_is_predicted_whole_with_the_rows_named(tmp_path, monkeypatch):
    from flows import predict

    class TableModel(predict.DataOnlyChampion):  # the champion's interface, without training one
        input_names = ["x", "town"]

        def predict(self, frame):
            return pd.DataFrame({"prediction": [0.5] * len(frame)})

    monkeypatch.setattr(predict, "load_model", lambda uri, trust_code=False: TableModel(None, []))
    (tmp_path / "rows.csv").write_text("x,town,target\n1.5,a,3\n,,4\n?,n/a,\n")
    done = predict.predict_path("models:/rows@champion", tmp_path / "rows.csv", tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3
    assert done.warnings == [
        f"{tmp_path / 'rows.csv'}: 2 of 3 row(s) have every feature missing (empty or a placeholder such as '?' or "
        "'n/a' in all of 2 feature column(s)): row 1, 2; the model has none of their values, so their prediction is "
        "the same guess for any such row"
    ]


def test_a_light_object_on_the_training_images_dark_background_is_not_called_inverted(tmp_path):
    """Polarity is the background's: Fashion-MNIST's bags and pullovers fill much of the frame with light pixels
    (5% of its training images have a mean pixel above 0.5, where the training mean is 0.29) on a black border;
    the mean alone called them inverted. An inverted image has a light border too, and is named."""
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from flows.predict import input_warnings, scan_images

    bag = np.zeros((28, 28), np.uint8)
    bag[3:25, 3:25] = 230  # a light object on a black background: mean pixel 0.57, border 0
    files = [tmp_path / "bag.png", tmp_path / "bag_inverted.png"]
    Image.fromarray(bag).save(files[0])
    Image.fromarray(255 - bag).save(files[1])  # a white border, but mean 0.44: dark like the training images
    dark = np.zeros((28, 28), np.uint8)
    dark[10:18, 10:18] = 255  # a small light object: mean pixel 0.08
    files.append(tmp_path / "shirt_inverted.png")
    Image.fromarray(255 - dark).save(files[2])  # mean 0.92 on a white border
    spec = SimpleNamespace(kind="image", in_shape=(1, 28, 28), image_size=28, mean=[0.29], std=[0.35])
    scan = scan_images(files)
    assert scan.means[0] > 0.5 and scan.borders[0] == 0.0
    text = " ".join(input_warnings(spec, scan))
    assert "1 of 3 image(s) look inverted" in text, text  # the bag (mean 0.56) is not; nor bag_inverted (0.44)
    assert "shirt_inverted.png (0.92)" in text and "bag.png" not in text
    assert "look inverted" not in " ".join(input_warnings(spec, scan_images(files[:1])))
