"""bench/selection_regret.py re-scores a saved record as the stage would choose now: the weighted ensemble is
rebuilt from the recorded outputs, dropped for the stage without it, and the regret is read against every
candidate and against the trained ones alone."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from recipe.config import SqueezeConfig
from recipe.tasks import CLASSIFICATION

BENCH = Path(__file__).resolve().parents[1] / "bench" / "selection_regret.py"
spec = importlib.util.spec_from_file_location("selection_regret", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

Y = [0, 0, 1, 1]
AB = [[0.95, 0.05], [0.95, 0.05], [0.5, 0.5], [0.5, 0.5]]  # sure and right on the first two samples
CD = [[0.5, 0.5], [0.5, 0.5], [0.05, 0.95], [0.05, 0.95]]  # on the last two


def _cand(name, val, test, nets):
    scores = (np.asarray(val).argmax(1) == Y).astype(float)
    return {
        "name": name,
        "networks": len(nets),
        "params": 10 * len(nets),
        "val_metric": scores.mean(),
        "val_loss": 0.3,
        "val_scores": scores.tolist(),
        "val_losses": [0.3] * 4,
        "test_metric": float((np.asarray(test).argmax(1) == Y).mean()),
        "val_outputs": val,
        "test_outputs": test,
        "net_ids": nets,
    }


def _record():
    # on test the two are each wrong where they are unsure (ties go to class 0): their blend is right everywhere
    ens = _cand("ensemble", AB, [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], [1, 2])
    longer = _cand("longer", CD, [[0.4, 0.6], [0.4, 0.6], [0.1, 0.9], [0.1, 0.9]], [3])
    return {"dataset": "toy", "split_seed": 0, "classifier": True, "y_val": Y, "y_test": Y, "candidates": [ens, longer]}


@pytest.mark.parametrize(
    ("settings", "names", "weighted_test"),
    [
        (SqueezeConfig(ensemble_selection_init=0), ["ensemble", "longer", "weighted"], 1.0),
        (SqueezeConfig(ensemble_selection=0), ["ensemble", "longer"], None),  # the stage without it
    ],
)
def test_a_record_is_rescored_with_the_weighted_ensemble_rebuilt_or_dropped(settings, names, weighted_test):
    rec = _record()
    rec["candidates"].append({**rec["candidates"][0], "name": "weighted", "test_metric": 0.0})  # a stale one
    bench.with_weighted(rec, CLASSIFICATION, settings)
    assert [c["name"] for c in rec["candidates"]] == names
    if weighted_test is not None:
        w = rec["candidates"][-1]
        assert w["test_metric"] == weighted_test and w["weights"] == {"ensemble": 0.5, "longer": 0.5}
        assert (w["networks"], w["params"]) == (3, 30)  # each network once


def test_regret_is_read_against_every_candidate_and_against_the_trained_ones_alone():
    out = bench.evaluate([_record()], squeeze=SqueezeConfig(ensemble_selection_init=0))
    assert out["weighted"]["chosen"] == ["weighted"] and out["weighted"]["regrets"] == [0.0]
    assert out["weighted"]["vs_trained"] == [pytest.approx(-0.5)]  # the blend beats both trained candidates
    assert out["ensemble_first"]["regrets"] == [pytest.approx(0.5)]
    old = copy.deepcopy(_record())
    assert bench.with_weighted(old, CLASSIFICATION, SqueezeConfig(ensemble_selection=0)) is None
