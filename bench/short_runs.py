"""What a budget's short runs are worth on an image folder: single networks of a few epochs and their ensembles.

At ``budget.minutes=10`` on the 2-core machine every sized stage of the recipe runs its minimum, and squeeze's
runs are a few epochs each (3,000 images: 7 epochs a member, 14 for the long run). This bench trains those
runs, and variants, outside the recipe on the same split (the ``imagefolder`` preset with ``--set`` overrides,
``recipe.fit.fit``; ``budget.min_steps`` off, so each run trains exactly its epochs), keeps each network's
softmax probabilities on the val and test splits, and scores every single network and each ensemble given with
``--combo`` (probabilities averaged):

    python bench/short_runs.py --root FOLDER [--set data.image_size=28 --set optim.lr=0.01] \\
        [--runs m0,m1,L14,L14s1] [--combo m0+m1 --combo L14+L14s1] [--out DIR]

Runs (name: seed, epochs, schedule, augmentation, width): ``m0``/``m1``/``m2`` (seeds 0-2, 7 epochs, constant:
squeeze's members and averaging run at the budget's minimum), ``c7`` (7, cosine), ``o25`` (25, constant:
overfit's rung), ``L14``/``L14s1`` (14, cosine, seeds 0 and 1: the long run), ``L28`` (28, cosine),
``L14crop``/``L14erase`` (crop; crop + random erasing), ``w32L14`` (width 32), ``L50crop``/``L50erase``
(50 epochs). Prints ``<name>_val_acc``, ``<name>_test_acc``, ``<name>_val_loss`` and ``<name>_seconds`` lines
(classification folders). Probabilities are cached as ``OUT/<name>.npz``; a cached run is not trained again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recipe.config import load_config  # noqa: E402
from recipe.data import load_data  # noqa: E402
from recipe.fit import fit  # noqa: E402

RUNS: dict[str, dict] = {
    "m0": dict(seed=0, epochs=7, schedule="constant", augment=[]),
    "m1": dict(seed=1, epochs=7, schedule="constant", augment=[]),
    "m2": dict(seed=2, epochs=7, schedule="constant", augment=[]),
    "c7": dict(seed=0, epochs=7, schedule="cosine", augment=[]),
    "o25": dict(seed=0, epochs=25, schedule="constant", augment=[]),
    "L14": dict(seed=0, epochs=14, schedule="cosine", augment=[]),
    "L14s1": dict(seed=1, epochs=14, schedule="cosine", augment=[]),
    "L28": dict(seed=0, epochs=28, schedule="cosine", augment=[]),
    "L14crop": dict(seed=0, epochs=14, schedule="cosine", augment=["crop"]),
    "L14erase": dict(seed=0, epochs=14, schedule="cosine", augment=["crop", "erase"]),
    "w32L14": dict(seed=0, epochs=14, schedule="cosine", augment=[], width=32),
    "L50crop": dict(seed=0, epochs=50, schedule="cosine", augment=["crop"]),
    "L50erase": dict(seed=0, epochs=50, schedule="cosine", augment=["crop", "erase"]),
}


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(1) == y).mean())


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def train(name: str, base, data, out: Path) -> dict[str, np.ndarray]:
    """The run ``name`` of :data:`RUNS` on ``data``: its val and test probabilities (cached in ``out``)."""
    path = out / f"{name}.npz"
    if path.exists():
        return dict(np.load(path))
    r = RUNS[name]
    over = {
        "seed": r["seed"],
        "budget.epochs": r["epochs"],
        "budget.min_steps": None,
        "schedule.name": r["schedule"],
        "schedule.min_lr_ratio": 0.0,
        "data.augment": r["augment"],
    }
    if "width" in r:
        over["model.width"] = r["width"]
    start = time.perf_counter()
    res = fit(base.with_overrides(over), data, log=False, validate=False)
    model = res.model.eval()
    probs: dict[str, np.ndarray] = {"seconds": np.array(time.perf_counter() - start)}
    with torch.no_grad():
        for split in ("val", "test"):
            x, y = data.tensors(split)
            probs[split] = torch.cat([model(x[i : i + 512]).float().softmax(-1) for i in range(0, len(x), 512)]).numpy()
            probs[f"y_{split}"] = y.numpy()
    np.savez(path, **probs)
    return probs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="a class-folder tree of images")
    p.add_argument("--set", action="append", default=[], dest="extra", metavar="KEY=VALUE")
    p.add_argument("--runs", default="m0,m1,m2,L14,L14s1")
    p.add_argument("--combo", action="append", default=[], help="an ensemble, names joined by +")
    p.add_argument("--out", default="short_runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = [n for n in a.runs.split(",") if n]
    wanted = names + [n for c in a.combo for n in c.split("+")]
    if unknown := sorted({n for n in wanted if n not in RUNS}):
        p.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    base = load_config("imagefolder", overrides=[f"data.root={a.root}", "trainer.progress=false", *a.extra])
    data = load_data(base)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    probs = {n: train(n, base, data, out) for n in dict.fromkeys(wanted)}
    for n in names:
        d = probs[n]
        print(f"{n}_val_acc: {accuracy(d['val'], d['y_val']):.4f}")
        print(f"{n}_test_acc: {accuracy(d['test'], d['y_test']):.4f}")
        print(f"{n}_val_loss: {log_loss(d['val'], d['y_val']):.4f}")
        print(f"{n}_seconds: {float(d.get('seconds', float('nan'))):.1f}", flush=True)
    for combo in a.combo:
        parts = combo.split("+")
        y_val, y_test = probs[parts[0]]["y_val"], probs[parts[0]]["y_test"]
        val = np.mean([probs[n]["val"] for n in parts], axis=0)
        test = np.mean([probs[n]["test"] for n in parts], axis=0)
        print(f"{combo}_val_acc: {accuracy(val, y_val):.4f}")
        print(f"{combo}_test_acc: {accuracy(test, y_test):.4f}")
        print(f"{combo}_val_loss: {log_loss(val, y_val):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
