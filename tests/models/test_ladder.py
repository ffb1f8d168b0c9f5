import pytest

from recipe.config import ModelConfig
from recipe.models import ModelConfigError, build_model, count_parameters, grow


def params(cfg, in_shape=(1, 8, 8)):
    return count_parameters(build_model(cfg, in_shape, 10))


@pytest.mark.parametrize(
    "start, in_shape",
    [
        (ModelConfig(name="linear", width=16, depth=1), (13,)),
        (ModelConfig(name="mlp", width=16, depth=1), (13,)),
        (ModelConfig(name="cnn", width=8, depth=1), (1, 8, 8)),
        (ModelConfig(name="cnn", width=32, depth=2), (1, 8, 8)),
        (ModelConfig(name="resnet", width=4, depth=1), (1, 8, 8)),
    ],
    ids=["linear", "mlp", "cnn-small", "cnn-default", "resnet"],
)
def test_grow_increases_parameters_monotonically(start, in_shape):
    counts = [params(grow(start, k), in_shape) for k in range(4)]
    assert counts == sorted(counts) and len(set(counts)) == 4, counts


@pytest.mark.parametrize(
    "width, depth, ladder",
    [
        (32, 2, [(64, 2), (64, 3), (128, 3), (128, 4)]),  # the digits default: balance, then alternate
        (16, 2, [(32, 2), (64, 2), (64, 3), (128, 3)]),  # narrow: widen until balanced
        (256, 2, [(256, 3), (256, 4), (256, 5), (512, 5)]),  # wide: deepen until balanced
    ],
)
def test_grow_rule(width, depth, ladder):
    cfg = ModelConfig(name="cnn", width=width, depth=depth)
    assert [(grow(cfg, k).width, grow(cfg, k).depth) for k in range(1, 5)] == ladder


def test_grow_composes_and_leaves_the_input_alone():
    cfg = ModelConfig(name="mlp", width=64, depth=2, dropout=0.1, kwargs={"activation": "gelu"})
    assert grow(cfg, 3) == grow(grow(grow(cfg)))
    assert grow(cfg, 0) == cfg
    assert (cfg.width, cfg.depth) == (64, 2)
    assert grow(cfg).dropout == 0.1 and grow(cfg).kwargs == {"activation": "gelu"}


@pytest.mark.parametrize("name, nxt", [("linear", "mlp"), ("resnet18", "resnet34")])
def test_grow_switches_fixed_models(name, nxt):
    cfg = ModelConfig(name=name, width=32, depth=2)
    assert grow(cfg) == cfg.model_copy(update={"name": nxt})


def test_grow_custom_kwargs():
    cfg = ModelConfig(name="mypkg.nets:Net", kwargs={"width": 16, "depth": 2, "other": "x"})
    assert grow(cfg).kwargs == {"width": 32, "depth": 2, "other": "x"}
    assert grow(cfg, 3).kwargs == {"width": 64, "depth": 3, "other": "x"}
    assert cfg.kwargs["width"] == 16
    assert grow(ModelConfig(name="m:f", kwargs={"depth": 1})).kwargs == {"depth": 2}


@pytest.mark.parametrize(
    "cfg, message",
    [
        (ModelConfig(name="resnet34"), r"'resnet34' is the top of the capacity ladder"),
        (ModelConfig(name="mypkg.nets:Net", kwargs={"hidden": 3}), r"give it integer model.kwargs.width and/or"),
    ],
)
def test_grow_errors(cfg, message):
    with pytest.raises(ModelConfigError, match=message):
        grow(cfg)
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        grow(ModelConfig(), -1)
