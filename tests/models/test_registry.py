import pytest
import torch
from torch import nn

from recipe.config import ConfigError, ModelConfig
from recipe.models import MODELS, ModelConfigError, build_model, count_parameters, final_linear, register_model

IMAGE_MODELS = ["linear", "mlp", "cnn", "resnet"]  # the small ones; torchvision's get a shape test of their own
IMAGES = [(1, 8, 8), (3, 32, 32)]
TABLE = (13,)


def cfg(name: str, **kw) -> ModelConfig:
    return ModelConfig(name=name, **kw)


def out(model: nn.Module, in_shape, batch: int = 3) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *in_shape))


def test_registry_holds_the_zoo():
    assert {"linear", "mlp", "cnn", "resnet", "resnet18", "resnet34"} <= set(MODELS)


@pytest.mark.parametrize("num_classes", [10, 1], ids=["classification", "regression"])
@pytest.mark.parametrize(
    "name, in_shape",
    [(n, s) for n in IMAGE_MODELS for s in IMAGES] + [("linear", TABLE), ("mlp", TABLE)],
)
def test_output_shape(name, in_shape, num_classes):
    model = build_model(cfg(name, width=8), in_shape, num_classes)
    assert out(model, in_shape).shape == (3, num_classes)


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_torchvision_resnets_output_shape(name):
    model = build_model(cfg(name), (1, 32, 32), 7)
    assert out(model, (1, 32, 32), batch=2).shape == (2, 7)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.Identity)


@pytest.mark.parametrize("stride, inplanes, planes", [(1, 8, 8), (2, 8, 16)], ids=["identity", "downsample"])
def test_the_narrow_resnets_block_is_torchvisions_basic_block(stride, inplanes, planes):
    """recipe.models.resnet.BasicBlock (stated locally so that building a network does not import torchvision)
    has torchvision's state dict and computes what torchvision's computes, in train and in eval mode."""
    from torchvision.models.resnet import BasicBlock as Reference

    from recipe.models.resnet import BasicBlock

    def shortcut():
        if stride == 1 and inplanes == planes:
            return None
        return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    torch.manual_seed(0)
    ours, ref = BasicBlock(inplanes, planes, stride, shortcut()), Reference(inplanes, planes, stride, shortcut())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    for m in (ours, ref):  # non-trivial batch-norm parameters and running statistics
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, inplanes, 10, 10)
    for train in (True, False):
        ours.train(train), ref.train(train)
        with torch.no_grad():
            torch.testing.assert_close(ours(x.clone()), ref(x.clone()))


def test_building_the_default_networks_does_not_import_torchvision():
    """torchvision's import (about 1.3 s: its ops import torch._dynamo) is paid only by resnet18/34."""
    import subprocess
    import sys

    code = (
        "import sys; from recipe.config import ModelConfig; from recipe.models import build_model; "
        "[build_model(ModelConfig(name=n, width=8), (1, 8, 8), 10) for n in ('linear', 'mlp', 'cnn', 'resnet')]; "
        "print('torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr


def test_torchvision_resnet_keeps_imagenet_stem_for_large_images():
    model = build_model(cfg("resnet18"), (1, 64, 64), 3)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.MaxPool2d)


def test_torchvision_resnet_dropout_goes_before_fc():
    model = build_model(cfg("resnet18", dropout=0.3), (3, 32, 32), 5)
    assert isinstance(model.fc, nn.Sequential) and model.fc[0].p == 0.3
    assert final_linear(model) is model.fc[1] and model.fc[1].out_features == 5


@pytest.mark.parametrize("in_shape", [(1, 4, 4), (1, 5, 7), (1, 28, 28), (3, 2, 2)])
@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_conv_models_handle_small_and_odd_sizes(name, in_shape):
    model = build_model(cfg(name, width=4, depth=4), in_shape, 3)
    assert out(model, in_shape).shape == (3, 3)


@pytest.mark.parametrize(
    "in_shape, depth, cnn_map, resnet_map",
    [
        ((1, 8, 8), 2, 2, 4),
        ((1, 8, 8), 3, 2, 2),
        ((1, 28, 28), 3, 3, 7),
        ((3, 32, 32), 2, 8, 16),
    ],
)
def test_downsampling_stops_at_a_small_map(in_shape, depth, cnn_map, resnet_map):
    # Both halve the map only while it is >= 4 (the cnn in every block, the resnet from its second
    # stage on), so 8x8 digits keep at least a 2x2 map at any depth.
    x = torch.randn(2, *in_shape)
    cnn = build_model(cfg("cnn", width=4, depth=depth), in_shape, 3)
    resnet = build_model(cfg("resnet", width=4, depth=depth), in_shape, 3)
    channels = 4 * 2 ** (depth - 1)
    assert cnn.features(x).shape == (2, channels, cnn_map, cnn_map)
    assert resnet.stages(resnet.stem(x)).shape == (2, channels, resnet_map, resnet_map)


@pytest.mark.parametrize(
    "name, field, small, large",
    [
        ("mlp", "width", 16, 32),
        ("mlp", "depth", 1, 3),
        ("cnn", "width", 8, 16),
        ("cnn", "depth", 1, 2),
        ("resnet", "width", 8, 16),
        ("resnet", "depth", 1, 2),
    ],
)
def test_width_and_depth_change_parameter_count(name, field, small, large):
    n_small = count_parameters(build_model(cfg(name, **{field: small}), (1, 8, 8), 10))
    n_large = count_parameters(build_model(cfg(name, **{field: large}), (1, 8, 8), 10))
    assert n_large > n_small


def test_linear_is_flatten_then_linear():
    model = build_model(cfg("linear", width=999, depth=7), (1, 8, 8), 10)
    assert count_parameters(model) == 64 * 10 + 10


def test_mlp_layout_and_dropout():
    model = build_model(cfg("mlp", width=16, depth=3, dropout=0.25), TABLE, 4)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [(l.in_features, l.out_features) for l in linears] == [(13, 16), (16, 16), (16, 16), (16, 4)]
    assert [d.p for d in dropouts] == [0.25] * 3


def test_cnn_has_no_batchnorm_so_train_mode_is_batch_independent():
    torch.manual_seed(0)
    model = build_model(cfg("cnn", width=8), (1, 8, 8), 10).train()
    x = torch.randn(5, 1, 8, 8)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    torch.testing.assert_close(model(x)[:1], model(x[:1]))


@pytest.mark.parametrize("name", ["cnn", "resnet", "resnet18", "resnet34"])
def test_conv_models_refuse_tables(name):
    with pytest.raises(ModelConfigError, match=rf"model.name='{name}' needs images .* use mlp or linear for tabular"):
        build_model(cfg(name), TABLE, 3)


@pytest.mark.parametrize(
    "name, message",
    [
        ("cnnn", r"unknown model.name 'cnnn'; did you mean 'cnn'\? \(registered: cnn, linear, mlp, mlp_plr, resnet, "),
        ("resnet19", r"did you mean 'resnet18'\?"),
        ("mypkg.nets.MyNet", r"write it as 'mypkg.nets:MyNet' \(module:callable\)"),
        ("zzz", r"unknown model.name 'zzz' \(registered: .*package.module:callable"),
    ],
)
def test_unknown_name_suggests(name, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(cfg(name), (1, 8, 8), 10)


def test_model_errors_are_config_errors():
    assert issubclass(ModelConfigError, ConfigError) and issubclass(ModelConfigError, ValueError)


@pytest.mark.parametrize(
    "in_shape, num_classes, message",
    [
        ((8, 8), 10, r"in_shape must be \(C, H, W\) for images or \(n_features,\)"),
        ((1, 0, 8), 10, r"positive sizes; got \(1, 0, 8\)"),
        ((1, 8, 8), 0, r"num_classes must be >= 1 \(1 for regression\), got 0"),
    ],
)
def test_bad_shapes(in_shape, num_classes, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(cfg("mlp"), in_shape, num_classes)


# --- model.kwargs ----------------------------------------------------------------------------------------


def test_kwargs_reach_the_builder():
    gelu = build_model(cfg("mlp", kwargs={"activation": "gelu"}), TABLE, 2)
    assert any(isinstance(m, nn.GELU) for m in gelu.modules())
    one = count_parameters(build_model(cfg("resnet", width=4), (1, 8, 8), 2))
    two = count_parameters(build_model(cfg("resnet", width=4, kwargs={"blocks": 2}), (1, 8, 8), 2))
    assert two > one


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        (
            "mlp",
            {"activaton": "relu"},
            r"'activaton', which model 'mlp' does not take; did you mean 'activation'\? "
            r"\(it takes: activation='relu'\)",
        ),
        ("linear", {"hidden": 3}, r"'hidden', which model 'linear' does not take \(it takes: none\)"),
        ("cnn", {"activation": "swish"}, r"model.kwargs.activation='swish' is not one of: relu, "),
        ("resnet", {"blocks": 0}, r"model.kwargs.blocks must be >= 1, got 0"),
    ],
)
def test_bad_kwargs(name, kwargs, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(cfg(name, kwargs=kwargs), (1, 8, 8), 10)


# --- package.module:callable -----------------------------------------------------------------------------

CUSTOM = "tests.models.custom_net"


@pytest.mark.parametrize("in_shape", [(1, 8, 8), TABLE])
def test_custom_callable(in_shape):
    model = build_model(cfg(f"{CUSTOM}:TinyNet"), in_shape, 4)
    assert type(model).__name__ == "TinyNet"
    assert out(model, in_shape).shape == (3, 4)


def test_custom_callable_gets_kwargs():
    small = build_model(cfg(f"{CUSTOM}:TinyNet"), TABLE, 4)
    large = build_model(cfg(f"{CUSTOM}:TinyNet", kwargs={"hidden": 32}), TABLE, 4)
    assert large.head.in_features == 32 and count_parameters(large) > count_parameters(small)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("no_such_pkg.nets:Net", {}, r"cannot import module 'no_such_pkg.nets' \(No module named 'no_such_pkg'\)"),
        (f"{CUSTOM}:TinyNett", {}, rf"module '{CUSTOM}' has no attribute 'TinyNett'; did you mean 'TinyNet'\?"),
        (f"{CUSTOM}:make_dict", {}, r"returned a dict, not a torch.nn.Module"),
        (f"{CUSTOM}:NOT_CALLABLE", {}, r"'NOT_CALLABLE' is not callable \(got int\)"),
        (f"{CUSTOM}:strict", {"hidden": 3}, r"keyword arguments \(in_shape, num_classes, hidden\) failed: .*hidden"),
        (f"{CUSTOM}:", {}, r"expected 'package.module:callable'"),
    ],
)
def test_custom_callable_errors_name_the_contract(name, kwargs, message):
    with pytest.raises(ModelConfigError, match=message) as info:
        build_model(cfg(name, kwargs=kwargs), TABLE, 2)
    assert "callable(in_shape=(C, H, W) or (n_features,), num_classes=K, **model.kwargs)" in str(info.value)


# --- register_model --------------------------------------------------------------------------------------


def test_register_model(monkeypatch):
    monkeypatch.setattr("recipe.models.registry.MODELS", dict(MODELS))  # keep the real registry clean
    from recipe.models import registry

    @register_model("tiny")
    def build_tiny(cfg, in_shape, num_classes, *, bias: bool = True):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0], num_classes, bias=bias))

    assert registry.MODELS["tiny"] is build_tiny and "tiny" not in MODELS
    assert count_parameters(build_model(cfg("tiny", kwargs={"bias": False}), TABLE, 2)) == 26
    with pytest.raises(ValueError, match=r"model 'tiny' is already registered; pass overwrite=True"):
        register_model("tiny")(lambda cfg, in_shape, num_classes: nn.Identity())
    with pytest.raises(ValueError, match=r"must be non-blank and contain no ':'"):
        register_model("a:b")


# --- determinism -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*IMAGE_MODELS, "resnet18", f"{CUSTOM}:TinyNet"])
def test_same_seed_same_weights(name):
    def build(seed):
        torch.manual_seed(seed)
        return build_model(cfg(name, width=8), (1, 8, 8), 10).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed does matter
