"""The model card: the story of a recipe run in markdown, for the parent run and the registered version.

One section per stage (its verdict, the headline numbers, what it did and why, from its notes), then the
test table squeeze measured once, with bootstrap intervals, and how to load and use the champion. The layout
follows the spirit of "Model Cards for Model Reporting" (Mitchell et al., 2019), cut to what this tool knows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from recipe.report import lead_first

HEADLINE_KEYS = ("val/loss", "val/accuracy", "val/mae", "train/loss", "train/accuracy", "train/mae")
NOTES_PER_STAGE = 6


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def model_card(
    report: Mapping[str, Any],
    *,
    test_rows: Sequence[Mapping[str, Any]] = (),
    champion: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> str:
    """Markdown text. ``report``: the recipe's JSON report (``recipe.report.report_dict``). ``test_rows``: one
    mapping per model tested (model, metric, value, low, high, and optional params / latency_ms / note).
    ``champion``: name, version, uri, what it is. ``data``: source, fingerprint, split sizes, task, classes."""
    lines = [f"# Model card: {report['recipe']}", ""]
    if champion:
        lines += [
            f"**Champion**: {champion.get('what', '')} — registered as `{champion.get('uri', '')}` "
            f"(version {champion.get('version', '?')}).",
            "",
        ]
    verdict = report.get("verdict", "?")
    lines += [
        f"Recipe verdict: **{verdict.upper()}**"
        + (" (forced past a failure)" if report.get("forced") else "")
        + f"; MLflow parent run `{report.get('parent_run_id')}`.",
        "",
    ]
    if data:
        lines += ["## Data", ""] + [f"- {k}: {_fmt(v)}" for k, v in data.items()] + [""]
    lines += ["## Stages", ""]
    for stage in report.get("stages", []):
        lines += _stage_section(stage)
    if test_rows:
        lines += _test_table(test_rows)
    if champion:
        uri = champion.get("uri", "models:/<name>@champion")
        lines += [
            "## Using the champion",
            "",
            "```python",
            "import mlflow, pandas as pd",
            f"model = mlflow.pyfunc.load_model({uri!r})",
            "model.predict(pd.DataFrame({'path': ['image.png']}))   # images; tables: a DataFrame of rows",
            "```",
            "",
            f"or from a shell: `flows predict --model {uri} FOLDER_OR_CSV --out predictions.csv`",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _stage_section(stage: Mapping[str, Any]) -> list[str]:
    metrics = stage.get("metrics", {})
    head = [f"{k} {_fmt(metrics[k])}" for k in HEADLINE_KEYS if k in metrics]
    out = [f"### {stage['stage']}: {stage['verdict'].upper()}", ""]
    if head:
        out += ["Headline: " + ", ".join(head) + ".", ""]
    diagnosis = stage.get("diagnosis")
    if diagnosis:  # the leading cause before the list it orders
        out += [f"Diagnosis: {diagnosis['summary']}.", ""]
    failing = [c for c in lead_first(stage.get("checks", []), diagnosis) if c["verdict"] != "pass"]
    passing = len(stage.get("checks", [])) - len(failing)
    out.append(f"{passing} of {len(stage.get('checks', []))} checks passed." + (" Not passing:" if failing else ""))
    out += [
        f"- **{c['name']}** ({c['verdict']}): {c['observed']}" + (f" — {c['advice']}" if c.get("advice") else "")
        for c in failing
    ]
    notes = [n for n in stage.get("notes", []) if not diagnosis or n != diagnosis.get("summary")]
    if notes:
        out += ["", "What it did:"] + [f"- {n}" for n in notes[:NOTES_PER_STAGE]]
        if len(notes) > NOTES_PER_STAGE:
            out.append(f"- ... and {len(notes) - NOTES_PER_STAGE} more (stage_result.json)")
    return [*out, ""]


def _test_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    extra = [k for k in ("params", "latency_ms", "note") if any(k in r for r in rows)]
    header = ["model", "test metric", "value", "95% interval", *extra]
    out = ["## Test split (read once, by squeeze)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        interval = f"[{_fmt(r['low'])}, {_fmt(r['high'])}]" if "low" in r else ""
        cells = [str(r["model"]), str(r["metric"]), _fmt(r["value"]), interval, *(_fmt(r.get(k, "")) for k in extra)]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]
