"""Fake stages for testing the pipeline, the flow and the CLI without real data work."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from recipe import pipeline, tracking
from recipe.report import Check, StageResult, Verdict


def fake_stage(name, verdict=Verdict.PASS, calls=None, raises=None, hand_on=None):
    def run(ctx):
        if calls is not None:
            calls.append((name, sorted(ctx.results)))
        if raises:
            raise raises
        tracking.log_metrics({f"{name}/score": 1.0})
        ok = verdict is Verdict.PASS
        check = Check(f"{name}_ok", f"{name} works", "yes" if ok else "no", "yes", verdict, "" if ok else "look here")
        cfg = ctx.cfg.with_overrides(hand_on) if hand_on else ctx.cfg
        return StageResult.from_checks(name, [check], {f"{name}/score": 1.0}, cfg)

    return SimpleNamespace(run=run)


@pytest.fixture
def fake_stages(monkeypatch):
    """Replace the real stages by fakes a, b, c; returns (modules dict, calls list)."""
    calls = []
    mods = {
        "a": fake_stage("a", calls=calls, hand_on={"optim.lr": 0.01}),
        "b": fake_stage("b", calls=calls),
        "c": fake_stage("c", calls=calls),
    }
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    return mods, calls
