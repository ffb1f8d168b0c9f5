"""The study lock on a shared Prefect server: a global concurrency limit of one slot per study."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flows import study_lock
from flows.trials import trial_map_for
from recipe.config import RecipeConfig
from recipe.tune.lock import StudyBusy

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_second_holder_refuses_or_waits_until_the_first_releases(monkeypatch):
    monkeypatch.setattr(study_lock, "FIRST_TRY_S", 2.0)
    release, held, said = threading.Event(), threading.Event(), []

    def first() -> None:
        with study_lock.prefect_study_lock("digits-tune-abc-fp", Path("unused"), True, said.append):
            held.set()
            release.wait(60)

    t1 = threading.Thread(target=first)
    t1.start()
    assert held.wait(60)
    with (
        pytest.raises(StudyBusy, match="tune-study:digits-tune-abc-fp"),
        study_lock.prefect_study_lock("digits-tune-abc-fp", Path("unused"), False, said.append),
    ):
        pass
    got = threading.Event()

    def second() -> None:
        with study_lock.prefect_study_lock("digits-tune-abc-fp", Path("unused"), True, said.append):
            got.set()

    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(timeout=4)
    assert not got.is_set() and any("waiting for it to finish" in m for m in said)
    release.set()
    t1.join(timeout=60)
    t2.join(timeout=120)
    assert got.is_set()
    # another study is not blocked by this one
    with study_lock.prefect_study_lock("other-study", Path("unused"), False, said.append):
        pass


def test_the_prefect_lock_is_used_only_with_a_configured_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert trial_map_for(RecipeConfig()).study_lock is None  # the stage's file lock
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert trial_map_for(RecipeConfig()).study_lock is study_lock.prefect_study_lock
