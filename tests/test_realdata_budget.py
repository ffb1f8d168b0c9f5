"""bench/realdata.py's budget lines (#19): the wall time of each set over ``budget.minutes`` and the largest."""

from __future__ import annotations

from bench.realdata import Outcome, budget_minutes, lines


def test_budget_minutes_follows_the_last_set_as_the_cli_does():
    assert budget_minutes(["data.target=y", "budget.minutes=10"]) == 10.0
    assert budget_minutes(["budget.minutes=10", "budget.minutes=null"]) is None
    assert budget_minutes(["budget.epochs=20"]) is None


def test_each_sets_overrun_and_the_largest_are_printed_beside_the_other_lines():
    runs = [
        Outcome("attrition", 0, test={"champion": 0.887}, wall_minutes=7.5, budget_notes={"tune": "PASS: cut"}),
        Outcome("sacramento", 0, test={"champion": 53723.0}, wall_minutes=12.5),
    ]
    out = lines(runs, [], minutes=10.0)
    assert "attrition_budget_overrun: 0.75" in out and "sacramento_budget_overrun: 1.25" in out
    assert "attrition_budget_tune: PASS: cut" in out
    assert out[-2:] == ["budget_minutes: 10", "budget_overrun_max: 1.25"]
    assert "attrition_champion_test: 0.8870" in out and "total_minutes: 20.0" in out
    assert not [x for x in lines(runs, []) if "budget" in x]  # an epoch-sized run prints no budget lines
