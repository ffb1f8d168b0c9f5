"""Trainer overhead: the Trainer with its default callbacks against a hand-written PyTorch loop.

Both train the same small CNN on the same in-memory digits tensors with the same seed and
batches, and validate every epoch; runs are interleaved so machine noise hits both alike.
Targets: time ratio <= 1.05 and identical losses (to 5 decimals). Also: the in-memory
batcher's batches/s against DataLoader(TensorDataset) (target >= 10x).

    python bench/trainer_overhead.py [--repeats 5] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from recipe.config import ModelConfig, OptimConfig  # noqa: E402
from recipe.data.batching import InMemoryBatcher  # noqa: E402
from recipe.models import build_model  # noqa: E402
from recipe.train import Trainer, build_optimizer, loss_for_task, seed_everything  # noqa: E402

BATCH = 64


def digits() -> tuple[torch.Tensor, ...]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def setup(seed: int = 0):
    seed_everything(seed)
    model = build_model(ModelConfig(name="cnn", width=32), (1, 8, 8), 10)
    return model, build_optimizer(OptimConfig(lr=3e-4), model.parameters()), loss_for_task("classification")


def hand_loop(data, epochs: int) -> tuple[float, list[float]]:
    xt, yt, xv, yv = data
    train = InMemoryBatcher(xt, yt, BATCH, shuffle=True, seed=0)
    return hand_fit(*setup(), train, InMemoryBatcher(xv, yv, 512), epochs)


def hand_fit(model, opt, loss_fn, train, valid, epochs: int) -> tuple[float, list[float]]:
    """The plain loop the Trainer is measured against (also by peer_lightning.py): train, then validate with loss
    and accuracy, every epoch. Returns (seconds, the step losses)."""
    losses = []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        train.set_epoch(epoch)
        for xb, yb in train:
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        model.eval()
        correct, total = 0, 0.0
        with torch.no_grad():
            for xb, yb in valid:
                pred = model(xb)
                total += float(loss_fn(pred, yb)) * len(yb)
                correct += int((pred.argmax(1) == yb).sum())
    return time.perf_counter() - start, [float(v) for v in losses]


def with_trainer(data, epochs: int) -> tuple[float, list[float]]:
    xt, yt, xv, yv = data
    model, opt, loss_fn = setup()
    t = Trainer(
        model,
        InMemoryBatcher(xt, yt, BATCH, shuffle=True, seed=0),
        InMemoryBatcher(xv, yv, 512),
        loss_fn=loss_fn,
        opt=opt,
        device="cpu",
        progress=False,
    )
    start = time.perf_counter()
    t.fit(epochs)
    return time.perf_counter() - start, t.cb("recorder").losses


def batches_per_second(make, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    epoch = 0
    while time.perf_counter() - start < seconds:
        loader = make(epoch)
        for _ in loader:
            n += 1
        epoch += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    data = digits()
    hand_loop(data, 1), with_trainer(data, 1)  # warm-up: first calls pay for lazy init
    ratios, hand_times, trainer_times = [], [], []
    max_diff = 0.0
    for i in range(args.repeats):
        # alternate which goes first, so a slow spell of the machine does not always hit the same side
        if i % 2:
            tt, lt = with_trainer(data, args.epochs)
            th, lh = hand_loop(data, args.epochs)
        else:
            th, lh = hand_loop(data, args.epochs)
            tt, lt = with_trainer(data, args.epochs)
        hand_times.append(th)
        trainer_times.append(tt)
        ratios.append(tt / th)
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(lh, lt, strict=True)))

    xt, yt = data[0], data[1]

    def memory(epoch):
        b = InMemoryBatcher(xt, yt, BATCH, shuffle=True, seed=0)
        b.set_epoch(epoch)
        return b

    def loader(epoch):
        g = torch.Generator().manual_seed(epoch)
        return DataLoader(TensorDataset(xt, yt), batch_size=BATCH, shuffle=True, generator=g)

    mem_bps, dl_bps = batches_per_second(memory), batches_per_second(loader)
    print(f"hand-written loop: median {statistics.median(hand_times):.3f} s for {args.epochs} epochs")
    print(f"Trainer + default callbacks: median {statistics.median(trainer_times):.3f} s")
    print(f"in-memory batcher {mem_bps:,.0f} batches/s; DataLoader(TensorDataset) {dl_bps:,.0f} batches/s")
    print(f"trainer_vs_loop_time_ratio: {statistics.median(ratios):.3f}")
    print(
        f"trainer_vs_loop_time_ratio_of_medians: {statistics.median(trainer_times) / statistics.median(hand_times):.3f}"
    )
    print(f"losses_max_abs_diff: {max_diff:.2e}")
    print(f"losses_equal_5dp: {max_diff < 5e-6}")
    print(f"batcher_vs_dataloader_speedup: {mem_bps / dl_bps:.1f}")


if __name__ == "__main__":
    main()
