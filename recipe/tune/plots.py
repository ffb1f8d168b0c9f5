"""The tune stage's figures (matplotlib, built as bare Figures like :mod:`recipe.plots`).

- :func:`history`: the objective (validation loss) of every trial in order, pruned and failed ones marked, with
  the best so far as a step line (Optuna's "optimisation history").
- :func:`importances`: Optuna's parameter importances as bars.
- :func:`slice_plot`: one parameter's value against the objective over all complete trials (the Tuning
  Playbook's "axis plot": a best point at the edge of the range says to widen it), with the best trial
  and the handed-on value marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from recipe.plots import new_figure
from recipe.tune.space import Dim

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _value(t: FrozenTrial) -> float:
    if t.state == TrialState.COMPLETE and t.value is not None:
        return t.value
    if t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return math.nan


def history(trials: Sequence[FrozenTrial], reference: float | None = None) -> Figure:
    """Optuna's "optimisation history": the objective (final validation loss) of each complete trial by trial
    number, pruned trials at their last reported value, failed trials as vertical lines, the best so far as a
    step line and ``reference`` (the handed-on config's retrained mean) as a dashed line; log y-axis when the
    values span more than 20x."""
    fig = new_figure(7, 4)
    ax = fig.add_subplot()
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ax.scatter([t.number for t in done], [t.value for t in done], s=18, label="complete", color="#4C72B0")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and math.isfinite(_value(t))]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [_value(t) for t in pruned],
            s=22,
            marker="x",
            color="#8C8C8C",
            label="pruned (last reported)",
        )
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    for i, n in enumerate(failed):
        ax.axvline(n, color="#C44E52", alpha=0.25, lw=1, label="failed" if i == 0 else None)
    if done:
        order = sorted(done, key=lambda t: t.number)
        best, xs, ys = math.inf, [], []
        for t in order:
            best = min(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="#DD8452", label="best so far")
    if reference is not None and math.isfinite(reference):
        ax.axhline(reference, color="#55A868", ls="--", lw=1, label="handed-on config (retrained, mean)")
    values = [t.value for t in done] + [_value(t) for t in pruned]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")  # a few failed-to-learn trials at chance level would flatten the rest
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss")
    ax.set_title("optimisation history")
    ax.legend(fontsize=8)
    return fig


def importances(values: Mapping[str, float]) -> Figure:
    """Horizontal bars of parameter importances (name -> share, summing to 1, as
    ``optuna.importance.get_param_importances`` returns them), the first name on top."""
    names = list(values)[::-1]
    fig = new_figure(6, 1 + 0.4 * max(1, len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [values[n] for n in names], color="#4C72B0")
    ax.set_xlabel("importance (share, Optuna's evaluator)")
    ax.set_title("parameter importances")
    return fig


def slice_plot(dim: Dim, trials: Sequence[FrozenTrial], best: FrozenTrial | None, base_value: object) -> Figure:
    """The Deep Learning Tuning Playbook's "axis plot" of ``dim``: validation loss of every complete trial
    against its value (coloured by trial number), the range's bounds dotted, ``best`` as a star and the
    handed-on ``base_value`` dashed (numeric dims only). A best point at a bound says to widen the range."""
    fig = new_figure(5, 3.5)
    ax = fig.add_subplot()
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and dim.name in t.params]
    xs = [t.params[dim.name] for t in done]
    if not dim.numeric:
        xs = [str(x) for x in xs]
    ax.scatter(xs, [t.value for t in done], c=[t.number for t in done], cmap="viridis", s=20)
    if best is not None and dim.name in best.params:
        bx = best.params[dim.name] if dim.numeric else str(best.params[dim.name])
        ax.scatter([bx], [best.value], marker="*", s=160, color="#C44E52", label="best", zorder=3)
    if dim.numeric:
        d = dim.distribution
        for edge in (d.low, d.high):
            ax.axvline(edge, color="#8C8C8C", ls=":", lw=1)
        if isinstance(base_value, (int, float)) and not isinstance(base_value, bool):
            ax.axvline(float(base_value), color="#55A868", ls="--", lw=1, label="handed on")
        if d.log:
            ax.set_xscale("log")
    values = [t.value for t in done]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel(f"{dim.name} ({dim.key})")
    ax.set_ylabel("validation loss")
    ax.set_title(f"slice: {dim.name} (colour: trial number)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig
