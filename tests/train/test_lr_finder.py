"""The LR finder: a sensible suggestion on a problem whose good learning rates are known, an exact restore of
everything it touched, divergence handling, and the suggestion rules on hand-made curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recipe.config import OptimConfig
from recipe.data.batching import InMemoryBatcher
from recipe.train import Callback, Trainer, build_optimizer, loss_for_task, seed_everything
from recipe.train.callbacks import LRFinder, lr_find, suggest_lr
from recipe.train.callbacks.lr_finder import smooth, sweep_lrs

from .conftest import make_trainer


def linear_regression_trainer(opt: str = "sgd", lr: float = 1e-3) -> Trainer:
    """y = x.w + noise with x ~ N(0, I_8) and an MSE loss: the Hessian is 2 I, so plain gradient descent
    converges fastest at lr = 0.5 and diverges above lr = 1 (2 / largest eigenvalue)."""
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 8, generator=g)
    y = x @ torch.randn(8, generator=g) + 0.1 * torch.randn(2048, generator=g)
    model = nn.Linear(8, 1)
    return Trainer(
        model,
        InMemoryBatcher(x, y, 64, shuffle=True),
        None,
        loss_fn=loss_for_task("regression"),
        opt=build_optimizer(OptimConfig(name=opt, lr=lr, momentum=0.0), model.parameters()),
        task="regression",
        device="cpu",
        progress=False,
    )


@pytest.mark.parametrize("rule", ["min_div_10", "steepest"])
def test_finds_a_rate_below_the_known_divergence_point(rule):
    finder = lr_find(linear_regression_trainer(), min_lr=1e-5, max_lr=100, num_steps=100, rule=rule)
    s = finder.suggestion
    assert finder.diverged and "exceeded 4 x its best" in finder.stop_reason
    assert len(finder.lrs) < 100  # stopped early, at the divergence
    assert 0.1 <= s.lr_at_min <= 4  # the loss is lowest around the stability limit (1), the smoothing lags a bit
    assert 0.01 <= s.lr <= 1.0, s  # a usable rate: below divergence, not orders of magnitude too small
    assert s.lr == pytest.approx(s.lr_at_min / 10 if rule == "min_div_10" else s.lr_steepest)


def test_restores_model_optimiser_rng_and_counters_exactly():
    trainer = make_trainer(lr=1e-2)
    trainer.fit(1)  # Adam now has state worth restoring
    model_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    opt_before = {
        i: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
        for i, st in trainer.opt.state_dict()["state"].items()
    }
    lr_before, step_before, rng_before = trainer.lr, trainer.step, torch.get_rng_state().clone()

    finder = lr_find(trainer, num_steps=30, max_lr=1.0)

    assert len(finder.lrs) > 5
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    for i, st in trainer.opt.state_dict()["state"].items():
        for k, v in st.items():
            assert torch.equal(v, opt_before[i][k]) if torch.is_tensor(v) else v == opt_before[i][k]
    assert trainer.lr == lr_before and trainer.step == step_before
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(p.grad is None for p in trainer.model.parameters())  # no stale gradients for the next fit
    assert finder not in trainer.cbs


def test_a_fit_after_the_finder_is_the_fit_without_it():
    plain = make_trainer(lr=1e-2)
    plain.fit(2)
    swept = make_trainer(lr=1e-2)
    lr_find(swept, num_steps=20)
    swept.fit(2)
    assert [h["train/loss"] for h in swept.history] == [h["train/loss"] for h in plain.history]


def test_sweeps_exponentially_and_skips_validation():
    trainer = make_trainer()
    finder = lr_find(trainer, min_lr=1e-6, max_lr=1e-1, num_steps=12, div_factor=1e9)
    assert finder.lrs == pytest.approx(list(sweep_lrs(1e-6, 1e-1, 12)))
    assert not finder.diverged and "without divergence" in finder.stop_reason
    assert "val/loss" not in trainer.metrics
    assert trainer.valid_data is not None  # put back for the fit that follows


def test_a_non_finite_loss_is_divergence_not_an_error():
    class PoisonAt(Callback):
        order = -50  # before the finder reads the loss

        def after_loss(self):
            if self.trainer.training and self.trainer.step == 7:
                self.trainer.loss = self.trainer.loss * float("nan")

    trainer = make_trainer(cbs=[PoisonAt()])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    finder = lr_find(trainer, num_steps=40)
    assert finder.diverged and "nan" in finder.stop_reason
    assert len(finder.losses) == 8 and math.isnan(finder.losses[-1])
    assert not trainer.cb("nan_guard").tripped  # the finder stopped first: no error for the caller
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_smoothing_is_the_debiased_ema():
    assert smooth([2.0, 2.0, 2.0], beta=0.9) == pytest.approx([2.0, 2.0, 2.0])  # no bias towards zero
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, (0.25 + 1.5) / 0.75])


@pytest.mark.parametrize(
    "curve, rule, expected",
    [
        # a valley with its minimum at 1e-2: a tenth of it is 1e-3
        (lambda x: (x + 2) ** 2 + 1, "min_div_10", 1e-3),
        # falls fastest where the cubic's slope is most negative: at log10 lr = -4 (the inflection point)
        (lambda x: -np.tanh(x + 4) + 0.01 * (x + 4) ** 2 + 2, "steepest", 1e-4),
    ],
)
def test_suggestion_rules_on_made_up_curves(curve, rule, expected):
    lrs = sweep_lrs(1e-7, 1.0, 141)
    s = suggest_lr(lrs, [curve(x) for x in np.log10(lrs)], rule)
    assert s.lr == pytest.approx(expected, rel=0.15)


def test_a_flat_sweep_gives_no_suggestion_and_says_why():
    lrs = sweep_lrs(1e-7, 10, 50)
    s = suggest_lr(lrs, [2.3] * 50)
    assert s.lr is None and "never fell" in s.reason


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_lr": 1.0, "max_lr": 0.1}, "min_lr < max_lr"),
        ({"num_steps": 2}, "num_steps"),
        ({"div_factor": 1.0}, "div_factor"),
        ({"rule": "valley"}, "unknown lr rule"),
    ],
)
def test_bad_arguments_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRFinder(**kwargs)
