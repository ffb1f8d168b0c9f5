"""The fixed cost of `flows run`: from process start to the first stage starting, cold and warm.

- cold: a new PREFECT_HOME (no local Prefect server yet: the run starts one) and a new MLflow sqlite store
  (the run creates its schema).
- warm: the local server of the cold run is up and the store exists (the usual case).

Each run is `flows run recipe --preset digits --stage inspect`, interrupted with SIGINT as soon as it logs
``stage inspect: started`` (so the stage's own work is not measured); the time is taken in this process from
just before the child is spawned to that line. Run it from the repository root:

    PYTHONPATH=$PWD .venv/bin/python bench/startup.py [--warm-runs 3]

Prints ``flows_run_fixed_seconds_cold: S`` and ``flows_run_fixed_seconds_warm: S`` (the median of the warm
runs) at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "stage inspect: started"


def one_run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from flows.cli import main; main()",
            "run",
            "recipe",
            "--preset",
            "digits",
            "--stage",
            "inspect",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seconds = None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-20:]
        if MARK in line:
            seconds = time.perf_counter() - start
            os.killpg(proc.pid, signal.SIGINT)
            break
    proc.communicate(timeout=120)
    if seconds is None:
        sys.exit(f"the run ended (exit {proc.returncode}) before its first stage started:\n{''.join(tail)}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(folder / "prefect"),
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        RECIPE_LOG_DIR=str(folder / "logs"),
        RECIPE_PREFECT_SERVER_IDLE_S="120",
    )
    try:
        cold = one_run(env)
        print(f"cold run: {cold:.2f} s", flush=True)
        warm = []
        for i in range(args.warm_runs):
            warm.append(one_run(env))
            print(f"warm run {i + 1}: {warm[-1]:.2f} s", flush=True)
    finally:
        subprocess.run(
            [sys.executable, "-c", "from flows.cli import main; main()", "server", "stop"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
    print(f"flows_run_fixed_seconds_cold: {cold:.2f}")
    print(f"flows_run_fixed_seconds_warm: {statistics.median(warm):.2f}")


if __name__ == "__main__":
    main()
