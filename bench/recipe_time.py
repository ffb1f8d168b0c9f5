"""Wall-clock seconds of each stage of the recipe, on digits or on a 10,000-file image folder.

Runs every stage of the recipe (``recipe.stages.stage_names()``: inspect, baselines, overfit, regularize,
tune, squeeze) through ``recipe.pipeline.run_recipe``, with a fresh private MLflow store (sqlite, in a
temporary folder) and no progress bars, and times each stage.

* ``--dataset digits`` (default): the digits preset.
* ``--dataset folder10k``: ``bench/folder10k.py``'s 28x28 grayscale folder (built on first use under
  data/folder10k), with the imagefolder preset at ``data.image_size=28``. The aim (issue 14): all six stages
  in at most 20 minutes on the 2-core development machine.
* ``--dataset folder --root PATH``: any class-folder tree (e.g. a 300-image subsample of real MNIST), with the
  imagefolder preset at ``data.image_size=28``. The aim (issue 19): a 300-image folder's six stages in 3 minutes.

Before the stages, one plain fit of the same config is timed (``recipe.fit.fit(cfg, evaluate=False,
log=False)``, what ``flows train`` runs, data loading included); ``recipe_vs_one_fit_ratio`` is the six stages'
wall time over it (issue 19: about 50 before, aim at most 20). ``--no-one-fit`` skips it.

``--tree PATH`` imports ``recipe`` from another checkout (e.g. ``--tree /work/main``) to time the code before
a change with the same script. ``--stages a,b`` stops after the last named stage; ``--set key=value`` adds
config overrides.

    python bench/recipe_time.py [--dataset digits|folder10k] [--tree PATH] [--stages inspect,baselines]

Prints ``stage_<name>_seconds``, each stage's verdict, ``recipe_total_seconds`` (the whole run, MLflow store
creation included), the champion's and the classical model's test metric when squeeze ran
(``champion_test_<metric>``, ``classical_test_<metric>``), ``budget_overrun`` (the total over
``budget.minutes``, when set), ``one_fit_seconds`` and ``recipe_vs_one_fit_ratio`` as ``name: value`` lines at
the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["digits", "folder10k", "folder"], default="digits")
    ap.add_argument("--tree", type=Path, default=HERE.parent, help="checkout to import recipe from")
    ap.add_argument("--stages", default="", help="comma-separated; the run stops after the last one named")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--force", action="store_true", help="carry on past a failed stage (timing every stage)")
    ap.add_argument("--root", type=Path, default=None, help="the folder (default for folder10k: data/folder10k)")
    ap.add_argument("--no-one-fit", action="store_true", help="skip timing one plain fit")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    sys.path.insert(1, str(HERE))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as flows sets it: no tqdm bars
    store = Path(tempfile.mkdtemp(prefix="recipe-time-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"

    from recipe.config import load_config
    from recipe.pipeline import run_recipe
    from recipe.stages import stage_names

    overrides = ["trainer.progress=false", *args.overrides]
    if args.dataset == "digits":
        cfg = load_config("digits", overrides=overrides)
    else:
        if args.dataset == "folder":
            if args.root is None or not args.root.is_dir():
                print("--dataset folder needs --root PATH, a folder of class sub-folders", file=sys.stderr)
                return 2
            root = args.root
        else:
            import folder10k

            root = folder10k.build(args.root or folder10k.DEFAULT_ROOT)
        cfg = load_config("imagefolder", overrides=[f"data.root={root.resolve()}", "data.image_size=28", *overrides])
    names = stage_names()
    wanted = [s for s in args.stages.split(",") if s]
    unknown = [s for s in wanted if s not in names]
    if unknown:
        print(f"unknown stage(s) {unknown}; stages: {names}", file=sys.stderr)
        return 2
    last = max((names.index(s) for s in wanted), default=len(names) - 1)
    seconds: dict[str, float] = {}
    verdicts: dict[str, str] = {}

    def timed(name, fn, ctx):
        start = time.perf_counter()
        try:
            result = fn(ctx)
        finally:
            seconds[name] = time.perf_counter() - start
        verdicts[name] = result.verdict.value
        print(f"stage {name}: {result.verdict.value} in {seconds[name]:.1f} s", flush=True)
        for c in result.checks:
            if c.verdict.value == "fail":
                print(f"  failed check {c.name}: {c.observed}", flush=True)
        return result

    one_fit = None
    if not args.no_one_fit:
        from recipe.fit import fit

        start = time.perf_counter()
        fit(cfg, evaluate=False, log=False)  # what `flows train` runs, loading the data included
        one_fit = time.perf_counter() - start
        print(f"one plain fit: {one_fit:.1f} s", flush=True)
    start = time.perf_counter()
    outcome = run_recipe(
        cfg,
        stage=names[last] if last < len(names) - 1 else None,
        execute=timed,
        force=args.force,
        say=lambda m: print(m, flush=True),
    )
    total = time.perf_counter() - start
    print(f"recipe {cfg.name} on {args.dataset} ({args.tree}): verdict {outcome.report['verdict']}")
    for name, s in seconds.items():
        print(f"stage_{name}_seconds: {s:.1f}")
        print(f"stage_{name}_verdict: {verdicts.get(name, 'raised')}")
    print(f"recipe_total_seconds: {total:.1f}")
    for st in outcome.report["stages"]:  # the champion's test metric and its classical bar, when squeeze ran
        if st["stage"] == "squeeze":
            metrics = st["metrics"]
            champion = [k for k in metrics if k.startswith("test/champion_") and not k.endswith(("_low", "_high"))]
            metric = champion[0].removeprefix("test/champion_") if champion else None
            for kind in ("champion", "classical"):
                if metric and f"test/{kind}_{metric}" in metrics:
                    print(f"{kind}_test_{metric}: {metrics[f'test/{kind}_{metric}']:.4f}")
    if cfg.budget.minutes:
        print(f"budget_overrun: {total / (cfg.budget.minutes * 60):.2f}")
    if one_fit is not None:
        print(f"one_fit_seconds: {one_fit:.1f}")
        print(f"recipe_vs_one_fit_ratio: {total / one_fit:.1f}")
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
