"""The model card and the recipe-progress figure: the story of a run for people, not for the gate."""

from __future__ import annotations

import math

from recipe.card import model_card
from recipe.plots.progress import progress_figure


def _report():
    check = {"name": "c", "hypothesis": "h", "observed": "o", "expected": "e", "verdict": "pass", "advice": ""}
    warn = {**check, "name": "gap_shrinks", "verdict": "warn", "observed": "gap 0.1 -> 0.2", "advice": "look"}
    return {
        "recipe": "digits",
        "verdict": "warn",
        "parent_run_id": "abc",
        "forced": False,
        "stages": [
            {
                "stage": "overfit",
                "verdict": "pass",
                "metrics": {"val/loss": 0.08, "val/accuracy": 0.981},
                "checks": [check],
                "notes": ["trained cnn width 32"],
            },
            {
                "stage": "regularize",
                "verdict": "warn",
                "metrics": {"val/loss": 0.05, "val/accuracy": 0.989},
                "checks": [check, warn],
                "notes": [f"n{i}" for i in range(9)],
            },
        ],
    }


def test_the_card_tells_each_stage_and_ends_with_the_test_table():
    rows = [
        {
            "model": "champion: ensemble of 5",
            "metric": "accuracy",
            "value": 0.991,
            "low": 0.98,
            "high": 0.998,
            "params": 120000,
        },
        {"model": "rbf_svm", "metric": "accuracy", "value": 0.987, "low": 0.975, "high": 0.996},
    ]
    text = model_card(
        _report(),
        test_rows=rows,
        champion={"what": "ensemble of 5 cnn", "uri": "models:/digits@champion", "version": 3},
    )
    assert text.startswith("# Model card: digits\n")
    assert "### overfit: PASS" in text and "Headline: val/loss 0.08, val/accuracy 0.981." in text
    assert "- **gap_shrinks** (warn): gap 0.1 -> 0.2 — look" in text
    assert "- ... and 3 more (stage_result.json)" in text
    assert "| champion: ensemble of 5 | accuracy | 0.991 | [0.98, 0.998] | 120000 |" in text
    assert text.index("## Test split") > text.index("### regularize")
    assert "mlflow.pyfunc.load_model('models:/digits@champion')" in text


def test_the_progress_figure_draws_stages_baselines_and_the_test_interval():
    fig = progress_figure(
        [("baselines", 0.9), ("overfit", 0.98), ("tune", math.nan), ("squeeze", 0.99)],
        "accuracy",
        baselines={"majority": 0.1, "linear": 0.95, "classical (rbf_svm)": 0.985},
        test=(0.991, 0.98, 0.998),
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baselines", "overfit", "tune", "squeeze"]
    assert list(ax.lines[0].get_xdata()) == [0, 1, 3]  # a stage without the metric is skipped, not drawn at 0
    assert len([ln for ln in ax.lines if ln.get_linestyle() in (":", "--", "-.")]) == 3
