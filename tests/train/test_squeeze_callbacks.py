"""The callbacks squeeze builds on: SWA weights, snapshot ensembles, distillation from a teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipe.train.callbacks.base import Callback
from recipe.train.callbacks.distill import Distill, distillation_loss
from recipe.train.callbacks.snapshots import Snapshots
from recipe.train.callbacks.swa import SWA, Polyak

from .conftest import make_trainer


class _EpochWeights(Callback):
    """Records the first layer's weights at the end of every epoch."""

    def before_fit(self) -> None:
        self.weights: list[torch.Tensor] = []

    def after_epoch(self) -> None:
        self.weights.append(self.trainer.model[0].weight.detach().clone())


def test_swa_averages_the_end_of_epoch_weights_from_its_start_epoch():
    swa, spy = SWA(start_epoch=2), _EpochWeights()
    t = make_trainer([swa, spy])
    t.fit(5)
    assert swa.n_averaged == 3
    torch.testing.assert_close(swa.averaged.module[0].weight, torch.stack(spy.weights[2:]).mean(0))
    assert not torch.equal(swa.averaged.module[0].weight, t.model[0].weight)  # the trainer keeps its last weights


def test_swa_recomputes_batch_norm_statistics_for_the_averaged_weights():
    t = make_trainer([SWA()])
    t.model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    t.opt = torch.optim.Adam(t.model.parameters(), 1e-2)
    t.fit(2)
    swa = t.cb(SWA)
    bn = swa.averaged.module[1]
    assert bn.num_batches_tracked.item() > 0 and not torch.equal(bn.running_mean, torch.zeros(16))


def test_polyak_weights_get_batch_norm_statistics_of_their_own():
    t = make_trainer([Polyak(0.9)])
    t.model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    t.opt = torch.optim.Adam(t.model.parameters(), 1e-2)
    t.fit(3)
    ema = t.cb(Polyak).averaged.module
    with torch.no_grad():  # the population statistics of the first layer's outputs under the averaged weights
        means = [ema[0](xb).mean(0) for xb, _ in t.train_data]
    torch.testing.assert_close(ema[1].running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)


def test_snapshots_keep_the_weights_at_the_end_of_each_cycle():
    snaps = Snapshots(every_epochs=2)
    t = make_trainer([snaps])
    t.fit(6)
    assert snaps.epochs == [1, 3, 5] and len(snaps.states) == 3
    torch.testing.assert_close(snaps.states[-1]["0.weight"], t.model[0].weight.detach())
    assert not torch.equal(snaps.states[0]["0.weight"], snaps.states[-1]["0.weight"])


def test_distillation_loss_is_hinton_et_al():
    g = torch.Generator().manual_seed(0)
    s, te = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1])
    t, alpha = 3.0, 0.7
    p_t, log_p_s = F.softmax(te / t, -1), F.log_softmax(s / t, -1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    expected = alpha * t * t * kl + (1 - alpha) * F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, te, y, temperature=t, alpha=alpha), expected)
    assert distillation_loss(te, te, y, temperature=t, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_a_student_distilled_from_a_teacher_matches_it():
    teacher = make_trainer(seed=1)
    teacher.fit(8)
    teacher.model.eval()
    student = make_trainer([Distill(lambda x: teacher.model(x), temperature=2.0, alpha=1.0)], seed=2)
    student.fit(8)
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        agree = (student.model.eval()(x).argmax(-1) == teacher.model(x).argmax(-1)).float().mean().item()
    assert agree > 0.9  # alpha=1: the labels are never seen, the teacher's answers are learnt
    assert "train/loss" in student.metrics  # the hard loss is still what the metrics report


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="start_epoch"):
        SWA(-1)
    with pytest.raises(ValueError, match="every_epochs"):
        Snapshots(0)
    with pytest.raises(ValueError, match="temperature > 0"):
        Distill(lambda x: x, temperature=0)


def test_polyak_weights_warm_up_so_a_short_run_averages_its_recent_weights():
    """warmup_ema: the n-th update uses decay min(decay, (1 + n) / (10 + n)) (TensorFlow's num_updates rule), so
    after a few steps the average sits near the recent weights, where the plain EMA at 0.99 stays near the first."""
    from torch.optim.swa_utils import AveragedModel

    from recipe.train.callbacks.ema import warmup_ema

    w = nn.Linear(1, 1, bias=False)
    avg = AveragedModel(w, multi_avg_fn=warmup_ema(0.99), use_buffers=True)
    expected = None
    for step in range(20):
        with torch.no_grad():
            w.weight.fill_(float(step))
        avg.update_parameters(w)
        n = step  # updates before this one
        d = min(0.99, (1 + n) / (10 + n))
        expected = 0.0 if step == 0 else d * expected + (1 - d) * step
    assert avg.module.weight.item() == pytest.approx(expected)
    assert avg.module.weight.item() > 14  # recent weights (19 last); the plain EMA at 0.99 would be near 1.7
    late = min(0.99, (1 + 2000) / (10 + 2000))
    assert late == 0.99  # long runs: the configured decay
