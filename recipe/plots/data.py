"""Stage 1's figures: "scan through thousands of examples ... visualize their distributions and the outliers
along any axis."

Every function takes a manifest (plus what it needs) and returns a Figure, or None when there is nothing
to show (no duplicates, no images). :func:`data_figures` returns every figure that applies, keyed by the
artifact path it should be logged under (``plots/...png``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recipe.checks.base import Bounds, fmt
from recipe.checks.data import (
    SPLITS,
    class_counts,
    duplicate_groups,
    is_image,
    property_bounds,
    property_values,
    usable,
)
from recipe.tasks import task_for

from . import OUTLIER_COLOUR, SPLIT_COLOURS, mosaic, new_figure, tile_side

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from recipe.config import RecipeConfig
    from recipe.data import Manifest

MAX_CLASSES_SHOWN = 20  # sample grid rows; more classes are summarised by the histogram
MAX_FEATURES_SHOWN = 36
MAX_DUPLICATE_GROUPS = 8
MAX_PER_GROUP = 6


def _read(m: Manifest, rows: pd.Index | list[int]) -> list[np.ndarray]:
    return [m.reader.read(int(i)) for i in rows]


def _short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1) :]


def class_histogram(m: Manifest) -> Figure:
    """Classification: samples per class, one bar per split side by side. Regression: the target's
    histogram per split."""
    if task_for(m).classifier:
        table = class_counts(m)
        n = len(table)
        fig = new_figure(1.5 + 0.45 * n, 3.2)
        ax = fig.add_subplot()
        x = np.arange(n)
        width = 0.8 / len(SPLITS)
        for k, s in enumerate(SPLITS):
            ax.bar(
                x + (k - 1) * width,
                table[s].to_numpy(),
                width,
                label=f"{s} ({int(table[s].sum())})",
                color=SPLIT_COLOURS[s],
            )
        ax.set_xticks(
            x,
            [_short(str(c), 12) for c in table.index],
            rotation=45 if n > 10 else 0,
            ha="right" if n > 10 else "center",
            fontsize=8,
        )
        ax.set_ylim(0, max(1, int(table[list(SPLITS)].to_numpy().max())) * 1.25)  # room for the legend
        ax.set_ylabel("samples")
        ax.set_title("samples per class and split (readable samples)")
        ax.legend(fontsize=8, ncol=3, loc="upper center")
        return fig
    fig = new_figure(5, 3.2)
    ax = fig.add_subplot()
    ok = usable(m)
    y = ok["label"].astype(np.float64)
    edges = np.histogram_bin_edges(y[np.isfinite(y)], bins=30)
    for s in SPLITS:
        ys = y[(ok["split"] == s).to_numpy()]
        if len(ys):
            ax.hist(
                ys,
                bins=edges,
                histtype="step",
                linewidth=1.5,
                color=SPLIT_COLOURS[s],
                label=f"{s} ({len(ys)})",
                density=True,
            )
    ax.set_xlabel("target")
    ax.set_ylabel("density")
    ax.set_title("target distribution per split")
    ax.legend(fontsize=8)
    return fig


def sample_grid(m: Manifest, per_class: int = 8, seed: int = 0, max_classes: int = MAX_CLASSES_SHOWN) -> Figure | None:
    """A row of randomly drawn (seeded) readable samples per class, labelled with the class name."""
    ok = usable(m)
    if not is_image(m) or not len(ok):
        return None
    rng = np.random.default_rng(seed)
    classes = list(m.classes)[:max_classes] if m.classes else [None]
    rows, labels = [], []
    for c in classes:
        pool = ok.index.to_numpy() if c is None else ok.index[ok["label"].astype(str) == c].to_numpy()
        pick = np.sort(rng.choice(pool, min(per_class, len(pool)), replace=False)) if len(pool) else []
        rows.append(_read(m, pick))
        labels.append(f"{_short(str(c), 14)} ({len(pool)})" if c is not None else "samples")
    side = tile_side([a.shape for r in rows for a in r])
    pad = max(1, side // 8)
    img = mosaic(rows, side, pad)
    fig = new_figure(1.6 + per_class * 0.8, 0.6 + len(rows) * 0.8)
    ax = fig.add_subplot()
    ax.imshow(img, interpolation="nearest")
    ax.set_yticks([pad + r * (side + pad) + side / 2 for r in range(len(rows))], labels, fontsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    more = f" (first {max_classes} of {len(m.classes)} classes)" if len(m.classes) > max_classes else ""
    ax.set_title(f"random samples per class{more}", fontsize=10)
    return fig


def _captioned_mosaic(
    ax: Axes, tiles: list[list[np.ndarray | None]], captions: list[list[tuple[str, str]]], side: int
) -> None:
    """Draw a mosaic with a caption (text, colour) under each tile."""
    pad = max(2, side // 3)
    img = mosaic(tiles, side, pad)
    ax.imshow(img, interpolation="nearest")
    step = side + pad
    for r, row in enumerate(captions):
        for c, (text, colour) in enumerate(row):
            ax.text(
                pad + c * step + side / 2,
                pad + r * step + side + pad * 0.1,
                text,
                ha="center",
                va="top",
                fontsize=5.5,
                color=colour,
            )
    ax.set_axis_off()


def extremes(m: Manifest, prop: str, bounds: Bounds, n: int = 8, values: pd.DataFrame | None = None) -> Figure | None:
    """The ``n`` lowest and ``n`` highest samples along one property, captioned with id and value; the ones
    beyond the robust bounds in red. The outliers usually uncover data bugs."""
    values = property_values(m) if values is None else values
    if not is_image(m) or prop not in values or not len(values):
        return None
    order = values.sort_values(prop, kind="stable")
    k = min(n, (len(order) + 1) // 2)
    ends = [("lowest", order.head(k)), ("highest", order.tail(k).iloc[::-1])]
    tiles, captions = [], []
    for _, rows in ends:
        tiles.append(_read(m, rows.index))
        captions.append(
            [
                (f"{_short(str(i), 16)}\n{fmt(v)}", OUTLIER_COLOUR if bounds.outside([v])[0] else "black")
                for i, v in zip(rows["id"], rows[prop])
            ]
        )
    side = tile_side([a.shape for r in tiles for a in r], lo=24)
    fig = new_figure(1.0 + k * 1.0, 2.9)
    ax = fig.add_subplot()
    _captioned_mosaic(ax, tiles, captions, side)
    n_out = int(bounds.outside(values[prop]).sum())
    ax.set_title(
        f"{prop}: lowest (top row) and highest (bottom row); {n_out} beyond [{fmt(bounds.lo)}, "
        f"{fmt(bounds.hi)}] in red",
        fontsize=9,
    )
    return fig


def property_histograms(m: Manifest, bounds: dict[str, Bounds], values: pd.DataFrame | None = None) -> Figure | None:
    """Histogram of every outlier property with its robust bounds drawn in."""
    values = property_values(m) if values is None else values
    if not bounds or not len(values):
        return None
    fig = new_figure(3.0 * len(bounds), 2.6)
    axes = fig.subplots(1, len(bounds), squeeze=False)[0]
    for ax, (p, b) in zip(axes, bounds.items()):
        x = values[p].to_numpy(np.float64)
        ax.hist(x[np.isfinite(x)], bins=40, color="#888888")
        for edge in (b.lo, b.hi):
            ax.axvline(edge, color=OUTLIER_COLOUR, linestyle="--", linewidth=1)
        ax.set_title(f"{p} ({int(b.outside(x).sum())} outside)", fontsize=9)
        ax.tick_params(labelsize=7)
    return fig


def duplicates_figure(
    m: Manifest, max_groups: int = MAX_DUPLICATE_GROUPS, per_group: int = MAX_PER_GROUP
) -> Figure | None:
    """Each group of identical samples side by side (one row a group), captioned with id and split;
    groups that span splits (leakage) first, captions in red."""
    if not is_image(m):
        return None
    dup = duplicate_groups(m)
    if not len(dup):
        return None
    groups = [g for _, g in dup.groupby("group", sort=True)]
    groups.sort(key=lambda g: -g["split"].nunique())  # stable: leakage first, then in order of appearance
    shown = groups[:max_groups]
    tiles = [_read(m, g.index[:per_group]) for g in shown]
    captions = []
    for g in shown:
        colour = OUTLIER_COLOUR if g["split"].nunique() > 1 else "black"
        first = g.iloc[:per_group]
        captions.append(
            [
                (f"{_short(str(i), 16)}\n{s} · {_short(str(lab), 8)}", colour)
                for i, s, lab in zip(first["id"], first["split"], first["label"])
            ]
        )
    side = tile_side([a.shape for r in tiles for a in r], lo=24)
    width = max(len(r) for r in tiles)
    fig = new_figure(max(4.5, 1.0 + width * 1.1), 0.7 + len(shown) * 1.0)
    ax = fig.add_subplot()
    _captioned_mosaic(ax, tiles, captions, side)
    more = f", first {max_groups} of {len(groups)}" if len(groups) > max_groups else ""
    ax.set_title(f"identical samples, a group per row{more}\n(red: shared across splits)", fontsize=8)
    return fig


def feature_histograms(m: Manifest, max_features: int = MAX_FEATURES_SHOWN) -> Figure | None:
    """CSV: one small histogram per feature, train filled, val and test as outlines, on the train range's
    bins widened to every value (so values far outside show up as isolated bars)."""
    if m.features is None or not m.features.shape[1]:
        return None
    f = m.features
    cols = list(f.columns)[:max_features]
    n_cols = min(6, len(cols))
    n_rows = -(-len(cols) // n_cols)
    fig = new_figure(2.2 * n_cols, 1.7 * n_rows + 0.4)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    split = m.df["split"].to_numpy()
    for ax, c in zip(axes, cols):
        x = f[c].to_numpy(np.float64)
        finite = np.isfinite(x)
        if not finite.any():
            ax.set_title(f"{_short(c, 20)} (all missing)", fontsize=7)
            continue
        edges = np.histogram_bin_edges(x[finite], bins=20)
        for s in SPLITS:
            xs = x[finite & (split == s)]
            if len(xs):
                ax.hist(
                    xs,
                    bins=edges,
                    color=SPLIT_COLOURS[s],
                    density=True,
                    alpha=0.6 if s == "train" else 1,
                    histtype="stepfilled" if s == "train" else "step",
                    linewidth=1.2,
                    label=s,
                )
        if c == cols[0]:
            ax.legend(fontsize=5, loc="upper right")
        n_missing = int((~finite).sum())
        ax.set_title(
            _short(c, 22) + (f" ({n_missing} missing)" if n_missing else ""),
            fontsize=7,
            color=OUTLIER_COLOUR if n_missing else "black",
        )
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    for ax in axes[len(cols) :]:
        ax.set_axis_off()
    more = f" (first {max_features} of {f.shape[1]})" if f.shape[1] > max_features else ""
    fig.suptitle(f"features{more} per split (density)", fontsize=9)
    return fig


def figure_builders(m: Manifest, cfg: RecipeConfig) -> dict[str, Callable[[], Figure | None]]:
    """artifact path -> a function drawing that figure (or returning None: nothing to show), for every
    stage-1 figure that applies to this data; separate so a caller can survive one figure failing."""
    ic = cfg.stages.inspect
    builders: dict[str, Callable[[], Figure | None]] = {"plots/class_histogram.png": lambda: class_histogram(m)}
    if is_image(m):
        values = property_values(m)
        bounds = property_bounds(m, ic.outlier_mad)
        builders["plots/samples.png"] = lambda: sample_grid(m, ic.samples_per_class, seed=cfg.seed)
        builders["plots/pixel_stats.png"] = lambda: property_histograms(m, bounds, values)
        for p, b in bounds.items():
            builders[f"plots/outliers_{p}.png"] = lambda p=p, b=b: extremes(m, p, b, values=values)
        builders["plots/duplicates.png"] = lambda: duplicates_figure(m)
    else:
        builders["plots/features.png"] = lambda: feature_histograms(m)
    return builders


def data_figures(m: Manifest, cfg: RecipeConfig) -> dict[str, Figure]:
    """Every stage-1 figure that applies to this data, keyed by artifact path."""
    figs = {path: build() for path, build in figure_builders(m, cfg).items()}
    return {k: v for k, v in figs.items() if v is not None}


__all__ = [
    "class_histogram",
    "data_figures",
    "duplicates_figure",
    "extremes",
    "feature_histograms",
    "figure_builders",
    "property_histograms",
    "sample_grid",
]
