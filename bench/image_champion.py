"""The default single image network against the RBF SVM on the same split.

For each dataset and split seed the bench loads the data as the recipe does (the preset's split, resize and
normalisation), trains one network with :func:`recipe.fit.fit` in the recipe's final shape -- the preset's
model and optimiser, the regularize stage's default augmentation (``stages.regularize.augment``) and the
squeeze stage's "longer" run (``stages.squeeze.longer`` x the budget, raised for small data by
``budget.min_steps`` as every stage does, with a cosine decay to zero) -- and fits the classical
baseline (:func:`recipe.classical.fit_classical`: an RBF SVM with its grid searched on the training split) on
the same training split. Both are scored once on the test split.

    python bench/image_champion.py [--sets digits,mnist,fashion] [--seeds 0,1,2] [--folder-seeds 0,1]
        [--set KEY=VALUE ...] [--mnist /tmp/images/mnist3k] [--fashion /tmp/images/fashion3k]

Datasets: ``digits`` (scikit-learn's 1,797 8x8 images, the digits preset); ``mnist`` and ``fashion``: class
folders of PNGs through ``--preset imagefolder`` (build 3,000-image subsamples with the recipe of the README's
"Images" section; nothing is downloaded). ``--set`` overrides apply to the network's config (e.g.
``--set model.width=64``). Prints ``name: value`` lines: ``<set>_net_test_acc``, ``<set>_svm_test_acc`` (the
mean over seeds), per seed ``<set>_seed<k>_...``, and ``<set>_net_fit_s`` (seconds per network fit).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recipe.classical import fit_classical, flat  # noqa: E402
from recipe.config import load_config  # noqa: E402
from recipe.data import load_data  # noqa: E402
from recipe.fit import epochs_for, evaluate_model, fit  # noqa: E402
from recipe.tasks import task_for  # noqa: E402

PRESETS = {"digits": "digits", "mnist": "imagefolder", "fashion": "imagefolder"}


def final_config(preset: str, root: str | None, split_seed: int, extra: list[str]):
    """The preset's config in the shape the recipe hands on as its champion: the regularize stage's default
    augmentation on, and the squeeze stage's ``longer`` budget (before ``budget.min_steps``: see run_one)."""
    over = [f"data.split.seed={split_seed}", "trainer.progress=false"]
    if root:
        over.append(f"data.root={root}")
    cfg = load_config(preset, overrides=over)
    aug = list(cfg.stages.regularize.augment)
    return cfg.with_overrides([f"data.augment={aug}", "schedule.name=cosine", "schedule.min_lr_ratio=0.0", *extra])


def run_one(name: str, root: str | None, split_seed: int, extra: list[str]) -> dict[str, float]:
    cfg = final_config(PRESETS[name], root, split_seed, extra)
    data = load_data(cfg)
    # small data: the stages raise every run's epochs so the budget takes budget.min_steps steps; squeeze's
    # "longer" run trains that many times the (raised) budget
    epochs = math.ceil(epochs_for(cfg.budget.epochs, cfg, data) * cfg.stages.squeeze.longer)
    cfg = cfg.with_overrides({"budget.epochs": epochs})
    start = time.perf_counter()
    res = fit(cfg, data, log=False, validate=False)
    fit_s = time.perf_counter() - start
    task = task_for(res.data)
    test = evaluate_model(res.model, res.data.batches("test", device=res.trainer.device), task, res.trainer.device)
    start = time.perf_counter()
    svm = fit_classical(res.data)
    svm_s = time.perf_counter() - start
    x, y = flat(res.data, "test")
    svm_acc = float(np.mean(svm.scores(x, y, res.data)))
    return {
        "net_test_acc": test.metric,
        "net_val_acc": res.val.metric,
        "net_train_acc": res.train.metric,
        "svm_test_acc": svm_acc,
        "net_fit_s": fit_s,
        "svm_fit_s": svm_s,
        "net_epochs": float(res.epochs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="digits,mnist")
    p.add_argument("--seeds", default="0,1,2", help="split seeds for digits")
    p.add_argument(
        "--folder-seeds", default="0", help="split seeds for the folders (mnist, fashion): about 4 minutes a seed"
    )
    p.add_argument("--set", action="append", default=[], dest="extra", metavar="KEY=VALUE")
    p.add_argument("--mnist", default="/tmp/images/mnist3k", type=lambda s: str(Path(s).resolve()))
    p.add_argument("--fashion", default="/tmp/images/fashion3k", type=lambda s: str(Path(s).resolve()))
    p.add_argument("--workdir", default="/tmp/images/work", help="where digits' PNGs and the splits are written")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    Path(a.workdir).mkdir(parents=True, exist_ok=True)
    os.chdir(a.workdir)  # data.root=None puts digits under data/digits of the working directory
    roots = {"digits": None, "mnist": a.mnist, "fashion": a.fashion}
    seeds = [int(s) for s in a.seeds.split(",")]
    folder_seeds = [int(s) for s in a.folder_seeds.split(",")]
    for name in a.sets.split(","):
        if name not in PRESETS:
            p.error(f"unknown set {name!r}; choose from {', '.join(PRESETS)}")
        rows = []
        for seed in seeds if name == "digits" else folder_seeds:
            r = run_one(name, roots[name], seed, a.extra)
            rows.append(r)
            for k, v in r.items():
                print(f"{name}_seed{seed}_{k}: {v:.4f}", flush=True)
        for k in rows[0]:
            print(f"{name}_{k}: {statistics.mean(r[k] for r in rows):.4f}", flush=True)
        gap = statistics.mean(r["net_test_acc"] - r["svm_test_acc"] for r in rows)
        print(f"{name}_net_minus_svm: {gap:+.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
