"""Fixed costs on a step cadence (recipe.train.cadence): tiny epochs validate every few epochs, train the same."""

from __future__ import annotations

import pytest
import torch

from recipe.config import RecipeConfig
from recipe.data import load_data
from recipe.fit import fit
from recipe.train.cadence import EpochGroups, epochs_per_eval
from recipe.train.callbacks import SWA


@pytest.mark.parametrize(
    ("epochs", "spe", "min_steps", "want"),
    [
        (200, 4, 32, 8),  # a 300-image folder: 25 validations instead of 200
        (30, 19, 32, 1),  # digits: 30 epochs keep every validation (30 // 20 = 1)
        (100, 4, 32, 5),  # capped so 20 validations remain
        (200, 40, 32, 1),  # epochs already long enough
        (200, 4, 0, 1),  # off
        (7, 1, 32, 1),  # too few epochs for fewer than 20 points
    ],
)
def test_epochs_per_eval(epochs, spe, min_steps, want):
    assert epochs_per_eval(epochs, spe, min_steps) == want


def test_epochs_per_eval_refuses_negative_arguments():
    with pytest.raises(ValueError, match="non-negative"):
        epochs_per_eval(10, -1, 32)


class _Batches:
    """Three batches per epoch, named by (epoch, index), in an order that depends on the epoch."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 3

    def __iter__(self):
        order = [0, 1, 2] if self.epoch % 2 == 0 else [2, 1, 0]
        return iter([(self.epoch, i) for i in order])


def test_epoch_groups_run_the_same_steps_as_plain_epochs():
    plain = _Batches()
    want = []
    for e in range(7):
        plain.set_epoch(e)
        want += list(plain)
    groups = EpochGroups(_Batches(), 3, 7)
    assert groups.groups == 3 and groups.total_steps == 21
    got, lens = [], []
    for g in range(groups.groups):
        groups.set_epoch(g)
        lens.append(len(groups))
        got += list(groups)
    assert got == want and lens == [9, 9, 3]
    assert [groups.data_epoch(g) for g in range(3)] == [2, 5, 6]
    with pytest.raises(ValueError, match="per_group"):
        EpochGroups(_Batches(), 0, 7)


@pytest.fixture
def wine(tmp_path, monkeypatch):
    """178 rows at batch size 32: 4 steps an epoch."""
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    cfg = RecipeConfig(
        name="cadence-test",
        data={"source": "csv", "name": "wine", "batch_size": 32},
        model={"name": "mlp", "width": 16, "depth": 1},
        optim={"name": "adam", "lr": 1e-2},
        schedule={"name": "cosine"},
        budget={"epochs": 40},
        trainer={"progress": False},
    )
    return cfg, load_data(cfg)


def test_tiny_epochs_validate_every_few_epochs_and_train_the_same_weights(wine):
    cfg, data = wine
    every = fit(cfg.with_overrides(["trainer.eval_min_steps=0"]), data, log=False)
    grouped = fit(cfg, data, log=False)
    k = epochs_per_eval(40, 4, 32)
    assert k == 2
    assert len(every.history) == 40 and len(grouped.history) == 20
    assert every.epochs == grouped.epochs == 40 and grouped.trainer.step == every.trainer.step == 160
    assert [h["epoch"] for h in grouped.history] == list(range(1, 40, 2))
    # the optimiser saw the same batches in the same order, under the same (cosine) schedule
    for a, b in zip(every.model.state_dict().values(), grouped.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert grouped.val.loss == pytest.approx(every.val.loss, rel=1e-5)
    assert grouped.history[-1]["val/loss"] == pytest.approx(every.history[-1]["val/loss"], rel=1e-5)


def test_early_stopping_counts_patience_in_epochs_under_the_cadence(wine):
    cfg, data = wine
    cfg = cfg.with_overrides(["optim.lr=0.3", "budget.early_stopping=6", "budget.epochs=200"])
    r = fit(cfg, data, log=False, evaluate=False)
    k = epochs_per_eval(200, 4, 32)  # 8: patience 6 epochs -> one check without improvement
    stop = r.trainer.cb("early_stopping")
    assert k == 8 and stop._checks == 1
    if r.stop_reason:  # a stop is reported in data epochs, and the best epoch is a validated one
        assert f"for {k} epochs" in r.stop_reason and (stop.best_epoch + 1) % k == 0
        assert r.epochs == stop.stopped_epoch + 1


def test_a_callback_that_counts_epochs_keeps_every_epoch(wine):
    cfg, data = wine
    swa = SWA(start_epoch=30)
    r = fit(cfg, data, callbacks=[swa], log=False, evaluate=False)
    assert len(r.history) == 40 and not isinstance(r.trainer.train_data, EpochGroups)
