"""The table networks: TabM (the tabular preset's default) and mlp_plr, built on the authors' packages."""

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from recipe.config import ModelConfig, load_config
from recipe.models import ModelConfigError, build_model, final_linear, init_final_bias
from recipe.train.optim import training_loss
from recipe.train.vmap import vmappable

TABLE = (13,)


def tabm(num_classes=3, **kwargs):
    torch.manual_seed(0)
    return build_model(ModelConfig(name="tabm", width=16, depth=2, kwargs={"k": 4, **kwargs}), TABLE, num_classes)


@pytest.mark.parametrize("embeddings", ["none", "periodic"])
@pytest.mark.parametrize("num_classes", [3, 1], ids=["classification", "regression"])
def test_tabm_gives_one_row_of_logits_per_sample(num_classes, embeddings):
    model = tabm(num_classes, embeddings=embeddings).eval()
    with torch.no_grad():
        assert model(torch.randn(5, *TABLE)).shape == (5, num_classes)


def test_tabm_predicts_the_mean_of_its_members_probabilities():
    model = tabm().eval()
    x = torch.randn(6, *TABLE)
    with torch.no_grad():
        members = model.tabm(x)  # (N, k, C)
        assert members.shape == (6, 4, 3)
        torch.testing.assert_close(F.softmax(model(x), -1), F.softmax(members, -1).mean(1))
        reg = tabm(1).eval()
        torch.testing.assert_close(reg(x), reg.tabm(x).mean(1))


@pytest.mark.parametrize("task, y", [("classification", torch.tensor([0, 1, 2, 1, 0])), ("regression", None)])
def test_tabm_trains_each_member_on_its_own_loss(task, y):
    """The paper's training: the mean of the k members' losses, not the loss of their mean prediction."""
    model = tabm(3 if task == "classification" else 1).train()
    x = torch.randn(5, *TABLE)
    y = torch.randn(5) if y is None else y
    loss = training_loss(model, task)
    pred = model(x)
    members = model._last[1]
    if task == "classification":
        expected = torch.stack([F.cross_entropy(members[:, i], y) for i in range(4)]).mean()
        assert not torch.allclose(expected, F.cross_entropy(pred, y))  # it is not the mean prediction's loss
    else:
        expected = torch.stack([F.mse_loss(members[:, i, 0], y) for i in range(4)]).mean()
    torch.testing.assert_close(loss(pred, y), expected)
    # evaluation (and any other output than the last training one) gets the mean prediction's loss
    model.eval()
    with torch.no_grad():
        pred = model(x)
    torch.testing.assert_close(loss(pred, y), training_loss(torch.nn.Linear(1, 1), task)(pred, y))


def test_plain_models_keep_the_tasks_loss():
    pred, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(
        training_loss(torch.nn.Linear(2, 3), "classification")(pred, y), F.cross_entropy(pred, y)
    )


def test_init_well_sets_every_members_output_bias():
    model = tabm()
    assert final_linear(model) is model.tabm.output
    init_final_bias(model, class_priors=[0.5, 0.3, 0.2])
    assert model.tabm.output.bias.shape == (4, 3)
    torch.testing.assert_close(model.tabm.output.bias, torch.log(torch.tensor([0.5, 0.3, 0.2])).expand(4, 3))


def test_a_trained_tabm_copies_and_refuses_vmap():
    model = tabm().train()
    model(torch.randn(4, *TABLE)).sum().backward()  # a training output whose loss was not taken by member_loss
    clone = copy.deepcopy(model)  # SWA, EMA and checkpoints copy the model
    assert clone._last is None
    cfg = load_config("tabular", overrides=["model.name=tabm"])
    why = vmappable([cfg, cfg.model_copy(update={"seed": 1})], model)
    assert "TabM" in why


@pytest.mark.parametrize(
    "kwargs, in_shape, message",
    [
        ({"k": 0}, TABLE, "k >= 1"),
        ({"arch_type": "tabm-maxi"}, TABLE, "arch_type must be one of tabm, tabm-mini, tabm-packed"),
        ({"embeddings": "ple"}, TABLE, "embeddings must be one of none, periodic"),
        ({"embeddings": "periodic", "sigma": 0.0}, TABLE, "sigma > 0"),
        ({}, (1, 8, 8), "is for tables of shape"),
    ],
)
def test_tabm_refuses_bad_settings_clearly(kwargs, in_shape, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(ModelConfig(name="tabm", kwargs=kwargs), in_shape, 3)


def test_mlp_plr_on_the_libraries_periodic_embeddings():
    model = build_model(ModelConfig(name="mlp_plr", width=8), TABLE, 2).eval()
    assert type(model[0]).__module__ == "rtdl_num_embeddings"
    assert final_linear(model).out_features == 2
    with torch.no_grad():
        assert model(torch.randn(3, *TABLE)).shape == (3, 2)


def test_the_tabular_preset_trains_tabm():
    """The preset's default, through the project's trainer (each member on its own loss), fits the wine table: the
    mean prediction's val loss falls well below the priors' (ln 3)."""
    from recipe.fit import fit

    cfg = load_config(
        "tabular",
        overrides=[
            "model.width=32",
            "model.kwargs.k=4",
            "budget.epochs=15",
            "data.batch_size=32",
            "trainer.progress=false",
        ],
    )
    assert cfg.model.name == "tabm"
    result = fit(cfg, log=False)
    assert result.val.loss < math.log(3) * 0.6, result.val.loss
