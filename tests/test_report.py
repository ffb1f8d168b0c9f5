"""The terminal summary says what each stage did on its own, not only its checks."""

from __future__ import annotations

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
