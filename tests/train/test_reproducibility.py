import pytest
import torch

from recipe.config import ScheduleConfig
from recipe.train.callbacks import EMA, Callback, Checkpoint, EarlyStopping, Recorder, Schedule
from tests.train.conftest import make_trainer


def losses(seed: int) -> list[float]:
    t = make_trainer(seed=seed)
    t.fit(3)
    return t.cb(Recorder).losses


def test_same_seed_same_losses_exactly():
    assert losses(0) == losses(0)


def test_different_seed_different_losses():
    assert losses(0) != losses(1)


def callbacks(directory):
    # The stateful callbacks a resume must restore: a decaying schedule, EMA weights, early stopping.
    return [
        Schedule(ScheduleConfig(name="cosine")),
        EMA(0.8),
        EarlyStopping(patience=50),
        Checkpoint(directory, monitor=None),
    ]


class KillAfter(Callback):
    """Simulates a crash right after epoch ``epoch`` was checkpointed."""

    order = 99  # after Checkpoint wrote the epoch

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_epoch(self):
        if self.trainer.epoch == self.epoch:
            self.trainer.stop("killed")


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    full = make_trainer(callbacks(tmp_path / "full"))
    full.fit(5)

    part = make_trainer([*callbacks(tmp_path / "part"), KillAfter(2)])
    part.fit(5)
    assert part.stop_reason == "killed" and len(part.history) == 3

    resumed = make_trainer(callbacks(tmp_path / "resumed"))
    torch.manual_seed(123)  # whatever the RNG holds now, the checkpoint's states replace it
    resumed.fit(5, resume_from=tmp_path / "part" / "last.pt")

    assert resumed.step == full.step
    assert [r["val/loss"] for r in resumed.history] == [r["val/loss"] for r in full.history]
    assert resumed.cb(Recorder).losses == full.cb(Recorder).losses
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.lr == pytest.approx(full.lr)
