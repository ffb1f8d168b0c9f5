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


class _Split:
    """A stand-in DataBundle: only the size of the training split matters to epochs_for."""

    def __init__(self, n_train: int) -> None:
        self.n_train = n_train

    def rows(self, split: str) -> list[int]:
        return list(range(self.n_train if split == "train" else 0))


@pytest.mark.parametrize(
    ("n_train", "min_steps", "budget", "epochs", "expected"),
    [
        (7000, 800, 8, 8, 8),  # 110 steps an epoch: the budget's 880 steps are enough
        (7000, 800, 8, 4, 4),  # ... so tune's 4-epoch trials stay at 4
        (1400, 800, 8, 8, 37),  # 22 steps an epoch: 176 -> 814 steps
        (1400, 800, 8, 4, 19),  # a half-budget stage stays about half
        (210, 400, 8, 8, 100),  # 4 steps an epoch: a small folder gets 100 epochs
        (210, None, 8, 8, 8),  # off
        (0, 400, 8, 8, 8),  # no training data: nothing to scale
    ],
)
def test_epochs_for_gives_the_budget_at_least_min_steps(n_train, min_steps, budget, epochs, expected):
    from recipe.fit import epochs_for

    cfg = RecipeConfig(budget={"min_steps": min_steps, "epochs": budget}, data={"batch_size": 64})
    assert epochs_for(epochs, cfg, _Split(n_train)) == expected


def test_with_min_steps_copies_the_section_and_notes_the_raise():
    from recipe.config import RegularizeConfig
    from recipe.fit import with_min_steps

    cfg = RecipeConfig(budget={"min_steps": 400, "epochs": 8}, data={"batch_size": 64})
    s, notes = RegularizeConfig(epochs=8), []
    raised = with_min_steps(s, cfg, _Split(210), notes)
    assert raised.epochs == 100 and s.epochs == 8
    assert notes == [
        "small data: 8 -> 100 epochs per run, so the budget takes at least budget.min_steps = 400 optimiser steps at "
        "batch size 64"
    ]
    assert with_min_steps(s, cfg, _Split(7000), notes) is s and len(notes) == 1
