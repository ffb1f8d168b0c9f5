"""PreciseBN's cost on small data: validations reading a quarter of an epoch against all 16 batches.

The same preset fit (``recipe.fit.fit``, no MLflow) twice per repeat, interleaved so machine noise hits both
alike: once with PreciseBN reading ``num_batches`` (16) before every validation (``validation_share=1.0``, the
rule before), once with the default (at most a quarter of a data epoch's batches before a validation, all 16 at
the end of fit; ``recipe/train/callbacks/precise_bn.py``). Same seed, same batches; only the statistics the
validations see differ, so the final val loss and accuracy should agree closely.

    python bench/precise_bn.py [--preset digits] [--repeats 3] [--set KEY=VALUE ...]

Prints each fit's seconds and final val numbers, then ``name: value`` lines: ``precise_bn_fit_speedup`` (median
seconds before over median seconds now), ``precise_bn_val_loss_diff`` and ``precise_bn_val_metric_diff`` (now
minus before, from the last repeat: the runs are deterministic).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipe.config import load_config  # noqa: E402
from recipe.data import load_data  # noqa: E402
from recipe.fit import fit  # noqa: E402
from recipe.train import factory  # noqa: E402
from recipe.train.callbacks import PreciseBN  # noqa: E402
from recipe.train.callbacks.precise_bn import VALIDATION_SHARE  # noqa: E402


def one_fit(cfg, data, share: float) -> tuple[float, float, float]:
    """Seconds, final val loss and val metric of one fit with PreciseBN's ``validation_share`` set to ``share``."""
    factory.PreciseBN = functools.partial(PreciseBN, validation_share=share)
    try:
        t = time.perf_counter()
        res = fit(cfg, data, log=False)
        return time.perf_counter() - t, res.val.loss, res.val.metric
    finally:
        factory.PreciseBN = PreciseBN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    cfg = load_config(args.preset, overrides=["trainer.progress=false", *args.overrides])
    data = load_data(cfg)
    shares = {"before": 1.0, "now": VALIDATION_SHARE}
    runs: dict[str, list[tuple[float, float, float]]] = {"before": [], "now": []}
    for i in range(args.repeats):
        for name in ("before", "now") if i % 2 == 0 else ("now", "before"):
            r = one_fit(cfg, data, shares[name])
            runs[name].append(r)
            print(f"repeat {i} {name:6s} {r[0]:6.1f} s  val loss {r[1]:.4f}  val metric {r[2]:.4f}", flush=True)
    before, now = (statistics.median(r[0] for r in runs[k]) for k in ("before", "now"))
    print(f"precise_bn_fit_seconds_before: {before:.1f}")
    print(f"precise_bn_fit_seconds_now: {now:.1f}")
    print(f"precise_bn_fit_speedup: {before / now:.3f}")
    print(f"precise_bn_val_loss_diff: {runs['now'][-1][1] - runs['before'][-1][1]:+.4f}")
    print(f"precise_bn_val_metric_diff: {runs['now'][-1][2] - runs['before'][-1][2]:+.4f}")


if __name__ == "__main__":
    main()
