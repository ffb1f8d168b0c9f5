"""What the sample-level diagnosis (recipe.checks.labels and recipe.checks.leakage) adds to inspect + baselines.

Runs the inspect and baselines stages through ``recipe.pipeline.run_recipe`` (a fresh private MLflow store, no
progress bars) on two workloads, and reads the diagnosis' own seconds from inspect's ``time/diagnosis_s`` metric:

* images: ``bench/folder10k.py``'s 10,000 28x28 PNGs (built on first use under data/folder10k), imagefolder preset;
* rows: a 10,000-row CSV of 20 numeric features and 4 classes (scikit-learn's ``make_classification``, seeded),
  tabular preset.

    python bench/diagnosis.py [--root data/folder10k] [--only images|rows]

Prints ``diagnosis_seconds_<kind>:``, ``inspect_baselines_seconds_<kind>:`` and ``diagnosis_share_<kind>:``
(diagnosis / (inspect + baselines), which include it; aim ≤ 0.15) as ``name: value`` lines at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rows_csv(folder: Path, n: int = 10_000) -> Path:
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n, 20, n_informative=8, n_classes=4, class_sep=1.5, random_state=0)
    df = pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])])
    df["label"] = y
    path = folder / "rows10k.csv"
    df.to_csv(path, index=False)
    return path


def _time(cfg) -> tuple[float, float, dict[str, str]]:
    """(diagnosis seconds, inspect + baselines seconds, verdicts of the new checks)."""
    from recipe.pipeline import run_recipe

    seconds: dict[str, float] = {}
    results = {}

    def timed(name, fn, ctx):
        start = time.perf_counter()
        try:
            result = fn(ctx)
        finally:
            seconds[name] = time.perf_counter() - start
        results[name] = result
        print(f"stage {name}: {result.verdict.value} in {seconds[name]:.1f} s", flush=True)
        return result

    run_recipe(cfg, stage="baselines", execute=timed, force=True, say=lambda m: print(m, flush=True))
    inspect = results["inspect"]
    new = {
        "label_issues",
        "near_duplicates",
        "outliers",
        "near_duplicates_across_splits",
        "single_column_leak",
        "identifier_columns",
        "target_outliers",
    }
    verdicts = {c.name: c.verdict.value for c in inspect.checks if c.name in new}
    return inspect.metrics["time/diagnosis_s"], seconds["inspect"] + seconds.get("baselines", 0.0), verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="folder10k location (default data/folder10k)")
    ap.add_argument("--only", choices=["images", "rows"], default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(1, str(HERE))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tmp = Path(tempfile.mkdtemp(prefix="recipe-diagnosis-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"

    from recipe.config import load_config

    lines = []
    if args.only in (None, "images"):
        import folder10k

        root = folder10k.build(args.root or folder10k.DEFAULT_ROOT)
        cfg = load_config(
            "imagefolder", overrides=[f"data.root={root.resolve()}", "data.image_size=28", "trainer.progress=false"]
        )
        lines.append(("images", *_time(cfg)))
    if args.only in (None, "rows"):
        csv = _rows_csv(tmp)
        cfg = load_config("tabular", overrides=[f"data.root={csv}", "data.target=label", "trainer.progress=false"])
        lines.append(("rows", *_time(cfg)))
    for kind, diag, total, verdicts in lines:
        print(f"new checks on {kind}: {verdicts}")
        print(f"diagnosis_seconds_{kind}: {diag:.2f}")
        print(f"inspect_baselines_seconds_{kind}: {total:.1f}")
        print(f"diagnosis_share_{kind}: {diag / total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
