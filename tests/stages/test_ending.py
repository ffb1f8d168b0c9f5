"""The one stage ending: the result builder, the checkpoint publisher and the guarded figure logger."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402

from recipe import tracking  # noqa: E402
from recipe.checks.base import finding  # noqa: E402
from recipe.config import RecipeConfig  # noqa: E402
from recipe.report import Verdict  # noqa: E402
from recipe.stages.ending import Figures, finish, publish_checkpoint  # noqa: E402
from tests.conftest import artifact_paths  # noqa: E402


def test_finish_merges_metrics_and_takes_the_worst_gated_verdict():
    cfg = RecipeConfig()
    gated = finding("gate", "h", "o", "e", Verdict.PASS, metrics={"a": 1.0})
    advisory = finding("advice", "h", "o", "e", Verdict.FAIL, "advice", metrics={"b": 2.0})
    r = finish("s", [gated, advisory], cfg, gates=("gate",), metrics={"a": 0.0, "c": 3.0}, notes=["n"])
    assert r.verdict is Verdict.PASS and [c.name for c in r.checks] == ["gate", "advice"]
    assert r.metrics == {"a": 1.0, "b": 2.0, "c": 3.0} and r.notes == ["n"] and r.config is cfg
    assert finish("s", [gated, advisory], cfg).verdict is Verdict.FAIL  # no gates: every check counts


def test_a_plotting_error_is_a_note_and_the_checkpoint_an_artifact(mlflow_store, tmp_path):
    tracking.setup("ending")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    with tracking.start_run("stage", {}) as run:
        figures = Figures()

        def broken():
            raise ValueError("no ink")

        figures.log("plots/broken.png", broken)
        figures.log("plots/fine.png", lambda: plt.figure())
        figures.log("plots/none.png", lambda: None)
        notes = figures.close()
        local, uri = publish_checkpoint(weights, tmp_path / "stage", "stage.pt")
    assert notes == ["plots/broken.png could not be drawn (ValueError: no ink); see plots/errors.txt"]
    names = artifact_paths(mlflow.MlflowClient(), run.info.run_id)
    assert {"plots/fine.png", "plots/errors.txt", "checkpoint/stage.pt"} <= names
    assert "plots/broken.png" not in names and "plots/none.png" not in names
    assert local.read_bytes() == b"weights" and uri.endswith("checkpoint/stage.pt")
    assert Figures(enabled=False).close() == []
