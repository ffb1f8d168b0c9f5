"""Squeeze under a budget's deadline (recipe.squeeze.runs.train_members): after the budget's minimum of members,
no wave of members starts that would end, with the runs after the members and the stage's work outside its
runs, past the deadline; the note says how many ran and ``members_run`` counts them for the plan. Fake clock,
fake trial map, no training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from recipe.config import RecipeConfig
from recipe.squeeze import runs
from recipe.tune.trial import TrialResult


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def squeeze_ctx(monkeypatch, tmp_path):
    """A squeeze Context whose members take 10 s each on a fake clock through a fake trial map (each member
    "fails", so no checkpoint is loaded), and the MLflow runs they would get, faked."""
    clock = Clock()
    monkeypatch.setattr(runs, "time", SimpleNamespace(time=clock, perf_counter=clock))
    created, killed, mapped = [], [], []

    class Client:
        def create_run(self, experiment_id, run_name, tags):
            created.append(run_name)
            return SimpleNamespace(info=SimpleNamespace(run_id=f"r{len(created)}"))

        def set_terminated(self, run_id, status):
            killed.append((run_id, status))

    def trial_map(fn, specs):
        mapped.append([s.name for s in specs])
        clock.now += 10.0  # a wave of up to `parallel` members side by side: one member's time
        return [TrialResult(s.name, "failed", note="fake member") for s in specs]

    monkeypatch.setattr(runs, "MlflowClient", Client)
    monkeypatch.setattr(runs, "_why_not_together", lambda sc, members: "separate runs in this test")
    monkeypatch.setattr(runs.Context, "tags", lambda self, kind, name: {})

    def make(
        deadline_in: float | None, fixed_s: float = 20.0, parallel: int = 1, members: int = 5, longer: float = 1.5
    ):
        cfg = RecipeConfig().with_overrides(
            {
                "stages.squeeze.members": members,
                "stages.squeeze.longer": longer,
                "stages.squeeze.snapshots": 5,
                "stages.squeeze.distill": True,
                "stages.tune.parallel": parallel,
            }
        )
        ctx = SimpleNamespace(
            cfg=cfg,
            input_cfg=cfg,
            workdir=Path(tmp_path),
            map=trial_map,
            deadline=None if deadline_in is None else clock.now + deadline_in,
            fixed_s=fixed_s,
        )
        data = SimpleNamespace(fingerprint="f" * 12)
        return runs.Context(ctx, cfg, data, None, cfg.stages.squeeze, 4, "squeeze-run", "0")

    return SimpleNamespace(make=make, clock=clock, created=created, killed=killed, mapped=mapped)


def test_no_member_starts_that_would_end_past_the_deadline_with_the_rest_of_the_stage(squeeze_ctx):
    # after the members (member 0's run also averages its weights): longer ceil(1.5) = 2 + snapshots 1 + student
    # 1 = 4 runs of 10 s, and 20 s of work outside the runs: a member wave needs 10 + 60 s. 90 s to the deadline:
    # members 0 (the minimum), 1 (70 <= 80 left) and 2 (70 <= 70), not 3 (70 > 60)
    sc = squeeze_ctx.make(deadline_in=90.0)
    members, notes = runs.train_members(sc)
    assert squeeze_ctx.mapped == [["member0"], ["member1"], ["member2"]]
    assert sc.members_run == 3 and squeeze_ctx.created == [f"squeeze:member{k}" for k in range(3)]
    said = [n for n in notes if n.startswith("budget: ")]
    assert said == [
        "budget: squeeze trained 3 of 5 members: a member took 10.0 s, so one more and the stage's other runs and "
        "work (60 s) need about 70 s, and 60 s of the stage's share of budget.minutes is left"
    ]
    assert members == [] and len([n for n in notes if "did not train" in n]) == 3  # the fake members failed


def test_the_minimum_member_runs_even_past_the_deadline_and_without_one_all_run(squeeze_ctx):
    sc = squeeze_ctx.make(deadline_in=0.0)
    runs.train_members(sc)
    assert sc.members_run == 1 and squeeze_ctx.mapped == [["member0"]]  # the budget's minimum: 1 member

    squeeze_ctx.mapped.clear()
    sc = squeeze_ctx.make(deadline_in=None)  # epoch-sized runs and --plan replays: every member, one map call
    runs.train_members(sc)
    assert sc.members_run == 5 and squeeze_ctx.mapped == [[f"member{k}" for k in range(5)]]


def test_members_go_in_waves_of_the_parallel_trials(squeeze_ctx):
    # two side by side, a wave taking one member's time (10 s); 85 s to the deadline: the first wave (the
    # minimum and one more), the second (70 s needed, 75 left), not a third (70 needed, 65 left)
    sc = squeeze_ctx.make(deadline_in=85.0, parallel=2)
    _, notes = runs.train_members(sc)
    assert squeeze_ctx.mapped == [["member0", "member1"], ["member2", "member3"]]
    assert sc.members_run == 4 and any(n.startswith("budget: squeeze trained 4 of 5 members") for n in notes)


def test_the_second_member_is_kept_before_the_long_run_which_is_then_cut_to_what_is_left(squeeze_ctx):
    """The budget keeps an ensemble (two members) before squeeze's long run (recipe.budget.Knob's tiers): a
    deadline that fits the second member only without the long run trains it, and the long run is then cut.
    Attrition at budget.minutes=10 had stopped at 1 member (no ensemble) to keep a 3-budget long run."""
    # 70 s: member0; member1 needs 10 + (snapshot, student: 20 s) + 20 s of work = 50 <= 60 left (with the
    # 2-budget long run counted it needed 70); member2 is past the keep: 70 > 50
    sc = squeeze_ctx.make(deadline_in=70.0)
    runs.train_members(sc)
    assert sc.members_run == 2 and sc.member_s == 10.0
    # 50 s left: the snapshot run and the student (20 s) and 20 s of work leave 10 s, under 2 budgets: left out
    note = runs.longer_to_deadline(sc, 2)
    assert note == (
        "budget: the long run left out (of 2): a member took 10.0 s, and 10 s of the stage's share is left "
        "after the runs and work that follow it"
    )
    assert (sc.s.longer, sc.longer_budgets) == (1.0, 1)


def test_the_long_run_is_cut_to_the_budgets_that_fit_and_kept_whole_when_they_all_do(squeeze_ctx):
    sc = squeeze_ctx.make(deadline_in=65.0, longer=3.0)
    sc.member_s = 10.0  # 65 - 20 s of work - snapshot and student 20 s = 25 s: 2 budgets of 3
    assert runs.longer_to_deadline(sc, 2).startswith("budget: the long run cut to 2 budgets (of 3)")
    assert (sc.s.longer, sc.longer_budgets) == (2.0, 2)
    whole = squeeze_ctx.make(deadline_in=200.0, longer=3.0)
    whole.member_s = 10.0
    assert runs.longer_to_deadline(whole, 2) is None and whole.longer_budgets == 3
    free = squeeze_ctx.make(deadline_in=None, longer=3.0)  # no budget: never cut
    free.member_s = 10.0
    assert runs.longer_to_deadline(free, 2) is None and free.s.longer == 3.0
