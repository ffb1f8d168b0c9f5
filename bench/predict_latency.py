"""How long `flows predict` takes for one image and for 200, through the real command, beside `import flows.cli`.

The bench first registers a small digits champion in a private MLflow store under a temporary folder (the
digits preset trained for ``--epochs`` epochs, logged with :func:`recipe.champion.log_champion` as the squeeze
stage does, alias ``champion``; the model's quality does not matter here, its size and format do). Then each
command runs as a fresh process from the repository root (PYTHONPATH=the root, so this checkout's ``flows`` is
timed), round-robin so that machine noise hits every command alike, timed in this process from spawn to exit:

- ``import_flows_cli``: ``python -c "import flows.cli"``, the floor any ``flows`` command pays;
- ``predict_one_image``: ``flows predict ONE.png --model models:/digits@champion --out ...``;
- ``predict_200_images``: the same on a folder of 200 of the digits test split's PNGs.

The gap between one and 200 images is the per-image cost; what one image costs beyond ``import flows.cli`` is
the fixed cost of a prediction (imports, store and model load). ``--baseline DIR`` (another checkout of the
project, e.g. a worktree of main) adds ``baseline_predict_one_image`` and ``baseline_predict_200_images``: the same
commands with PYTHONPATH=DIR, on the same champion, in the same rounds, so a change is measured side by side.
Run it from the repository root:

    PYTHONPATH=$PWD .venv/bin/python bench/predict_latency.py [--repeats 5] [--epochs 1] [--baseline DIR]

Prints each round, then the median seconds as ``name: value`` lines at the end, the per-image milliseconds of the
200-image run beyond the one-image run (the median of the per-round differences / 199; within noise when the
fixed cost dominates) and, with ``--baseline``, the median of the per-round ratios this checkout / baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = "from flows.cli import main; main()"
MODEL = "models:/digits@champion"
FOLDER_IMAGES = 200


def register_champion(tmp: Path, epochs: int) -> list[str]:
    """Train the digits preset briefly and register it as ``models:/digits@champion`` in the store of
    MLFLOW_TRACKING_URI (set by the caller); returns the test split's PNG paths."""
    import mlflow
    import pandas as pd

    from recipe import tracking
    from recipe.champion import Member, log_champion, spec_for
    from recipe.config import RecipeConfig
    from recipe.fit import fit

    cfg = RecipeConfig().with_overrides({"budget.epochs": epochs, "trainer.progress": False})
    result = fit(cfg, log=False)
    spec = spec_for(result.data, [Member(cfg.model.model_dump(mode="json"), "m0.pt")])
    paths = result.data.rows("test")["path"].tolist()
    tracking.setup("digits")
    with mlflow.start_run(tags=tracking.run_tags(cfg, None, stage="squeeze", kind="stage")):
        log_champion(
            spec, [result.model.state_dict()], registered_name="digits", example=pd.DataFrame({"path": paths[:2]})
        )
    return paths


def one_run(args: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit of ``python ARGS`` in the checkout of ``env``'s PYTHONPATH (the working folder
    too: ``python -c`` puts it first on sys.path); exits the bench if the command fails."""
    start = time.perf_counter()
    cwd = env["PYTHONPATH"]
    done = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"python {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (the median is reported)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the champion's training (its size is fixed)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose flows predict is timed alongside")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "flows" / "cli.py").is_file():
        sys.exit(f"--baseline {args.baseline}: not a checkout of this project (no flows/cli.py there)")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
        (tmp / "mlruns").mkdir()
        os.environ.update(MLFLOW_TRACKING_URI=store, RECIPE_DATA_DIR=str(tmp / "data"))
        paths = register_champion(tmp, args.epochs)
        folder = tmp / "pngs"
        folder.mkdir()
        for p in paths[:FOLDER_IMAGES]:
            shutil.copy(p, folder / Path(p).name)
        if len(list(folder.iterdir())) < FOLDER_IMAGES:
            sys.exit(f"the digits test split has {len(paths)} images, fewer than {FOLDER_IMAGES}")
        one = folder / sorted(os.listdir(folder))[0]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        predict_one = ["-c", CLI, "predict", str(one), "--model", MODEL, "--out", str(tmp / "one.csv")]
        predict_200 = ["-c", CLI, "predict", str(folder), "--model", MODEL, "--out", str(tmp / "f.csv")]
        commands = {
            "import_flows_cli": (["-c", "import flows.cli"], env),
            "predict_one_image": (predict_one, env),
            "predict_200_images": (predict_200, env),
        }
        if args.baseline is not None:
            base_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
            commands["baseline_predict_one_image"] = (predict_one, base_env)
            commands["baseline_predict_200_images"] = (predict_200, base_env)
        for cmd, cmd_env in commands.values():  # warm the file cache (and .pyc files) once, untimed
            one_run(cmd, cmd_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.repeats):
            for name, (cmd, cmd_env) in commands.items():
                times[name].append(one_run(cmd, cmd_env))
            print(f"round {i + 1}: " + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()), flush=True)
    for name, t in times.items():
        print(f"{name}_s: {statistics.median(t):.3f}")
    extra = statistics.median(b - a for a, b in zip(times["predict_one_image"], times["predict_200_images"]))
    print(f"predict_per_extra_image_ms: {1000 * extra / (FOLDER_IMAGES - 1):.2f}")
    if args.baseline is not None:
        for name in ("predict_one_image", "predict_200_images"):
            ratio = statistics.median(a / b for a, b in zip(times[name], times[f"baseline_{name}"]))
            print(f"{name}_vs_baseline_ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
