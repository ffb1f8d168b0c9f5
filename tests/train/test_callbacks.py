import math
import warnings

import pytest
import torch

from recipe.config import ScheduleConfig
from recipe.train import load_checkpoint
from recipe.train.callbacks import (
    EMA,
    Budget,
    Checkpoint,
    EarlyStopping,
    GradClip,
    MixedPrecision,
    PredictionSnapshots,
    Recorder,
    Schedule,
    UpdateRatio,
)
from recipe.train.callbacks.base import Callback
from tests.train.conftest import make_data, make_trainer


def test_metrics_match_a_direct_computation():
    t = make_trainer()
    t.fit(2)
    x, y = make_data()
    t.model.eval()
    with torch.no_grad():
        logits = t.model(x[192:])
    assert t.metrics["val/accuracy"] == pytest.approx((logits.argmax(1) == y[192:]).float().mean().item())
    assert t.metrics["val/loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y[192:]).item(), rel=1e-5)
    assert {"train/loss", "train/accuracy", "lr", "epoch", "step"} <= set(t.metrics)
    assert [row["epoch"] for row in t.history] == [0, 1]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_metrics_folded_in_chunks_equal_the_whole_phase_at_once(monkeypatch, task):
    from recipe.train.callbacks import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "REDUCE_EVERY", 3)  # 13 uneven batches: 4 chunks and a remainder
    m = metrics_module.Metrics(task)
    g = torch.Generator().manual_seed(0)
    sizes = [7] * 12 + [5]
    preds = [torch.randn(n, 4 if task == "classification" else 1, generator=g) for n in sizes]
    targets = [
        torch.randint(0, 4, (n,), generator=g) if task == "classification" else torch.randn(n, generator=g)
        for n in sizes
    ]
    t = type("T", (), {"metrics": {}})()
    m.trainer = t
    m.before_train()
    for p, y in zip(preds, targets):
        t.pred, t.yb = p, y
        t.loss = torch.nn.functional.cross_entropy(p, y) if task == "classification" else ((p[:, 0] - y) ** 2).mean()
        m.after_loss()
    m.after_train()
    pred, y = torch.cat(preds), torch.cat(targets)
    if task == "classification":
        assert t.metrics["train/accuracy"] == pytest.approx((pred.argmax(1) == y).double().mean().item())
        assert t.metrics["train/loss"] == pytest.approx(torch.nn.functional.cross_entropy(pred, y).item(), rel=1e-6)
    else:
        err = pred[:, 0] - y
        assert t.metrics["train/mse"] == pytest.approx((err**2).mean().item(), rel=1e-6)
        assert t.metrics["train/mae"] == pytest.approx(err.abs().mean().item(), rel=1e-6)
        assert t.metrics["train/loss"] == pytest.approx(t.metrics["train/mse"], rel=1e-6)


def test_regression_metrics_are_mse_and_mae():
    t = make_trainer(task="regression", dropout=0.0)
    t.fit(3)
    x, y = make_data(task="regression")
    t.model.eval()
    with torch.no_grad():
        err = t.model(x[192:]).squeeze(1) - y[192:]
    assert t.metrics["val/mse"] == pytest.approx((err**2).mean().item(), rel=1e-5)
    assert t.metrics["val/mae"] == pytest.approx(err.abs().mean().item(), rel=1e-5)
    assert t.metrics["val/loss"] == pytest.approx(t.metrics["val/mse"], rel=1e-5)


def test_recorder_smooths_with_debiasing():
    t = make_trainer()
    t.fit(1)
    rec = t.cb(Recorder)
    beta, avg = rec.beta, 0.0
    for i, loss in enumerate(rec.losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        assert rec.smooth_losses[i - 1] == pytest.approx(avg / (1 - beta**i))
    # debiased: the first smoothed value is the first loss, not 2% of it
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])
    assert len(rec.losses) == len(rec.lrs) == t.step == 6


def test_nan_guard_stops_a_diverging_run_and_keeps_what_was_recorded():
    class NanAfter(Callback):
        def after_loss(self):
            if self.trainer.training and self.trainer.epoch == 1 and self.trainer.iter == 2:
                self.trainer.loss = self.trainer.loss * float("nan")

    t = make_trainer([NanAfter()])
    t.fit(5)  # does not raise
    assert t.diverged and t.diverged == t.stop_reason  # divergence is trainer state, not a callback to look up
    assert "diverged" in t.stop_reason and "Lower optim.lr" in t.stop_reason and "epoch 1" in t.stop_reason
    assert len(t.history) == 1 and math.isfinite(t.history[0]["val/loss"])  # epoch 0 is kept


def test_nan_guard_catches_a_huge_learning_rate():
    """SGD at the largest learning rate the config accepts (optim.lr <= 1e6) blows the loss up: the guard says so."""
    t = make_trainer(lr=1e6, opt="sgd", dropout=0.0)
    t.fit(20)
    assert "diverged" in t.diverged
    t.fit(0)
    assert t.diverged == ""  # reset by every fit


def test_progress_bar_prints_nothing_off_a_terminal(capsys):
    t = make_trainer()
    t.cbs[-1].enabled = True  # even when enabled
    t.fit(1)
    assert capsys.readouterr().out == ""


def lrs_for(name: str, epochs: int = 4, **kw) -> list[float]:
    t = make_trainer([Schedule(ScheduleConfig(name=name, **kw))], lr=0.1, batch_size=48)  # 4 steps per epoch
    t.fit(epochs)
    return t.cb(Recorder).lrs  # the lr used by each step


@pytest.mark.parametrize(
    ("name", "kw", "check"),
    [
        ("constant", {}, lambda l: set(l) == {0.1}),
        (
            "step",
            {"step_epochs": 2, "gamma": 0.5},
            lambda l: l[7] == pytest.approx(0.1) and l[8] == pytest.approx(0.05),
        ),
        (
            "cosine",
            {},
            lambda l: l[0] == pytest.approx(0.1) and l[8] == pytest.approx(0.05, rel=0.15) and l[-1] < 0.005,
        ),
        ("linear", {}, lambda l: all(a > b for a, b in zip(l, l[1:])) and l[-1] < 0.01),
        (
            "inverse_sqrt",
            {"warmup_steps": 4},
            lambda l: (
                l[3] == pytest.approx(0.1)
                and l[0] == pytest.approx(0.025)
                and l[15] == pytest.approx(0.1 * math.sqrt(4 / 16))
            ),
        ),
        (
            "one_cycle",
            {"pct_start": 0.25, "max_lr_mult": 10},
            lambda l: max(l) == pytest.approx(1.0, rel=0.05) and l.index(max(l)) in (3, 4) and l[-1] < 0.01,
        ),
        ("cosine_restarts", {"restart_epochs": 2}, lambda l: l[8] == pytest.approx(0.1) and l[7] < 0.01),
    ],
)
def test_schedules_shape_the_learning_rate(name, kw, check):
    assert check(lrs_for(name, **kw))


def test_plateau_halves_when_validation_stalls():
    class Stalled(Callback):
        order = -10  # after metrics publish, before the schedule reads them

        def after_validate(self):
            self.trainer.metrics["val/loss"] = 1.0

    t = make_trainer(
        [Schedule(ScheduleConfig(name="plateau", plateau_patience=1, plateau_factor=0.5)), Stalled()], lr=0.1
    )
    t.fit(5)
    lrs = [row["lr"] for row in t.history]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < 0.1 and min(lrs) >= 0.1 * 0.5**3


def test_early_stopping_stops_and_restores_the_best_weights():
    es = EarlyStopping(patience=2)

    class WorseEachEpoch(Callback):
        order = -10

        def after_validate(self):
            self.trainer.metrics["val/loss"] = float(self.trainer.epoch)

    t = make_trainer([es, WorseEachEpoch()])
    t.fit(10)
    assert es.stopped_epoch == 2 and len(t.history) == 3 and es.best_epoch == 0
    assert "early stopping" in t.stop_reason
    assert all(torch.equal(a, b) for a, b in zip(t.model.state_dict().values(), es._best_state.values()))


def test_early_stopping_warns_with_the_known_keys_when_its_metric_is_missing():
    t = make_trainer([EarlyStopping(monitor="val/acc")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.fit(2)
    messages = [str(w.message) for w in caught if "EarlyStopping" in str(w.message)]
    assert len(messages) == 1 and "'val/acc' is not available" in messages[0] and "val/accuracy" in messages[0]


def test_checkpoint_writes_last_and_best_loadable_safely(tmp_path):
    ck = Checkpoint(tmp_path, config={"name": "tiny"})
    t = make_trainer([ck])
    t.fit(3)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and state["step"] == t.step and state["config"] == {"name": "tiny"}
    assert ck.best == min(row["val/loss"] for row in t.history)


def test_checkpoint_refuses_a_non_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(ValueError, match="not a recipe-flows checkpoint"):
        load_checkpoint(bad)
    (tmp_path / "trunc.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_grad_clip_bounds_the_gradient_norm():
    class Measure(Callback):
        order = 21  # right after GradClip

        def before_fit(self):
            self.norms = []

        def after_backward(self):
            grads = [p.grad.norm() for p in self.trainer.model.parameters() if p.grad is not None]
            self.norms.append(torch.stack(grads).norm().item())

    m = Measure()
    t = make_trainer([GradClip(0.01), m], lr=1.0)
    t.fit(1)
    assert max(m.norms) <= 0.01 * 1.0001
    assert t.grad_norm > 0.01  # the unclipped norm is kept for others to read


def test_ema_validates_and_ends_with_averaged_weights():
    ema = EMA(0.9)
    t = make_trainer([ema])
    t.fit(2)
    averaged = [p for p in ema.ema.module.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(t.model.parameters(), averaged))
    raw = make_trainer()
    raw.fit(2)
    assert not all(torch.equal(a, b) for a, b in zip(raw.model.parameters(), averaged))


def test_mixed_precision_runs_the_forward_in_bf16():
    class Dtype(Callback):
        def after_pred(self):
            self.dtype = self.trainer.pred.dtype

    probe = Dtype()
    t = make_trainer([MixedPrecision(), probe])
    t.fit(1)
    assert probe.dtype == torch.bfloat16
    assert math.isfinite(t.metrics["val/loss"])


def test_update_ratio_is_measured_per_weight_every_n_steps():
    ur = UpdateRatio(every=2)
    t = make_trainer([ur], lr=1e-3)
    t.fit(1)  # 6 steps
    assert [step for step, _ in ur.history] == [2, 4, 6]
    assert set(ur.latest) == {"0.weight", "3.weight"}
    assert all(-4.5 < v < -1.0 for v in ur.latest.values())  # Adam at 1e-3 moves weights ~1e-3 relative
    assert t.metrics["update_ratio/0.weight"] == ur.latest["0.weight"]


def test_prediction_snapshots_follow_a_fixed_batch_without_disturbing_training():
    snap = PredictionSnapshots(max_items=5)
    t = make_trainer([snap])
    t.fit(3)
    assert [e for e, _ in snap.snapshots] == [-1, 0, 1, 2]
    assert all(p.shape == (5, 2) for _, p in snap.snapshots)
    assert torch.allclose(snap.snapshots[-1][1].sum(1), torch.ones(5))
    plain = make_trainer()
    plain.fit(3)
    assert plain.cb(Recorder).losses == t.cb(Recorder).losses  # no RNG consumed, same training


def test_budget_ends_training_but_still_validates():
    t = make_trainer([Budget(max_steps=8)])
    t.fit(10)
    assert t.step == 8 and len(t.history) == 2 and "val/loss" in t.history[-1]
    assert t.stop_reason == "step budget of 8 spent"


def test_time_budget():
    t = make_trainer([Budget(time_limit_s=1e-9)])
    t.fit(10)
    assert t.step == 1 and "time budget" in t.stop_reason
