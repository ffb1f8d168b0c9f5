"""The wall-clock budget (recipe/budget.py): the split across stages with carry-over, sizing from a measured step
time (fake clocks, no training), the WARN when a stage's minimum does not fit, the plan file and its replay."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from recipe import budget
from recipe.budget import Budget, StepCost, share_of, size_stage, stage_cost
from recipe.config import ConfigError, RecipeConfig, config_hash, load_config
from recipe.report import Verdict
from recipe.reuse import stage_key

ORDER = list(budget.SHARES)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_shares_sum_to_one_and_cover_the_six_stages():
    assert sum(budget.SHARES.values()) == pytest.approx(1.0)
    assert ORDER == ["inspect", "baselines", "overfit", "regularize", "tune", "squeeze"]


def test_the_split_is_proportional_and_unused_time_passes_on():
    total = 600.0
    first = share_of("inspect", total, ORDER)
    assert first == pytest.approx(total * budget.SHARES["inspect"])
    clock = FakeClock()
    b = Budget(total, clock=clock)
    clock.now += 1.0  # inspect used 1 s of its 24 s
    rest = ORDER[1:]
    got = b.share("baselines", rest)
    assert got == pytest.approx(599.0 * 0.08 / 0.96)
    assert got > total * budget.SHARES["baselines"]  # the unused 23 s was shared out among the rest
    clock.now += 500.0  # a stage ran far over: the later ones get what is left, in the same proportions
    t, s = b.share("tune", ["tune", "squeeze"]), b.share("squeeze", ["tune", "squeeze"])
    assert t + s == pytest.approx(99.0)
    assert t / s == pytest.approx(0.28 / 0.18)
    clock.now += 1000.0
    assert b.remaining() == 0.0 and b.share("squeeze", ["squeeze"]) == 0.0


def test_a_stage_not_among_those_left_is_an_error():
    with pytest.raises(ValueError, match="not among the stages still to run"):
        share_of("tune", 100.0, ["squeeze"])


COST = StepCost(step_s=0.01, run_s=0.5, steps_per_epoch=20, val_s=0.05)  # 0.25 s an epoch


def test_a_share_large_enough_cuts_nothing():
    cfg = RecipeConfig()
    plan = size_stage("tune", cfg, COST, share_s=1e6)
    assert plan.sizes == {"stages.tune.n_trials": 16, "stages.tune.epochs": 10, "tune.seeds": 3}
    assert plan.note.startswith("nothing cut") and plan.check().verdict is Verdict.PASS
    assert plan.overrides == {"stages.tune.epochs": 10}  # epochs always written (replayed even if unchanged)


def test_sizing_fits_the_share_and_says_what_it_cut():
    cfg = RecipeConfig()
    full = stage_cost("tune", budget.current_sizes("tune", cfg), COST)
    share = full / 4
    plan = size_stage("tune", cfg, COST, share_s=share)
    assert plan.estimate_s <= share
    trials, epochs = plan.sizes["stages.tune.n_trials"], plan.sizes["stages.tune.epochs"]
    assert 2 <= trials < 16 and 2 <= epochs <= 10
    # both shrink: neither knob is taken to its minimum while the other is untouched
    assert trials / 16 == pytest.approx(epochs / 10, abs=0.35)
    assert f"tune trials 16 → {trials}" in plan.note and f"to fit {budget._min(share)}" in plan.note
    check = plan.check()
    assert check.name == "budget" and check.verdict is Verdict.PASS and "cut" in check.observed
    assert plan.overrides["stages.tune.n_trials"] == trials
    # the sized config is a valid config that runs with exactly those sizes
    sized = cfg.with_overrides(plan.overrides)
    assert budget.current_sizes("tune", sized)["stages.tune.n_trials"] == trials


def test_sizing_scales_with_the_measured_step_time():
    cfg = RecipeConfig()
    share = 60.0
    fast = size_stage("squeeze", cfg, StepCost(0.001, 0.1, 20, 0.01), share)
    slow = size_stage("squeeze", cfg, StepCost(0.02, 0.5, 20, 0.1), share)
    f, s = fast.sizes, slow.sizes
    assert (
        f["stages.squeeze.members"] * f["stages.squeeze.epochs"]
        > s["stages.squeeze.members"] * s["stages.squeeze.epochs"]
    )


def test_min_steps_epochs_count_in_the_cost_as_the_stages_raise_them():
    # a small table: 4 steps an epoch, budget.epochs 40 = 160 steps < min_steps 400, so every run's epochs x 2.5
    cost = dataclasses.replace(COST, steps_per_epoch=4, min_steps=400, budget_epochs=40)
    values = {"stages.tune.n_trials": 6, "stages.tune.epochs": 8, "tune.seeds": 1}
    assert budget.run_epochs("tune", values, cost) == 20
    assert stage_cost("tune", values, cost) == pytest.approx(8 * (COST.run_s + 20 * cost.epoch_s))
    one = size_stage("tune", RecipeConfig(), COST, share_s=20.0)
    scaled = size_stage("tune", RecipeConfig(), cost, share_s=20.0)
    assert scaled.estimate_s <= 20.0 * budget.FIT
    assert scaled.epochs_run == math.ceil(scaled.sizes["stages.tune.epochs"] * 2.5)
    assert f"{scaled.epochs_run} epochs a run after budget.min_steps=400" in scaled.note
    assert one.epochs_run == one.sizes["stages.tune.epochs"] and "min_steps" not in one.note


def test_overfit_epochs_are_not_cut_below_the_min_steps_floor_its_rungs_keep():
    """Overfit's rungs take their own epochs as the budget, so min_steps holds each at 100 epochs of 4 steps: a
    cut of its epochs saves nothing, and the sizing cuts rungs, then WARNs with the floor's time."""
    cfg = RecipeConfig().with_overrides({"stages.overfit.epochs": 40, "stages.overfit.max_rungs": 2})
    cost = dataclasses.replace(COST, steps_per_epoch=4, min_steps=400, budget_epochs=40)
    rung_s = COST.run_s + 100 * cost.epoch_s
    assert budget.run_epochs("overfit", {"stages.overfit.max_rungs": 0, "stages.overfit.epochs": 2}, cost) == 100
    plan = size_stage("overfit", cfg, cost, share_s=2.5 * rung_s / budget.FIT)
    assert plan.sizes == {"stages.overfit.max_rungs": 1, "stages.overfit.epochs": 40}  # epochs kept: no saving
    assert plan.estimate_s == pytest.approx(2 * rung_s) and plan.epochs_run == 100
    small = size_stage("overfit", cfg, cost, share_s=0.5 * rung_s)
    assert small.needed_s == pytest.approx(rung_s) and small.check().verdict is Verdict.WARN


def test_a_budgeted_overfit_stops_its_rungs_at_the_target_and_the_plan_replays_it():
    """The budget turns on stages.overfit.stop_at_target (budget.ALWAYS), whatever it cut: the steps min_steps gives
    a rung past the target pass to the stages after. It is in the plan's overrides, so --plan replays it, and in the
    reuse key (an epoch-sized overfit, which trains its whole rungs, is not reused for it)."""
    cfg = RecipeConfig()
    assert cfg.stages.overfit.stop_at_target is False
    for share in (1e9, 1e-3):  # nothing cut; even the minimum over the share
        plan = size_stage("overfit", cfg, COST, share_s=share)
        assert plan.overrides["stages.overfit.stop_at_target"] is True
        assert "each rung stops at the training target" in plan.note
    doc = budget.plan_document(3.0, [plan])
    replayed = budget.replay(cfg, doc["overrides"])
    assert replayed.stages.overfit.stop_at_target is True and replayed.budget.minutes is None
    tune = size_stage("tune", cfg, COST, share_s=1e9)
    assert "stages.overfit.stop_at_target" not in tune.overrides
    order, code = ORDER, "code"
    assert stage_key(replayed, "overfit", "fp", code, order) != stage_key(cfg, "overfit", "fp", code, order)


def test_the_overfit_plan_counts_the_epochs_the_stage_really_trains(mlflow_store, tmp_path, monkeypatch):
    """The tabular preset on its default wine table (1 step an epoch at batch 256, budget.min_steps 400): size
    overfit from a (fake-clock) warm-up to a share that cuts it, run the real stage with the plan's sizes up to
    its capacity ladder, and the epochs the ladder trains are the epochs the plan's estimate counted."""
    import recipe.fit as fit_mod
    from recipe import tracking
    from recipe.stages import overfit
    from recipe.stages.base import StageContext

    cfg = load_config("tabular", overrides=["trainer.progress=false", "stages.overfit.max_rungs=2"])
    data = StageContext(cfg=cfg, input_cfg=cfg).data()
    clock = FakeClock()

    def fake_fit(cfg, data, *, epochs, steps_per_epoch, evaluate, log, validate):
        clock.now += 0.3 + 0.02 * steps_per_epoch + (0.1 if validate else 0.0)

    with monkeypatch.context() as m:
        m.setattr(fit_mod, "fit", fake_fit)
        cost = budget.warm_up(cfg, data, clock=clock)
    full = stage_cost("overfit", budget.current_sizes("overfit", cfg), cost)
    plan = size_stage("overfit", cfg, cost, share_s=full / 4)
    sized = cfg.with_overrides(plan.overrides)
    trained = {}

    class Stop(Exception):
        pass

    def ladder(ctx, cfg, data, s, ceiling):
        trained["epochs"] = cfg.budget.epochs
        raise Stop

    monkeypatch.setattr(overfit, "_ladder", ladder)
    tracking.setup(cfg.name)
    ctx = StageContext(cfg=sized, input_cfg=cfg, results={}, workdir=tmp_path / "overfit")
    ctx._data = data
    with tracking.start_run("overfit", {tracking.TAG_STAGE: "overfit"}), pytest.raises(Stop):
        overfit.run(ctx)
    runs = budget.SIZED["overfit"].runs(plan.sizes)
    assert plan.estimate_s == pytest.approx(runs * (cost.run_s + trained["epochs"] * cost.epoch_s))
    assert plan.epochs_run == trained["epochs"]


def test_a_share_below_the_minimum_warns_with_the_time_it_would_need():
    cfg = RecipeConfig()
    plan = size_stage("regularize", cfg, COST, share_s=0.5)
    minimum = {"regularize.candidates": 1, "stages.regularize.epochs": 2}
    assert plan.sizes == minimum
    assert plan.needed_s == pytest.approx(stage_cost("regularize", minimum, COST))
    check = plan.check()
    assert check.verdict is Verdict.WARN
    assert f"{budget._min(plan.needed_s)}" in check.advice and "raise budget.minutes" in check.advice


def test_the_floor_is_every_sized_stages_minimum_over_the_fill_fraction():
    cfg = load_config()  # digits: tune 3 seeds, squeeze longer 3
    cost = StepCost(step_s=0.01, run_s=0.5, steps_per_epoch=20, val_s=0.05)  # a run of 2 epochs: 0.5 + 2 x 0.25 s
    # overfit 1 run (no growth rung), regularize 2 (reference, 1 candidate: no combination), tune 2 trials + 2 x 1
    # retraining seed, squeeze 1 member, whose run also averages its weights (no long or snapshot run, no student
    # without an ensemble): 1 + 2 + 4 + 1 runs of 1 s; squeeze's work outside its runs: 3 networks (the member,
    # SWA, EMA) scored twice at 0.05 s and the overhead
    squeeze = 1.0 + 2 * 3 * 0.05 + budget.SQUEEZE_OVERHEAD_S
    assert [budget.minimum_s(s, cfg, cost) for s in budget.SIZED] == pytest.approx([1.0, 2.0, 4.0, squeeze])
    assert budget.floor_s(ORDER, cfg, cost) == pytest.approx((7.0 + squeeze) / 0.85)
    assert budget.floor_s(["inspect", "tune", "squeeze"], cfg, cost) == pytest.approx((4.0 + squeeze) / 0.85)
    # a config already below a minimum keeps its own size (sizes only go down)
    fewer = cfg.with_overrides({"stages.tune.n_trials": 1})
    assert budget.minimum_s("tune", fewer, cost) == pytest.approx(3.0)


def test_a_budget_below_the_floor_is_told_with_the_minutes_that_would_fit():
    cfg = load_config()
    cost = StepCost(step_s=0.01, run_s=0.5, steps_per_epoch=20, val_s=0.05)
    floor = budget.floor_s(ORDER[2:], cfg, cost)  # 8 runs of 1 s and squeeze's 14.3 s outside them, over 0.85
    assert floor == pytest.approx((8.0 + 0.3 + budget.SQUEEZE_OVERHEAD_S) / 0.85)
    # 0.2 min = 12 s, 2 s of it gone: 10 s left for a floor of 26 s
    said = budget.floor_warning(0.2, 2.0, ORDER[2:], cfg, cost, "overfit")
    assert said is not None
    assert said.startswith("budget.minutes=0.2 cannot fit the recipe's smallest plan: at the step time overfit's")
    assert f"(10.0 ms a step, 0.5 s a run), overfit, regularize, tune, squeeze need at least {floor:.0f} s" in said
    assert "10 s of the budget is left" in said
    enough = math.ceil((2.0 + floor) / 6) / 10  # (2 + 26) s = 0.47 min, up to a tenth
    assert said.endswith(f"Give budget.minutes={enough:g} or more")
    assert budget.floor_warning(enough, 2.0, ORDER[2:], cfg, cost, "overfit") is None  # that many minutes fit


def test_regularize_candidates_are_dropped_from_the_end():
    cfg = RecipeConfig()  # augment [crop, rotate], weight_decay [0.05, 0.5], dropout [0.3], early_stopping, ...
    n = budget.current_sizes("regularize", cfg)["regularize.candidates"]
    assert budget.regularize_overrides(cfg, n) == {}
    three = budget.regularize_overrides(cfg, 3)
    assert three["stages.regularize.weight_decay"] == [0.05] and three["stages.regularize.dropout"] == []
    sized = cfg.with_overrides(three)
    assert budget.current_sizes("regularize", sized)["regularize.candidates"] == 3
    assert list(sized.stages.regularize.augment) == ["crop", "rotate"]


def test_regularize_counts_the_combination_only_with_two_candidates_or_more():
    """The combination of the kept changes is trained only when two kinds or more were kept
    (recipe.stages.regularize._ablate): one candidate trains two runs, the reference and itself, and the estimate
    at the stage's minimum counts those two."""
    cfg = RecipeConfig()
    runs = budget.SIZED["regularize"].runs
    sizes = budget.current_sizes("regularize", cfg)
    assert runs({**sizes, "regularize.candidates": 1}) == 2
    assert runs({**sizes, "regularize.candidates": 2}) == 4
    assert runs(sizes) == sizes["regularize.candidates"] + 2
    minimum = {"regularize.candidates": 1, "stages.regularize.epochs": 2}
    assert budget.minimum_s("regularize", cfg, COST) == pytest.approx(2 * (COST.run_s + 2 * COST.epoch_s))
    assert stage_cost("regularize", minimum, COST) == pytest.approx(2 * (COST.run_s + 2 * COST.epoch_s))


def test_warm_up_times_steps_with_the_fixed_part_cancelled(monkeypatch):
    """A fake fit on a fake clock: 0.3 s fixed per run, 0.02 s a step, 0.1 s a validation pass."""
    import recipe.fit as fit_mod

    clock = FakeClock()
    calls = []

    def fake_fit(cfg, data, *, epochs, steps_per_epoch, evaluate, log, validate):
        calls.append((steps_per_epoch, validate, log))
        clock.now += 0.3 + 0.02 * min(steps_per_epoch, 10) * epochs + (0.1 if validate else 0.0)

    class Bundle:
        def rows(self, split):
            return list(range(640))

    monkeypatch.setattr(fit_mod, "fit", fake_fit)
    monkeypatch.setattr(fit_mod, "bundle_for", lambda cfg, data: Bundle())
    cfg = RecipeConfig().with_overrides({"data.batch_size": 64, "budget.min_steps": 900, "budget.epochs": 30})
    cost = budget.warm_up(cfg, object(), steps=4, clock=clock)
    assert cost.step_s == pytest.approx(0.02)
    assert cost.run_s == pytest.approx(0.3)
    assert cost.val_s == pytest.approx(0.1)
    assert cost.steps_per_epoch == 10 and cost.epoch_s == pytest.approx(0.3)
    assert (cost.min_steps, cost.budget_epochs) == (900, 30) and cost.run_epochs(10) == 30  # 300 steps -> 900
    assert all(not logged for _, _, logged in calls)  # nothing goes to MLflow


def test_warm_up_counts_the_steps_a_short_epoch_really_runs(monkeypatch):
    """A small table: 3 batches an epoch (Sacramento at batch 256), 0.02 s a step on a fake clock. A fit asked for
    5 steps an epoch runs 3, so the warm-up must time enough epochs and divide by the steps that ran; dividing
    the 2 extra steps' time by 4 gave half the step time and a squeeze 2.3x over its estimate."""
    import recipe.fit as fit_mod

    clock = FakeClock()
    ran = []

    def fake_fit(cfg, data, *, epochs, steps_per_epoch, evaluate, log, validate):
        steps = min(steps_per_epoch, 3) * epochs
        ran.append(steps)
        clock.now += 0.3 + 0.02 * steps + (0.1 if validate else 0.0)

    class Bundle:
        def rows(self, split):
            return list(range(650))

    monkeypatch.setattr(fit_mod, "fit", fake_fit)
    monkeypatch.setattr(fit_mod, "bundle_for", lambda cfg, data: Bundle())
    cfg = RecipeConfig().with_overrides({"data.batch_size": 256})
    cost = budget.warm_up(cfg, object(), steps=4, clock=clock)
    assert cost.steps_per_epoch == 3
    assert cost.step_s == pytest.approx(0.02) and cost.run_s == pytest.approx(0.3)
    assert max(ran) >= 5  # the longer fit ran at least 1 + 4 steps, over two epochs


def _timed_fits(monkeypatch, clock, cost_of, rows=640):
    """Patch recipe.fit so a warm-up's fits only move ``clock`` by ``cost_of(call, steps, validate)`` seconds
    (``call``: 0 for the untimed first fit); returns the list of (steps, validate) the fits ran."""
    import recipe.fit as fit_mod

    ran = []

    def fake_fit(cfg, data, *, epochs, steps_per_epoch, evaluate, log, validate):
        steps = min(steps_per_epoch, math.ceil(rows / cfg.data.batch_size)) * epochs
        clock.now += cost_of(len(ran), steps, validate)
        ran.append((steps, validate))

    class Bundle:
        def rows(self, split):
            return list(range(rows))

    monkeypatch.setattr(fit_mod, "fit", fake_fit)
    monkeypatch.setattr(fit_mod, "bundle_for", lambda cfg, data: Bundle())
    return ran


def test_a_stall_in_the_one_step_fit_does_not_time_the_step_at_zero(monkeypatch):
    """ames' tune warm-up on a busy machine: its 1-step fit stalled 0.6 s, longer than its 5-step fit, and the
    difference (clipped at 0) sized the stage at 0.0 ms a step. Timed again beside each longer fit, the least of
    the 1-step fits is the fixed part, and the step comes out as the fits really cost."""
    clock = FakeClock()

    def cost(call, steps, validate):
        stall = 0.6 if call == 1 else 0.0  # the first timed 1-step fit
        return stall + 0.3 + 0.02 * steps + (0.1 if validate else 0.0)

    _timed_fits(monkeypatch, clock, cost)
    cfg = RecipeConfig().with_overrides({"data.batch_size": 64})
    cost_ = budget.warm_up(cfg, object(), steps=4, clock=clock)
    assert cost_.step_s == pytest.approx(0.02)
    assert cost_.run_s == pytest.approx(0.3) and cost_.val_s == pytest.approx(0.1)


def test_a_step_cheap_against_the_fixed_part_is_timed_over_more_steps(monkeypatch):
    """1 s to build a run, 1 ms a step: 4 steps are lost in the fixed part's noise, so the longer fit doubles
    its steps until they take as long as the fixed part, and the step is their time over their number."""
    clock = FakeClock()
    ran = _timed_fits(monkeypatch, clock, lambda call, steps, validate: 1.0 + 0.001 * steps, rows=64 * 10)
    cost = budget.warm_up(RecipeConfig().with_overrides({"data.batch_size": 64}), object(), steps=4, clock=clock)
    assert cost.step_s == pytest.approx(0.001) and cost.run_s == pytest.approx(1.0)
    # 639 steps past the first take 0.639 s, under the 1 s fixed part: the doubling went on to max_steps
    # (1,024 asked, whole epochs of 10 batches: 1,030 ran)
    assert sorted({steps for steps, _ in ran if steps > 1}) == [5, 10, 20, 40, 80, 160, 320, 640, 1030]


def test_a_step_the_clock_cannot_tell_from_zero_is_not_timed_at_zero(monkeypatch):
    """Fits whose time does not grow with their steps (below the clock's resolution): the doubling stops at
    ``max_steps`` and the step time is the clock's resolution, never 0; the plan prints it as a time."""
    clock = FakeClock()
    ran = _timed_fits(monkeypatch, clock, lambda call, steps, validate: 0.3)
    cfg = RecipeConfig().with_overrides({"data.batch_size": 64})
    cost = budget.warm_up(cfg, object(), steps=4, clock=clock, max_steps=64, resolution=1e-6)
    assert cost.step_s == pytest.approx(1e-6) and cost.step_s > 0
    assert max(steps for steps, _ in ran) == 70  # 64 asked, whole epochs of 10 batches
    plan = size_stage("tune", cfg, cost, share_s=600.0)
    assert "0.0 ms" not in plan.note and "0.001 ms a step" in plan.note


def test_minutes_stay_out_of_the_reuse_key_but_the_sizes_are_in_it():
    base = RecipeConfig()
    budgeted = base.with_overrides({"budget.minutes": 3})
    assert config_hash(base) == config_hash(budgeted)
    sized = budgeted.with_overrides({"stages.tune.n_trials": 6})
    keys = [stage_key(c, "tune", "f" * 12, "c" * 12, ORDER) for c in (base, budgeted, sized)]
    assert keys[0] == keys[1] != keys[2]
    assert stage_key(sized, "regularize", "f" * 12, "c" * 12, ORDER) == stage_key(
        base, "regularize", "f" * 12, "c" * 12, ORDER
    )  # a later stage's sizes leave an earlier stage's key alone


def test_a_plan_round_trips_through_its_file_and_replays_the_sizes(tmp_path):
    cfg = load_config("digits", overrides=["budget.minutes=3"])
    plans = [
        size_stage("tune", cfg, COST, share_s=30.0),
        size_stage("squeeze", cfg, COST, share_s=10.0),
    ]
    doc = budget.plan_document(3, plans, elapsed_s=170.0)
    path = tmp_path / budget.PLAN_FILE
    path.write_text(json.dumps(doc))
    replayed = budget.replay(cfg, budget.load_plan(path))
    assert replayed.budget.minutes is None
    for p in plans:
        assert {k: budget.current_sizes(p.stage, replayed)[k] for k in p.sizes} == p.sizes
    params = budget.plan_params(doc)
    assert params["budget.plan.stages.tune.n_trials"] == plans[0].sizes["stages.tune.n_trials"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "no such file"),
        ("{not json", "not a readable JSON plan"),
        ('{"version": 1}', "not a budget plan"),
        ("[1, 2]", "not a budget plan"),
    ],
)
def test_a_bad_plan_file_names_the_fix(tmp_path, text, match):
    path = tmp_path / "plan.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(budget.PlanError, match=match) as e:
        budget.load_plan(path)
    assert "budget_plan.json" in str(e.value)


def test_a_plan_for_another_schema_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        budget.replay(RecipeConfig(), {"stages.tune.no_such_knob": 3})


def test_budget_minutes_must_be_positive():
    with pytest.raises(ConfigError):
        load_config(overrides=["budget.minutes=0"])


def test_flows_run_plan_replays_the_sizes_and_refuses_a_bad_file_with_exit_2(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from flows import cli

    got = []

    def fake_run_flow(cfg, stage, force, log, fresh=False, rerun_from=None):
        got.append(cfg)
        return {"error": "stopped here by the test"}

    monkeypatch.setattr(cli, "_run_flow", fake_run_flow)
    monkeypatch.setattr(cli, "_preflight", lambda cfg: None)
    cfg = load_config("digits", overrides=["budget.minutes=3"])
    doc = budget.plan_document(3, [size_stage("tune", cfg, COST, share_s=30.0)])
    plan = tmp_path / budget.PLAN_FILE
    plan.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--set", "budget.minutes=3", "--plan", str(plan)])
    assert result.exit_code == 2 and "stopped here by the test" in result.output  # the fake flow's "bad input"
    assert got[0].budget.minutes is None
    assert got[0].stages.tune.n_trials == doc["overrides"]["stages.tune.n_trials"]

    bad = tmp_path / "nope.json"
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--plan", str(bad)])
    assert result.exit_code == 2 and "no such file" in result.output and "Traceback" not in result.output
    assert len(got) == 1  # nothing ran
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": 1, "overrides": {"stages.tune.n_trial": 3}}))
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--plan", str(wrong)])
    assert result.exit_code == 2 and "stages.tune.n_trial" in result.output and "Traceback" not in result.output


def _trial(number, seconds, value, state="COMPLETE"):
    import datetime as dt

    import optuna

    start = dt.datetime(2026, 1, 1)
    return optuna.trial.FrozenTrial(
        number=number,
        state=getattr(optuna.trial.TrialState, state),
        value=value if state == "COMPLETE" else None,
        datetime_start=start,
        datetime_complete=start + dt.timedelta(seconds=seconds),
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def test_a_budgeted_search_stops_when_a_trial_and_the_retrainings_would_pass_its_deadline():
    """Attrition's 6-minute run: trials of the searched sizes took 4-28 s where the warm-up's config took 5 s, and
    the best (width 234) retrained 3 x 21 s; the search must leave time for them, not only for its trials."""
    from recipe.stages.tune import over_deadline

    trials = [_trial(0, 8.7, 0.36), _trial(1, 4.0, 0.37), _trial(2, 21.3, 0.35), _trial(3, 5.0, 0.38)]
    # median 8.7 s, best 21.3 s: one more trial and 3 x (21.3 + 8.7) s of retrainings = 98.7 s
    assert over_deadline(trials, 3, left_s=120.0, n_trials=15) is None
    said = over_deadline(trials, 3, left_s=90.0, n_trials=15)
    assert said is not None and said.startswith("the search stopped after 4 of 15 trials")
    assert "about 99 s" in said and "90 s of the stage's share" in said
    assert over_deadline(trials[:1], 3, left_s=0.0, n_trials=15) is None  # the minimum of 2 trials runs regardless


def test_the_plan_records_the_trials_a_stopped_search_ran_so_a_replay_runs_those():
    cfg = RecipeConfig()
    plan = size_stage("tune", cfg, COST, share_s=1e6)
    assert not budget.record_stop(plan, "tune", {"tune/n_trials": 16.0})
    assert budget.record_stop(plan, "tune", {"tune/n_trials": 9.0})
    assert plan.sizes["stages.tune.n_trials"] == 9 and plan.overrides["stages.tune.n_trials"] == 9
    assert "stopped at the stage's deadline after 9 of 16 trials" in plan.note
    assert budget.replay(cfg, plan.overrides).stages.tune.n_trials == 9
    assert not budget.record_stop(plan, "squeeze", {"tune/n_trials": 1.0})


def test_the_plan_records_the_members_a_stopped_squeeze_ran_so_a_replay_runs_those():
    cfg = RecipeConfig()
    plan = size_stage("squeeze", cfg, COST, share_s=1e6)
    assert plan.sizes["stages.squeeze.members"] == 5
    assert not budget.record_stop(plan, "squeeze", {"squeeze/members_run": 5.0})
    assert budget.record_stop(plan, "squeeze", {"squeeze/members_run": 2.0})
    assert plan.sizes["stages.squeeze.members"] == 2 and plan.overrides["stages.squeeze.members"] == 2
    assert "the members stopped at the stage's deadline after 2 of 5 members" in plan.note
    assert budget.replay(cfg, plan.overrides).stages.squeeze.members == 2
    assert budget.record_stop(plan, "squeeze", {"squeeze/members_run": 2.0, "squeeze/longer_budgets": 2.0})
    assert plan.sizes["squeeze.longer"] == 2 and plan.overrides["stages.squeeze.longer"] == 2.0
    assert "the long run was cut at the stage's deadline to 2 of 3 budgets" in plan.note
    assert budget.replay(cfg, plan.overrides).stages.squeeze.longer == 2.0


def test_squeeze_counts_every_run_it_trains_and_its_work_outside_them():
    """Squeeze trains, after its members (member 0's run also averages its weights: no run of its own), a long
    run, a snapshot run and (with an ensemble) a student; and does work no run counts: scoring each network, the
    test table, the registry. A share its runs fit but not that work is cut; the estimate and the note count it."""
    cfg = RecipeConfig()  # 5 members, longer 3, 5 snapshots, distill
    sizes = budget.current_sizes("squeeze", cfg)
    assert budget.SIZED["squeeze"].runs(sizes) == 5 + 3 + 1 + 1
    assert budget.SIZED["squeeze"].runs({**sizes, "stages.squeeze.members": 1}) == 1 + 3 + 1  # no student
    fixed = budget.fixed_work("squeeze", cfg, COST)  # no data: the classical fit is not timed
    nets = 5 + 2 + 1 + 5 + 1
    assert fixed.seconds() == pytest.approx(2 * nets * COST.val_s + budget.SQUEEZE_OVERHEAD_S)
    assert f"scoring {nets} networks" in fixed.words()
    none = budget.fixed_work("tune", cfg, COST)
    assert (none.seconds(), none.words()) == (0.0, "")
    runs_only = stage_cost("squeeze", sizes, COST)
    share = runs_only / budget.FIT  # the runs alone just fit: nothing cut without the work outside them
    knobs = [k.key for k in budget.SIZED["squeeze"].knobs]
    assert size_stage("squeeze", cfg, COST, share).sizes == {k: sizes[k] for k in knobs}
    plan = size_stage("squeeze", cfg, COST, share, fixed)
    assert plan.sizes != {k: sizes[k] for k in knobs}
    # the snapshot run is cut first, the long run last
    assert (plan.sizes["squeeze.longer"], plan.sizes["squeeze.snapshots"]) == (3, 0)
    assert plan.fixed_s == pytest.approx(fixed.seconds(plan.sizes))
    assert plan.estimate_s == pytest.approx(stage_cost("squeeze", {**sizes, **plan.sizes}, COST) + plan.fixed_s)
    assert plan.estimate_s <= budget.FIT * share and "outside the runs: scoring" in plan.note
    tiny = size_stage("squeeze", cfg, COST, 1.0, fixed)  # the work alone is over the share: a WARN
    assert tiny.needed_s > fixed.seconds(tiny.sizes) and tiny.check().verdict is Verdict.WARN


def test_squeeze_s_work_outside_its_runs_follows_the_members_it_keeps():
    """Each member cut is one network fewer to score (and no student below two members): the estimate counts
    the scoring of the networks at the sizes tried, not at the configured ones (which cut more training than the
    share needed)."""
    cfg = RecipeConfig().with_overrides({"stages.squeeze.longer": 1.0, "stages.squeeze.snapshots": 0})
    cost = StepCost(step_s=0.01, run_s=0.5, steps_per_epoch=10, val_s=2.0)  # scoring weighs: 4 s a network
    fixed = budget.fixed_work("squeeze", cfg, cost)
    sizes = budget.current_sizes("squeeze", cfg)
    assert fixed.networks(sizes) == 5 + 2 + 1  # members, SWA and EMA, the student
    assert fixed.networks({"stages.squeeze.members": 1}) == 1 + 2  # no student without an ensemble
    four = {**sizes, "stages.squeeze.members": 4}
    share = (stage_cost("squeeze", four, cost) + fixed.seconds(four)) / budget.FIT
    plan = size_stage("squeeze", cfg, cost, share, fixed)
    assert plan.needed_s is None and plan.estimate_s <= budget.FIT * share
    kept = {**sizes, **plan.sizes}
    assert plan.fixed_s == pytest.approx(fixed.seconds(kept)) and plan.fixed_s < fixed.seconds(sizes)
    assert f"scoring {fixed.networks(kept)} networks" in plan.note
    # the scoring of the configured 5 members counted at every size: a smaller plan for the same share
    configured = budget.FixedWork("squeeze", overhead_s=fixed.seconds(sizes))
    old = size_stage("squeeze", cfg, cost, share, configured)
    assert stage_cost("squeeze", {**sizes, **old.sizes}, cost) < stage_cost("squeeze", kept, cost)
    assert budget.minimum_s("squeeze", cfg, cost) == pytest.approx(
        stage_cost("squeeze", {**sizes, "stages.squeeze.members": 1, "stages.squeeze.epochs": 2}, cost)
        + fixed.seconds({"stages.squeeze.members": 1})
    )


def test_squeeze_s_classical_fit_is_timed_once_for_the_plan_and_kept_for_the_stage(monkeypatch, tmp_path):
    """The sizing fits the classical baseline to time it; the stage's test table gets that same fit, not a
    second grid search."""
    from recipe.classical import fit_classical
    from recipe.data import load_data

    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path))
    cfg = load_config("tabular", overrides=["trainer.progress=false"])  # wine: 178 rows
    data = load_data(cfg)
    fixed = budget.fixed_work("squeeze", cfg, COST, data)
    kept = fit_classical(data, seed=cfg.seed)
    assert fixed.words().startswith(f"the classical baseline {budget._min(kept.seconds)}")
    assert fixed.classical_s == kept.seconds
    assert fixed.seconds() == pytest.approx(budget.fixed_work("squeeze", cfg, COST).seconds() + kept.seconds)
    assert fit_classical(data, seed=cfg.seed) is kept  # the stage scores this fit
    assert fit_classical(load_data(cfg), seed=cfg.seed) is not kept  # another bundle: its own fit


def test_squeeze_cuts_its_snapshot_run_first_keeps_an_ensemble_until_its_long_run_is_cut_and_its_epochs_last():
    """The order of squeeze's cuts follows what its candidates were worth on test: the snapshot run (the worst
    candidate in 19 of 19 real-data runs, bench/selection_regret.py) goes first; members down to two (an ensemble
    and its student, the recipe's "pretty much guaranteed" gain); then the long run; then the student (a smaller
    copy of the ensemble, not a better one); then the second member; the
    members' epochs only after every run (short runs cost more than fewer runs: Fashion-MNIST's 7-epoch runs
    scored 80-81% test, a 14-epoch cosine run 84%, bench/short_runs.py). Attrition at budget.minutes=10 had kept
    the long and snapshot runs and cut its members 5 -> 1: no ensemble."""
    cfg = RecipeConfig()  # 5 members, longer 3, 5 snapshots, distill
    sizes = budget.current_sizes("squeeze", cfg)
    fixed = budget.fixed_work("squeeze", cfg, COST)
    epochs = sizes["stages.squeeze.epochs"]

    def sized(values: dict) -> dict:  # the sizes chosen for a share that just fits ``values``
        v = {**sizes, **values}
        plan = size_stage("squeeze", cfg, COST, (stage_cost("squeeze", v, COST) + fixed.seconds(v)) / budget.FIT, fixed)
        assert plan.needed_s is None
        return plan.sizes

    snap = sized({"squeeze.snapshots": 0})
    assert snap == {**{k: sizes[k] for k in snap}, "squeeze.snapshots": 0}
    two = {"squeeze.snapshots": 0, "stages.squeeze.members": 2}
    assert sized(two) == {**{k: sizes[k] for k in snap}, **two}  # the epochs and the long run kept
    kept = {"stages.squeeze.epochs": epochs, "squeeze.distill": 1}
    assert sized({**two, "squeeze.longer": 1}) == {**two, "squeeze.longer": 1, **kept}
    # the student goes before the second member: two members without it fit where two with it did not
    no_student = {**two, "squeeze.longer": 1, "squeeze.distill": 0}
    assert sized(no_student) == {**no_student, "stages.squeeze.epochs": epochs}
    plan = size_stage(
        "squeeze",
        cfg,
        COST,
        (stage_cost("squeeze", {**sizes, **no_student}, COST) + fixed.seconds({**sizes, **no_student})) / budget.FIT,
        fixed,
    )
    assert "squeeze's distilled student 1 → 0" in plan.note
    assert budget.replay(cfg, plan.overrides).stages.squeeze.distill is False
    one = {**no_student, "stages.squeeze.members": 1}
    assert sized(one) == {**one, "stages.squeeze.epochs": epochs}
    shorter = sized({**one, "stages.squeeze.epochs": epochs // 2})
    assert shorter["stages.squeeze.members"] == 1 and shorter["stages.squeeze.epochs"] <= epochs // 2
    assert budget.knob_minimum("squeeze", "stages.squeeze.members") == 1  # the deadline may still stop at one


def test_the_last_knobs_are_cut_only_when_the_others_are_at_their_minimum():
    """Tune's retraining seeds and squeeze's long and snapshot runs are what a stage's minimum would not fit
    without (3,000 MNIST images at budget.minutes=10: every sized stage's minimum was over its share): they are
    cut after the trials, members and epochs, and a replay of the plan runs the cut config."""
    cfg = RecipeConfig()
    tune_min = {"stages.tune.n_trials": 2, "stages.tune.epochs": 2, "tune.seeds": 3}
    share = stage_cost("tune", tune_min, COST) / budget.FIT  # the first knobs' minimum just fits
    plan = size_stage("tune", cfg, COST, share)
    assert plan.sizes == tune_min and plan.needed_s is None
    small = size_stage("tune", cfg, COST, share * 0.6)  # 8 runs do not fit; 2 trials + 2 x 1 seed do
    assert small.sizes == {**tune_min, "tune.seeds": 1} and small.needed_s is None
    assert "tune retraining seeds 3 → 1" in small.note
    assert budget.replay(cfg, small.overrides).stages.tune.seeds == [0]

    sq = size_stage("squeeze", cfg, COST, 1.0)  # nothing fits: every knob at its minimum, a WARN
    assert sq.sizes == {
        "stages.squeeze.members": 1,
        "stages.squeeze.epochs": 2,
        "squeeze.longer": 1,
        "squeeze.snapshots": 0,
        "squeeze.distill": 0,
    }
    replayed = budget.replay(cfg, sq.overrides).stages.squeeze
    assert (replayed.members, replayed.longer, replayed.snapshots) == (1, 1.0, 0)
    assert "squeeze's long run (budgets) 3 → 1" in sq.note and "squeeze's snapshot run 1 → 0" in sq.note
    assert sq.needed_s == pytest.approx(COST.run_s + 2 * COST.epoch_s)  # the member, whose run also averages
