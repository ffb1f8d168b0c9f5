"""How long the `flows` command takes to start, beside a bare Python interpreter started the same way.

Each command runs as a fresh process from the repository root (PYTHONPATH=the root, so this checkout's
``flows`` is timed), round-robin so that machine noise hits every command alike, and its wall-clock time is
taken in this process from spawn to exit:

- ``bare_python``: ``python -c pass``, the floor any command pays;
- ``cli_import``: ``python -c "import flows.cli"``;
- ``cli_help``: ``flows --help``;
- ``cli_deploy_no_server``: ``flows deploy`` with no PREFECT_API_URL, which must fail fast (exit 2) with
  advice, not wait on a server.

It also lists the heavy libraries (torch, prefect, mlflow, great_expectations) that ``import flows.cli``
pulls in; there should be none (tests/flows/test_cli_basic.py asserts that; the timings live here).

    PYTHONPATH=$PWD .venv/bin/python bench/cli_startup.py [--repeats 7]

Prints the median seconds of each, and the median of each command's per-round ratio to the bare
interpreter, as ``name: value`` lines at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "prefect", "mlflow", "great_expectations")
CLI = "from flows.cli import main; main()"
COMMANDS = {
    "bare_python": (["-c", "pass"], 0),
    "cli_import": (["-c", "import flows.cli"], 0),
    "cli_help": (["-c", CLI, "--help"], 0),
    "cli_deploy_no_server": (["-c", CLI, "deploy"], 2),
}


def one_run(args: list[str], want_rc: int, env: dict[str, str]) -> float:
    """Seconds from spawn to exit of ``python ARGS``; exits the bench if the command's exit code is not ``want_rc``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    if done.returncode != want_rc:
        sys.exit(f"python {' '.join(args)} exited {done.returncode}, not {want_rc}:\n{done.stdout}{done.stderr}")
    return seconds


def heavy_imports(env: dict[str, str]) -> list[str]:
    code = f"import sys, flows.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (the median is reported)")
    args = parser.parse_args()
    drop = {"PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_TRACKING_URI"}  # deploy must find no server
    env = {k: v for k, v in os.environ.items() if k not in drop}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as home:
        env.update(PYTHONPATH=str(REPO), PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false")
        for cmd, rc in COMMANDS.values():  # warm the file cache (and .pyc files) once, untimed
            one_run(cmd, rc, env)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for i in range(args.repeats):
            for name, (cmd, rc) in COMMANDS.items():
                times[name].append(one_run(cmd, rc, env))
            print(f"round {i + 1}: " + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()), flush=True)
        heavy = heavy_imports(env)
    print(f"heavy modules imported by flows.cli: {', '.join(heavy) or 'none'}")
    for name, t in times.items():
        print(f"{name}_seconds: {statistics.median(t):.3f}")
    for name in ("cli_import", "cli_help", "cli_deploy_no_server"):  # the median of the per-round (paired) ratios
        ratio = statistics.median(a / b for a, b in zip(times[name], times["bare_python"]))
        print(f"{name}_vs_bare_python_ratio: {ratio:.2f}")
    print(f"cli_heavy_imports: {len(heavy)}")


if __name__ == "__main__":
    main()
