import pytest

from recipe.train import (
    CANCEL_EVENTS,
    EVENTS,
    LOOP_EVENTS,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelTrain,
    CancelValidate,
)
from recipe.train.callbacks import Callback, sort_callbacks
from tests.train.conftest import make_trainer


class Log(Callback):
    """Records every event it sees."""

    def __init__(self):
        self.seen = []

    def handlers(self):
        return {e: (lambda e=e: self.seen.append(e)) for e in EVENTS}


BATCH_TRAIN = [
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "after_step",
    "after_batch",
]
BATCH_VALID = ["before_batch", "after_pred", "after_loss", "after_batch"]


def expected_order(epochs: int, n_train: int, n_valid: int) -> list[str]:
    out = ["before_fit"]
    for _ in range(epochs):
        out += ["before_epoch", "before_train", *BATCH_TRAIN * n_train, "after_train"]
        out += ["before_validate", *BATCH_VALID * n_valid, "after_validate", "after_epoch"]
    return out + ["after_fit"]


def test_events_are_defined_once_and_complete():
    assert len(set(EVENTS)) == len(EVENTS) == 20
    assert EVENTS == LOOP_EVENTS + CANCEL_EVENTS
    assert CANCEL_EVENTS == tuple(f"after_cancel_{x}" for x in ("batch", "train", "validate", "epoch", "fit"))


def test_event_order_is_the_documented_one():
    log = Log()
    t = make_trainer([log], batch_size=96)  # 192 train samples -> 2 batches; 64 valid -> 1 batch
    t.fit(2)
    assert log.seen == expected_order(epochs=2, n_train=2, n_valid=1)
    assert t.step == 4


def test_unknown_event_is_an_error():
    t = make_trainer()
    with pytest.raises(ValueError, match="unknown event 'after_bach'"):
        t("after_bach")


def test_handler_with_a_typo_is_rejected_when_attached():
    class Typo(Callback):
        def after_bach(self):
            pass

    with pytest.raises(ValueError, match=r"Typo.after_bach looks like an event handler"):
        make_trainer([Typo()])


class Raiser(Callback):
    def __init__(self, event, exc, when=lambda t: True):
        self.event, self.exc, self.when = event, exc, when

    def handlers(self):
        return {self.event: self._raise}

    def _raise(self):
        if self.when(self.trainer):
            raise self.exc()


@pytest.mark.parametrize(
    ("event", "exc", "cancel_event", "check"),
    [
        # Cancelling each training batch after its loss: no step is ever taken, after_batch still fires.
        (
            "after_loss",
            CancelBatch,
            "after_cancel_batch",
            lambda t, log: t.step == 0 and log.seen.count("after_batch") == log.seen.count("before_batch"),
        ),
        # Cancelling training after the first batch: one step per epoch, validation still runs.
        (
            "after_batch",
            CancelTrain,
            "after_cancel_train",
            lambda t, log: t.step == 2 and log.seen.count("after_validate") == 2,
        ),
        (
            "before_validate",
            CancelValidate,
            "after_cancel_validate",
            lambda t, log: "val/loss" not in t.metrics and log.seen.count("after_validate") == 2,
        ),
        # Cancelling the epoch after training skips validation but the next epoch runs.
        (
            "after_train",
            CancelEpoch,
            "after_cancel_epoch",
            lambda t, log: "before_validate" not in log.seen and log.seen.count("after_epoch") == 2,
        ),
        (
            "after_step",
            CancelFit,
            "after_cancel_fit",
            lambda t, log: t.step == 1 and log.seen[-2:] == ["after_cancel_fit", "after_fit"],
        ),
    ],
)
def test_cancel_exceptions(event, exc, cancel_event, check):
    log = Log()
    only_training = (lambda t: t.training) if event in ("after_loss", "after_batch") else (lambda t: True)
    t = make_trainer([log, Raiser(event, exc, only_training)])
    t.fit(2)
    assert cancel_event in log.seen
    assert check(t, log)


def test_trainer_stop_records_the_reason():
    class Stopper(Callback):
        def after_epoch(self):
            self.trainer.stop("enough")

    t = make_trainer([Stopper()])
    t.fit(5)
    assert t.stop_reason == "enough"
    assert len(t.history) == 1


class A(Callback):
    order = 5


class B(Callback):
    order = 1


class C(Callback):
    order = 0
    run_after = (A,)


class D(Callback):
    order = 9
    run_before = ("B",)


def test_callbacks_sort_by_order_then_constraints():
    # Constraints win over order (D before B, A before C); among free callbacks the lowest order goes first.
    assert [type(c).__name__ for c in sort_callbacks([A(), B(), C(), D()])] == ["A", "C", "D", "B"]
    assert [type(c).__name__ for c in sort_callbacks([A(), B()])] == ["B", "A"]


def test_cyclic_ordering_constraints_are_an_error():
    class E(Callback):
        run_before = ("F",)

    class F(Callback):
        run_before = ("E",)

    with pytest.raises(ValueError, match="cycle"):
        sort_callbacks([E(), F()])


def test_default_callbacks_run_in_their_declared_order():
    t = make_trainer()
    assert [type(c).__name__ for c in t.cbs] == ["NanGuard", "Metrics", "Recorder", "ProgressBar"]
