import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipe.config import ModelConfig
from recipe.models import build_model, count_parameters, final_linear, init_final_bias, scale_final_weights

PRIORS = [0.7, 0.2, 0.1]
ENTROPY = -sum(p * math.log(p) for p in PRIORS)

SMALL = [("linear", (13,)), ("mlp", (13,)), ("cnn", (1, 8, 8)), ("resnet", (1, 8, 8))]
MODELS = [*SMALL, ("resnet18", (1, 8, 8))]


def build(name, in_shape, num_classes, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, width=8, **kw), in_shape, num_classes).eval()


@pytest.mark.parametrize("name, in_shape", MODELS)
def test_final_linear_is_the_logits_layer(name, in_shape):
    layer = final_linear(build(name, in_shape, 3, dropout=0.2))
    assert isinstance(layer, nn.Linear) and layer.out_features == 3


def test_final_linear_needs_a_linear():
    with pytest.raises(ValueError, match=r"Conv2d has no nn.Linear layer; the init helpers need"):
        final_linear(nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("priors", [PRIORS, [7.0, 2.0, 1.0], torch.tensor(PRIORS)], ids=["list", "counts", "tensor"])
@pytest.mark.parametrize("name, in_shape", SMALL)
def test_priors_bias_makes_softmax_predict_the_priors(name, in_shape, priors):
    model = scale_final_weights(init_final_bias(build(name, in_shape, 3), class_priors=priors), 0.0)
    x = torch.randn(30, *in_shape)
    with torch.no_grad():
        logits = model(x)
    expected = torch.tensor(PRIORS).expand(30, 3)
    torch.testing.assert_close(logits.softmax(-1), expected)
    # labels drawn in exactly the prior proportions: the mean cross-entropy is the entropy of the priors
    labels = torch.tensor([0] * 21 + [1] * 6 + [2] * 3)
    assert F.cross_entropy(logits, labels).item() == pytest.approx(ENTROPY, abs=1e-5)


def test_small_final_weights_keep_loss_at_init_near_the_entropy():
    model = scale_final_weights(init_final_bias(build("mlp", (13,), 3), class_priors=PRIORS), 1e-3)
    labels = torch.tensor([0] * 21 + [1] * 6 + [2] * 3)
    with torch.no_grad():
        loss = F.cross_entropy(model(torch.randn(30, 13)), labels).item()
    assert loss == pytest.approx(ENTROPY, abs=1e-2)


@pytest.mark.parametrize("name, in_shape", MODELS)
def test_regression_bias_is_the_target_mean(name, in_shape):
    model = init_final_bias(build(name, in_shape, 1), target_mean=3.25)
    assert final_linear(model).bias.item() == 3.25
    scale_final_weights(model, 0.0)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.randn(4, *in_shape)), torch.full((4, 1), 3.25))


def test_binary_single_logit_bias_is_the_log_odds():
    model = scale_final_weights(init_final_bias(nn.Linear(4, 1), class_priors=[0.8, 0.2]), 0.0)
    with torch.no_grad():
        assert torch.sigmoid(model(torch.randn(2, 4))).flatten().tolist() == pytest.approx([0.2, 0.2])


def test_absent_class_gets_a_finite_bias():
    model = init_final_bias(nn.Linear(4, 3), class_priors=[0.5, 0.5, 0.0])
    assert torch.isfinite(model.bias).all() and model.bias[2] < -10


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        (nn.Linear(4, 3), {}, r"exactly one of class_priors \(classification\) or target_mean \(regression\)"),
        (nn.Linear(4, 3), {"class_priors": PRIORS, "target_mean": 1.0}, r"exactly one of class_priors"),
        (nn.Linear(4, 3), {"class_priors": [0.5, 0.5]}, r"2 class priors for a final layer with 3 outputs"),
        (nn.Linear(4, 3), {"class_priors": [1.0, -1.0, 1.0]}, r"class_priors must be non-negative"),
        (nn.Linear(4, 3), {"class_priors": [0.0, 0.0, 0.0]}, r"not all zero"),
        (nn.Linear(4, 3, bias=False), {"target_mean": 1.0}, r"the final nn.Linear has no bias"),
    ],
)
def test_init_final_bias_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        init_final_bias(model, **kwargs)


def test_init_final_bias_sets_only_the_bias():
    model = build("mlp", (13,), 3)
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(f"{len(model) - 1}.bias")}
    init_final_bias(model, class_priors=PRIORS)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_scale_final_weights():
    model = build("mlp", (13,), 3)
    before = final_linear(model).weight.clone()
    assert scale_final_weights(model, 0.5) is model
    torch.testing.assert_close(final_linear(model).weight, before * 0.5)


def test_count_parameters():
    model = nn.Sequential(nn.Linear(13, 4), nn.Linear(4, 2))
    assert count_parameters(model) == 13 * 4 + 4 + 4 * 2 + 2
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 * 2 + 2
    shared = nn.Sequential(model[1], model[1])  # a shared layer counts once
    assert count_parameters(shared) == 4 * 2 + 2
