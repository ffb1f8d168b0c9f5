"""A pipeline of fake baselines and regularize stages followed by the real tune stage (fast: no earlier training).

Also runnable as a script (``python -m tests.tune.helpers KEY=VALUE ...``): the resume test kills it mid-study.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

from recipe import pipeline
from recipe.config import load_config
from recipe.report import Check, StageResult, Verdict
from recipe.stages import STAGES

TINY = [
    "stages.tune.n_trials=3",
    "stages.tune.epochs=2",
    "stages.tune.seeds=[0,1]",
    "model.width=8",
    "optim.lr=3e-3",
    "trainer.progress=false",
    "stages.tune.plots=true",
]
BASELINES = {"baseline/majority_accuracy": 0.1, "baseline/linear_accuracy": 0.2}


def fake(name, metrics, hand_on=None):
    def run(ctx):
        cfg = ctx.cfg.with_overrides(hand_on) if hand_on else ctx.cfg
        return StageResult.from_checks(name, [Check(f"{name}_ok", "x", "y", "y", Verdict.PASS, "")], metrics, cfg)

    return SimpleNamespace(run=run)


def stages(hand_on=None):
    return {
        "baselines": fake("baselines", BASELINES),
        "regularize": fake("regularize", {}, hand_on),
        "tune": STAGES["tune"],
    }


def install(monkeypatch, hand_on=None):
    mods = stages(hand_on)
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    return mods


def config(*overrides, name="tune-test"):
    return load_config(overrides=[f"name={name}", *TINY, *overrides])


if __name__ == "__main__":
    mods = stages({"data.augment": ["crop"]})
    pipeline.STAGES = mods
    pipeline.stage_names = lambda: list(mods)
    out = pipeline.run_recipe(config(*sys.argv[1:]), say=print)
    sys.exit(out.exit_code)
