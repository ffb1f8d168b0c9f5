"""`flows run recipe --stage inspect` end to end: the CLI, the Prefect flow, the real stage, MLflow."""

import json
import shutil

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from recipe import tracking

pytestmark = pytest.mark.usefixtures("prefect_harness", "mlflow_store")
runner = CliRunner()


def artifact_paths(client, run_id, path=""):
    out = []
    for f in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, f.path) if f.is_dir else [f.path]
    return out


def test_digits_inspect_passes_and_mlflow_holds_checks_plots_and_data_docs(tmp_path):
    report_file = tmp_path / "report.json"
    result = runner.invoke(app, ["run", "recipe", "--stage", "inspect", "--report", str(report_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["verdict"] == "pass" and [s["stage"] for s in report["stages"]] == ["inspect"]

    client = MlflowClient()
    parent = client.get_run(report["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags[tracking.TAG_KIND] == "flow"
    exp = client.get_experiment_by_name("digits")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [c.data.tags[tracking.TAG_STAGE] for c in children] == ["inspect"]
    child = children[0]
    assert child.data.tags[tracking.TAG_VERDICT] == "pass"
    assert child.data.metrics["data/n_samples"] == 1797
    files = artifact_paths(client, child.info.run_id)
    assert "checks.json" in files and "gx/validation_result.json" in files
    assert "gx/data_docs/index.html" in files
    assert {"plots/class_histogram.png", "plots/samples.png"} <= set(files)
    checks = json.loads(open(client.download_artifacts(child.info.run_id, "checks.json", str(tmp_path))).read())
    assert {c["name"] for c in checks} >= {"files_readable", "no_leakage_across_splits", "class_balance", "gx_suite"}

    listing = runner.invoke(app, ["stages"])
    assert listing.exit_code == 0
    row = next(line for line in listing.output.splitlines() if " inspect " in line)
    assert "pass" in row and child.info.run_id in row


def test_a_faulty_image_folder_fails_and_the_report_names_every_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, n in [("cat", 24), ("dog", 24), ("fox", 2)]:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((12, 12, 3)) * 255).astype("uint8")).save(root / cls / f"{cls}{i}.png")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG truncated")
    for i in range(10):  # enough copies that some land in different splits
        shutil.copy(root / "cat" / f"cat{i}.png", root / "dog" / f"copy{i}.png")
    report_file = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "run",
            "recipe",
            "--preset",
            "imagefolder",
            "--set",
            f"data.root={root}",
            "--stage",
            "inspect",
            "--report",
            str(report_file),
        ],
    )
    assert result.exit_code == 1, result.output
    import traceback

    assert report_file.is_file(), "".join(traceback.format_exception(result.exception))[-3000:]
    checks = {c["name"]: c for c in json.loads(report_file.read_text())["stages"][0]["checks"]}
    assert checks["files_readable"]["verdict"] == "fail" and "cat/broken.png" in checks["files_readable"]["observed"]
    assert checks["no_leakage_across_splits"]["verdict"] == "fail"
    assert "copy" in checks["no_leakage_across_splits"]["observed"]
    assert checks["class_balance"]["verdict"] == "warn" and "fox" in checks["class_balance"]["observed"]
    assert "cat/broken.png" in result.output  # the terminal summary names it too
