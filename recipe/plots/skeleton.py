"""Stage 2's figures: the skeleton's experiments, drawn so a glance says whether they went as expected.

Each function takes plain arrays (what the baselines stage measured) and returns a Figure, logged by the
stage as ``plots/<name>.png``. Images arrive decoded to the 0..1 pixel scale, (N, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recipe.tasks import task_for

from . import OUTLIER_COLOUR, mosaic, new_figure, tile_side

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REAL, ZERO, OTHER = "#4C72B0", "#C44E52", "#55A868"
MAX_TILES = 32


def _label(names: Sequence[str], i: int) -> str:
    s = str(names[i]) if 0 <= i < len(names) else str(i)
    return s if len(s) <= 10 else s[:9] + "…"


def _to_uint8(images: np.ndarray) -> list[np.ndarray]:
    """(N, C, H, W) floats in 0..1 -> HxW (grey) or HxWx3 uint8 tiles."""
    a = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    if a.shape[1] == 1:
        return [x[0] for x in a]
    return [np.moveaxis(x[:3], 0, -1) for x in a]


def _grid(ax, images: np.ndarray, captions: list[str], cols: int, colours: list[str] | None = None) -> None:
    tiles = _to_uint8(images)
    side = max(tile_side([t.shape for t in tiles]), 28)  # room for a caption even on 8x8 digits
    pad = max(2, side // 3)
    rows = [tiles[i : i + cols] for i in range(0, len(tiles), cols)]
    ax.imshow(mosaic(rows, side, pad=pad), interpolation="nearest")
    step = side + pad
    for k, text in enumerate(captions):
        r, c = divmod(k, cols)
        ax.text(
            pad + c * step,
            pad + r * step - 1,
            text,
            fontsize=6.5,
            va="bottom",
            ha="left",
            color=(colours[k] if colours else "black"),
        )
    ax.set_axis_off()


def loss_at_init_figure(per_example: np.ndarray, expected: float, observed: float, task: str) -> Figure:
    """Histogram of the per-example val loss at init (nats for classification, squared error for regression),
    with the expected and observed means as vertical lines: Karpathy's "verify loss @ init" (seeds/004)."""
    fig = new_figure(5, 3.2)
    ax = fig.add_subplot()
    finite = per_example[np.isfinite(per_example)]
    ax.hist(finite, bins=40, color=REAL, alpha=0.8)
    ax.axvline(expected, color="black", linestyle="--", label=f"expected mean {expected:.4g}")
    ax.axvline(observed, color=ZERO, label=f"observed mean {observed:.4g}")
    unit = "cross-entropy, nats" if task_for(task).loss_unit == "nats" else "squared error"
    ax.set_xlabel(f"per-example loss at init ({unit})")
    ax.set_ylabel("val examples")
    ax.set_title("loss at init, before any step")
    ax.legend(fontsize=8)
    return fig


def fixed_seed_figure(
    a: Sequence[float], b: Sequence[float], other: Sequence[float], seed: int, other_seed: int
) -> Figure:
    """Training loss per step of two short runs with ``seed`` and one with ``other_seed``: the first two curves
    must coincide (the recipe's "fix random seed", seeds/004)."""
    fig = new_figure(5, 3.2)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(a) + 1), a, "o-", color=REAL, label=f"seed {seed} (short run)")
    ax.plot(np.arange(1, len(b) + 1), b, "x--", color="black", label=f"seed {seed} again")
    ax.plot(np.arange(1, len(other) + 1), other, "s:", color=OTHER, label=f"seed {other_seed}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("same seed, same losses")
    ax.legend(fontsize=8)
    return fig


def init_well_figure(with_bias: Sequence[float], without_bias: Sequence[float], used: bool) -> Figure:
    """Training loss per step with the final bias set from the data vs the default bias; ``used`` marks which
    one the config uses. The recipe's "init well" (seeds/004): no hockey stick at the start."""
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    ax.plot(
        np.arange(1, len(with_bias) + 1),
        with_bias,
        color=REAL,
        label="final bias from the data" + (" (config)" if used else ""),
    )
    ax.plot(
        np.arange(1, len(without_bias) + 1),
        without_bias,
        color=ZERO,
        label="default bias" + ("" if used else " (config)"),
    )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("init well: no hockey stick at the start")
    ax.legend(fontsize=8)
    return fig


def learning_curves_figure(curves: dict[str, dict[str, Sequence[float]]], task: str) -> Figure:
    """``curves``: run label -> {"smooth": per-step smoothed training loss, "val_step": steps, "val_loss": ...}."""
    fig = new_figure(6, 3.6)
    ax = fig.add_subplot()
    colours = [REAL, ZERO, OTHER, "#8172B2"]
    for (label, c), colour in zip(curves.items(), colours):
        s = np.asarray(c.get("smooth", []), dtype=np.float64)
        ax.plot(np.arange(1, len(s) + 1), s, color=colour, label=f"{label}: train (smoothed)")
        if len(c.get("val_step", [])):
            ax.plot(c["val_step"], c["val_loss"], "o--", color=colour, markersize=4, label=f"{label}: val")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss ({task_for(task).loss_unit})")
    if task_for(task).loss_unit == "MSE":
        ax.set_yscale("log")
    ax.set_title("short run: real inputs vs all-zero inputs")
    ax.legend(fontsize=7)
    return fig


def baselines_figure(values: dict[str, float], metric: str, human: float | None) -> Figure:
    """Bar chart of the val ``metric`` (name -> value; "model" is highlighted, a non-finite value draws as 0)
    against the dumb baselines, with an optional human level as a dashed line (seeds/004, "input-independent
    baseline", "human baseline")."""
    fig = new_figure(1.5 + 1.1 * len(values), 3.2)
    ax = fig.add_subplot()
    names = list(values)
    heights = [values[n] if np.isfinite(values[n]) else 0.0 for n in names]
    bars = ax.bar(names, heights, color=[REAL if n == "model" else "#999999" for n in names])
    for bar, n in zip(bars, names):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{values[n]:.3g}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if human is not None:
        ax.axhline(human, color=OTHER, linestyle="--", label=f"human {human:.3g}")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"val {metric}")
    ax.set_title(f"val {metric}: short run vs dumb baselines")
    return fig


def overfit_figure(
    attempts: list[tuple[str, Sequence[float]]],
    pred: np.ndarray,
    y: np.ndarray,
    task: str,
    class_names: Sequence[str],
    target: float,
) -> Figure:
    """Loss curves of each model size tried, and label vs prediction on the batch for the last one."""
    fig = new_figure(10, 3.6)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    for (label, losses), colour in zip(attempts, [REAL, ZERO, OTHER, "#8172B2"]):
        left.plot(
            np.arange(1, len(losses) + 1),
            np.maximum(np.asarray(losses, dtype=np.float64), 1e-12),
            color=colour,
            label=label,
        )
    left.axhline(target, color="black", linestyle=":", label=f"target {target:.3g}")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("batch loss")
    left.set_title("overfit one batch")
    left.legend(fontsize=7)
    if task_for(task).classifier:
        n, c = pred.shape
        onehot = np.zeros_like(pred)
        onehot[np.arange(n), y.astype(int)] = 1
        both = np.concatenate([onehot, np.full((n, 1), np.nan), pred], axis=1)
        right.imshow(both, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        right.set_xticks([c // 2, c + 1 + c // 2], ["label (one-hot)", "predicted probabilities"])
        right.set_yticks(range(n), [f"#{i} {_label(class_names, int(y[i]))}" for i in range(n)], fontsize=7)
        right.set_title("label vs prediction, per example")
    else:
        lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
        right.plot([lo, hi], [lo, hi], color="black", linestyle=":")
        right.scatter(y, pred.reshape(y.shape), color=REAL)
        right.set_xlabel("target")
        right.set_ylabel("prediction")
        right.set_title("prediction vs target, per example")
    return fig


def batch_dependence_figure(grad: np.ndarray, names: Sequence[str], eval_mode: bool) -> Figure:
    """Heat map of ``grad`` (n, n): gradient magnitude of example i's outputs w.r.t. input j, as log10 of the ratio
    to the diagonal (0 when the diagonal is 0). Off-diagonal mass means examples mix across the batch (seeds/004,
    "use backprop to chart dependencies"); ``names`` label the examples."""
    n = len(grad)
    fig = new_figure(2.5 + 0.45 * n, 2 + 0.4 * n)
    ax = fig.add_subplot()
    own = np.diag(grad)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(own > 0, grad / np.where(own > 0, own, 1), 0.0)
    im = ax.imshow(np.log10(np.maximum(rel, 1e-12)), cmap="magma", vmin=-12, vmax=0)
    fig.colorbar(im, ax=ax, label="log10 gradient at input j / at input i")
    labels = [_label(names, i) for i in range(n)]
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("input j")
    ax.set_ylabel("outputs of example i")
    ax.set_title("batch independence" + (" (eval mode)" if eval_mode else ""))
    return fig


def input_batch_figure(
    images: np.ndarray, labels: Sequence[int], class_names: Sequence[str], title: str, cols: int = 8
) -> Figure:
    """Grid of up to ``MAX_TILES`` images (N, C, H, W) on the 0..1 scale, ``cols`` per row, captioned with their
    class names: the recipe's "visualize just before the net" (seeds/004)."""
    images = images[:MAX_TILES]
    rows = -(-len(images) // cols)
    fig = new_figure(1.1 * min(cols, len(images)) + 0.5, 1.15 * rows + 0.6)
    ax = fig.add_subplot()
    _grid(ax, images, [_label(class_names, int(y)) for y in labels[: len(images)]], cols)
    ax.set_title(title, fontsize=9)
    return fig


def feature_batch_figure(
    decoded: np.ndarray,
    names: Sequence[str],
    train_mean: np.ndarray,
    train_std: np.ndarray,
    title: str,
    max_features: int = 36,
) -> Figure:
    """Tables: each feature of the batch in train standard deviations from the train mean, one box per feature."""
    k = min(decoded.shape[1], max_features)
    std = np.where(train_std[:k] > 1e-12, train_std[:k], 1.0)
    z = (decoded[:, :k] - train_mean[:k]) / std
    fig = new_figure(2 + 0.35 * k, 3.6)
    ax = fig.add_subplot()
    ax.boxplot([z[:, j] for j in range(k)], showfliers=True)
    ax.axhline(0, color="black", linewidth=0.8)
    for v in (-1, 1):
        ax.axhline(v, color=OUTLIER_COLOUR, linestyle=":", linewidth=0.8)
    ax.set_xticks(range(1, k + 1), [_label(names, j) for j in range(k)], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("(value - train mean) / train std")
    ax.set_title(title, fontsize=9)
    return fig


def prediction_dynamics_figure(
    snapshots: Sequence[tuple[int, np.ndarray]], y: np.ndarray, task: str, class_names: Sequence[str]
) -> Figure:
    """Classification: p(true class) per example over the epochs, and the predicted distributions at init,
    halfway and at the end. Regression: each example's prediction over the epochs, with its target."""
    epochs = [e + 1 for e, _ in snapshots]  # -1 (init) -> 0
    n = len(y)
    if not task_for(task).classifier:
        fig = new_figure(6, 3.6)
        ax = fig.add_subplot()
        preds = np.stack([p.reshape(-1) for _, p in snapshots])
        from matplotlib import colormaps

        cmap = colormaps["tab20"]
        for i in range(n):
            ax.plot(epochs, preds[:, i], color=cmap(i % 20), linewidth=1)
            ax.scatter([epochs[-1] + 0.3], [y[i]], marker="_", s=80, color=cmap(i % 20))
        ax.set_xlabel("epoch (0 = init); dashes: targets")
        ax.set_ylabel("prediction")
        ax.set_title(f"prediction dynamics on {n} fixed val examples")
        return fig
    fig = new_figure(11, 3.8)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    p_true = np.stack([p[np.arange(n), y.astype(int)] for _, p in snapshots])
    correct = np.stack([p.argmax(1) == y for _, p in snapshots])[-1]
    for i in range(n):
        left.plot(epochs, p_true[:, i], color=REAL if correct[i] else ZERO, alpha=0.7, linewidth=1)
    left.plot(epochs, p_true.mean(1), color="black", linewidth=2.5, label="mean")
    left.set_ylim(0, 1.02)
    left.set_xlabel("epoch (0 = init)")
    left.set_ylabel("p(true class)")
    left.set_title("per example (red: still wrong at the end)")
    left.legend(fontsize=8)
    picks = sorted({0, len(snapshots) // 2, len(snapshots) - 1})
    c = snapshots[0][1].shape[1]
    blocks = []
    for k in picks:
        blocks += [snapshots[k][1], np.full((n, 1), np.nan)]
    right.imshow(
        np.concatenate(blocks[:-1], axis=1), cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest"
    )
    right.set_xticks([j * (c + 1) + c // 2 for j in range(len(picks))], [f"epoch {epochs[k]}" for k in picks])
    right.set_yticks(range(n), [_label(class_names, int(v)) for v in y], fontsize=6)
    right.set_title("predicted distributions (rows: examples, labelled with their class)", fontsize=9)
    return fig


def augmentation_figure(
    clean: np.ndarray,
    augmented: np.ndarray,
    labels: Sequence[int],
    pred_clean: Sequence[int],
    pred_aug: Sequence[int],
    class_names: Sequence[str],
    title: str,
    cols: int = 8,
) -> Figure:
    """Clean val images above their augmented copies, captioned label / prediction (red when wrong)."""
    k = min(len(clean), cols * 2)
    rows_img: list[np.ndarray] = []
    caps: list[str] = []
    colours: list[str] = []
    for start in range(0, k, cols):
        idx = list(range(start, min(start + cols, k)))
        for src, pred in ((clean, pred_clean), (augmented, pred_aug)):
            for i in idx:
                rows_img.append(src[i])
                caps.append(f"{_label(class_names, int(labels[i]))}/{_label(class_names, int(pred[i]))}")
                colours.append("black" if int(pred[i]) == int(labels[i]) else OUTLIER_COLOUR)
            for _ in range(cols - len(idx)):  # keep rows aligned
                rows_img.append(np.ones_like(src[0]))
                caps.append("")
                colours.append("black")
    fig = new_figure(1.1 * cols + 0.5, 1.15 * len(rows_img) / cols + 0.6)
    ax = fig.add_subplot()
    _grid(ax, np.stack(rows_img), caps, cols, colours)
    ax.set_title(title, fontsize=9)
    return fig
