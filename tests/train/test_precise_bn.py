"""PreciseBN: batch-norm statistics recomputed for the weights that are evaluated (Wu & Johnson, 2021)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from recipe.config import OptimConfig, RecipeConfig
from recipe.data.batching import InMemoryBatcher
from recipe.train import Trainer, build_optimizer, loss_for_task, seed_everything
from recipe.train.callbacks import EMA, PreciseBN, recompute_bn_stats
from recipe.train.factory import config_callbacks
from tests.train.conftest import make_data, make_trainer


def _bn_net(dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))


def _bn_trainer(cbs=(), lr: float = 0.05, n_train: int = 192) -> Trainer:
    """A batch-norm net on ``make_data``'s rows: the first ``n_train`` to train on (batch 32), 64 after them to
    validate on."""
    seed_everything(0)
    x, y = make_data(n=n_train + 64)
    model = _bn_net()
    return Trainer(
        model,
        InMemoryBatcher(x[:n_train], y[:n_train], 32, shuffle=True, seed=0),
        InMemoryBatcher(x[n_train:], y[n_train:], 64),
        loss_fn=loss_for_task("classification"),
        opt=build_optimizer(OptimConfig(name="adam", lr=lr), model.parameters()),
        cbs=list(cbs),
        task="classification",
        device="cpu",
        progress=False,
    )


def test_recompute_sets_the_exact_mean_and_variance_of_the_batches_seen():
    torch.manual_seed(0)
    model = _bn_net()
    model.train()
    x = torch.randn(96, 8) * 3 + 1
    batches = [(x[i : i + 32], None) for i in range(0, 96, 32)]
    used = recompute_bn_stats(model, iter(batches), num_batches=2)
    assert used == 2
    h = model[0](x[:64]).detach()  # what the BN layer saw: the first two batches
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, h.mean(0))
    # cumulative average of the per-batch unbiased variances, as momentum=None does
    per_batch = torch.stack([h[:32].var(0, unbiased=True), h[32:].var(0, unbiased=True)])
    torch.testing.assert_close(bn.running_var, per_batch.mean(0))
    assert model.training and bn.momentum == 0.1  # mode and momentum put back


def test_recompute_leaves_a_model_without_batch_norm_alone():
    model = nn.Sequential(nn.Linear(8, 2))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    assert recompute_bn_stats(model, [(torch.randn(4, 8), None)], num_batches=3) == 0
    assert calls == []


def test_recompute_with_no_batches_keeps_the_old_statistics():
    model = _bn_net()
    model[1].running_mean.fill_(0.5)
    assert recompute_bn_stats(model, [], num_batches=3) == 0
    assert torch.all(model[1].running_mean == 0.5)


@pytest.mark.parametrize("bad", [0, -1])
def test_num_batches_must_be_positive(bad):
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        PreciseBN(bad)
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        recompute_bn_stats(_bn_net(), [], num_batches=bad)


def test_precise_bn_changes_only_the_statistics_never_the_training():
    """Dropout draws no extra random numbers and the weights follow the same path; only the running
    statistics differ, and they equal a recomputation over the first batches of the last epoch."""
    plain, precise = _bn_trainer(), _bn_trainer([PreciseBN(3)])
    for t in (plain, precise):
        seed_everything(1)  # the same dropout masks for both runs
        t.fit(3)
    for (name, a), b in zip(plain.model.named_parameters(), precise.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    bn = precise.model[1]
    assert not torch.allclose(plain.model[1].running_mean, bn.running_mean)
    expected = {k: v.clone() for k, v in bn.state_dict().items()}
    recompute_bn_stats(precise.model, precise.train_data, num_batches=3)
    torch.testing.assert_close(bn.running_mean, expected["running_mean"])
    torch.testing.assert_close(bn.running_var, expected["running_var"])


def test_precise_statistics_are_the_populations_where_lagging_ones_are_not():
    """At a high Adam rate the momentum estimates lag the weights; the recomputed ones are the training
    population's statistics under the final weights (6 batches of 32 = all 192 rows, so their mean is exact).

    The promise is about the statistics, not a val-loss comparison: on this 16-unit net whether the better
    statistics also give a lower val loss depended on the seed and on torch's thread count (4-6 seeds in 10),
    so a loss comparison guarded nothing."""
    plain, precise = _bn_trainer(lr=0.2), _bn_trainer([PreciseBN(6)], lr=0.2)
    for t in (plain, precise):
        seed_everything(1)  # the same dropout masks, so the same weights (test above)
        t.fit(4)
    x, _ = make_data()
    with torch.no_grad():
        population = precise.model[0](x[:192]).mean(0)
    precise_err = (precise.model[1].running_mean - population).abs().max().item()
    lagging_err = (plain.model[1].running_mean - population).abs().max().item()
    assert precise_err < 1e-5, precise_err
    assert lagging_err > 100 * max(precise_err, 1e-6), (lagging_err, precise_err)


def test_with_ema_the_averaged_weights_get_their_own_statistics():
    t = _bn_trainer([EMA(0.9), PreciseBN(2)])
    t.fit(2)
    after = {k: v.clone() for k, v in t.model.state_dict().items()}
    recompute_bn_stats(t.model, t.train_data, num_batches=2)  # the final (EMA) weights, recomputed again
    torch.testing.assert_close(t.model[1].running_mean, after["1.running_mean"])
    names = [type(c).__name__ for c in t.cbs]
    assert names.index("EMA") < names.index("PreciseBN")


def test_a_model_without_batch_norm_trains_exactly_as_before():
    a, b = make_trainer(), make_trainer([PreciseBN(4)])
    for t in (a, b):
        seed_everything(1)
        t.fit(2)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.metrics["val/loss"] == b.metrics["val/loss"]


def test_config_turns_it_on_by_default_and_zero_turns_it_off():
    on = config_callbacks(RecipeConfig(), "cpu")
    off = config_callbacks(RecipeConfig(trainer={"precise_bn": 0}), "cpu")
    assert [c.num_batches for c in on if isinstance(c, PreciseBN)] == [16]
    assert not any(isinstance(c, PreciseBN) for c in off)


def _count_bn_passes(trainer: Trainer) -> list[int]:
    """Forward passes the model makes in PreciseBN's recomputations (batch norm in train mode, model in eval)."""
    calls: list[int] = []
    model = trainer.model

    def hook(module, *_):
        if module[1].training and not module.training:
            calls.append(1)

    model.register_forward_hook(hook)
    return calls


def test_it_never_averages_more_than_one_data_epoch():
    """One pass over the training split gives its population statistics exactly; 16 batches of a 6-batch epoch
    would walk it again (a 300-image folder: 8 forward passes a validation where 4 give the same numbers)."""
    t = _bn_trainer([PreciseBN(16, validation_share=1.0)])  # 192 rows at batch 32: 6 batches an epoch
    calls = _count_bn_passes(t)
    t.fit(2)
    assert len(calls) == 6 * 3  # before each of the 2 validations and at the end of fit
    x, _ = make_data()
    with torch.no_grad():
        population = t.model[0](x[:192]).mean(0)
    torch.testing.assert_close(t.model[1].running_mean, population)


def test_with_epoch_groups_it_averages_one_data_epoch_of_the_group():
    """On the step cadence one trainer epoch is several data epochs (recipe.train.cadence.EpochGroups): the
    recomputation still reads one data epoch's batches, not the group's."""
    from recipe.train.cadence import EpochGroups
    from recipe.train.callbacks.precise_bn import epoch_batches

    t = _bn_trainer([PreciseBN(16, validation_share=1.0)])
    t.train_data = EpochGroups(t.train_data, per_group=3, epochs=6)
    assert epoch_batches(t.train_data) == 6 and len(t.train_data) == 18
    calls = _count_bn_passes(t)
    t.fit(t.train_data.groups)
    assert len(calls) == 6 * 3
    assert epoch_batches(iter([])) is None  # no length: the configured number is used


@pytest.mark.parametrize(
    ("epoch", "final", "expected"),
    [
        (21, False, 6),  # digits: a quarter of 21 batches, rounded up
        (21, True, 16),  # the end of fit: num_batches
        (33, False, 9),  # Fashion-MNIST's 3,000 images
        (64, False, 16),  # a quarter of a long epoch is more than num_batches
        (1000, True, 16),
        (6, False, 4),  # never fewer than MIN_VALIDATION_BATCHES...
        (6, True, 6),
        (3, False, 3),  # ...nor more than the epoch has
        (None, False, 16),  # no length: num_batches
    ],
)
def test_a_validation_before_the_end_reads_at_most_a_quarter_of_an_epoch(epoch, final, expected):
    assert PreciseBN(16).batches_for(epoch, final) == expected


def test_validations_read_a_quarter_of_an_epoch_and_the_end_of_fit_all_of_it():
    """16 batches of a 24-batch epoch were 16 forward passes beside 24 training steps at every validation: a
    validation now reads 6 (a quarter), the end of fit all 16, and the final statistics are the population's."""
    t = _bn_trainer([PreciseBN(16)], n_train=768)  # 768 rows at batch 32: 24 batches an epoch
    calls = _count_bn_passes(t)
    t.fit(2)
    assert len(calls) == 6 + 6 + 16
    seen = torch.cat([xb for xb, _ in itertools.islice(iter(t.train_data), 16)])  # what the end of fit read
    with torch.no_grad():
        population = t.model[0](seen).mean(0)
    torch.testing.assert_close(t.model[1].running_mean, population)


def test_a_validation_share_outside_zero_to_one_is_refused():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="validation_share"):
            PreciseBN(16, validation_share=bad)
