"""Batched augmentation (Kornia, per-sample parameters on the whole batch) against the per-sample path it
replaced (torchvision.transforms.v2 applied image by image, kept here as the reference).

Same transforms, same batch, same thread count; the two are timed in alternation (which goes first flips
every round) and the figure is the median of the per-round ratios, so a slow spell of this shared machine
hits both alike. Workloads: scikit-learn's digits, 8x8, and the same digits upsampled to 28x28; batch 64
(data.batch_size) and 512 (data.eval_batch_size, the baselines' augmentation check).

    python bench/augment.py [--rounds 7] [--seconds 0.4] [--names crop,rotate]

Prints ``name: value`` lines at the end; ``augment_batched_speedup`` is digits 8x8, batch 64, with the
regularize stage's default transforms (crop, rotate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from recipe.data.augment import build_augment  # noqa: E402


def per_sample_reference(names: list[str], shape: tuple[int, ...]):
    """The path on main before this bench: the same transforms from torchvision v2, one image at a time."""
    from torchvision.transforms import v2

    h, w = shape[-2:]
    make = {
        "crop": lambda: v2.RandomCrop((h, w), padding=max(1, round(min(h, w) / 8))),
        "rotate": lambda: v2.RandomRotation(10),
        "affine": lambda: v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        "noise": lambda: v2.GaussianNoise(sigma=0.1, clip=False),
        "erase": lambda: v2.RandomErasing(p=0.5, scale=(0.02, 0.2), value=0),
        "hflip": lambda: v2.RandomHorizontalFlip(),
    }
    t = v2.Compose([make[n]() for n in names])
    return lambda xb: torch.stack([t(x) for x in xb])


def batch(side: int, n: int) -> torch.Tensor:
    x = torch.tensor(load_digits().images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    if side != 8:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return (x - x.mean()) / x.std()


def rate(f, xb: torch.Tensor, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        f(xb)
        n += 1
    return n / elapsed


def compare(names: list[str], side: int, n: int, rounds: int, seconds: float) -> tuple[float, float, float]:
    xb = batch(side, n)
    shape = tuple(xb.shape[1:])
    old, new = per_sample_reference(names, shape), build_augment(names, shape)
    assert new(xb).shape == old(xb).shape == xb.shape
    ratios, olds, news = [], [], []
    for r in range(rounds):
        if r % 2:
            b = rate(new, xb, seconds)
            a = rate(old, xb, seconds)
        else:
            a = rate(old, xb, seconds)
            b = rate(new, xb, seconds)
        olds.append(a)
        news.append(b)
        ratios.append(b / a)
    return statistics.median(olds), statistics.median(news), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.4, help="timing window per side per round")
    ap.add_argument("--names", default="crop,rotate", help="comma-separated augmentations (default: regularize's)")
    args = ap.parse_args()
    names = args.names.split(",")
    every = ["crop", "rotate", "affine", "noise", "erase"]
    print(f"torch threads {torch.get_num_threads()}; transforms {names}; all label-preserving: {every}")
    results = {}
    for label, ns, side, n in [
        ("", names, 8, 64),
        ("_28x28", names, 28, 64),
        ("_eval_batch", names, 8, 512),
        ("_all", every, 8, 64),
        ("_all_28x28", every, 28, 64),
    ]:
        old, new, ratio = compare(ns, side, n, args.rounds, args.seconds)
        results[label] = ratio
        print(
            f"{side}x{side} batch {n} {'+'.join(ns)}: per-sample {old:,.0f} batches/s, batched {new:,.0f} "
            f"batches/s, median paired ratio {ratio:.2f}"
        )
    for label, ratio in results.items():
        print(f"augment_batched_speedup{label}: {ratio:.2f}")


if __name__ == "__main__":
    main()
