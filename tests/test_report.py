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
