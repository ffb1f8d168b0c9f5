"""Tune trials in parallel: trials per minute with ``stages.tune.parallel=2`` over ``parallel=1`` on the same
trials, and the bookkeeping (Optuna, MLflow, Prefect tasks) as a share of the search's wall time.

Runs the real ``recipe`` Prefect flow (a temporary Prefect server, a private MLflow store in a temporary folder)
with stand-in baselines and regularize stages and the real tune stage on digits. The search covers only the
learning rate, weight decay and dropout, so every trial costs about the same; the sampler is the seeded
scrambled Sobol sequence, so both runs train the same points. Needs both cores: run it as
``/work/bin/heavy /work/bin/heavy python bench/tune_parallel.py`` on the shared machine.

Printed at the end:
- ``tune_parallel_speedup``: search wall time of parallel=1 over parallel=2, worker start-up included (aim >= 1.6);
- ``tune_parallel_speedup_warm``: the same after the first wave (trials finished per second once workers run);
- ``tune_overhead_share``: parallel=1, 1 - (sum of the trials' training and evaluation time) / (search wall
  time): Optuna ask/tell, MLflow runs and logging, Prefect task runs (aim <= 5%);
- ``tune_pool_startup_s``: parallel=2, from the search's start to the first trial's training start.

    python bench/tune_parallel.py [--trials 12] [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fake(name, metrics, hand_on=None):
    from recipe.report import Check, StageResult, Verdict

    def run(ctx):
        cfg = ctx.cfg.with_overrides(hand_on) if hand_on else ctx.cfg
        return StageResult.from_checks(name, [Check(f"{name}_ok", "-", "-", "-", Verdict.PASS, "")], metrics, cfg)

    return SimpleNamespace(run=run)


def measure(parallel: int, trials: int, epochs: int) -> dict[str, float]:
    from mlflow import MlflowClient

    from flows.recipe_flow import recipe as recipe_flow
    from recipe.config import load_config

    name = f"bench-tune-p{parallel}"
    overrides = [
        f"name={name}",
        "trainer.progress=false",
        f"stages.tune.n_trials={trials}",
        f"stages.tune.epochs={epochs}",
        f"stages.tune.parallel={parallel}",
        "stages.tune.seeds=[0]",
        "stages.tune.plots=false",
    ] + [f"stages.tune.space.{p}=null" for p in ("width", "depth", "batch_size", "augment", "schedule")]
    state = recipe_flow(config=load_config(overrides=overrides), return_state=True)
    assert state.is_completed(), state.message
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    tune = next(r for r in runs if r.data.tags.get("recipe.kind") == "stage" and r.data.tags["recipe.stage"] == "tune")
    tr = sorted((r for r in runs if r.data.tags.get("recipe.kind") == "trial"), key=lambda r: r.info.end_time)
    assert len(tr) == trials and all(r.data.tags["recipe.trial_state"] == "complete" for r in tr)
    search = tune.data.metrics["tune/search_seconds"]
    fit = sum(r.data.metrics["trial/fit_seconds"] for r in tr)
    ends = [r.info.end_time / 1000 for r in tr]
    first_fit_start = min(r.info.end_time / 1000 - r.data.metrics["trial/fit_seconds"] for r in tr)
    return {
        "search_s": search,
        "fit_s": fit,
        "trials_per_min": 60 * trials / search,
        "warm_rate": (len(ends) - parallel) / (ends[-1] - ends[parallel - 1]),
        "startup_s": first_fit_start - tune.info.start_time / 1000,
        "lr": sorted(float(r.data.params["optim.lr"]) for r in tr),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))

    from recipe import pipeline
    from recipe.stages import STAGES

    mods = {
        "baselines": fake("baselines", {"baseline/majority_accuracy": 0.1, "baseline/linear_accuracy": 0.2}),
        "regularize": fake("regularize", {}),
        "tune": STAGES["tune"],
    }
    pipeline.STAGES = mods
    pipeline.stage_names = lambda: list(mods)

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    one = measure(1, args.trials, args.epochs)
    two = measure(2, args.trials, args.epochs)
    assert one["lr"] == two["lr"], "the two runs did not train the same trials"
    print(
        f"machine: {os.cpu_count()} cores; load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    for k, m in (("parallel=1", one), ("parallel=2", two)):
        print(
            f"{k}: search {m['search_s']:.1f} s for {args.trials} trials ({m['trials_per_min']:.1f}/min), "
            f"training {m['fit_s']:.1f} s summed, first training started {m['startup_s']:.1f} s in"
        )
    print(f"tune_parallel_speedup: {one['search_s'] / two['search_s']:.2f}")
    print(f"tune_parallel_speedup_warm: {two['warm_rate'] / one['warm_rate']:.2f}")
    print(f"tune_overhead_share: {1 - one['fit_s'] / one['search_s']:.3f}")
    print(f"tune_pool_startup_s: {two['startup_s']:.1f}")


if __name__ == "__main__":
    main()
