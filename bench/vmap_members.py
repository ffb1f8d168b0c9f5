"""Squeeze's ensemble members trained together (one vectorised model, ``recipe.train.vmap.fit_members``) against
the same members trained one after another (``recipe.fit.fit``, no validation, as a member run trains), on digits.

The members are the digits preset's config with the zoo cnn (``--model cnn``): the preset's own resnet has batch
norm, which :func:`recipe.train.vmap.vmappable` rules out (running statistics are updated in place), so squeeze
trains the default's members as separate runs. Both train the same ``--members`` seeds for the same ``--epochs``
epochs in this process (torch's default threads). The members of the two ways must agree: the largest absolute weight difference is printed.

    python bench/vmap_members.py [--members 5] [--epochs 10]

Prints ``separate_seconds``, ``vmap_seconds``, ``vmap_max_weight_diff`` and ``vmap_members_speedup``
(separate over vmap; above 1: vectorised is faster) as ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--model", default="cnn", help="model.name of the members (one vmappable: no batch norm)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from recipe.config import load_config
    from recipe.data import load_data
    from recipe.fit import fit
    from recipe.train.vmap import fit_members

    cfg = load_config("digits", overrides=["trainer.progress=false", f"model.name={args.model}"])
    data = load_data(cfg)
    cfgs = [cfg.with_overrides({"seed": cfg.seed + k}) for k in range(args.members)]
    fit(cfgs[0], data, epochs=1, evaluate=False, log=False, validate=False)  # warm-up: first-call costs
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    separate = [fit(c, data, epochs=args.epochs, evaluate=False, log=False, validate=False).model for c in cfgs]
    separate_s = time.perf_counter() - t
    t = time.perf_counter()
    together = fit_members(cfgs, data, args.epochs)
    vmap_s = time.perf_counter() - t
    diff = max(
        float((a - b).abs().max())
        for m1, m2 in zip(separate, together, strict=True)
        for a, b in zip(m1.cpu().state_dict().values(), m2.state_dict().values(), strict=True)
    )
    print(
        f"{args.members} digits members ({cfg.model.name} width {cfg.model.width}), {args.epochs} epochs, "
        f"{torch.get_num_threads()} torch threads; load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"separate_seconds: {separate_s:.1f}")
    print(f"vmap_seconds: {vmap_s:.1f}")
    print(f"vmap_max_weight_diff: {diff:.2e}")
    print(f"vmap_members_speedup: {separate_s / vmap_s:.2f}")


if __name__ == "__main__":
    main()
