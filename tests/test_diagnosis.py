"""One cause first: the ordering rule as a table of cases, the learning-rate contradictions resolved by the
evidence, every rule's phrase pinned to the advice it reads, and the report showing the lead first."""

from __future__ import annotations

import io
import math

import pytest

from recipe.checks import skeleton as sk
from recipe.checks.base import finding
from recipe.checks.curves import RATIO_ADVICE, diagnose_curves, update_ratio_check
from recipe.config import RecipeConfig
from recipe.diagnosis import CAUSES, LR_RULES, SYMPTOMS, LossTrend, diagnose, directions, loss_trend
from recipe.report import Report, Verdict, render_summary, report_dict
from recipe.stages.ending import finish
from recipe.stages.overfit import decide_lr
from recipe.train.callbacks import LRSuggestion

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
GENERIC = "check that the model returns logits, that the labels match, that gradients reach every weight"


def f(name: str, verdict: Verdict, advice: str = GENERIC, observed: str | None = None):
    return finding(name, f"{name} holds", observed or f"{name} seen", "-", verdict, advice)


# case -> (findings as (name, verdict), lead, confirmed, consequences, also confirmed)
ORDERING = {
    "a confirmed cause leads its symptoms": (
        [("trainable_parameters", FAIL), ("overfit_one_batch", FAIL), ("training_loss_decreases", WARN)],
        "trainable_parameters",
        True,
        ["overfit_one_batch", "training_loss_decreases"],
        [],
    ),
    "the cause leads wherever it stands": (
        [("fixed_seed", FAIL), ("loss_at_init", PASS), ("eval_deterministic", FAIL)],
        "eval_deterministic",
        True,
        ["fixed_seed"],
        [],
    ),
    "the most specific of two causes leads; the other stays independent": (
        [("finite_loss", FAIL), ("output_layer", FAIL), ("overfit_one_batch", FAIL)],
        "output_layer",
        True,
        ["overfit_one_batch"],
        ["finite_loss"],
    ),
    "a WARN cause never leads": (
        [("batchnorm_train_mode", WARN), ("overfit_one_batch", FAIL)],
        None,
        False,
        [],
        [],
    ),
    "no cause: the most specific of two failed symptoms leads, unconfirmed": (
        [("dumb_baselines", FAIL), ("input_independent", FAIL), ("human_metric", WARN)],
        "input_independent",
        False,
        ["dumb_baselines", "human_metric"],
        [],
    ),
    "one failed symptom alone: nothing to order": ([("overfit_one_batch", FAIL)], None, False, [], []),
    "checks outside the tables are never marked": (
        [("eval_deterministic", FAIL), ("duplicates", WARN), ("fixed_seed", FAIL)],
        "eval_deterministic",
        True,
        ["fixed_seed"],
        [],
    ),
    "all pass": ([("trainable_parameters", PASS), ("overfit_one_batch", PASS)], None, False, [], []),
}


@pytest.mark.parametrize("case", list(ORDERING))
def test_the_ordering_rule(case):
    given, lead, confirmed, consequences, also = ORDERING[case]
    findings = [f(n, v) for n, v in given]
    out, d = diagnose(findings)
    before = {x.name: x.check.advice for x in findings}
    assert [x.name for x in out] == [n for n, _ in given]  # the stage's order is kept
    assert (d.lead, d.confirmed, list(d.consequences), list(d.also)) == (lead, confirmed, consequences, also)
    for x in out:
        if x.name in consequences:
            assert x.check.consequence_of == lead
            word = "likely" if confirmed else "possibly"
            assert x.check.advice.startswith(f"{word} a consequence of {lead}")
            # the generic list of possibilities appears only when no specific cause was confirmed
            assert (GENERIC in x.check.advice) is (not confirmed)
        else:
            assert x.check.consequence_of == "" and x.check.advice == before[x.name]
    assert bool(d) is (lead is not None)


def test_the_confirmed_cause_is_quoted_as_evidence():
    cause = f("trainable_parameters", FAIL, observed="requires_grad=False on 2,480 of 2,650 parameters: body.0")
    out, d = diagnose([cause, f("overfit_one_batch", FAIL)])
    assert d.evidence == "requires_grad=False on 2,480 of 2,650 parameters: body.0"
    assert out[1].check.advice.startswith("likely a consequence of trainable_parameters, a confirmed cause")
    assert d.sentence().startswith("leading cause: trainable_parameters (requires_grad=False")


def test_the_tables_do_not_overlap():
    assert not set(CAUSES) & set(SYMPTOMS) and set(LR_RULES) <= set(CAUSES) | set(SYMPTOMS)


# --- the learning rate: one direction per stage ---------------------------------------------------------------


def lr_findings():
    """The issue's failed overfit: curves say raise, the update ratios say lower, the LR finder says raise lr_max;
    every finding built by the check that makes it in the product."""
    slow = diagnose_curves([2.3 - 0.02 * t for t in range(30)], [2.35 - 0.02 * t for t in range(30)])
    ratios = update_ratio_check([(s, {"conv1": -1.5, "head": -1.6}) for s in range(10)])
    sugg = LRSuggestion(1e-3, "valley", lr_at_min=0.9, lr_steepest=1e-3, start_loss=2.3, min_loss=1.0, diverged=False)
    _, finder = decide_lr(1e-3, sugg, 3.0, 1.0)
    return [*slow, ratios, finder]


@pytest.mark.parametrize(
    "trend, win, overruled",
    [
        (LossTrend(True, "the training loss rose from 2.3 to 4.1"), "lower", {"curves_lr_too_low", "lr_finder"}),
        (LossTrend(False, "the training loss fell from 2.3 to 1.7 without rising"), "raise", {"update_ratio"}),
        (None, "lower", {"curves_lr_too_low", "lr_finder"}),  # update_ratio ranks first in LR_RULES
    ],
    ids=["loss-rose", "loss-fell", "no-curve"],
)
def test_contradictory_lr_advice_is_resolved_by_the_evidence(trend, win, overruled):
    findings = lr_findings()
    said = {x.name: directions(x) for x in findings if directions(x)}
    assert said == {
        "curves_lr_too_low": ["raise"],
        "curves_underfitting": ["raise"],
        "update_ratio": ["lower"],
        "lr_finder": ["raise"],
    }  # the contradiction as the product gives it today
    overruled |= {"curves_underfitting"} if win == "lower" else set()
    out, d = diagnose(findings, trend=trend)
    assert d.lr == win and set(d.overruled) == overruled
    left = {dd for x in out for dd in directions(x)}
    assert left == {win}  # one stage never gives opposite advice
    for x in out:
        if x.name in overruled:
            assert f"{win} it rather than" in x.check.advice
            if win == "lower":  # one check on the winning side: "says" (a new user read "as lr_finder say")
                assert "as update_ratio says:" in x.check.advice, x.check.advice
            if win == "raise" and trend is not None:  # a falling loss shows "not too high"; the others say "too low"
                assert "so the learning rate is too low" not in x.check.advice, x.check.advice
                assert "no rate too high, and curves_lr_too_low, curves_underfitting, lr_finder say it is too low" in (
                    x.check.advice
                ), x.check.advice
            if trend is not None:
                assert trend.text in x.check.advice


def test_update_ratios_on_both_sides_keep_only_the_winning_half():
    ratios = update_ratio_check([(s, {"conv1": -1.5, "head": -5.0}) for s in range(10)])
    assert directions(ratios) == ["lower", "raise"]  # one check, both directions
    out, d = diagnose([ratios], trend=LossTrend(True, "the training loss rose from 2.3 to 3"))
    assert d.lr == "lower" and directions(out[0]) == ["lower"]
    assert RATIO_ADVICE["high"] in out[0].check.advice and "init and gradient flow" in out[0].check.advice


def test_a_divergence_and_a_slow_loss_in_baselines_agree_on_lower():
    slow = f("training_loss_decreases", WARN, sk._advice("training_loss_decreases.slow", margin=0.1, steps=100))
    nan = f("finite_loss", FAIL, sk.ADVICE["finite_loss.diverged"])
    out, d = diagnose([slow, nan], trend=loss_trend([2.3, 2.2, math.nan]))
    assert d.lead == "finite_loss" and out[0].check.consequence_of == "finite_loss"
    assert {dd for x in out for dd in directions(x)} == {"lower"}


def test_every_rule_reads_a_phrase_the_products_advice_holds():
    advice = {
        "finite_loss": sk.ADVICE["finite_loss.diverged"],
        "update_ratio": " ".join(RATIO_ADVICE.values()),
        "training_loss_decreases": sk.ADVICE["training_loss_decreases.slow"],
        "overfit_one_batch": sk.ADVICE["overfit_one_batch.still_falling"],
        "lr_finder": lr_findings()[-1].check.advice,
    }
    plateau = diagnose_curves([2.3, 1.0, *[0.95] * 28], [2.35, 1.05, *[1.0] * 28])
    for x in [*plateau, *lr_findings()]:
        if x.verdict is not PASS:
            advice.setdefault(x.name, x.check.advice)
    for name, rules in LR_RULES.items():
        for phrase, _ in rules:
            assert phrase in advice[name], (name, phrase)


@pytest.mark.parametrize(
    "losses, start, rose",
    [
        ([2.3, 2.2, 2.0, 1.5], None, False),
        ([2.3, 2.6, 2.4], None, True),
        ([2.3, 2.4, 2.0], None, False),  # within 10% of the start: noise, not a rise
        ([2.0, 1.9], 2.3, False),
        ([2.3, math.inf], None, True),
    ],
)
def test_loss_trend(losses, start, rose):
    assert loss_trend(losses, start).rose is rose


def test_loss_trend_needs_two_points():
    assert loss_trend([2.3]) is None


# --- the stage result and the report ---------------------------------------------------------------------------


def test_finish_leads_the_notes_and_the_report_with_the_cause_and_the_schema_holds():
    findings = [
        f("fixed_seed", FAIL, sk.ADVICE["fixed_seed.not_reproducible"]),
        f("eval_deterministic", FAIL, "pass training=self.training", "functional dropout left on in eval"),
    ]
    result = finish("baselines", findings, RecipeConfig(), notes=["short run: 160 steps"])
    assert result.notes[0].startswith("leading cause: eval_deterministic (functional dropout left on in eval)")
    seed = result.checks[0]
    assert seed.consequence_of == "eval_deterministic" and "seed every source" not in seed.advice
    report = report_dict("r", [result], None)
    Report.model_validate(report)
    stage = report["stages"][0]
    assert list(stage)[:3] == ["stage", "verdict", "diagnosis"]  # the leading cause first in the JSON
    assert stage["diagnosis"]["lead"] == "eval_deterministic" and stage["diagnosis"]["consequences"] == ["fixed_seed"]
    assert stage["checks"][0]["consequence_of"] == "eval_deterministic"
    assert "consequence_of" not in stage["checks"][1]

    from rich.console import Console

    buf = io.StringIO()
    render_summary(report, Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert text.count("leading cause: eval_deterministic") == 1  # not again as a note
    assert text.index("diagnosis: leading cause: eval_deterministic") < text.index("note: short run")
    assert text.index("FAIL eval_deterministic") < text.index("FAIL fixed_seed")  # the lead's details first


def test_a_stage_without_a_diagnosis_keeps_the_reports_shape():
    result = finish("x", [f("a", PASS)], RecipeConfig())
    assert result.diagnosis is None and "diagnosis" not in result.to_dict()


def test_the_model_card_puts_the_diagnosis_before_the_checks_it_orders():
    from recipe.card import model_card

    findings = [
        f("fixed_seed", FAIL, sk.ADVICE["fixed_seed.not_reproducible"]),
        f("eval_deterministic", FAIL, "pass training=self.training", "functional dropout left on in eval"),
    ]
    report = report_dict("r", [finish("baselines", findings, RecipeConfig())], None)
    card = model_card(report)
    assert card.count("leading cause: eval_deterministic") == 1
    assert (
        card.index("Diagnosis: leading cause") < card.index("- **eval_deterministic**") < card.index("- **fixed_seed")
    )
