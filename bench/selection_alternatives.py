"""Alternatives to squeeze's ``weighted`` champion, scored offline on saved ``bench/selection_regret.py`` records.

Each alternative builds one blend of a run's trained candidates (reference, ensemble, SWA, EMA, longer, snapshots,
student) from their recorded *validation* outputs alone, and is read on the recorded test outputs:

* ``weighted_m<M>``: ensemble selection (Caruana et al. 2004, :func:`recipe.squeeze.weighted.ensemble_selection`,
  25 rounds on the val loss) started from the ensemble counted ``M`` times; ``M`` = 25 is the stage's default
  (``stages.squeeze.ensemble_selection_init``), 0 plain greedy selection;
* ``ensemble``: the plain ensemble (the recipe's prior);
* ``top<k>``: the uniform average of the ``k`` candidates with the lowest val loss;
* ``cv_m``: ``weighted_m<M>`` with ``M`` chosen per run on the val split: fitted on a random half, scored (log loss,
  or MSE) on the other, 10 halves;
* ``shrink_cv``: ``lambda`` x the ensemble + (1 - ``lambda``) x plain greedy selection, ``lambda`` in 0, .25, ..,
  1 chosen per run the same way (shrinkage toward the prior);
* ``paired_z<z>``: ``weighted_m25`` only if its per-sample val loss beats the ensemble's by more than ``z`` paired
  standard errors, else the ensemble (the rule choice as a paired noise test);
* ``bagged``: Caruana et al.'s bagged ensemble selection (section 2.3): 20 bags of half the candidates (the
  ensemble always in), each ``weighted_m25``, their weights averaged;
* ``lodo_m``: the one ``M`` of the ``weighted_m`` grid with the lowest mean test regret on the *other* data sets'
  runs, read on the held-out data set (leave-one-dataset-out: a hyperparameter chosen on test data, scored on
  data sets it did not see).

The regret here is against the best *trained* candidate on test (a yardstick the same for every alternative;
negative when the blend beats them all), in the metric's units; the test-noise floor of that yardstick
(:func:`recipe.squeeze.selection.regret_noise_floor` over the trained candidates) is printed beside it.

    python bench/selection_alternatives.py RECORD [RECORD ...]

Prints one row per alternative (mean regret per data set, mean, its standard error over the runs, max) and
``name: value`` lines: ``alt_<name>_mean`` for each, ``alt_floor_mean``, ``runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
M_GRID = (0, 5, 10, 25, 50, 100, 200)
HALVES = 10


def _run(rec: dict) -> dict:
    """The arrays of one record: val/test outputs of the trained candidates (C, N, K), targets, the ensemble's index."""
    cands = [c for c in rec["candidates"] if c["name"] != "weighted"]
    names = [c["name"] for c in cands]
    if "ensemble" not in names or not all("val_outputs" in c and "test_outputs" in c for c in cands):
        raise SystemExit(
            f"{rec['dataset']} seed {rec['split_seed']}: the record has no ensemble or no outputs; "
            "record it again with bench/selection_regret.py"
        )
    return {
        "ds": rec["dataset"],
        "seed": int(rec["split_seed"]),
        "classifier": bool(rec["classifier"]),
        "V": np.stack([np.asarray(c["val_outputs"], dtype=np.float64) for c in cands]),
        "T": np.stack([np.asarray(c["test_outputs"], dtype=np.float64) for c in cands]),
        "yv": np.asarray(rec["y_val"]),
        "yt": np.asarray(rec["y_test"]),
        "ens": names.index("ensemble"),
    }


def _task(r: dict):
    from recipe.tasks import CLASSIFICATION, REGRESSION

    return CLASSIFICATION if r["classifier"] else REGRESSION


def _scores(r: dict, w: np.ndarray) -> np.ndarray:
    """Per-sample test scores of the blend with weights ``w`` (1/0 correct, or absolute error)."""
    import torch

    task, pred = _task(r), torch.as_tensor(np.tensordot(w, r["T"], 1))
    pred = pred.clamp_min(1e-12).log() if task.classifier else pred
    return task.scores(pred, torch.as_tensor(r["yt"])).double().numpy()


def _loss(r: dict, w: np.ndarray, rows: np.ndarray) -> float:
    from recipe.squeeze.weighted import blend_loss

    return blend_loss(np.tensordot(w, r["V"][:, rows], 1), r["yv"][rows], _task(r))


def _one(r: dict, i: int) -> np.ndarray:
    w = np.zeros(len(r["V"]))
    w[i] = 1.0
    return w


def weighted(r: dict, m: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Ensemble selection on the val ``rows`` (all: None), started from the ensemble counted ``m`` times."""
    from recipe.squeeze.weighted import ensemble_selection

    rows = np.arange(len(r["yv"])) if rows is None else rows
    init = {r["ens"]: m} if m else None
    return ensemble_selection(list(r["V"][:, rows]), r["yv"][rows], _task(r), init=init)


def _halves(r: dict):
    g = np.random.default_rng(r["seed"])
    for _ in range(HALVES):
        p = g.permutation(len(r["yv"]))
        yield p[: len(p) // 2], p[len(p) // 2 :]


def cv_m(r: dict) -> np.ndarray:
    loss = np.zeros(len(M_GRID))
    for a, b in _halves(r):
        loss += [_loss(r, weighted(r, m, a), b) for m in M_GRID]
    return weighted(r, M_GRID[int(loss.argmin())])


def shrink_cv(r: dict) -> np.ndarray:
    lams, loss = (0.0, 0.25, 0.5, 0.75, 1.0), np.zeros(5)
    for a, b in _halves(r):
        greedy = weighted(r, 0, a)
        loss += [_loss(r, lam * _one(r, r["ens"]) + (1 - lam) * greedy, b) for lam in lams]
    lam = lams[int(loss.argmin())]
    return lam * _one(r, r["ens"]) + (1 - lam) * weighted(r, 0)


def paired_z(r: dict, z: float) -> np.ndarray:
    task, rows = _task(r), np.arange(len(r["yv"]))
    w, e = weighted(r, 25), _one(r, r["ens"])

    def per_sample(weights):
        import torch

        pred = torch.as_tensor(np.tensordot(weights, r["V"], 1))
        pred = pred.clamp_min(1e-12).log() if task.classifier else pred
        return task.loss(pred, torch.as_tensor(r["yv"][rows]), reduction="none").double().numpy()

    d = per_sample(e) - per_sample(w)  # > 0: the weighted blend's loss is lower
    return w if d.mean() > z * d.std(ddof=1) / np.sqrt(len(d)) else e


def bagged(r: dict, bags: int = 20) -> np.ndarray:
    from recipe.squeeze.weighted import ensemble_selection

    g, c = np.random.default_rng(0), len(r["V"])
    total = np.zeros(c)
    for _ in range(bags):
        others = g.choice([i for i in range(c) if i != r["ens"]], max(1, c // 2 - 1), replace=False)
        sub = np.sort(np.r_[others, r["ens"]])
        init = {int(np.flatnonzero(sub == r["ens"])[0]): 25}
        total[sub] += ensemble_selection(list(r["V"][sub]), r["yv"], _task(r), init=init)
    return total / total.sum()


def _top(r: dict, k: int) -> np.ndarray:
    rows = np.arange(len(r["yv"]))
    order = np.argsort([_loss(r, _one(r, i), rows) for i in range(len(r["V"]))])[:k]
    w = np.zeros(len(r["V"]))
    w[order] = 1.0 / k
    return w


ALTERNATIVES = {
    **{f"weighted_m{m}": (lambda r, m=m: weighted(r, m)) for m in M_GRID},
    "ensemble": lambda r: _one(r, r["ens"]),
    "top2": lambda r: _top(r, 2),
    "top3": lambda r: _top(r, 3),
    "cv_m": cv_m,
    "shrink_cv": shrink_cv,
    **{f"paired_z{z:g}": (lambda r, z=z: paired_z(r, z)) for z in (0.5, 1.0, 2.0)},
    "bagged": bagged,
}


def regrets(runs: list[dict]) -> tuple[dict[str, list[float]], list[float]]:
    """Each alternative's regret per run against the best trained candidate on test (signed), and each run's
    test-noise floor of that yardstick."""
    from recipe.squeeze.selection import regret_noise_floor

    out: dict[str, list[float]] = {k: [] for k in ALTERNATIVES}
    floors = []
    for r in runs:
        task = _task(r)
        trained = {i: _scores(r, _one(r, i)) for i in range(len(r["V"]))}
        best = max((s.mean() for s in trained.values()), key=lambda v: task.gain(v, 0.0))
        floors.append(regret_noise_floor(trained, task, seed=r["seed"]))
        for name, build in ALTERNATIVES.items():
            out[name].append(task.gain(best, _scores(r, build(r)).mean()))
    return out, floors


def lodo(runs: list[dict], reg: dict[str, list[float]]) -> tuple[list[float], dict[str, str]]:
    """Leave-one-dataset-out ``M``: per held-out data set, the ``weighted_m`` with the lowest mean regret on the
    other data sets' runs; its regrets on the held-out runs (in run order) and the choice per data set."""
    held, chosen = [0.0] * len(runs), {}
    for ds in sorted({r["ds"] for r in runs}):
        train = [i for i, r in enumerate(runs) if r["ds"] != ds]
        if not train:
            raise SystemExit("lodo needs at least two data sets")
        keys = [f"weighted_m{m}" for m in M_GRID]
        pick = min(keys, key=lambda k: sum(reg[k][i] for i in train) / len(train))
        chosen[ds] = pick
        for i, r in enumerate(runs):
            if r["ds"] == ds:
                held[i] = reg[pick][i]
    return held, chosen


def _stats(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="+", help="records written by bench/selection_regret.py --out")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    runs = [_run(rec) for f in args.records for rec in json.loads(f.read_text())]
    reg, floors = regrets(runs)
    reg["lodo_m"], chosen = lodo(runs, reg)
    names = sorted({r["ds"] for r in runs})
    print(f"{'alternative':16s}" + "".join(f"{n:>11s}" for n in names) + f"{'mean':>9s}{'se':>8s}{'max':>8s}")
    rows = {**reg, "test-noise floor": floors}
    for k, v in rows.items():
        per = [np.mean([x for x, r in zip(v, runs, strict=True) if r["ds"] == n]) for n in names]
        mean, se = _stats(v)
        print(f"{k:16s}" + "".join(f"{p:11.4f}" for p in per) + f"{mean:9.4f}{se:8.4f}{max(v):8.4f}")
    print("lodo_m chose: " + ", ".join(f"{ds} {m}" for ds, m in chosen.items()))
    for k, v in reg.items():
        print(f"alt_{k}_mean: {_stats(v)[0]:.4f}")
    print(f"alt_floor_mean: {_stats(floors)[0]:.4f}")
    print(f"runs: {len(runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
