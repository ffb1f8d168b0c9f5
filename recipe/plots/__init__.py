"""Figures for the stages, one module per subject (``data`` for stage 1; later stages add their own).

Figures are built as bare :class:`matplotlib.figure.Figure` objects, not through ``pyplot``: no global
state, no GUI backend, safe in Prefect worker threads; PNGs are rendered by Agg. Log them with
:func:`recipe.tracking.log_figure`, which also closes them. Images are tiled into one array (:func:`mosaic`,
``make_grid``'s layout) and drawn with a single ``imshow`` (one axes per tile is ~50x slower for a grid
of a hundred samples); captions are text placed at the tile positions.
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
    """Rows of uint8 images (HxW or HxWx3, any sizes; None leaves a gap) -> one uint8 HxWx3 array, laid out as
    torchvision's ``make_grid`` lays out a batch: each image fitted into a ``side`` x ``side`` box
    (:func:`fit_tile`), tile (r, c) starting at ``(r * (side + pad) + pad, c * (side + pad) + pad)``, gaps and
    padding ``background``. Tiled in numpy: importing torchvision costs about 1.8 s (its ops import
    ``torch._dynamo``), in every process that draws a sample grid."""
    n_rows, n_cols = len(tiles), max((len(r) for r in tiles), default=0)
    if n_cols == 0:
        return np.full((n_rows * (side + pad) + pad, side + 2 * pad, 3), background, dtype=np.uint8)
    grid = np.full((n_rows * (side + pad) + pad, n_cols * (side + pad) + pad, 3), background, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            if t is not None:
                y, x = r * (side + pad) + pad, c * (side + pad) + pad
                grid[y : y + side, x : x + side] = fit_tile(t, side, background)
    return grid


def tile_side(shapes: list[tuple[int, ...]], lo: int = 8, hi: int = 64) -> int:
    """The tile size for a mosaic: the images' largest side, kept between ``lo`` and ``hi`` pixels."""
    if not shapes:
        return lo
    return int(np.clip(max(max(s[:2]) for s in shapes), lo, hi))
