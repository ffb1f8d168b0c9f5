"""The model audit on one batch, no training: each fault names its cause in the check's observed text, the clean
networks (the registry's and the presets') raise nothing, and the audit leaves the model as it found it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipe.checks import audit
from recipe.config import load_config
from recipe.data import load_data
from recipe.models import build_model
from recipe.report import Verdict
from recipe.stages.model_audit import audit_for
from tests.models import faulty_nets as nets

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
SHAPE = (1, 8, 8)  # digits


def batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)


def run_audit(cls, *, optimise=None) -> dict[str, object]:
    def rebuild(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return cls(SHAPE, 10)

    model = rebuild(0)
    opt = torch.optim.Adam(optimise(model) if optimise else model.parameters())
    xb, yb = batch()
    return {f.name: f.check for f in audit.audit_model(model, xb, yb, F.cross_entropy, opt, rebuild=rebuild)}


# model -> (the check that names it, its verdict, words its observed text must hold)
FAULTS = {
    "FunctionalDropout": (
        "eval_deterministic",
        FAIL,
        ["functional dropout left on in eval", "F.dropout(p=0.5, training=True) in FunctionalDropout.forward"],
    ),
    "EvalNoise": ("eval_deterministic", FAIL, ["noise left on in eval", "randn_like in EvalNoise.forward"]),
    "FrozenBody": (
        "trainable_parameters",
        FAIL,
        ["requires_grad=False on 2,480 of 2,650 parameters", "random init", "body.0 (Conv2d, 160)", "body.2 (Conv2d"],
    ),
    "DetachedBody": ("trainable_parameters", FAIL, ["no gradient after one backward: body.0 (Conv2d, 160)"]),
    "UnusedLayer": ("trainable_parameters", WARN, ["never called in forward", "extra (Linear, 4,160)"]),
    "EvalBatchNorm": ("batchnorm_train_mode", WARN, ["batch norm left in eval mode during training", "'bn'"]),
}


@pytest.mark.parametrize("model", list(FAULTS))
def test_each_fault_is_named_in_observed_by_its_check_and_nothing_else_fires(model):
    checks = run_audit(getattr(nets, model))
    name, verdict, words = FAULTS[model]
    c = checks[name]
    assert c.verdict is verdict, c.observed
    for w in words:
        assert w in c.observed, (w, c.observed)
    assert c.advice
    assert {n: c.verdict for n, c in checks.items() if n != name} == {n: PASS for n in checks if n != name}


@pytest.mark.parametrize("model", ["Mlp", "ConvNet"])
def test_the_same_networks_without_the_fault_pass(model):
    checks = run_audit(getattr(nets, model))
    assert {n: c.verdict for n, c in checks.items()} == dict.fromkeys(audit.CHECKS, PASS)
    assert "all 4,810 parameters" in checks["trainable_parameters"].observed or model == "ConvNet"


def test_a_body_frozen_with_loaded_weights_is_fine_tuning_not_a_fault():
    c = run_audit(nets.LoadedFrozenBody)["trainable_parameters"]
    assert c.verdict is PASS
    assert "frozen with the same weights in every build" in c.observed and "body.0 (Conv2d, 160)" in c.observed


def test_parameters_left_out_of_the_optimiser_are_named():
    c = run_audit(nets.ConvNet, optimise=lambda m: m.head.parameters())["trainable_parameters"]
    assert c.verdict is FAIL
    assert "not in the optimiser's param groups: body.0 (Conv2d, 160), body.2 (Conv2d, 2,320)" in c.observed


def test_frozen_parameters_whose_init_cannot_be_compared_warn():
    model = nets.FrozenBody(SHAPE, 10)
    xb, yb = batch()
    c = audit.trainable_parameters(audit.measure(model, xb, yb, F.cross_entropy)).check
    assert c.verdict is WARN and "requires_grad=False on 2,480" in c.observed


def test_the_audit_leaves_weights_statistics_gradients_and_mode_as_they_were():
    model = build_model(load_config("digits").model.model_copy(update={"name": "resnet", "width": 8}), SHAPE, 10)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xb, yb = batch()
    findings = audit.audit_model(model, xb, yb, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1))
    assert {f.name: f.verdict for f in findings} == dict.fromkeys(audit.CHECKS, PASS)
    assert "batch-norm call(s), all with batch statistics" in findings[2].check.observed
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_model_that_raises_on_the_batch_is_the_audits_finding(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    cfg = load_config("tabular", overrides=["model.name=tests.models.faulty_nets:ConvNet", "trainer.device=cpu"])
    checks = {f.name: f.check for f in audit_for(cfg, load_data(cfg))}  # a conv net on table rows
    assert checks["trainable_parameters"].verdict is FAIL
    assert checks["trainable_parameters"].observed.startswith("the audit raised")
    assert checks["eval_deterministic"].verdict is PASS


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("digits", []),  # the preset's cnn
        ("digits", ["model.name=resnet", "model.width=8"]),  # batch norm, in train mode as it should be
        ("digits", ["model.name=mlp", "model.dropout=0.5"]),  # nn.Dropout: off in eval
        ("tabular", []),  # the preset's mlp
        ("tabular", ["data.name=diabetes"]),  # regression
    ],
    ids=["digits-cnn", "digits-resnet", "digits-mlp-dropout", "wine-mlp", "diabetes-mlp"],
)
def test_clean_controls_raise_no_warning_from_the_audit(tmp_path, monkeypatch, preset, overrides):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    cfg = load_config(preset, overrides=["trainer.device=cpu", *overrides])
    checks = {f.name: f.check for f in audit_for(cfg, load_data(cfg))}
    assert {n: c.verdict for n, c in checks.items()} == dict.fromkeys(audit.CHECKS, PASS), checks


class _NanOut(nn.Module):
    def __init__(self, in_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(x.flatten(1)) * torch.tensor(float("nan"))


class _RReLU(nets.Mlp):
    def forward(self, x):
        return self.head(F.rrelu(self.body(x.flatten(1)), training=True))  # random slopes in eval too


def test_nan_outputs_are_not_an_eval_difference_and_rrelu_in_eval_is_named():
    assert run_audit(_NanOut)["eval_deterministic"].verdict is PASS
    c = run_audit(_RReLU)["eval_deterministic"]
    assert c.verdict is FAIL and "noise left on in eval: F.rrelu(training=True) in _RReLU.forward" in c.observed
