"""The training figures render for every kind of input they promise to handle (smoke tests: a figure, titled)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from recipe.config import ModelConfig
from recipe.models import build_model
from recipe.plots.curves import (
    comparison_figure,
    curves_figure,
    first_layer_figure,
    lr_finder_figure,
    update_ratio_figure,
)
from recipe.train.callbacks.lr_finder import smooth, suggest_lr, sweep_lrs


@pytest.mark.parametrize(
    "model, in_shape, title",
    [
        (build_model(ModelConfig(name="cnn", width=8), (1, 8, 8), 10), (1, 8, 8), "8 conv filters 3x3 x 1"),
        (build_model(ModelConfig(name="cnn", width=4), (3, 16, 16), 10), (3, 16, 16), "x 3 channel"),
        (build_model(ModelConfig(name="mlp", width=16), (1, 8, 8), 10), (1, 8, 8), "16 first-layer units as 8x8"),
        (build_model(ModelConfig(name="mlp", width=16), (13,), 3), (13,), "16 units x 13 features"),
    ],
)
def test_first_layer_weights_are_drawn_for_convs_images_and_tables(model, in_shape, title):
    fig = first_layer_figure(model, in_shape)
    assert title in fig.axes[0].get_title()


def test_first_layer_of_a_model_without_weights_is_none():
    assert first_layer_figure(nn.Sequential(nn.ReLU()), (1, 8, 8)) is None


def test_lr_finder_curves_and_ratios_render():
    lrs = list(sweep_lrs(1e-6, 1.0, 60))
    losses = [2.3 - 0.5 * math.tanh(math.log10(lr) + 3) + (5 if lr > 0.3 else 0) for lr in lrs]
    sm = smooth(losses)
    fig = lr_finder_figure(lrs, losses, sm, suggest_lr(lrs, sm), current=3e-4, chosen=1e-3)
    assert "suggested" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    hist = [{"epoch": i, "train/loss": 1 / (i + 1), "val/loss": 1.2 / (i + 1)} for i in range(5)]
    assert len(curves_figure({"a": hist, "b": hist}, reference="a").axes) == 2
    assert update_ratio_figure([(10, {"w": -3.0}), (20, {"w": -3.2})]) is not None
    assert update_ratio_figure([]) is None


def test_the_comparison_figure_draws_every_trained_candidate():
    rows = [
        {
            "name": "reference",
            "status": "ok",
            "val_metric": 0.98,
            "val_loss": 0.09,
            "se": math.nan,
            "gap": 0.09,
            "kept": "reference",
            "chosen": False,
            "criterion": "loss",
        },
        {
            "name": "augment",
            "status": "ok",
            "val_metric": 0.99,
            "val_loss": 0.04,
            "se": 0.03,
            "gap": 0.03,
            "kept": "kept",
            "chosen": True,
            "criterion": "loss",
        },
        {
            "name": "pretrained",
            "status": "skipped",
            "val_metric": math.nan,
            "val_loss": math.nan,
            "se": math.nan,
            "gap": math.nan,
            "kept": "dropped",
            "chosen": False,
            "criterion": "loss",
        },
    ]
    fig = comparison_figure(rows, bars={"linear baseline": 0.944})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["reference", "augment"]
