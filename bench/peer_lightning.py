"""This project's Trainer beside a hand-written loop and PyTorch Lightning's Trainer, side by side.

The same model, data, seed, batches and epochs for all three, validating every epoch:

* loop: forward / loss / backward / step by hand, validation loss and accuracy summed on the host;
* Trainer: ``recipe.train.Trainer`` with its default callbacks (metrics, recorder, NaN guard, progress bar,
  which is off off a terminal);
* Lightning: a LightningModule logging loss and accuracy with ``self.log`` in training and validation steps,
  as its users do, with logger, checkpointing, progress bar and model summary off.

Workloads: the digits CNN (the digits preset's model on 8x8 images; compute-bound) and a small MLP on the 64
digits pixels (overhead-bound, like the recipe's many short tabular runs). Runs are interleaved, the order
rotating every round, and each ratio is the median of per-round ratios, so a slow spell of this shared
machine hits all three alike. Lightning is a bench extra (``pip install .[bench]``), never a runtime
dependency.

    python bench/peer_lightning.py [--repeats 7] [--epochs 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from trainer_overhead import hand_fit  # noqa: E402  (the same hand loop as the trainer-overhead bench)

from recipe.config import ModelConfig, OptimConfig  # noqa: E402
from recipe.data.batching import InMemoryBatcher  # noqa: E402
from recipe.models import build_model  # noqa: E402
from recipe.train import Trainer, build_optimizer, loss_for_task, seed_everything  # noqa: E402

BATCH, EVAL_BATCH = 64, 512
WORKLOADS = {
    "cnn": (ModelConfig(name="cnn", width=32), (1, 8, 8)),
    "mlp": (ModelConfig(name="mlp", width=64, depth=2), (64,)),
}


def digits(in_shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).reshape(-1, *in_shape) / 16.0
    y = torch.tensor(d.target)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def setup(workload: str):
    cfg, in_shape = WORKLOADS[workload]
    seed_everything(0)
    model = build_model(cfg, in_shape, 10)
    return model, build_optimizer(OptimConfig(lr=3e-4), model.parameters()), loss_for_task("classification")


def batchers(data):
    xt, yt, xv, yv = data
    return InMemoryBatcher(xt, yt, BATCH, shuffle=True, seed=0), InMemoryBatcher(xv, yv, EVAL_BATCH)


def hand_loop(workload: str, data, epochs: int) -> tuple[float, list[float]]:
    return hand_fit(*setup(workload), *batchers(data), epochs)


def with_trainer(workload: str, data, epochs: int) -> tuple[float, list[float]]:
    model, opt, loss_fn = setup(workload)
    train, valid = batchers(data)
    start = time.perf_counter()
    t = Trainer(model, train, valid, loss_fn=loss_fn, opt=opt, device="cpu", progress=False)
    t.fit(epochs)
    return time.perf_counter() - start, t.cb("recorder").losses


class _Epochs:
    """The in-memory batcher as an iterable that takes the order of Lightning's current epoch on each pass
    (Lightning calls ``set_epoch`` only on samplers, and iterates once more than it trains)."""

    def __init__(self, batcher: InMemoryBatcher, epoch):
        self.batcher, self.epoch = batcher, epoch

    def __len__(self) -> int:
        return len(self.batcher)

    def __iter__(self):
        self.batcher.set_epoch(self.epoch())
        return iter(self.batcher)


def with_lightning(workload: str, data, epochs: int) -> tuple[float, list[float]]:
    import lightning as L

    model, opt, loss_fn = setup(workload)
    train, valid = batchers(data)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.losses: list[torch.Tensor] = []

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            pred = self.model(xb)
            loss = loss_fn(pred, yb)
            self.log("train_loss", loss)
            self.log("train_acc", (pred.argmax(1) == yb).float().mean())
            self.losses.append(loss.detach())
            return loss

        def validation_step(self, batch, batch_idx):
            xb, yb = batch
            pred = self.model(xb)
            self.log("val_loss", loss_fn(pred, yb))
            self.log("val_acc", (pred.argmax(1) == yb).float().mean())

        def configure_optimizers(self):
            return opt

    module = Module()
    start = time.perf_counter()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, _Epochs(train, lambda: trainer.current_epoch), valid)
    return time.perf_counter() - start, [float(v) for v in module.losses]


RUNNERS = {"loop": hand_loop, "trainer": with_trainer, "lightning": with_lightning}


def measure(workload: str, repeats: int, epochs: int) -> dict[str, object]:
    data = digits(WORKLOADS[workload][1])
    for run in RUNNERS.values():
        run(workload, data, 1)  # warm-up: first calls pay for lazy imports and init
    times: dict[str, list[float]] = {k: [] for k in RUNNERS}
    diffs = {k: 0.0 for k in RUNNERS}
    names = list(RUNNERS)
    for r in range(repeats):
        losses = {}
        for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
            t, losses[name] = RUNNERS[name](workload, data, epochs)
            times[name].append(t)
        for name in names:
            diffs[name] = max(diffs[name], max(abs(a - b) for a, b in zip(losses["loop"], losses[name], strict=True)))
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    return {
        "medians": {k: statistics.median(v) for k, v in times.items()},
        "trainer_vs_loop": ratio("trainer", "loop"),
        "trainer_vs_lightning": ratio("trainer", "lightning"),
        "lightning_vs_loop": ratio("lightning", "loop"),
        "diffs": diffs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workloads", default="cnn,mlp")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    out = {w: measure(w, args.repeats, args.epochs) for w in args.workloads.split(",")}
    for w, m in out.items():
        med = ", ".join(f"{k} {v:.3f} s" for k, v in m["medians"].items())
        print(
            f"{w}: median for {args.epochs} epochs: {med}; lightning/loop {m['lightning_vs_loop']:.2f}; "
            f"max |loss - loop loss|: " + ", ".join(f"{k} {v:.1e}" for k, v in m["diffs"].items())
        )
    for w, m in out.items():
        suffix = "" if w == "cnn" else f"_{w}"
        print(f"trainer_vs_loop_time_ratio{suffix}: {m['trainer_vs_loop']:.3f}")
        print(f"trainer_vs_lightning_time_ratio{suffix}: {m['trainer_vs_lightning']:.3f}")


if __name__ == "__main__":
    main()
