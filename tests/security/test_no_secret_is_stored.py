"""A storage password given on the command line never reaches the MLflow store, Prefect's parameters or the logs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.fakes import fake_stages  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness")
PASSWORD = "Pl4ntedPassw0rd"


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_storage_password_is_in_no_store_parameter_or_log(fake_stages, mlflow_store, tmp_path, monkeypatch):  # noqa: F811
    from prefect.client.orchestration import get_client

    logs = tmp_path / "logs"
    monkeypatch.setenv("RECIPE_LOG_DIR", str(logs))
    url = f"postgresql://optuna:{PASSWORD}@127.0.0.1:1/optuna"
    result = CliRunner().invoke(
        app, ["run", "recipe", "--set", "name=secret-test", "--set", f"stages.tune.storage={url}"]
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output

    store = Path(mlflow_store.removeprefix("sqlite:///")).parent  # the sqlite db and the artifacts beside it
    assert any(store.rglob("config.json")) or any(store.rglob("*.db"))
    assert _files_holding(store, PASSWORD.encode()) == []
    assert "optuna:***@127.0.0.1" in str(list(store.rglob("*.db"))[0].read_bytes())  # the redacted form is there

    assert list(logs.glob("run-*.log")) and _files_holding(logs, PASSWORD.encode()) == []
    assert oct(logs.stat().st_mode & 0o777) == "0o700"

    async def parameters():
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200)
            return [r.parameters for r in runs]

    stored = asyncio.run(parameters())
    assert any("optuna:***@127.0.0.1" in str(p) for p in stored)  # this run's, redacted
    assert not any(PASSWORD in str(p) for p in stored)
    home = Path(os.environ["PREFECT_HOME"])
    assert _files_holding(home, PASSWORD.encode()) == []  # the harness's database and logs


def test_the_log_folder_refuses_a_symlink_planted_in_its_place(tmp_path, monkeypatch):
    from flows.cli import _private_folder

    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "logs").symlink_to(target)
    with pytest.raises(OSError, match="not a folder of yours"):
        _private_folder(tmp_path / "logs")
