"""MLflow logging overhead: a training run with per-step metric logging against the same run without it.

Both train the same small CNN on in-memory digits with the same seed inside an active MLflow run
(a temporary sqlite store); the only difference is the MLflowLogger callback logging the loss and
the learning rate at every step plus every epoch's metrics. Interleaved repeats, median ratio.
Target: <= 1.02 (logging adds at most 2% wall time).

    python bench/mlflow_logging.py [--repeats 6] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlflow import MlflowClient  # noqa: E402
from trainer_overhead import BATCH, digits, setup  # noqa: E402

from recipe import tracking  # noqa: E402
from recipe.data.batching import InMemoryBatcher  # noqa: E402
from recipe.train import Trainer  # noqa: E402


def run(data, epochs: int, log: bool) -> tuple[float, int]:
    xt, yt, xv, yv = data
    model, opt, loss_fn = setup()
    cbs = [tracking.MLflowLogger()] if log else []
    t = Trainer(
        model,
        InMemoryBatcher(xt, yt, BATCH, shuffle=True, seed=0),
        InMemoryBatcher(xv, yv, 512),
        loss_fn=loss_fn,
        opt=opt,
        cbs=cbs,
        device="cpu",
        progress=False,
    )
    with tracking.start_run("bench", {"bench": "mlflow_logging"}):
        start = time.perf_counter()
        t.fit(epochs)  # includes waiting for the logged metrics to be written (MLflowLogger.after_fit)
        return time.perf_counter() - start, t.step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-mlflow-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    tracking.setup("bench")
    data = digits()
    run(data, 1, False), run(data, 1, True)  # warm-up: store migrations, lazy imports
    ratios, plain, logged = [], [], []
    steps = 0
    for i in range(args.repeats):
        pair = [("plain", False), ("logged", True)]
        if i % 2:
            pair.reverse()
        times = {}
        for name, log in pair:
            times[name], steps = run(data, args.epochs, log)
        plain.append(times["plain"])
        logged.append(times["logged"])
        ratios.append(times["logged"] / times["plain"])
    exp = MlflowClient().get_experiment_by_name("bench")
    n_runs = len(MlflowClient().search_runs([exp.experiment_id], max_results=1000))
    print(f"{steps} steps per run, {n_runs} runs written to {tmp}")
    print(
        f"without logging: median {statistics.median(plain):.3f} s; with per-step logging: "
        f"median {statistics.median(logged):.3f} s"
    )
    print(f"mlflow_logging_time_ratio: {statistics.median(ratios):.3f}")
    print(f"mlflow_logging_time_ratio_of_medians: {statistics.median(logged) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
