"""The `flows` command's quick paths: help, presets, config, train."""

import subprocess
import sys

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_help_imports_nothing_heavy():
    """No heavy library behind ``import flows.cli`` (bench/cli_startup.py times it against a bare python)."""
    code = "import sys, flows.cli; print(sorted(m for m in ('torch', 'prefect', 'mlflow', 'great_expectations') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "run" in result.output and "stages" in result.output


def test_presets_lists_the_shipped_ones():
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.strip().splitlines()] == ["digits", "imagefolder", "tabular"]


def test_config_shows_overrides_and_hash():
    result = runner.invoke(app, ["config", "--preset", "digits", "--set", "optim.lr=1e-2"])
    assert result.exit_code == 0
    assert "lr: 0.01" in result.output and "# config_hash: " in result.output


def test_config_typo_is_a_clear_error_with_exit_2():
    result = runner.invoke(app, ["config", "--set", "optim.lrr=1"])
    assert result.exit_code == 2
    assert "unknown config key 'optim.lrr'" in result.output and "did you mean 'optim.lr'" in result.output


def test_train_runs_end_to_end_on_digits_and_says_where_it_logged(mlflow_store):
    from mlflow import MlflowClient

    result = runner.invoke(app, ["train", "--preset", "digits", "--epochs", "3", "--set", "trainer.progress=false"])
    assert result.exit_code == 0, result.output
    assert "val/accuracy" in result.output and "trained in" in result.output
    text = " ".join(result.output.split())
    (run,) = MlflowClient(mlflow_store).search_runs(
        [MlflowClient(mlflow_store).get_experiment_by_name("digits").experiment_id]
    )
    assert f"MLflow: run {run.info.run_id} (digits:train) in experiment 'digits' of {mlflow_store}" in text
    assert f"mlflow ui --backend-store-uri {mlflow_store}" in text
    assert run.data.tags["recipe.kind"] == "train" and "val/accuracy" in run.data.metrics


def test_train_on_a_missing_folder_names_it(tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["train", "--preset", "imagefolder", "--set", f"data.root={missing}"])
    assert result.exit_code == 2
    assert str(missing) in result.output and "does not exist" in result.output


def test_config_explain_lists_every_setting_with_type_default_and_meaning():
    result = runner.invoke(app, ["config", "--explain"])
    assert result.exit_code == 0
    assert 'optim.lr  (float, default 0.0003)\n    "Adam is safe" at 3e-4' in result.output
    assert "stages.baselines.init_loss_warn  (float, default 0.1)" in result.output


def test_output_into_a_closed_pipe_is_the_sigpipe_status_not_a_failed_stage():
    """`flows config --explain | head`: the pipe closes before the output is written; click would exit 1 (a
    failed stage, in the README's table), the shell's status for a process ended by SIGPIPE is 141, and nothing
    is printed about it (a new user's trial)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    p = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import main; main()", "config", "--explain"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141, err
    assert err == b""
    # --help is written by rich, which ends a closed pipe its own way (its stdout pointed at /dev/null, exit 1)
    for args in (["--help"], ["run", "recipe", "--help"]):
        p = subprocess.Popen(
            [sys.executable, "-c", "from flows.cli import main; main()", *args],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        p.stdout.close()
        err = p.stderr.read()
        assert p.wait(timeout=60) == 141 and err == b"", (args, err)


def test_flows_stages_is_read_only_and_imports_no_mlflow(tmp_path):
    import os

    db = tmp_path / "absent" / "mlflow.db"
    code = (
        "import sys; from flows.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['stages']); print(r.exit_code); "
        "print(sorted(m for m in ('torch', 'mlflow', 'prefect') if m in sys.modules))"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split("\n")[:2] == ["0", "[]"], out.stdout + out.stderr
    assert not db.parent.exists()


def test_train_that_diverges_is_an_error_with_advice(mlflow_store):
    result = runner.invoke(
        app,
        ["train", "--preset", "digits", "--epochs", "2", "--set", "optim.lr=100", "--set", "trainer.progress=false"],
    )
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "lower optim.lr" in result.output


def _fit(metrics, *, diverged=False, task="classification", counts=(50, 50), n_val=200):
    from types import SimpleNamespace

    data = SimpleNamespace(task=task, num_classes=len(counts), class_counts=list(counts), split_sizes={"val": n_val})
    return SimpleNamespace(metrics=metrics, diverged=diverged, data=data)


def test_judge_fit_names_chance_level_divergence_and_passes_a_good_run():
    from flows.cli import judge_fit

    assert judge_fit(_fit({"train/loss": 0.1, "val/loss": 0.2, "val/accuracy": 0.95})) == []
    chance = judge_fit(_fit({"train/loss": 0.69, "val/loss": 0.69, "val/accuracy": 0.55}))
    assert len(chance) == 1 and "chance level" in chance[0] and "0.5000" in chance[0]
    assert "diverged" in judge_fit(_fit({"train/loss": float("nan"), "val/loss": 1.0}))[0]
    assert "diverged" in judge_fit(_fit({"train/loss": 0.1}, diverged=True))[0]
    assert "diverged" in judge_fit(_fit({"train/loss": 5.0, "val/loss": 5.0, "val/accuracy": 0.5}))[0]
    assert judge_fit(_fit({"train/loss": 3.0, "val/loss": 3.0}, task="regression", counts=(1,))) == []


def test_train_with_an_unknown_model_is_exit_2_not_a_traceback():
    result = runner.invoke(app, ["train", "--preset", "digits", "--set", "model.name=cnnn"])
    assert result.exit_code == 2 and "did you mean 'cnn'" in result.output
