"""bench/selection_alternatives.py: every alternative builds a blend from the val outputs alone (weights >= 0,
summing to 1), the regret is read against the best trained candidate on test, and the leave-one-dataset-out
start weight is chosen on the other data sets' runs only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "selection_alternatives.py"
spec = importlib.util.spec_from_file_location("selection_alternatives", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _record(ds: str, seed: int, n: int = 40) -> dict:
    """Three candidates on a 2-class task: the ensemble sure and right, ``longer`` right but unsure, ``bad`` wrong
    on every fourth row (val and test alike)."""
    y = [i % 2 for i in range(n)]

    def probs(p_right, wrong_every=0):
        rows = []
        for i, t in enumerate(y):
            p = 1 - p_right if wrong_every and i % wrong_every == 0 else p_right
            rows.append([p, 1 - p] if t == 0 else [1 - p, p])
        return rows

    outs = {"ensemble": probs(0.9), "longer": probs(0.6), "bad": probs(0.8, wrong_every=4)}
    cands = [{"name": k, "val_outputs": v, "test_outputs": v} for k, v in outs.items()]
    return {"dataset": ds, "split_seed": seed, "classifier": True, "y_val": y, "y_test": y, "candidates": cands}


@pytest.mark.parametrize("name", list(bench.ALTERNATIVES))
def test_every_alternative_is_a_blend_of_the_trained_candidates(name):
    w = bench.ALTERNATIVES[name](bench._run(_record("a", 0)))
    assert w.shape == (3,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)


def test_regret_is_against_the_best_trained_candidate_and_never_below_it_here():
    reg, floors = bench.regrets([bench._run(_record("a", 0))])
    assert reg["ensemble"] == [0.0]  # the ensemble is right everywhere: no regret, nothing beats it
    assert floors == [0.0]  # the ensemble and longer are right on every row: no test noise in who is best
    assert all(v[0] >= 0.0 for v in reg.values())


@pytest.mark.parametrize(
    ("regret_by_m", "expected"),
    [
        # data set a's runs favour m=5, b's m=50: each held-out set gets the other's choice, read on its own runs
        ({5: [0.0, 0.0, 0.02], 50: [0.01, 0.01, 0.0]}, {"a": "weighted_m50", "b": "weighted_m5"}),
        # a tie on the other runs goes to the first of the grid
        ({5: [0.0, 0.0, 0.0], 50: [0.0, 0.0, 0.0]}, {"a": "weighted_m5", "b": "weighted_m5"}),
    ],
)
def test_lodo_chooses_the_start_weight_on_the_other_data_sets(regret_by_m, expected, monkeypatch):
    monkeypatch.setattr(bench, "M_GRID", tuple(regret_by_m))
    runs = [{"ds": "a"}, {"ds": "a"}, {"ds": "b"}]
    reg = {f"weighted_m{m}": v for m, v in regret_by_m.items()}
    held, chosen = bench.lodo(runs, reg)
    assert chosen == expected
    assert held == [reg[expected["a"]][0], reg[expected["a"]][1], reg[expected["b"]][2]]


def test_a_record_without_outputs_is_named():
    rec = _record("a", 0)
    del rec["candidates"][0]["val_outputs"]
    with pytest.raises(SystemExit, match="no ensemble or no outputs"):
        bench._run(rec)
