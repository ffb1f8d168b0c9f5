"""Training images per second on the 10k-image folder (``bench/folder10k.py``), with the imagefolder preset's
model and the trainer the stages use (``recipe.train.make_trainer``: default callbacks, bf16 autocast and
channels_last on CUDA, the split resident on the device).

One warm-up epoch (cuDNN autotuning, lazy init), then ``--epochs`` timed epochs, validating each.

    python bench/images_per_second.py [--device cpu|cuda|auto] [--epochs 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import folder10k
    import torch

    from recipe.config import load_config
    from recipe.data import load_data
    from recipe.models import build_model
    from recipe.train import seed_everything
    from recipe.train.factory import make_trainer

    root = folder10k.build()
    cfg = load_config(
        "imagefolder",
        overrides=[
            f"data.root={root.resolve()}",
            "data.image_size=28",
            f"trainer.device={args.device}",
            "trainer.progress=false",
            *args.overrides,
        ],
    )
    start = time.perf_counter()
    data = load_data(cfg)
    data.tensors("train"), data.tensors("val")
    load_s = time.perf_counter() - start
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.in_shape, data.num_classes)
    trainer = make_trainer(cfg, model, data)
    trainer.fit(1)  # warm-up
    n_train = data.split_sizes["train"]
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.fit(args.epochs)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(
        f"{cfg.model.name} width {cfg.model.width} on {trainer.device}, {n_train} train images 28x28, "
        f"batch {cfg.data.batch_size}, {args.epochs} epochs in {seconds:.1f} s (validation included); "
        f"val/accuracy {trainer.metrics.get('val/accuracy', float('nan')):.3f}"
    )
    print(f"data_load_seconds: {load_s:.1f}")
    print(f"train_images_per_second: {n_train * args.epochs / seconds:.0f}")


if __name__ == "__main__":
    main()
