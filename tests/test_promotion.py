"""Challenger, then champion (recipe.squeeze.promotion): what squeeze registers moves `@champion` only when the stage
did not fail, the data is the champion's, and it is at least as good on the same validation split; `flows champion`
shows both and promotes by hand. Tiny MLPs on small CSVs keep it fast; the registry is a real MLflow one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from recipe import tracking
from recipe.config import load_config
from recipe.data import load_data
from recipe.fit import build_for, fit
from recipe.models import final_linear
from recipe.report import Verdict
from recipe.squeeze import promotion, publish
from recipe.squeeze.candidates import Squeezed
from recipe.squeeze.runs import Context
from recipe.tasks import task_for

PASS, FAIL = Verdict.PASS, Verdict.FAIL


def _csv(path, seed: int, n: int = 240):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(4)}, "label": y}).to_csv(path, index=False)
    return path


@pytest.fixture
def tables(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data"))
    return _csv(tmp_path / "loans.csv", 0), _csv(tmp_path / "churn.csv", 1)


def _setup(csv, *extra):
    cfg = load_config(
        "tabular",
        overrides=[f"data.root={csv}", "data.target=label", "trainer.progress=false", "model.width=8", *extra],
    )
    return cfg, load_data(cfg)


def _net(cfg, data, epochs: int):
    """A member trained for ``epochs`` (0: the seeded initialisation, worse than any trained one)."""
    if epochs == 0:
        net = build_for(cfg, data)
        with torch.no_grad():  # confidently wrong: the init's near-uniform guesses scaled up and flipped
            final_linear(net).weight.mul_(-8.0)  # the logits layer (TabM's: every member's head)
        return net.eval()
    return fit(cfg, data, epochs=epochs, evaluate=False, log=False, validate=False).model.cpu().eval()


def squeeze(cfg, data, net, verdict: Verdict):
    """What the squeeze stage does after choosing ``net``: register it, then decide about the champion."""
    tracking.setup(cfg.name)
    with tracking.start_run("squeeze", tracking.run_tags(cfg, data.fingerprint, "squeeze", "stage")) as run:
        sc = Context(
            SimpleNamespace(input_cfg=cfg),
            cfg,
            data,
            task_for(data),
            cfg.stages.squeeze,
            1,
            run.info.run_id,
            run.info.experiment_id,
        )
        registered = publish.register(sc, Squeezed("reference", "a tiny mlp", [net], [cfg]))
        assert not registered.error, registered.error
        found = publish.promote(sc, registered, verdict)
    return registered.version, found.check


def aliases(name):
    model = MlflowClient().get_registered_model(name)
    return {a: str(v) for a, v in model.aliases.items()}


def test_a_worse_challenger_does_not_move_the_champion_a_better_one_does_and_a_fail_never(mlflow_store, tables):
    cfg, data = _setup(tables[0])
    assert cfg.name == "loans"
    v1, check = squeeze(cfg, data, _net(cfg, data, 2), PASS)
    assert check.verdict is PASS and aliases("loans") == {"champion": v1, "challenger": v1}
    assert "first model registered" in check.observed

    v2, check = squeeze(cfg, data, _net(cfg, data, 0), PASS)
    assert aliases("loans") == {"champion": v1, "challenger": v2}
    assert check.verdict is Verdict.WARN and "worse than the champion (version 1)" in check.observed
    assert f"--promote {v2}" in check.advice

    best = _net(cfg, data, 40)
    v3, check = squeeze(cfg, data, best, FAIL)  # better, but its squeeze failed
    assert aliases("loans") == {"champion": v1, "challenger": v3}
    assert "failed its checks" in check.observed
    tags = MlflowClient().get_model_version("loans", v3).tags
    assert tags[tracking.TAG_VERDICT] == "fail" and tags[tracking.TAG_FINGERPRINT] == data.fingerprint
    assert {tracking.TAG_CONFIG_HASH, tracking.TAG_CODE_VERSION, promotion.TAG_PARENT_RUN, promotion.TAG_RUN} <= set(
        tags
    )

    v4, check = squeeze(cfg, data, best, PASS)  # the same better model, passing
    assert check.verdict is PASS and aliases("loans") == {"champion": v4, "challenger": v4}
    assert "at least as good as version 1" in check.observed
    scores = MlflowClient().get_model_version("loans", v4).tags
    assert float(scores[promotion.TAG_VAL_LOSS]) < float(
        MlflowClient().get_model_version("loans", v1).tags[promotion.TAG_VAL_LOSS]
    )


def test_two_csv_recipes_in_one_store_keep_two_champions_and_other_data_never_replaces_one(mlflow_store, tables):
    loans, loans_data = _setup(tables[0])
    churn, churn_data = _setup(tables[1])
    assert (loans.name, churn.name) == ("loans", "churn")
    a, _ = squeeze(loans, loans_data, _net(loans, loans_data, 2), PASS)
    b, _ = squeeze(churn, churn_data, _net(churn, churn_data, 40), PASS)
    assert aliases("loans")["champion"] == a and aliases("churn")["champion"] == b
    # the same recipe name on other data: registered as a challenger, the champion stays
    other, other_data = _setup(tables[1], "name=loans")
    v, check = squeeze(other, other_data, _net(other, other_data, 40), PASS)
    assert aliases("loans") == {"champion": a, "challenger": v}
    assert check.verdict is Verdict.WARN and "trained on other data" in check.observed


def test_flows_champion_shows_both_and_promotes_by_hand(mlflow_store, tables):
    from flows.cli import app

    cfg, data = _setup(tables[0])
    v1, _ = squeeze(cfg, data, _net(cfg, data, 2), PASS)
    v2, _ = squeeze(cfg, data, _net(cfg, data, 0), PASS)
    runner = CliRunner()
    shown = runner.invoke(app, ["champion", "--name", "loans"])
    assert shown.exit_code == 0, shown.output
    assert f"champion: version {v1}" in shown.output and f"challenger: version {v2}" in shown.output
    assert data.fingerprint in shown.output
    moved = runner.invoke(app, ["champion", "--name", "loans", "--promote", v2])
    assert moved.exit_code == 0, moved.output
    assert f"version {v2} (was version {v1})" in moved.output and aliases("loans")["champion"] == v2
    missing = runner.invoke(app, ["champion", "--name", "loans", "--promote", "99"])
    assert missing.exit_code == 2 and "has no version '99'" in missing.output
    unknown = runner.invoke(app, ["champion", "--name", "nosuch"])
    assert unknown.exit_code == 2 and "no model is registered under 'nosuch'" in unknown.output
    assert "registered models: loans" in unknown.output


def test_flows_champion_without_a_store_says_so_and_creates_none(tmp_path, monkeypatch):
    from flows.cli import app

    store = tmp_path / "none" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    result = CliRunner().invoke(app, ["champion"])
    assert result.exit_code == 2 and "no MLflow store at" in result.output and not store.exists()
