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


def test_seeding_asks_for_deterministic_kernels_without_importing_the_compiler():
    """seed_everything sets torch's deterministic-algorithms flag (warn only) in a new process, without the 1.2 CPU-s
    import of torch._inductor that torch.use_deterministic_algorithms makes; once Inductor is imported, its own
    deterministic flag follows too."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from recipe.train.utils import seed_everything\n"
        "seed_everything(0)\n"
        "assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert 'torch._inductor' not in sys.modules, 'seeding imported the compiler'\n"
        "import torch._inductor.config as ic\n"
        "ic.deterministic = False\n"
        "seed_everything(0)\n"
        "assert ic.deterministic and torch.are_deterministic_algorithms_enabled()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
