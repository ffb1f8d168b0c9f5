"""recipe.fit.fit: the one way a config is trained (flows train and every stage call it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipe.config import RecipeConfig
from recipe.data import load_data
from recipe.fit import fit
from recipe.train.callbacks import Callback


@pytest.fixture
def wine(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    cfg = RecipeConfig(
        name="fit-test",
        data={"source": "csv", "name": "wine", "batch_size": 32},
        model={"name": "mlp", "width": 16, "depth": 1},
        budget={"epochs": 3},
        trainer={"progress": False},
    )
    return cfg, load_data(cfg)


def test_fit_trains_evaluates_and_saves(wine, tmp_path):
    cfg, data = wine
    r = fit(cfg, data, log=False)
    assert r.data is data and r.epochs == 3 and len(r.history) == 3 and not r.diverged and r.divergence == ""
    n_val = data.split_sizes["val"]
    assert r.val.scores.shape == r.val.losses.shape == (n_val,) and r.val.metric == r.val.metrics["accuracy"]
    assert r.val.loss == pytest.approx(float(np.mean(r.val.losses)))
    assert r.summary("x/")["x/val_accuracy"] == r.val.metric and r.metrics["val/loss"] > 0
    assert len(r.losses) == len(r.smooth_losses) == r.trainer.step
    path = r.save(tmp_path / "w" / "wine.pt")
    assert path.is_file() and r.weights_path == path
    again = fit(cfg, data, log=False, init_path=path, epochs=1, evaluate=False)
    assert again.val is None and again.init_note.startswith("initialised") and again.epochs == 1


def test_a_diverging_fit_says_so_without_raising(wine):
    cfg, data = wine

    class Poison(Callback):
        def after_loss(self):
            if self.trainer.training:
                self.trainer.loss = self.trainer.loss * torch.tensor(float("nan"))

    r = fit(cfg, data, callbacks=[Poison()], log=False, evaluate=False)
    assert r.diverged and "diverged" in r.divergence and r.stop_reason == r.divergence and r.epochs == 0
