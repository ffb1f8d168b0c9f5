"""The description that heads a stage's run page in the MLflow UI: its verdict table, advice and child runs.

MLflow shows a run's ``mlflow.note.content`` tag, rendered as markdown, as the run's *Description* at the top of
its page (https://mlflow.org/docs/latest/ml/tracking/); the UI does not link a parent run to its children, so the
description lists them by name and id.
"""

from __future__ import annotations

from collections.abc import Sequence

from recipe.report import StageResult, _fmt

NOTE_TAG = "mlflow.note.content"  # MLflow's own tag for a run's description
MAX_CHILDREN = 30  # listed in the description; the rest are counted (a large tune study has hundreds)
MAX_CELL = 160  # characters of an observed/expected value in the table


def _cell(v: object) -> str:
    text = " ".join(_fmt(v).split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def stage_description(result: StageResult, children: Sequence[tuple[str, str]] = ()) -> str:
    """Markdown: the stage's verdict, a table of its checks (check, verdict, observed, expected), the advice of
    each check that did not pass, then its child runs (``(name, run_id)`` pairs, at most :data:`MAX_CHILDREN`
    listed)."""
    lines = [
        f"**stage {result.stage}: {result.verdict.value.upper()}**",
        "",
        "| check | verdict | observed | expected |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c.name} | {c.verdict.value.upper()} | {_cell(c.observed)} | {_cell(c.expected)} |" for c in result.checks
    ]
    advice = [c for c in result.checks if c.verdict.value != "pass"]
    if advice:
        lines += ["", "What to do:", ""]
        lines += [f"- **{c.name}** ({c.verdict.value.upper()}): {c.advice or c.hypothesis}" for c in advice]
    if children:
        lines += ["", f"Child runs ({len(children)}):", ""]
        lines += [f"- {name}: `{run_id}`" for name, run_id in children[:MAX_CHILDREN]]
        if len(children) > MAX_CHILDREN:
            lines.append(f"- … and {len(children) - MAX_CHILDREN} more (filter the runs by this run's id)")
    return "\n".join(lines) + "\n"
