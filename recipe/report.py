"""Checks, stage results and verdicts: the contract between stages, the flow, MLflow and the user.

A stage states hypotheses and tests them; each test is a :class:`Check` with what was
observed, what was expected and a verdict. A :class:`StageResult` gathers a stage's checks,
metrics and the config it hands on. The JSON report written by ``--report`` is a stable
contract for users who gate their own CI on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recipe.config import RecipeConfig

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")  # the published JSON schema of the report


class Verdict(str, Enum):
    """A check's or stage's outcome: pass, warn or fail, ordered by ``rank``; ``worst`` of none is PASS."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {"pass": 0, "warn": 1, "fail": 2}[self.value]

    @staticmethod
    def worst(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
        return max(verdicts, key=lambda v: v.rank, default=Verdict.PASS)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Check:
    """One tested hypothesis of a stage: the observed and expected values (numbers in the metric's or loss's
    units, or text), the verdict, and advice when it is not PASS."""

    name: str  # "loss_at_init"
    hypothesis: str  # "loss at init ≈ -log(1/10) = 2.303 nats"
    observed: float | str
    expected: float | str
    verdict: Verdict
    advice: str = ""  # what to look at when it is not PASS
    consequence_of: str = ""  # the check whose confirmed cause this one likely follows from (recipe.diagnosis)

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values (NaN/inf and other non-JSON values as text), as in the report schema;
        ``consequence_of`` only when set."""
        out = {
            "name": self.name,
            "hypothesis": self.hypothesis,
            "observed": _jsonable(self.observed),
            "expected": _jsonable(self.expected),
            "verdict": self.verdict.value,
            "advice": self.advice,
        }
        if self.consequence_of:
            out["consequence_of"] = self.consequence_of
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Check:
        return cls(
            d["name"],
            d["hypothesis"],
            d["observed"],
            d["expected"],
            Verdict(d["verdict"]),
            d.get("advice", ""),
            d.get("consequence_of") or "",
        )


@dataclass
class StageResult:
    """What a stage hands on: its verdict (the worst of its checks), checks, metrics (MLflow keys -> values),
    the config the next stage starts from, and the MLflow run, checkpoint and artifacts it produced."""

    stage: str
    verdict: Verdict
    checks: list[Check]
    metrics: dict[str, float]
    config: RecipeConfig  # what the next stage starts from
    checkpoint_uri: str | None = None  # MLflow artifact URI of the stage's best weights
    run_id: str | None = None  # the stage's MLflow run
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> local path or URI, for later stages
    notes: list[str] = field(default_factory=list)  # what the stage did that the user should know
    diagnosis: dict[str, Any] | None = None  # recipe.diagnosis.Diagnosis.to_dict(): the leading cause, when any

    @classmethod
    def from_checks(
        cls, stage: str, checks: list[Check], metrics: dict[str, float], config: RecipeConfig, **kw: Any
    ) -> StageResult:
        """A result whose verdict is the worst of ``checks`` (PASS when there are none); ``kw`` sets the other
        fields."""
        return cls(stage, Verdict.worst([c.verdict for c in checks]), checks, metrics, config, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The stage's entry of the JSON report (``report.schema.json``): metrics sorted by key and JSON-safe; the
        config and artifacts are left out."""
        out: dict[str, Any] = {"stage": self.stage, "verdict": self.verdict.value}
        if self.diagnosis:  # the leading cause first, before the checks it orders
            out["diagnosis"] = dict(self.diagnosis)
        return out | {
            "run_id": self.run_id,
            "metrics": {k: _jsonable(v) for k, v in sorted(self.metrics.items())},
            "checks": [c.to_dict() for c in self.checks],
            "checkpoint_uri": self.checkpoint_uri,
            "notes": list(self.notes),
        }


# --- the JSON report's schema (pydantic models; published as recipe/report.schema.json) -----------------------

JSONValue = float | int | str | bool | None  # NaN and inf are written as the strings "nan", "inf"
VerdictName = Literal["pass", "warn", "fail"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # readers must ignore keys they do not know


class CheckReport(_Model):
    """One check: a hypothesis tested, what was observed against what was expected, the verdict."""

    name: str = Field(description="the check's stable name, e.g. loss_at_init")
    hypothesis: str = Field(description="what the check expects to be true, with its numbers")
    observed: JSONValue = Field(description="what was measured (a number or a sentence)")
    expected: JSONValue = Field(description="what passes")
    verdict: VerdictName
    advice: str = Field("", description="what to look at when the verdict is not pass")
    consequence_of: str | None = Field(
        None, description="present when the check likely follows from another check's cause: that check's name"
    )


class DiagnosisReport(_Model):
    """The stage's findings read together (recipe.diagnosis): the leading cause first, the rest as consequences."""

    lead: str | None = Field(description="the check whose evidence leads (null: none)")
    confirmed: bool = Field(description="the lead saw a specific cause; false: only the most specific symptom")
    evidence: str = Field(description="the lead's observed text")
    consequences: list[str] = Field(description="checks marked as likely consequences of the lead")
    also_confirmed: list[str] = Field(description="other confirmed causes, independent of the lead")
    lr: Literal["raise", "lower"] | None = Field(
        None, description="the one learning-rate direction the stage advises, when its checks disagreed"
    )
    lr_evidence: str | None = Field(None, description="what decided the learning-rate direction")
    lr_overruled: list[str] | None = Field(None, description="checks whose learning-rate advice was overruled")
    summary: str = Field(description="the diagnosis in one line")


class StageReport(_Model):
    """One stage's result."""

    stage: str = Field(description="inspect, baselines, overfit, regularize, ...")
    verdict: VerdictName = Field(description="the worst verdict of the stage's gated checks")
    diagnosis: DiagnosisReport | None = Field(
        None, description="present when checks did not pass together: the leading cause first"
    )
    run_id: str | None = Field(description="the stage's MLflow run")
    metrics: dict[str, JSONValue] = Field(description="the stage's numbers, by MLflow metric key")
    checks: list[CheckReport]
    checkpoint_uri: str | None = Field(description="MLflow artifact URI of the weights the stage hands on")
    notes: list[str] = Field(description="what the stage did that the user should know")


class RunningStage(_Model):
    """The stage a stopped run was in the middle of."""

    stage: str
    run_id: str | None = Field(description="its MLflow run: it carries no verdict and never counts as passing")


class StoppedReport(_Model):
    """Why a run stopped before its summary: a signal (verdict ``interrupted``) or a backend that failed
    (verdict ``error``)."""

    reason: Literal["signal", "backend"]
    exit_code: int = Field(description="the exit code of flows run: 130 / 143 for SIGINT / SIGTERM, 3 a backend")
    signal: str | None = Field(None, description="SIGINT or SIGTERM (reason signal)")
    error: str | None = Field(None, description="what failed: the backend's error, or an error while it stopped")
    running: RunningStage | None = Field(description="the stage that was running (null: between stages)")
    kept: list[str] = Field(description="the recorded stages the next run reuses")
    resume: str = Field(description="the command that resumes the run")


class Report(_Model):
    """The report ``flows run recipe --report PATH`` writes: a stable contract to gate CI on."""

    recipe: str = Field(description="the recipe's name (the MLflow experiment)")
    verdict: Literal["pass", "warn", "fail", "interrupted", "error"] = Field(
        description="the worst stage verdict; interrupted (a signal) or error (a backend failed) when the run "
        "stopped before its end: then `stopped` says why and `stages` holds the stages recorded before"
    )
    parent_run_id: str | None = Field(description="the flow's MLflow parent run")
    forced: bool = Field(description="--force carried on past a failed stage")
    stages: list[StageReport] = Field(description="the stages that ran or were reused, in order")
    skipped: list[str] = Field(default_factory=list, description="stages not run after a failure")
    reused: list[str] = Field(default_factory=list, description="stages reused from a passing MLflow run")
    stopped_at: str | None = Field(None, description="the failed stage the run stopped at")
    stopped: StoppedReport | None = Field(
        None, description="present when a signal or a backend failure stopped the run (verdict interrupted / error)"
    )


def report_schema() -> dict[str, Any]:
    """The JSON schema of the report (:class:`Report`), as published in ``recipe/report.schema.json``."""
    return Report.model_json_schema()


def report_dict(
    recipe: str,
    results: list[StageResult],
    parent_run_id: str | None,
    forced: bool = False,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON report: ``{"recipe", "verdict", "parent_run_id", "forced", "stages": [...], "skipped"}``,
    validated against :class:`Report` (ValidationError on a value that breaks the published schema)."""
    report = Report(
        recipe=recipe,
        verdict=Verdict.worst([r.verdict for r in results]).value,
        parent_run_id=parent_run_id,
        forced=forced,
        stages=[r.to_dict() for r in results],
        skipped=list(skipped or []),
    )
    return report.model_dump(mode="json", exclude_unset=True)


def stopped_report_dict(
    recipe: str,
    results: list[StageResult],
    parent_run_id: str | None,
    stopped: dict[str, Any],
    forced: bool = False,
    reused: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON report of a run stopped before its end (``stopped``: a :class:`StoppedReport`'s fields):
    verdict ``interrupted`` for ``reason`` signal, ``error`` for a backend; ``results``: the stages recorded before
    it stopped, as in a finished run's report. ValidationError on a value that breaks the published schema."""
    report = Report(
        recipe=recipe,
        verdict="interrupted" if stopped["reason"] == "signal" else "error",
        parent_run_id=parent_run_id,
        forced=forced,
        stages=[r.to_dict() for r in results],
        reused=list(reused or []),
        stopped=stopped,
    )
    return report.model_dump(mode="json", exclude_unset=True)


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Validate ``report`` against :class:`Report` and write it as indented JSON to ``path``."""
    Report.model_validate(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep the information as text
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return str(v)


MAX_NOTES = 8  # notes per stage in the terminal summary; the JSON report holds them all
VERDICT_COLOUR = {"pass": "green", "warn": "yellow", "fail": "red"}  # rich styles of the verdicts on a terminal


def reused_note(run_id: str) -> str:
    """The note a stage reused from MLflow carries (recipe.tracking.find_passing_stage), in the JSON report and
    MLflow; the summary says it in the stage's one line instead."""
    return f"reused run {run_id} (same config, data and code)"


def render_summary(report: dict[str, Any], console: Any = None) -> None:
    """The terminal summary: per stage, a table of checks (observed vs expected, verdict), then for each
    check that did not pass its hypothesis and advice in full -- the part a user acts on. A stage reused from an
    earlier run (listed in ``report["reused"]``) gets one line instead (verdict, check counts, the run, where its
    table is) and one line per check that did not pass: its table was printed by the run that made it, and a
    rerun to get the champion back should not print it again. After a squeeze stage it
    ends with the test table (champion, best single network, ensemble, student, classical, linear and dumb
    baselines, each with its bootstrap interval) and one sentence on why the champion was chosen."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    colour = VERDICT_COLOUR
    reused = set(report.get("reused") or [])
    for stage in report["stages"]:
        v = stage["verdict"]
        if stage["stage"] in reused:  # shown in full by the run that made it: one line, and what did not pass
            _reused_stage(stage, console)
            continue
        table = Table(title=f"stage {stage['stage']}: [{colour[v]}]{v.upper()}[/]", title_justify="left")
        table.add_column("check", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column("observed", overflow="ellipsis", max_width=60)
        table.add_column("expected", overflow="ellipsis", max_width=40)
        for c in stage["checks"]:
            table.add_row(
                c["name"],
                f"[{colour[c['verdict']]}]{c['verdict']}[/]",
                escape(_fmt(c["observed"])),
                escape(_fmt(c["expected"])),
            )
        console.print(table)
        diagnosis = stage.get("diagnosis")
        if diagnosis:  # the leading cause first, before the notes and the details of every check
            console.print(f"  [bold]diagnosis:[/] {escape(diagnosis['summary'])}", soft_wrap=True, highlight=False)
        # the diagnosis also leads the notes (for MLflow and the model card); printed once here
        notes = [n for n in stage.get("notes") or [] if not diagnosis or n != diagnosis.get("summary")]
        for note in notes[:MAX_NOTES]:  # what the stage did on its own (fills, rotations, the task it chose)
            console.print(f"  note: {escape(note)}", soft_wrap=True, highlight=False)
        if len(notes) > MAX_NOTES:
            console.print(f"  ({len(notes) - MAX_NOTES} more notes in the JSON report)", highlight=False)
        for c in lead_first(stage["checks"], diagnosis):
            if c["verdict"] != "pass":
                # The hypothesis is what the check expected, so it goes on its own labelled line: printed as the
                # heading of a WARN/FAIL it read as the finding ("WARN versus_classical: the champion is at least
                # as good ..." when the classical model was ahead).
                console.print(
                    f"  [{colour[c['verdict']]}]{c['verdict'].upper()}[/] [bold]{c['name']}[/]", soft_wrap=True
                )
                console.print(
                    f"    hypothesis (not confirmed): {escape(c['hypothesis'])}", soft_wrap=True, highlight=False
                )
                console.print(f"    observed: {escape(_fmt(c['observed']))}", soft_wrap=True, highlight=False)
                if c["advice"]:
                    console.print(f"    what to do: {escape(c['advice'])}", soft_wrap=True, highlight=False)
    v = report["verdict"]
    forced = " (forced past a failure)" if report.get("forced") else ""
    console.print(f"recipe [bold]{report['recipe']}[/]: [{colour[v]}]{v.upper()}[/]{forced}")
    squeeze = next((st for st in report["stages"] if st["stage"] == "squeeze"), None)
    if squeeze is not None:
        _test_table(squeeze, console)


def check_counts(checks: list[dict[str, Any]]) -> str:
    """``"12 checks: 10 pass, 2 warn"``: how many checks a stage ran and how many had each verdict (pass, warn,
    fail order; verdicts with none left out)."""
    counts = {v: sum(c["verdict"] == v for c in checks) for v in ("pass", "warn", "fail")}
    by_verdict = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"{len(checks)} check{'s' if len(checks) != 1 else ''}" + (f": {by_verdict}" if by_verdict else "")


def _reused_stage(stage: dict[str, Any], console: Any) -> None:
    """A stage reused from an earlier run (recipe.tracking.find_passing_stage) in the summary: one line with its
    verdict, check counts, the run and where its table is, then, for a WARN, each check that did not pass on one
    line (name, observed, advice) and the diagnosis -- the table itself was printed by the run that made it."""
    from rich.markup import escape

    colour = VERDICT_COLOUR
    v, run_id = stage["verdict"], stage.get("run_id")
    console.print(
        f"stage {stage['stage']}: [{colour[v]}]{v.upper()}[/], {check_counts(stage['checks'])}; up to date: "
        f"reused run {run_id} (same config, data and code; its table: checks.json of that MLflow run, or "
        "--report FILE)",
        soft_wrap=True,
        highlight=False,
    )
    diagnosis = stage.get("diagnosis")
    if diagnosis and v != "pass":
        console.print(f"  [bold]diagnosis:[/] {escape(diagnosis['summary'])}", soft_wrap=True, highlight=False)
    for c in lead_first(stage["checks"], diagnosis):
        if c["verdict"] != "pass":
            advice = f"; what to do: {escape(c['advice'])}" if c["advice"] else ""
            console.print(
                f"  [{colour[c['verdict']]}]{c['verdict'].upper()}[/] [bold]{c['name']}[/]: observed "
                f"{escape(_fmt(c['observed']))}{advice}",
                soft_wrap=True,
                highlight=False,
            )


# the test table's rows, in the order a reader compares them: the chosen model, what it was chosen from, the bars
TEST_ROWS = (
    ("champion", "champion"),
    ("single", "best single network"),
    ("ensemble", "ensemble"),
    ("student", "distilled student"),
    ("classical", "tuned classical model"),
    ("linear", "linear baseline"),
    ("majority", "dumb baseline"),
)


def test_table_rows(metrics: dict[str, Any]) -> tuple[str, list[tuple[str, float, float, float]]]:
    """The squeeze stage's test scores from its metrics (``test/<kind>_<metric>`` with ``_low``/``_high``, the
    bootstrap 95% interval): the metric's name and ``(label, value, low, high)`` per model in :data:`TEST_ROWS`
    order (models the stage did not score are left out)."""
    champion = [k for k in metrics if k.startswith("test/champion_") and not k.endswith(("_low", "_high"))]
    metric = champion[0].removeprefix("test/champion_") if champion else ""
    rows = []
    for kind, label in TEST_ROWS:
        key = f"test/{kind}_{metric}"
        values = [metrics.get(key + suffix) for suffix in ("", "_low", "_high")]
        if all(isinstance(x, (int, float)) for x in values):
            rows.append((label, *(float(x) for x in values)))
    return metric, rows


def _test_table(squeeze: dict[str, Any], console: Any) -> None:
    """The summary's last words: the test table of the squeeze stage and why the champion was chosen."""
    from rich.markup import escape
    from rich.table import Table

    metric, rows = test_table_rows(squeeze.get("metrics") or {})
    if not rows:
        return
    table = Table(title=f"test {metric} (read once, bootstrap 95% interval)", title_justify="left")
    for name in ("model", f"test {metric}", "95% interval"):
        table.add_column(name, no_wrap=True)
    for label, value, low, high in rows:
        table.add_row(label, f"{value:.4f}", f"[{low:.4f}, {high:.4f}]")
    console.print(table)
    why = next((n.removeprefix("champion: ") for n in squeeze.get("notes") or [] if n.startswith("champion: ")), "")
    if why:  # squeeze's note "champion: WHAT (rule NAME: REASON)" (recipe.squeeze.selection)
        cut = why.find(" (rule ")
        what, reason = (why[:cut], why[cut + 2 :].removesuffix(")")) if cut >= 0 else (why, "")
        what = what if what.startswith(("the ", "a ", "an ")) else f"the {what}"  # "the weighted ensemble (...)"
        sentence = f"The champion is {what}, chosen on validation by {reason}." if reason else f"The champion: {why}."
        console.print(escape(sentence), soft_wrap=True, highlight=False)


def lead_first(checks: list[dict[str, Any]], diagnosis: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The checks with the diagnosis's lead first, its consequences last, the rest in stage order between."""
    if not diagnosis or not diagnosis.get("lead"):
        return checks
    lead = diagnosis["lead"]
    return sorted(checks, key=lambda c: 0 if c["name"] == lead else 2 if c.get("consequence_of") else 1)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
