"""The terminal summary says what each stage did on its own, not only its checks."""

from __future__ import annotations

import pytest
from rich.console import Console

from recipe.report import MAX_NOTES, render_summary


def test_the_summary_prints_stage_notes_capped_with_a_count():
    notes = ["task: regression, because the target 'mpg' holds 188 distinct numbers"] + [
        f"note {i}" for i in range(MAX_NOTES + 2)
    ]
    check = {
        "name": "feature_nulls",
        "hypothesis": "h",
        "observed": "o",
        "expected": "e",
        "verdict": "warn",
        "advice": "filled with the train median",
    }
    report = {
        "recipe": "cars",
        "verdict": "warn",
        "stages": [{"stage": "inspect", "verdict": "warn", "checks": [check], "notes": notes}],
    }
    console = Console(record=True, width=200)
    render_summary(report, console)
    text = console.export_text()
    assert "note: task: regression, because the target 'mpg' holds 188 distinct numbers" in text
    assert f"note: note {MAX_NOTES - 2}" in text and f"note: note {MAX_NOTES - 1}" not in text
    assert "(3 more notes in the JSON report)" in text
    assert "what to do: filled with the train median" in text
    # the hypothesis is labelled as what was expected, not printed as the finding's heading
    heading = next(line for line in text.splitlines() if line.strip().startswith("WARN"))
    assert heading.strip() == f"WARN {check['name']}"
    assert f"hypothesis (not confirmed): {check['hypothesis']}" in text


@pytest.mark.parametrize(
    ("note", "sentence"),
    [
        (
            "champion: student (T=4, 30 epochs) (rule student_if_close: the student distilled from the ensemble, at "
            "a single network's cost: the ensemble does not beat it beyond 1 se (val accuracy 0.99 vs student's "
            "0.9875 (paired gain 0.0025, se 0.003)))",
            "The champion is the student (T=4, 30 epochs), chosen on validation by rule student_if_close: the student "
            "distilled from the ensemble, at a single network's cost: the ensemble does not beat it beyond 1 se (val "
            "accuracy 0.99 vs student's 0.9875 (paired gain 0.0025, se 0.003)).",
        ),
        (
            "champion: ensemble of 5 members (seeds 0..4) (rule ensemble_first: the ensemble, also the best on val "
            "accuracy (0.99))",
            "The champion is the ensemble of 5 members (seeds 0..4), chosen on validation by rule ensemble_first: the "
            "ensemble, also the best on val accuracy (0.99).",
        ),
        ("champion: longer", "The champion: longer."),  # a note without a rule: said as it is
    ],
)
def test_the_summary_ends_with_the_test_table_and_why_the_champion_was_chosen(note, sentence):
    metrics = {}
    for kind, value in [
        ("champion", 0.993),
        ("single", 0.978),
        ("ensemble", 0.993),
        ("student", 0.993),
        ("classical", 0.996),
        ("linear", 0.96),
        ("majority", 0.1),
    ]:
        metrics |= {f"test/{kind}_accuracy": value, f"test/{kind}_accuracy_low": value - 0.01}
        metrics[f"test/{kind}_accuracy_high"] = min(1.0, value + 0.005)
    squeeze = {
        "stage": "squeeze",
        "verdict": "pass",
        "checks": [],
        "metrics": metrics | {"val/accuracy": 0.99},
        "notes": [f"note {i}" for i in range(MAX_NOTES + 3)] + [note],
    }
    report = {"recipe": "digits", "verdict": "pass", "stages": [squeeze]}
    console = Console(record=True, width=200)
    render_summary(report, console)
    lines = [line.strip() for line in console.export_text().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("test accuracy (read once"))
    assert lines[start - 1] == "recipe digits: PASS"  # after the verdict: the summary's last words
    table = "\n".join(lines[start:])
    for label in (
        "champion",
        "best single network",
        "ensemble",
        "distilled student",
        "tuned classical model",
        "linear baseline",
        "dumb baseline",
    ):
        assert label in table
    assert "0.9930" in table and "[0.9830, 0.9980]" in table and "[0.0900, 0.1050]" in table
    assert lines[-1] == sentence
    # no squeeze stage, no test table
    console = Console(record=True, width=200)
    render_summary({"recipe": "digits", "verdict": "pass", "stages": [squeeze | {"stage": "tune"}]}, console)
    assert "test accuracy" not in console.export_text()


def _check(name: str, verdict: str = "pass", observed: float | str = 0.5, advice: str = "") -> dict:
    return {
        "name": name,
        "hypothesis": f"{name} holds",
        "observed": observed,
        "expected": "< 1",
        "verdict": verdict,
        "advice": advice,
    }


def test_a_reused_stage_is_one_line_and_keeps_only_what_did_not_pass():
    """A second run reuses its stages from MLflow: their tables were printed by the run that made them, so each
    gets one line (verdict, counts, run, where the table is); a stage that ran now keeps its full table."""
    passing = [_check(f"passing_check_{i}") for i in range(12)]
    inspect = {"stage": "inspect", "verdict": "pass", "run_id": "r-inspect", "checks": passing, "notes": ["n"] * 3}
    warned = {
        "stage": "baselines",
        "verdict": "warn",
        "run_id": "r-base",
        "checks": [
            *passing[:5],
            _check("beats_linear", "warn", "0.91 vs linear 0.93", "train longer (--set budget.epochs=20)"),
            _check("label_noise", "warn", 0.07),
        ],
        "diagnosis": {"summary": "the network is behind the linear model", "lead": "beats_linear"},
        "notes": ["reused run r-base (same config, data and code)"],
    }
    fresh = {"stage": "overfit", "verdict": "pass", "run_id": "r-new", "checks": passing, "notes": []}
    report = {
        "recipe": "digits",
        "verdict": "warn",
        "stages": [inspect, warned, fresh],
        "reused": ["inspect", "baselines"],
    }
    console = Console(record=True, width=200)
    render_summary(report, console)
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    inspect_lines = [line for line in lines if "inspect" in line]
    assert inspect_lines == [
        "stage inspect: PASS, 12 checks: 12 pass; up to date: reused run r-inspect (same config, data and code; its "
        "table: checks.json of that MLflow run, or --report FILE)"
    ]
    start = lines.index(inspect_lines[0])
    assert start == 0
    assert lines[start + 1].startswith("stage baselines: WARN, 7 checks: 5 pass, 2 warn; up to date: reused run r-base")
    assert lines[start + 2] == "  diagnosis: the network is behind the linear model"
    # the non-passing checks, lead first, one line each: name, observed, advice
    assert lines[start + 3] == (
        "  WARN beats_linear: observed 0.91 vs linear 0.93; what to do: train longer (--set budget.epochs=20)"
    )
    assert lines[start + 4] == "  WARN label_noise: observed 0.07"
    assert lines[start + 5].startswith("stage overfit: PASS")  # the fresh stage: its table, a row per check
    fresh_part = lines[start + 5 : lines.index("recipe digits: WARN")]
    assert sum("passing_check_" in line for line in fresh_part) == 12
    assert sum("passing_check_" in line for line in lines[: start + 5]) == 0  # no table for reused stages
    assert not any("note:" in line or "hypothesis" in line for line in lines[: start + 5])
    # the reused stages take 5 lines in all; then the fresh table and the recipe's verdict, nothing else
    assert len(lines) == start + 5 + len(fresh_part) + 1
