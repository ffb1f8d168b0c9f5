"""Hostile image folders, each read the way ``flows run`` reads data, timed and measured for peak memory.

Cases (each in a fresh subprocess, so one case's memory does not hide another's):

* ``bomb``: a class folder holding a PNG whose header declares 20,000 x 20,000 gray pixels (the IDAT stream is
  zeros, so the file is under 1 MB; decoded it would take 400 MB, and PIL's default limit only warns below
  179 megapixels). Must be refused from the header, naming the file.
* ``bomb_under_pil_limit``: 7,000 x 7,000 (49 megapixels: PIL would decode it without a word), above the
  recipe's default ``data.max_image_pixels`` of 40 megapixels.
* ``symlink_loop``: a class folder with two links to ``..``; a walk that follows links lists millions of paths.
* ``link_to_root``: a class folder with a link to ``/``: a walk that follows links reads the whole machine.
* ``clean``: the same folder without the hostile entry (the baseline).

Each prints ``<case>_seconds``, ``<case>_peak_mb`` (the process's peak resident memory), ``<case>_added_mb``
(peak minus the resident memory after imports) and ``<case>_refused`` (1 when the data layer raised its
DataError), as ``name: value`` lines.

    python bench/hostile_inputs.py [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

CASES = ("clean", "bomb", "bomb_under_pil_limit", "symlink_loop", "link_to_root")


def write_png_bomb(path: Path, width: int, height: int) -> Path:
    """Write an 8-bit gray PNG of ``width`` x ``height`` zeros without ever holding its pixels: the compressed
    stream is built a row block at a time (deflate makes 1,000 zero bytes of about 1). Returns ``path``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    rows = b"\x00" * ((width + 1) * min(height, 256))  # filter byte 0 + a row of zeros, 256 rows at a time
    parts = []
    left = height
    while left > 0:
        n = min(left, 256)
        parts.append(comp.compress(rows[: (width + 1) * n]))
        left -= n
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    return path


def build(root: Path, case: str) -> Path:
    """A two-class folder of small PNGs, plus the case's hostile entry."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / cls / f"{i:03d}.png")
    if case == "bomb":
        write_png_bomb(root / "a" / "bomb.png", 20_000, 20_000)
    elif case == "bomb_under_pil_limit":
        write_png_bomb(root / "a" / "big.png", 7_000, 7_000)
    elif case == "symlink_loop":
        os.symlink("..", root / "a" / "up1")
        os.symlink("..", root / "a" / "up2")
    elif case == "link_to_root":
        os.symlink("/", root / "a" / "everything")
    return root


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(case: str) -> dict[str, float]:
    """Build the case's folder, build its manifest in this process, and measure."""
    from recipe.config import RecipeConfig
    from recipe.data import DataError, build_manifest

    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "images", case)
        os.environ["RECIPE_DATA_DIR"] = str(Path(tmp) / "home")
        cfg = RecipeConfig(data={"source": "imagefolder", "root": str(root)})
        before = _rss_mb()
        start = time.perf_counter()
        refused, message = 0, ""
        try:
            build_manifest(cfg)
        except DataError as e:
            refused, message = 1, " ".join(line.strip() for line in str(e).splitlines()[:2])
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "added_mb": max(peak - before, 0.0),
        "refused": refused,
        "msg": message,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process and print it as JSON")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, timeout=300, check=False
        )
        if out.returncode != 0:
            print(f"{case}_error: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        for key in ("seconds", "peak_mb", "added_mb"):
            print(f"{case}_{key}: {r[key]:.3f}")
        print(f"{case}_refused: {r['refused']}")
        if r["msg"]:
            print(f"# {case}: {r['msg'][:300]}")


if __name__ == "__main__":
    main()
