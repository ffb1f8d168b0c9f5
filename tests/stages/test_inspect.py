"""Stage 1 end to end: the digits preset passes; a folder (or CSV) with bad data fails, naming every problem.

Each test runs the stage inside an MLflow run and reads back what it logged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recipe import tracking
from recipe.config import RecipeConfig, load_config
from recipe.data import DataError, build_manifest, clear_cache, load_data
from recipe.report import Verdict
from recipe.stages import inspect as inspect_stage
from recipe.stages.base import StageContext
from tests.conftest import artifact_paths, private_mlflow_store

IMAGE_ARTIFACTS = {
    "plots/class_histogram.png",
    "plots/samples.png",
    "plots/pixel_stats.png",
    "plots/outliers_mean.png",
    "plots/outliers_std.png",
    "gx/validation_result.json",
    "gx/data_docs/index.html",
    "inspect/problems.json",
    "inspect/manifest.csv",
}


def _run_stage(cfg: RecipeConfig, workdir: Path):
    tracking.setup(cfg.name)
    ctx = StageContext(cfg=cfg, input_cfg=cfg, workdir=workdir)
    with tracking.start_run("inspect", tags={tracking.TAG_STAGE: "inspect"}) as run:
        result = inspect_stage.run(ctx)
    client = mlflow.MlflowClient()
    return result, run.info.run_id, client


def _json(client: mlflow.MlflowClient, run_id: str, path: str, tmp: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp))).read_text())


# --- digits: clean data passes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(_mlflow_template, tmp_path_factory):
    """The stage on the digits preset, once for the module (it pays the Great Expectations import)."""
    tmp = tmp_path_factory.mktemp("digits_stage")
    with private_mlflow_store(_mlflow_template, tmp):
        cfg = load_config("digits")
        result, run_id, client = _run_stage(cfg, tmp / "work")
        yield cfg, result, run_id, client, tmp


def test_digits_pass_every_check(digits_run):
    cfg, result, *_ = digits_run
    assert result.stage == "inspect"
    assert {c.name: c.verdict.value for c in result.checks if c.verdict is not Verdict.PASS} == {}
    assert result.verdict is Verdict.PASS
    assert result.config == cfg  # the splits are fixed by the data layer; the config is handed on unchanged
    gx = next(c for c in result.checks if c.name == "gx_suite")
    assert gx.observed.startswith("all ") and gx.observed.endswith(" expectations met")


def test_digits_run_the_sample_diagnosis_before_the_gx_suite(digits_run):
    _, result, *_ = digits_run
    names = [c.name for c in result.checks]
    diagnosis = ["label_issues", "near_duplicates", "outliers", "near_duplicates_across_splits"]
    assert names[names.index("label_issues") : names.index("label_issues") + 4] == diagnosis
    assert names[-1] == "gx_suite"
    assert result.metrics["time/diagnosis_s"] > 0
    assert result.metrics["data/label_noise_rate"] < 0.01


def test_a_crash_in_the_diagnosis_is_a_warning_naming_it(monkeypatch):
    from recipe.checks import labels

    def broken(m, seed=0):
        raise MemoryError("pretend the features do not fit")

    logged = {}
    monkeypatch.setattr(labels, "evidence", broken)
    monkeypatch.setattr(inspect_stage.tracking, "log_text", lambda text, path: logged.setdefault(path, text))
    found, metrics = inspect_stage._diagnose(build_manifest(RecipeConfig()), RecipeConfig())
    assert [(f.name, f.verdict) for f in found] == [("sample_diagnosis", Verdict.WARN)]
    assert found[0].check.observed == "the diagnosis raised MemoryError: pretend the features do not fit"
    assert "MemoryError" in logged["inspect/diagnosis_error.txt"] and "time/diagnosis_s" in metrics


def test_digits_log_plots_gx_results_data_docs_and_problems(digits_run):
    _, result, run_id, client, tmp = digits_run
    assert IMAGE_ARTIFACTS <= artifact_paths(client, run_id)
    assert "plots/duplicates.png" not in artifact_paths(client, run_id)  # nothing to show
    gx = _json(client, run_id, "gx/validation_result.json", tmp)
    assert gx["success"] is True and gx["statistics"]["unsuccessful_expectations"] == 0
    problems = _json(client, run_id, "inspect/problems.json", tmp)
    assert problems["problems"] == {} and problems["fingerprint"] == build_manifest(RecipeConfig()).fingerprint
    assert set(problems["verdicts"].values()) == {"pass"}
    assert result.artifacts["data_docs"].endswith("gx/data_docs/index.html")
    assert Path(result.artifacts["split_file"]).is_file()


def test_digits_metrics(digits_run):
    _, result, run_id, client, _ = digits_run
    logged = client.get_run(run_id).data.metrics
    assert logged == pytest.approx(result.metrics)
    assert logged["data/n_samples"] == 1797 and logged["data/n_classes"] == 10
    assert logged["data/n_train"] + logged["data/n_val"] + logged["data/n_test"] == 1797
    assert logged["data/imbalance_ratio"] == pytest.approx(183 / 174)
    for key in ("n_unreadable", "n_duplicates_within", "n_duplicates_across", "n_outliers", "gx_failed_expectations"):
        assert logged[f"data/{key}"] == 0, key
    assert 0.25 < logged["data/pixel_mean"] < 0.35 and 0.3 < logged["data/pixel_std"] < 0.45
    assert all(k.startswith("data/") for k in logged if k != "time/diagnosis_s")  # the one timing: the diagnosis


def test_digits_notes_name_the_fingerprint_and_the_split_file(digits_run):
    _, result, *_ = digits_run
    m = build_manifest(RecipeConfig())
    assert result.notes[:2] == [
        f"data fingerprint {m.fingerprint} (1797 samples from {m.root})",
        f"train/val/test splits are fixed in {m.split_file}",
    ]


# --- a folder with every kind of problem --------------------------------------------------------------------


def _png(path: Path, rng: np.random.Generator, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)


@pytest.fixture
def bad_folder(tmp_path, monkeypatch):
    """30 + 30 + 2 random 12x12 PNGs, a corrupt and a truncated file, an empty class folder and a stray
    file; after the splits are fixed, one val file is overwritten with a train file (leakage) and one
    train file with another (a copy within the split)."""
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, n in {"ants": 30, "bees": 30, "wasps": 2}.items():
        for i in range(n):
            _png(root / cls / f"{i:03d}.png", rng)
    (root / "ants" / "broken.png").write_bytes(b"this is not a png")
    good = (root / "bees" / "000.png").read_bytes()
    (root / "bees" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "hornets").mkdir()
    (root / "README.txt").write_text("images for the bad-data test\n")
    cfg = RecipeConfig(name="bad-folder", data={"source": "imagefolder", "root": root})

    df = build_manifest(cfg).df  # fixes (and saves) the splits; rewriting contents keeps them
    ants = df[(df["label"] == "ants") & df["readable"]]
    leaked_src = ants[ants["split"] == "train"]["id"].iloc[0]
    leaked_dst = ants[ants["split"] == "val"]["id"].iloc[0]
    shutil.copyfile(root / leaked_src, root / leaked_dst)
    bees = df[(df["label"] == "bees") & df["readable"] & (df["split"] == "train")]["id"]
    copy_src, copy_dst = bees.iloc[1], bees.iloc[2]
    shutil.copyfile(root / copy_src, root / copy_dst)
    clear_cache()
    return cfg, {"leaked": (leaked_src, leaked_dst), "copied": (copy_src, copy_dst)}


def test_bad_folder_fails_naming_every_problem_and_file(bad_folder, mlflow_store, tmp_path):
    cfg, files = bad_folder
    with pytest.raises(DataError, match="2 unreadable files"):
        load_data(cfg)  # the strict loader refuses this data; the stage must still report it all
    result, run_id, client = _run_stage(cfg, tmp_path / "work")
    checks = {c.name: c for c in result.checks}
    verdicts = {n: c.verdict.value for n, c in checks.items() if c.verdict is not Verdict.PASS}
    assert verdicts == {
        "files_readable": "fail",
        "no_empty_classes": "fail",
        "ignored_files": "warn",
        "split_sizes": "warn",
        "class_balance": "warn",
        "duplicates_within_split": "warn",
        "no_leakage_across_splits": "fail",
        "gx_suite": "fail",
    }
    assert result.verdict is Verdict.FAIL

    readable = checks["files_readable"].observed
    assert readable.startswith("2 of 64 files cannot be read: ")
    assert "ants/broken.png (UnidentifiedImageError" in readable and "bees/truncated.png (" in readable
    assert str(cfg.data.root) not in readable  # names relative to data.root, errors without the full path
    leaked_src, leaked_dst = files["leaked"]
    assert f"{leaked_src} (train) = {leaked_dst} (val)" in checks["no_leakage_across_splits"].observed
    copy_src, copy_dst = files["copied"]
    assert f"train: {copy_src} = {copy_dst}" in checks["duplicates_within_split"].observed
    assert checks["no_empty_classes"].observed.endswith("images/hornets")
    assert "README.txt" in checks["ignored_files"].observed
    assert "'ants' (30) vs 'wasps' (2)" in checks["class_balance"].observed
    assert "classes absent from val: wasps" in checks["split_sizes"].observed
    for c in checks.values():
        assert (c.advice != "") == (c.verdict is not Verdict.PASS), c.name


def test_bad_folder_problems_json_and_plots(bad_folder, mlflow_store, tmp_path):
    cfg, files = bad_folder
    result, run_id, client = _run_stage(cfg, tmp_path / "work")
    assert IMAGE_ARTIFACTS | {"plots/duplicates.png"} <= artifact_paths(client, run_id)
    problems = _json(client, run_id, "inspect/problems.json", tmp_path)["problems"]
    assert {i["id"] for i in problems["files_readable"]["items"]} == {"ants/broken.png", "bees/truncated.png"}
    assert all(i["error"] and i["path"].startswith(str(cfg.data.root)) for i in problems["files_readable"]["items"])
    leak = problems["no_leakage_across_splits"]["items"]
    assert [{m["id"] for m in g["members"]} for g in leak] == [set(files["leaked"])]
    assert problems["no_empty_classes"]["items"] == [{"folder": str(cfg.data.root / "hornets")}]
    failed = {f["check"] for f in problems["gx_suite"]["items"]}
    assert {"files_readable", "no_leakage_across_splits", "duplicates_within_split", "class_balance"} <= failed
    metrics = client.get_run(run_id).data.metrics
    assert (
        metrics["data/n_unreadable"],
        metrics["data/n_duplicates_across"],
        metrics["data/n_duplicates_within"],
        metrics["data/n_empty_classes"],
    ) == (2, 2, 1, 1)
    gx = _json(client, run_id, "gx/validation_result.json", tmp_path)
    assert gx["success"] is False


# --- CSV ----------------------------------------------------------------------------------------------------


def test_csv_with_a_null_an_outlier_and_a_constant_column(tmp_path, monkeypatch, mlflow_store):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame(
        {
            "height": rng.normal(170, 10, n),
            "weight": rng.normal(70, 8, n),
            "station": 1.0,
            "colour": rng.choice(["red", "blue"], n),
            "label": ["yes", "no"] * (n // 2),
        }
    )
    frame.loc[3, "weight"] = np.nan
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    cfg = RecipeConfig(name="people", data={"source": "csv", "root": path, "target": "label"})
    df = build_manifest(cfg).df
    row = int(df.index[df["split"] == "val"][0])
    frame.loc[row, "height"] = 1700.0  # centimetres typed as millimetres, in a val row
    frame.to_csv(path, index=False)

    result, run_id, client = _run_stage(cfg, tmp_path / "work")
    checks = {c.name: c for c in result.checks}
    verdicts = {n: c.verdict.value for n, c in checks.items() if c.verdict is not Verdict.PASS}
    # the missing cell is filled with the train median (a warning, not a stop); a column constant in every split
    # carries nothing and harms nothing: named, not warned about (#13); the 1700 row is also far from every other
    # row in feature space (cleanlab's OutOfDistribution, the outliers check)
    assert verdicts == {"feature_nulls": "warn", "feature_ranges": "warn", "outliers": "warn", "gx_suite": "warn"}
    # the 1700 row is named; so is row 3, the one row whose weight is missing (its missing-value indicator is set)
    assert f"row:{row} (val, z " in checks["outliers"].observed and "row:3 (train, z " in checks["outliers"].observed
    assert checks["feature_nulls"].observed == "1 missing value: weight: 1 of 40 (2.5%, written as empty), rows row:3"
    assert checks["constant_features"].observed.startswith("1 constant column in train: station (= 1.0)")
    assert f"height = 1700 (row:{row}, val; train " in checks["feature_ranges"].observed
    assert checks["feature_types"].observed == "3 numeric columns; 1 text column one-hot encoded into 2: colour (2)"
    arts = artifact_paths(client, run_id)
    assert {
        "plots/class_histogram.png",
        "plots/features.png",
        "gx/validation_result.json",
        "gx/data_docs/index.html",
        "inspect/problems.json",
    } <= arts
    assert "plots/samples.png" not in arts
    gx = _json(client, run_id, "gx/validation_result.json", tmp_path)
    assert len(gx["validations"]) == 2  # the manifest and the feature table
    metrics = client.get_run(run_id).data.metrics
    assert (metrics["data/n_missing_values"], metrics["data/n_constant_features"], metrics["data/n_out_of_range"]) == (
        1,
        1,
        1,
    )


def test_a_gx_error_is_a_failed_check_not_a_crash(monkeypatch, mlflow_store, tmp_path):
    from recipe.checks import expectations

    def broken(*args, **kwargs):
        raise RuntimeError("GX exploded")

    monkeypatch.setattr(expectations, "validate", broken)
    cfg = RecipeConfig(name="gx-broken", data={"source": "csv", "name": "wine"})
    result, run_id, client = _run_stage(cfg, tmp_path / "work")
    gx = next(c for c in result.checks if c.name == "gx_suite")
    assert gx.verdict is Verdict.FAIL and gx.observed == "Great Expectations failed: RuntimeError: GX exploded"
    assert [c.verdict for c in result.checks if c.name != "gx_suite"] == [Verdict.PASS] * (len(result.checks) - 1)
    assert "gx/error.txt" in artifact_paths(client, run_id)


def test_figures_skip_what_there_is_nothing_to_draw_for():
    from recipe.plots.data import data_figures
    from tests.checks.factories import image_rows, make

    rows = [
        {
            **r,
            "readable": False,
            "hash": "",
            "height": None,
            "width": None,
            "channels": None,
            "mean": np.nan,
            "std": np.nan,
        }
        for r in image_rows({"a": 4, "b": 4})
    ]
    figs = data_figures(make(rows), RecipeConfig())  # nothing readable: no image is ever read
    assert list(figs) == ["plots/class_histogram.png"]


def test_a_figure_that_fails_to_draw_is_a_note_not_a_lost_report(monkeypatch, mlflow_store, tmp_path):
    import recipe.plots.data as plots

    def broken(*args, **kwargs):
        raise ValueError("no ink")

    monkeypatch.setattr(plots, "class_histogram", broken)
    cfg = RecipeConfig(name="plot-broken", data={"source": "csv", "name": "wine"})
    result, run_id, client = _run_stage(cfg, tmp_path / "work")
    assert result.verdict is Verdict.PASS
    assert "plots/class_histogram.png could not be drawn (ValueError: no ink); see plots/errors.txt" in result.notes
    arts = artifact_paths(client, run_id)
    assert "plots/errors.txt" in arts and "plots/features.png" in arts and "plots/class_histogram.png" not in arts
