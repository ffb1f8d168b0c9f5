"""Figures for training runs: the LR finder's sweep, learning curves side by side, update-to-weight ratios,
candidate comparisons and the first-layer weights ("they should look like edges, not noise").

Every function returns a bare Figure (see :mod:`recipe.plots`); log it with :func:`recipe.tracking.log_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import mosaic, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

    from recipe.train.callbacks.lr_finder import LRSuggestion

TRAIN_COLOUR, VAL_COLOUR, REF_COLOUR = "#4C72B0", "#DD8452", "#8C8C8C"
KEPT_COLOUR, DROPPED_COLOUR, CHOSEN_COLOUR, BAD_COLOUR = "#55A868", "#B0B0B0", "#2E7D32", "#C44E52"
MAX_FILTERS = 64


def lr_finder_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smooth_losses: Sequence[float],
    suggestion: LRSuggestion | None = None,
    current: float | None = None,
    chosen: float | None = None,
) -> Figure:
    """Loss against learning rate (log x): raw per-step losses faint, the smoothed loss bold, the suggestion,
    the lr at the minimum, the starting lr and the chosen one marked."""
    fig = new_figure(6.5, 3.8)
    ax = fig.add_subplot()
    lr_a, raw, sm = np.asarray(lrs, float), np.asarray(losses, float), np.asarray(smooth_losses, float)
    n = min(len(lr_a), len(raw), len(sm))
    lr_a, raw, sm = lr_a[:n], raw[:n], sm[:n]
    ax.plot(lr_a, raw, color=TRAIN_COLOUR, alpha=0.25, linewidth=0.8, label="step loss")
    ax.plot(lr_a, sm, color=TRAIN_COLOUR, linewidth=2, label="smoothed loss (debiased)")
    ax.set_xscale("log")
    finite = sm[np.isfinite(sm)]
    if len(finite):
        lo, start = float(finite.min()), float(finite[0])
        ax.set_ylim(lo - 0.1 * abs(start - lo) - 1e-3, start + 0.6 * abs(start - lo) + 1e-3)
    if suggestion is not None and math.isfinite(suggestion.lr_at_min):
        ax.axvline(suggestion.lr_at_min, color=REF_COLOUR, linestyle=":", label=f"minimum {suggestion.lr_at_min:.2g}")
    if suggestion is not None and suggestion.lr is not None:
        y = float(np.interp(math.log10(suggestion.lr), np.log10(lr_a), sm)) if n else 0.0
        ax.plot(
            [suggestion.lr],
            [y],
            "o",
            color=BAD_COLOUR,
            markersize=8,
            label=f"suggested {suggestion.lr:.2g} ({suggestion.rule})",
        )
    if current is not None:
        ax.axvline(current, color=VAL_COLOUR, linestyle="--", label=f"starting lr {current:.2g}")
    if chosen is not None and chosen != current:
        ax.axvline(chosen, color=CHOSEN_COLOUR, linestyle="-", label=f"chosen {chosen:.2g}")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel("training loss")
    ax.set_title("LR finder: loss against an exponentially growing learning rate")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def curves_figure(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    titles: Mapping[str, str] | None = None,
    reference: str | None = None,
    title: str = "train vs validation loss",
) -> Figure:
    """One panel per run: train loss (solid) and val loss (dashed) per epoch on a shared log scale; the
    ``reference`` run's val loss is repeated in grey in every other panel for comparison."""
    names = list(histories)
    n = max(1, len(names))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = new_figure(3.2 * cols + 0.4, 2.5 * rows + 0.6)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    ref = histories.get(reference) if reference else None
    values = [h.get(k) for hist in histories.values() for h in hist for k in ("train/loss", "val/loss")]
    values = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        name = names[i]
        hist = histories[name]
        ep = [h.get("epoch", j) for j, h in enumerate(hist)]
        ax.plot(ep, [h.get("train/loss", math.nan) for h in hist], color=TRAIN_COLOUR, label="train")
        ax.plot(ep, [h.get("val/loss", math.nan) for h in hist], color=VAL_COLOUR, linestyle="--", label="val")
        if ref is not None and name != reference:
            ax.plot(
                [h.get("epoch", j) for j, h in enumerate(ref)],
                [h.get("val/loss", math.nan) for h in ref],
                color=REF_COLOUR,
                linestyle=":",
                linewidth=1,
                label=f"val ({reference})",
            )
        if values:
            ax.set_yscale("log")
        ax.set_title((titles or {}).get(name, name), fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=6)
    if values:
        axes[0, 0].set_ylim(min(values) * 0.8, max(values) * 1.25)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("loss (log)", fontsize=8)
    return fig


def update_ratio_figure(
    history: Sequence[tuple[int, Mapping[str, float]]], low: float = -4.0, high: float = -2.0
) -> Figure | None:
    """log10 update/weight ratio per layer over the steps, with the healthy band shaded."""
    if not history:
        return None
    layers = list(history[-1][1])
    fig = new_figure(7, 3.8)
    ax = fig.add_subplot()
    steps = [s for s, _ in history]
    cmap = _cmap("viridis")
    for j, layer in enumerate(layers):
        ys = [r.get(layer, math.nan) for _, r in history]
        ax.plot(steps, ys, linewidth=1, color=cmap(j / max(1, len(layers) - 1)), label=layer)
    ax.axhspan(low, high, color=KEPT_COLOUR, alpha=0.1, label=f"healthy [{low:g}, {high:g}]")
    ax.axhline(-3, color=REF_COLOUR, linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 ||dW|| / ||W||")
    ax.set_title("update-to-weight ratio per layer (about -3 is healthy)")
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    return fig


def comparison_figure(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "accuracy",
    *,
    higher_is_better: bool = True,
    bars: Mapping[str, float] | None = None,
    noise_z: float = 1.0,
) -> Figure:
    """Candidates against the reference, coloured by decision: the validation loss, the validation metric (with
    the dumb baselines) and the train-validation gap. The decision criterion's panel carries error bars of
    ``noise_z`` paired standard errors of the gain."""
    ok = [r for r in rows if r["status"] == "ok"]
    criterion = ok[0].get("criterion", "metric") if ok else "metric"
    fig = new_figure(11, 1.2 + 0.35 * max(3, len(ok)))
    ax_loss, ax_metric, ax_gap = fig.subplots(1, 3, sharey=True, width_ratios=[3, 3, 2])
    y = np.arange(len(ok))[::-1]
    colours = [
        CHOSEN_COLOUR
        if r["chosen"]
        else REF_COLOUR
        if r["kept"] == "reference"
        else KEPT_COLOUR
        if r["kept"] == "kept"
        else DROPPED_COLOUR
        for r in ok
    ]
    errs = np.array([noise_z * r["se"] if r["se"] is not None and math.isfinite(r["se"]) else 0.0 for r in ok])
    ref = next((r for r in ok if r["kept"] == "reference"), None)
    panels = (
        (ax_loss, "val_loss", "val loss (lower is better)", criterion == "loss", {}),
        (
            ax_metric,
            "val_metric",
            f"val {metric} ({'higher' if higher_is_better else 'lower'} is better)",
            criterion == "metric",
            bars or {},
        ),
    )
    for ax, key, label, with_err, lines in panels:
        vals = np.array([r[key] for r in ok], float)
        e = errs if with_err else np.zeros(len(ok))
        ax.barh(y, vals, color=colours, xerr=e if with_err else None, error_kw={"elinewidth": 1, "capsize": 2})
        if ref is not None:
            ax.axvline(ref[key], color=REF_COLOUR, linestyle="--", linewidth=1, label="reference")
        for name, value in lines.items():
            if value is not None and math.isfinite(value):
                ax.axvline(value, color=BAD_COLOUR, linestyle=":", linewidth=1, label=name)
        finite = np.isfinite(vals)
        if finite.any():
            lo, hi = float(np.min((vals - e)[finite])), float(np.max((vals + e)[finite]))
            for value in lines.values():  # show a baseline only when it is near enough not to squash the bars
                if value is not None and math.isfinite(value) and abs(value - lo) < 3 * (hi - lo + 1e-9):
                    lo, hi = min(lo, value), max(hi, value)
            pad = 0.1 * (hi - lo) + 1e-4
            ax.set_xlim(max(0.0, lo - pad) if key == "val_loss" else lo - pad, hi + pad)
        ax.set_xlabel(label + (" (decides)" if with_err else ""), fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
        ax.tick_params(labelsize=7)
    ax_loss.set_yticks(y, [r["name"] for r in ok], fontsize=8)
    ax_gap.barh(y, [r["gap"] for r in ok], color=colours)
    gap_label = (
        "val - train loss"
        if criterion == "loss"
        else (f"train - val {metric}" if higher_is_better else f"val - train {metric}")
    )
    ax_gap.set_xlabel(f"gap: {gap_label}", fontsize=8)
    ax_gap.tick_params(labelsize=7)
    fig.suptitle(
        "regularisers one at a time against the reference (dark green: chosen, green: kept, light grey: "
        "dropped; bars: noise)",
        fontsize=9,
    )
    return fig


def first_layer_figure(model: nn.Module, in_shape: Sequence[int]) -> Figure | None:
    """The first layer's weights: conv filters as a grid of tiles, an mlp's first layer reshaped to the image when
    the input is one, else a heatmap (units x features). Grey is zero; each tile is scaled on its own."""
    from torch import nn

    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if first is None:
        return None
    w = first.weight.detach().float().cpu().numpy()
    image = len(in_shape) == 3
    if isinstance(first, nn.Conv2d):
        tiles = [_tile(f) for f in w[:MAX_FILTERS]]
        what = f"{w.shape[0]} conv filters {w.shape[2]}x{w.shape[3]} x {w.shape[1]} channel(s)"
    elif image and w.shape[1] == int(np.prod(in_shape)):
        c, h, wd = (int(v) for v in in_shape)
        tiles = [_tile(row.reshape(c, h, wd)) for row in w[:MAX_FILTERS]]
        what = f"{w.shape[0]} first-layer units as {h}x{wd} images"
    else:
        fig = new_figure(7, 4)
        ax = fig.add_subplot()
        lim = float(np.abs(w).max()) or 1.0
        im = ax.imshow(w[:MAX_FILTERS], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_xlabel("input feature")
        ax.set_ylabel("unit")
        ax.set_title(f"first-layer weights ({w.shape[0]} units x {w.shape[1]} features)", fontsize=9)
        return fig
    cols = min(16, len(tiles))
    grid = [tiles[i : i + cols] for i in range(0, len(tiles), cols)]
    side = 24
    img = mosaic(grid, side, pad=3, background=255)
    fig = new_figure(1 + cols * 0.5, 0.9 + len(grid) * 0.5)
    ax = fig.add_subplot()
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    shown = f" (first {MAX_FILTERS})" if len(w) > MAX_FILTERS else ""
    ax.set_title(f"first layer: {what}{shown}; edges and blobs, not noise", fontsize=9)
    return fig


def _tile(f: np.ndarray) -> np.ndarray:
    """A (C, h, w) filter -> uint8 image: grey at zero, symmetric scale; 3 channels as RGB, others averaged."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 3 and f.shape[0] == 3:
        f = np.transpose(f, (1, 2, 0))
    elif f.ndim == 3:
        f = f.mean(axis=0)
    lim = float(np.abs(f).max()) or 1.0
    return np.clip(127.5 + 127.5 * f / lim, 0, 255).astype(np.uint8)


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]
