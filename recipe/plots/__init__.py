"""Figures for the stages, one module per subject (``data`` for stage 1; later stages add their own).

Figures are built as bare :class:`matplotlib.figure.Figure` objects, not through ``pyplot``: no global
state, no GUI backend, safe in Prefect worker threads; PNGs are rendered by Agg. Log them with
:func:`recipe.tracking.log_figure`, which also closes them. Images are tiled into one array by torchvision's
``make_grid`` (:func:`mosaic`) and drawn with a single ``imshow`` (one axes per tile is ~50x slower for a grid
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
    """Rows of uint8 images (HxW or HxWx3, any sizes; None leaves a gap) -> one uint8 HxWx3 array, tiled by
    torchvision's ``make_grid``: each image fitted into a ``side`` x ``side`` box (:func:`fit_tile`), tile
    (r, c) starting at ``(r * (side + pad) + pad, c * (side + pad) + pad)``, gaps and padding ``background``."""
    n_rows, n_cols = len(tiles), max((len(r) for r in tiles), default=0)
    if n_cols == 0:
        return np.full((n_rows * (side + pad) + pad, side + 2 * pad, 3), background, dtype=np.uint8)
    import torch
    from torchvision.utils import make_grid

    blank = np.full((side, side, 3), background, dtype=np.uint8)
    boxes = [blank if t is None else fit_tile(t, side, background) for row in tiles for t in _padded(row, n_cols)]
    batch = torch.from_numpy(np.stack(boxes)).permute(0, 3, 1, 2)  # (N, 3, side, side), row by row
    if len(boxes) == 1:  # make_grid returns a lone image as it is, without the padding
        grid = torch.nn.functional.pad(batch[0], (pad, pad, pad, pad), value=background)
    else:
        grid = make_grid(batch, nrow=n_cols, padding=pad, pad_value=background)
    return grid.permute(1, 2, 0).numpy()


def _padded(row: list[np.ndarray | None], n: int) -> list[np.ndarray | None]:
    return [*row, *[None] * (n - len(row))]


def tile_side(shapes: list[tuple[int, ...]], lo: int = 8, hi: int = 64) -> int:
    """The tile size for a mosaic: the images' largest side, kept between ``lo`` and ``hi`` pixels."""
    if not shapes:
        return lo
    return int(np.clip(max(max(s[:2]) for s in shapes), lo, hi))
