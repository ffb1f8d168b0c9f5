"""What a Prefect flow run of the recipe shows in the Prefect UI: artifacts per stage, a summary, its name, its log.

The ``recipe`` package never imports Prefect; this module turns its results into what a user of the Prefect UI
reads (Prefect 3 artifacts, https://docs.prefect.io/v3/develop/artifacts):

- per stage, under the stable key ``recipe-<recipe>-<stage>`` (:func:`artifact_key`), a table artifact of the
  checks (check, verdict, observed, expected, advice) and, under ``recipe-<recipe>-<stage>-mlflow``, where to find
  its MLflow run: a link artifact when the tracking URI is an http(s) server, else a markdown artifact with the run
  id and the ``mlflow ui`` command that opens the store;
- for the flow run, under ``recipe-<recipe>-summary``, a markdown summary: each stage's verdict and time (or the
  run it reused), then the champion and the test table when the squeeze stage ran;
- the flow run's name, ``<recipe>:<stage asked for>`` (as the MLflow parent run), from :func:`flow_run_name`;
- :func:`forward_recipe_logs`: the ``recipe`` package's log records (verdicts, advice, trial outcomes) sent to the
  flow run's log in the Prefect API, so a deployment run's log tells the story without the CLI.

Keys keep Prefect's rule (lowercase letters, digits and dashes only); a stable key makes the Artifacts page show
one entry per recipe and stage whose history is every night's result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from recipe.report import StageResult, _fmt

KEY_PREFIX = "recipe"


def artifact_key(recipe: str, *parts: str) -> str:
    """``recipe-<recipe>-<part>...`` in Prefect's key alphabet: lowercase, every run of other characters one dash.

    >>> artifact_key("Digits_v2", "overfit")
    'recipe-digits-v2-overfit'
    """
    words = [KEY_PREFIX, recipe, *parts]
    return "-".join(w for w in (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in words) if w)


def flow_run_name() -> str:
    """The flow run's name from its parameters: ``<recipe>:<stage>`` (``digits:overfit``), ``<recipe>:recipe`` for
    every stage -- the name of the MLflow parent run, so the two UIs can be matched by eye. A config that cannot
    be loaded yet (the flow reports that error) names the run after the preset."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    stage = params.get("stage") or "recipe"
    cfg = params.get("config")
    name = getattr(cfg, "name", None) or (cfg.get("name") if isinstance(cfg, dict) else None)
    if not name:
        from recipe.config import load_config

        preset = params.get("preset") or "digits"
        try:
            name = load_config(preset=preset).name
        except Exception:  # the flow itself reports a bad preset; the name must not hide that error
            name = str(preset)
    return f"{name}:{stage}"


def checks_table(result: StageResult) -> list[dict[str, str]]:
    """The stage's checks as table rows (check, verdict, observed, expected, advice), numbers to 4 digits."""
    return [
        {
            "check": c.name,
            "verdict": c.verdict.value.upper(),
            "observed": _fmt(c.observed),
            "expected": _fmt(c.expected),
            "advice": c.advice,
        }
        for c in result.checks
    ]


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI's page of a run when the tracking URI is an http(s) server; None for a local store."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _not_fatal(what: str, fn: Any, *args: Any, **kw: Any) -> None:
    """Run ``fn``; an error of the Prefect API while creating artifacts is a warning in the run's log, never the
    end of a stage whose results are already in MLflow."""
    try:
        fn(*args, **kw)
    except Exception as e:
        from prefect.logging import get_run_logger

        get_run_logger().warning("could not create the Prefect artifacts of %s: %s: %s", what, type(e).__name__, e)


def publish_stage(recipe: str, result: StageResult, run_id: str | None, reused: bool = False) -> None:
    """Create the stage's checks table and its MLflow pointer (see the module docstring); call inside a flow or
    task run, so Prefect links the artifacts to it. A failure of the Prefect API is a warning in the run's log."""
    _not_fatal(f"stage {result.stage}", _publish_stage, recipe, result, run_id, reused)


def _publish_stage(recipe: str, result: StageResult, run_id: str | None, reused: bool) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    how = f"reused MLflow run {run_id} (up to date)" if reused else f"MLflow run {run_id}"
    create_table_artifact(
        table=checks_table(result),
        key=artifact_key(recipe, result.stage),
        description=f"stage {result.stage}: {result.verdict.value.upper()} -- {how}",
    )
    if not run_id:
        return
    import mlflow

    uri = mlflow.get_tracking_uri()
    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    key = artifact_key(recipe, result.stage, "mlflow")
    url = mlflow_run_url(uri, experiment_id, run_id)
    if url:
        create_link_artifact(link=url, link_text=f"{recipe} / {result.stage} in MLflow", key=key, description=how)
        return
    create_markdown_artifact(
        markdown=(
            f"### stage {result.stage}: MLflow run `{run_id}`\n\n"
            f"Experiment `{recipe}` (id {experiment_id}) in the store `{uri}`. Open it with\n\n"
            f"```\nmlflow ui --backend-store-uri {uri}\n```\n\n"
            f"then *Experiments* → `{recipe}` → *Model training* → *Runs* → the run `{result.stage}`."
        ),
        key=key,
        description=how,
    )


def summary_markdown(report: dict[str, Any], seconds: dict[str, float]) -> str:
    """The flow run's summary: a table of stages (verdict, time in seconds or the run reused, MLflow run), the
    checks that did not pass with their advice, then the champion and the test table when squeeze ran."""
    reused = set(report.get("reused") or [])
    lines = [
        f"## recipe `{report['recipe']}`: {report['verdict'].upper()}",
        "",
        "| stage | verdict | time | MLflow run |",
        "|---|---|---|---|",
    ]
    for s in report["stages"]:
        took = "reused" if s["stage"] in reused else f"{seconds.get(s['stage'], float('nan')):.1f} s"
        lines.append(f"| {s['stage']} | {s['verdict'].upper()} | {took} | `{s['run_id']}` |")
    for name in report.get("skipped") or []:
        lines.append(f"| {name} | not run | | |")
    if report.get("stopped_at"):
        lines += ["", f"Stopped at **{report['stopped_at']}**, which failed its checks."]
    advice = [(s["stage"], c) for s in report["stages"] for c in s["checks"] if c["verdict"] != "pass"]
    if advice:
        lines += ["", "### What to look at", ""]
        lines += [
            f"- **{st}: {c['name']}** ({c['verdict'].upper()}): {c['advice'] or c['hypothesis']}" for st, c in advice
        ]
    lines += _test_table(report)
    return "\n".join(lines) + "\n"


def _test_table(report: dict[str, Any]) -> list[str]:
    """The squeeze stage's champion and test metrics (``test/<model>_<metric>`` with ``_low``/``_high``)."""
    squeeze = next((s for s in report["stages"] if s["stage"] == "squeeze"), None)
    if squeeze is None:
        return []
    m = squeeze["metrics"]
    out = ["", "### Champion and test split", ""]
    if "squeeze/champion_networks" in m:
        out.append(
            f"Champion: {_fmt(m['squeeze/champion_networks'])} network(s), "
            f"{_fmt(m.get('squeeze/champion_params', 'nan'))} parameters (MLflow run `{squeeze['run_id']}`).\n"
        )
    rows = sorted(k for k in m if k.startswith("test/") and not k.endswith(("_low", "_high")))
    if rows:
        out += ["| model and metric | test | interval |", "|---|---|---|"]
        for k in rows:
            low, high = m.get(f"{k}_low"), m.get(f"{k}_high")
            interval = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ""
            out.append(f"| {k.removeprefix('test/')} | {_fmt(m[k])} | {interval} |")
    return out


def publish_summary(report: dict[str, Any], seconds: dict[str, float]) -> None:
    """Create the flow run's summary artifact (key ``recipe-<recipe>-summary``); ``seconds``: wall time per stage
    that ran. A failure of the Prefect API is a warning in the run's log."""
    from prefect.artifacts import create_markdown_artifact

    _not_fatal(
        "the flow run's summary",
        create_markdown_artifact,
        markdown=summary_markdown(report, seconds),
        key=artifact_key(report["recipe"], "summary"),
        description=f"recipe {report['recipe']}: {report['verdict'].upper()}",
    )


@task(name="stage-reused", task_run_name="stage-{stage}-reused", cache_policy=NO_CACHE, persist_result=False)
def reused_stage(recipe: str, stage: str, result: StageResult) -> State:
    """A stage reused from MLflow, as a completed task in the flow run's graph whose state message names the run
    it reuses; it creates the stage's artifacts from that run's checks and emits its verdict event."""
    from flows.notify import emit_verdict

    publish_stage(recipe, result, result.run_id, reused=True)
    emit_verdict(recipe, result, result.run_id, reused=True)
    return Completed(message=f"stage {stage}: up to date, reused MLflow run {result.run_id}")


@contextmanager
def forward_recipe_logs(level: int = logging.INFO) -> Iterator[None]:
    """Send the ``recipe`` logger's records (``level`` and up) to the current flow run's log in the Prefect API
    for the block. Nothing is added when the logger already has Prefect's API handler (the operator set
    ``PREFECT_LOGGING_EXTRA_LOGGERS=recipe``), so no record is sent twice. The terminal is the CLI's business:
    it shows the summary table and filters these records out of its console (``flows/cli.py``)."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("recipe")
    if any(isinstance(h, APILogHandler) for h in logger.handlers):
        yield
        return
    handler = APILogHandler()
    handler.setLevel(level)
    old = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


__all__ = [
    "artifact_key",
    "checks_table",
    "flow_run_name",
    "forward_recipe_logs",
    "mlflow_run_url",
    "publish_stage",
    "publish_summary",
    "reused_stage",
    "summary_markdown",
]
