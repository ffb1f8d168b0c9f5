"""Image grids: tiled into one array in make_grid's layout (one imshow), captions at the tile positions."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex

from recipe.config import RecipeConfig
from recipe.data import build_manifest
from recipe.plots import OUTLIER_COLOUR, mosaic
from recipe.plots.data import sample_grid
from recipe.plots.skeleton import augmentation_figure, input_batch_figure


def _solid(value: int, h: int = 4, w: int = 4) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def test_mosaic_puts_each_tile_at_its_offset_and_leaves_gaps_blank():
    side, pad = 4, 2
    img = mosaic([[_solid(10), _solid(20)], [None, _solid(30, 2, 4)]], side, pad=pad, background=255)
    assert img.shape == (2 * (side + pad) + pad, 2 * (side + pad) + pad, 3) and img.dtype == np.uint8

    def top(r: int, c: int) -> np.ndarray:  # a pixel in the first row of tile (r, c)
        return img[pad + r * (side + pad), pad + c * (side + pad) + 1]

    assert top(0, 0).tolist() == [10] * 3 and top(0, 1).tolist() == [20] * 3
    assert top(1, 0).tolist() == [255] * 3  # None: a gap
    assert img[pad + (side + pad) + 1, pad + (side + pad) + 1].tolist() == [30] * 3  # 2x4: centred in its box
    assert (img[:pad] == 255).all() and (img[:, :pad] == 255).all()  # the padding is background


def test_a_lone_tile_is_padded_like_any_grid():
    img = mosaic([[_solid(0)]], 4, pad=3)
    assert img.shape == (10, 10, 3) and (img[3:7, 3:7] == 0).all() and img.sum() == (100 - 16) * 255 * 3


def test_mosaic_lays_out_a_full_grid_as_torchvisions_make_grid_does():
    import torch
    from torchvision.utils import make_grid

    rng = np.random.default_rng(0)
    tiles = [[rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(4)] for _ in range(3)]
    ours = mosaic(tiles, 5, pad=2, background=255)
    batch = torch.from_numpy(np.stack([t for row in tiles for t in row])).permute(0, 3, 1, 2)
    theirs = make_grid(batch, nrow=4, padding=2, pad_value=255).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_drawing_a_sample_grid_does_not_import_torchvision():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from recipe.plots import mosaic; "
        "mosaic([[np.zeros((8, 8), np.uint8)] * 3] * 2, 8); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # about 1.8 s of import (torch._dynamo) in every process that draws a grid


def test_input_batch_is_one_image_with_a_caption_per_tile():
    images = np.random.default_rng(0).uniform(size=(10, 1, 8, 8))
    fig = input_batch_figure(images, list(range(10)), [f"class{i}" for i in range(10)], "the batch", cols=4)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and [t.get_text() for t in ax.texts] == [f"class{i}" for i in range(10)]


def test_augmentation_grid_captions_wrong_predictions_in_red():
    clean = np.random.default_rng(0).uniform(size=(3, 3, 8, 8))
    aug = clean[:, :, ::-1].copy()
    fig = augmentation_figure(clean, aug, [0, 1, 2], [0, 1, 2], [0, 2, 2], ["a", "b", "c"], "aug", cols=4)
    ax = fig.axes[0]
    captions = [(t.get_text(), to_hex(t.get_color())) for t in ax.texts if t.get_text()]
    red, black = OUTLIER_COLOUR.lower(), "#000000"
    assert captions == [("a/a", black), ("b/b", black), ("c/c", black), ("a/a", black), ("b/c", red), ("c/c", black)]
    assert len(ax.images) == 1


def test_sample_grid_draws_a_row_per_class_in_one_image():
    m = build_manifest(RecipeConfig())
    fig = sample_grid(m, per_class=3, seed=0)
    ax = fig.axes[0]
    assert len(ax.images) == 1
    assert [t.get_text().split(" (")[0] for t in ax.get_yticklabels()] == [str(c) for c in m.classes]
    side = 8  # the digits are 8x8; tile_side keeps them at their size
    pad = max(1, side // 8)
    assert ax.images[0].get_array().shape == (10 * (side + pad) + pad, 3 * (side + pad) + pad, 3)
