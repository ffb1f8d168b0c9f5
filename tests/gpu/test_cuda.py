"""The CUDA path: bf16 autocast, channels_last, data and augmentation resident on the device, no per-step
host reads. Marked ``cuda`` and skipped without a CUDA device; ``bench/gpu_check.sh`` runs them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recipe.config import OptimConfig, load_config
from recipe.data import build_augment, load_data
from recipe.data.batching import InMemoryBatcher
from recipe.train import Trainer, build_optimizer, loss_for_task
from recipe.train.callbacks import MixedPrecision
from recipe.train.callbacks.base import Callback
from tests.train.conftest import make_data, make_trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


class _Seen(Callback):
    """Records the dtype of the model output, the device and memory format of each batch, and the model's."""

    order = 100

    def before_fit(self) -> None:
        self.pred_dtypes, self.batch_devices, self.channels_last = set(), set(), set()

    def after_pred(self) -> None:
        t = self.trainer
        self.pred_dtypes.add(t.pred.dtype)
        self.batch_devices.add(t.xb.device.type)
        if t.xb.dim() == 4:
            self.channels_last.add(t.xb.is_contiguous(memory_format=torch.channels_last))


def _conv_trainer(cbs):
    # 3 input channels: with one, every NCHW tensor is trivially channels_last too
    x, y = torch.randn(96, 3, 8, 8, device=CUDA), torch.randint(0, 3, (96,), device=CUDA)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 3))
    return Trainer(
        model,
        InMemoryBatcher(x[:64], y[:64], 16, shuffle=True),
        InMemoryBatcher(x[64:], y[64:], 32),
        loss_fn=loss_for_task("classification"),
        opt=build_optimizer(OptimConfig(lr=1e-3), model.parameters()),
        cbs=cbs,
        device="cuda",
        progress=False,
    )


def test_bf16_autocast_and_channels_last_on_a_conv_model():
    seen = _Seen()
    t = _conv_trainer([MixedPrecision(), seen])
    t.fit(2)
    assert seen.pred_dtypes == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert seen.batch_devices == {"cuda"} and seen.channels_last == {True}
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # weights stay fp32
    conv = t.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in t.metrics.items() if "/" in k)


def test_metrics_on_the_device_match_a_direct_computation():
    t = make_trainer()
    t.device = CUDA
    t.model.to(CUDA)
    t.train_data.x, t.train_data.y = t.train_data.x.to(CUDA), t.train_data.y.to(CUDA)
    t.valid_data.x, t.valid_data.y = t.valid_data.x.to(CUDA), t.valid_data.y.to(CUDA)
    t.fit(2)
    x, y = make_data()
    t.model.eval()
    with torch.no_grad():
        logits = t.model(x[192:].to(CUDA)).cpu()
    assert t.metrics["val/accuracy"] == pytest.approx((logits.argmax(1) == y[192:]).float().mean().item())
    assert t.metrics["val/loss"] == pytest.approx(nn.functional.cross_entropy(logits, y[192:]).item(), rel=1e-4)


def test_nan_guard_on_the_device_stops_within_its_window_naming_the_first_bad_step():
    class Poison(Callback):
        order = -35  # before the guard

        def after_loss(self) -> None:
            if self.trainer.training and self.trainer.step >= 5:
                self.trainer.loss = self.trainer.loss * float("nan")

    t = _conv_trainer([Poison()])
    guard = t.cb("nan_guard")
    guard.every = 4
    t.fit(3)
    assert guard.tripped and "step 5" in guard.message
    assert 5 <= t.step <= 5 + guard.every


def test_data_and_augmentation_stay_on_the_device_and_are_seeded(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    bundle = load_data(load_config("digits", overrides=["data.augment=[crop,rotate,noise,erase]"]))
    batches = bundle.batches("train", batch_size=64, shuffle=True, augment=True, seed=3, device="cuda")
    assert batches.x.device.type == "cuda"  # the whole split moved once, not per batch
    batches.set_epoch(1)
    first = [xb.clone() for xb, _ in batches]
    batches.set_epoch(1)
    again = [xb for xb, _ in batches]
    assert all(a.device.type == "cuda" and torch.equal(a, b) for a, b in zip(first, again, strict=True))
    same = bundle.tensors("train")[0][:1].to(CUDA).repeat(32, 1, 1, 1)
    out = build_augment(["crop", "rotate"], bundle.in_shape)(same, generator=torch.Generator().manual_seed(0))
    assert out.device.type == "cuda" and len({tuple(o.flatten().tolist()) for o in out.cpu()}) > 16


def test_a_short_recipe_fit_runs_on_cuda_in_bf16(tmp_path, monkeypatch):
    from recipe.fit import fit

    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    cfg = load_config("digits", overrides=["trainer.device=cuda", "budget.epochs=2", "trainer.progress=false"])
    result = fit(cfg, log=False)
    assert result.trainer.device.type == "cuda" and not result.diverged
    assert result.trainer.cb(MixedPrecision) is not None  # precision=auto turns bf16 on for CUDA
    assert result.metrics["val/accuracy"] > 0.3
