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


def test_the_noise_floor_reads_recorded_scores_or_the_outputs_and_corrects_every_rule():
    rec, without = _record(), SqueezeConfig(ensemble_selection=0)  # the blend, right on every row, would win always
    bench.with_weighted(rec, CLASSIFICATION, without)
    from_outputs = bench.noise_floor(rec, CLASSIFICATION)
    for c in rec["candidates"]:  # the same rows, recorded as scores instead
        c["test_scores"] = bench.recorded_test_scores(c, Y, CLASSIFICATION)
        c.pop("test_outputs", None)
    assert bench.noise_floor(rec, CLASSIFICATION) == from_outputs > 0  # ensemble and longer tie at 0.5 on test
    out = bench.evaluate([_record()], squeeze=without)
    for r in out.values():
        assert r["floors"] == [pytest.approx(from_outputs)]
        assert r["corrected"] == [pytest.approx(r["regrets"][0] - from_outputs)]


@pytest.mark.parametrize("missing", ["outputs", "targets"])  # the first records kept neither
def test_a_record_without_test_scores_or_what_makes_them_has_no_floor(missing):
    rec = _record()
    if missing == "targets":
        del rec["y_test"]
    else:
        for c in rec["candidates"]:
            c.pop("test_outputs")
    assert np.isnan(bench.noise_floor(rec, CLASSIFICATION))


def test_the_floor_check_finds_the_raw_regret_biased_up_and_the_corrected_one_closer_but_still_high():
    # three candidates level in truth on 200 rows (each wrong on its own 20): any choice's true regret is 0. With
    # ties in truth the bootstrap sees only part of the max's overshoot (for 3 independent normals about 0.35 of
    # the 0.85 sd), so the corrected regret sits between the truth and the raw one
    n, rng = 200, np.random.default_rng(0)
    y = rng.integers(0, 2, n).tolist()
    cands = []
    for i in range(3):
        right = np.ones(n, bool)
        right[20 * i : 20 * (i + 1)] = False
        cands.append({"name": f"c{i}", "test_scores": right.astype(float).tolist(), "test_metric": right.mean()})
    rec = {"split_seed": 0, "classifier": True, "y_test": y, "candidates": cands}
    got = bench.floor_check([rec], ["c0"], sims=60, n_boot=200)
    assert got["true"] == 0.0
    assert got["raw"] > 0.005  # the max of three noisy accuracies overshoots
    assert got["true"] < got["corrected"] < got["raw"] - 0.2 * got["raw"]  # the floor removes part of it
    assert got["oracle_raw"] == pytest.approx(got["raw"])  # level in truth: the oracle's choice is c0 too
