"""The recipe's story in one figure: the headline validation metric of each stage's chosen model, stage by
stage, against the dumb, linear and classical baselines (horizontal lines) and, where squeeze has run, the
champion's test score with its bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from recipe.plots import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASELINE_STYLES = {"majority": ":", "mean": ":", "linear": "--", "classical": "-."}


def progress_figure(
    stages: Sequence[tuple[str, float]],
    metric: str,
    *,
    higher_is_better: bool = True,
    baselines: Mapping[str, float] | None = None,
    test: tuple[float, float, float] | None = None,
) -> Figure:
    """``stages``: (stage name, val metric) in recipe order (NaN: the stage reports none). ``baselines``: label
    -> value, drawn as horizontal lines. ``test``: the champion's (value, low, high) test score, drawn after
    the last stage with its interval."""
    fig = new_figure(1.2 * len(stages) + 4, 4)
    ax = fig.add_subplot()
    xs = [i for i, (_, v) in enumerate(stages) if isinstance(v, (int, float)) and math.isfinite(v)]
    ys = [stages[i][1] for i in xs]
    ax.plot(xs, ys, "o-", color="#4C72B0", label=f"val {metric} of the stage's model")
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(f"{y:.4g}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    for label, value in (baselines or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            style = next((s for k, s in BASELINE_STYLES.items() if label.startswith(k)), "--")
            ax.axhline(value, linestyle=style, color="grey", linewidth=1)
            ax.text(len(stages) - 0.5, value, f" {label} {value:.4g}", va="center", fontsize=8, color="grey")
    if test is not None:
        v, lo, hi = test
        ax.errorbar(
            [len(stages) - 1 + 0.25],
            [v],
            yerr=[[v - lo], [hi - v]],
            fmt="s",
            color="#C44E52",
            capsize=4,
            label="champion, test (95% bootstrap interval)",
        )
    ax.set_xticks(range(len(stages)), [name for name, _ in stages])
    ax.set_xlim(-0.5, len(stages) + 0.5)
    better = "higher" if higher_is_better else "lower"
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.set_title("the recipe, stage by stage")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig
