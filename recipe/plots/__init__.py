"""Figures for the stages, one module per subject (``data`` for stage 1; later stages add their own).

Figures are built as bare :class:`matplotlib.figure.Figure` objects, not through ``pyplot``: no global
state, no GUI backend, safe in Prefect worker threads; PNGs are rendered by Agg. Log them with
:func:`recipe.tracking.log_figure`, which also closes them. Images are composed into one mosaic array
and drawn with a single ``imshow`` (one axes per tile is ~50x slower for a grid of a hundred samples).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLIT_COLOURS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}
OUTLIER_COLOUR = "#C44E52"


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches (clamped to sane sizes), detached from pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(float(np.clip(width, 3, 16)), float(np.clip(height, 2, 16))), dpi=100, layout="constrained")


def to_rgb(a: np.ndarray) -> np.ndarray:
    """uint8 HxW or HxWx3 -> uint8 HxWx3."""
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=-1)
    return a[..., :3]


def fit_tile(a: np.ndarray, side: int, background: int = 255) -> np.ndarray:
    """An image scaled to fit a ``side`` x ``side`` box (aspect kept, nearest neighbour), centred."""
    rgb = to_rgb(a)
    h, w = rgb.shape[:2]
    if (h, w) != (side, side):
        scale = side / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        rows = (np.arange(nh) * h // nh).clip(0, h - 1)
        cols = (np.arange(nw) * w // nw).clip(0, w - 1)
        rgb = rgb[rows][:, cols]
    out = np.full((side, side, 3), background, dtype=np.uint8)
    top, left = (side - rgb.shape[0]) // 2, (side - rgb.shape[1]) // 2
    out[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return out


def mosaic(tiles: list[list[np.ndarray | None]], side: int, pad: int = 2, background: int = 255) -> np.ndarray:
    """Rows of tiles (None leaves a gap) -> one HxWx3 array; tile (r, c) starts at
    ``(r * (side + pad) + pad, c * (side + pad) + pad)``."""
    n_rows, n_cols = len(tiles), max((len(r) for r in tiles), default=0)
    step = side + pad
    out = np.full((n_rows * step + pad, max(n_cols, 1) * step + pad, 3), background, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            if t is not None:
                out[pad + r * step : pad + r * step + side, pad + c * step : pad + c * step + side] = fit_tile(
                    t, side, background
                )
    return out


def tile_side(shapes: list[tuple[int, ...]], lo: int = 8, hi: int = 64) -> int:
    """The tile size for a mosaic: the images' largest side, kept between ``lo`` and ``hi`` pixels."""
    if not shapes:
        return lo
    return int(np.clip(max(max(s[:2]) for s in shapes), lo, hi))
