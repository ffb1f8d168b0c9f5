"""A realistic image-folder workload built offline: 10 classes of 28x28 grayscale PNGs, 10,000 files.

Each image is one of scikit-learn's 1,797 8x8 digits (its class is the folder), upsampled to a 20x20 glyph
centred in 28x28 (as MNIST lays digits out), then given a random affine jitter (rotation +-15 degrees, scale
0.85-1.15, shift +-2 px, shear +-8 degrees) and pixel noise (std 8 of 255), so every file is distinct.
Nothing is downloaded. Deterministic for a given seed; the folder is rebuilt only when its marker file is
missing or names other parameters.

    python bench/folder10k.py [--root data/folder10k] [--n 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path("data") / "folder10k"
MARKER = ".folder10k.json"


def build(root: Path = DEFAULT_ROOT, n: int = 10_000, seed: int = 0, side: int = 28) -> Path:
    """Write ``root/<digit>/<index:05d>.png`` (about n/10 per class) unless it is there already; returns root."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.datasets import load_digits

    params = {"n": n, "seed": seed, "side": side, "version": 1}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    if root.exists():
        shutil.rmtree(root)
    d = load_digits()
    g = torch.Generator().manual_seed(seed)
    src = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8), 0..1
    glyph = F.interpolate(src, size=(20, 20), mode="bicubic", align_corners=False).clamp(0, 1)
    canvas = F.pad(glyph, (4, 4, 4, 4))  # 28x28, glyph centred
    if side != 28:
        canvas = F.interpolate(canvas, size=(side, side), mode="bilinear", align_corners=False)
    pick = torch.randint(0, len(src), (n,), generator=g)
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(15)
    shear = (torch.rand(n, generator=g) * 2 - 1) * math.radians(8)
    scale = 0.85 + torch.rand(n, generator=g) * 0.3
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (2 * 2 / side)  # +-2 px in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin + torch.tan(shear) * cos, shift[:, 0]], 1),
            torch.stack([sin, cos, shift[:, 1]], 1),
        ],
        1,
    )
    labels = d.target[pick.numpy()]
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 1000):
        sl = slice(start, min(start + 1000, n))
        grid = F.affine_grid(theta[sl], [sl.stop - sl.start, 1, side, side], align_corners=False)
        img = F.grid_sample(canvas[pick[sl]], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        img = img * 255 + torch.randn(img.shape, generator=g) * 8
        pixels = img.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
        for i, (a, y) in enumerate(zip(pixels, labels[sl]), start=start):
            Image.fromarray(np.ascontiguousarray(a), mode="L").save(root / str(y) / f"{i:05d}.png")
    marker.write_text(json.dumps(params))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = build(args.root, args.n, args.seed)
    files = sum(1 for _ in root.rglob("*.png"))
    print(f"folder10k_root: {root}")
    print(f"folder10k_files: {files}")


if __name__ == "__main__":
    main()
