"""The budget wired into the pipeline, and the live view, with fake stages (fast): each sized stage is warmed up
(a fake warm-up here) and sized, says what it cut, the plan is recorded on the parent run, its reuse key covers
the sizes it used, and the live view prints each verdict line as soon as its stage ends."""

from __future__ import annotations

import io
import json
import time

import pytest
from mlflow import MlflowClient

from flows.live import LiveView
from recipe import budget, pipeline, tracking
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage, fake_stages  # noqa: F401  (fixture)

COST = budget.StepCost(step_s=0.01, run_s=0.5, steps_per_epoch=20, val_s=0.05)


@pytest.fixture
def sized_stages(monkeypatch):
    """Fakes named like the real stages (so tune and squeeze are sized) that record the sizes they ran with."""
    seen: dict[str, dict] = {}
    mods = {}
    for name in ("inspect", "tune", "squeeze"):
        inner = fake_stage(name)

        def run(ctx, name=name, inner=inner):
            if name in budget.SIZED:
                seen[name] = budget.current_sizes(name, ctx.cfg)
            return inner.run(ctx)

        mods[name] = type("M", (), {"run": staticmethod(run)})
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    warmups = []

    def fake_warm_up(cfg, data, **kw):
        warmups.append(cfg.name)
        return COST

    monkeypatch.setattr(budget, "warm_up", fake_warm_up)
    # the fakes register nothing and fit no classical baseline (the fake data has none to fit: not timed)
    monkeypatch.setattr(budget, "SQUEEZE_OVERHEAD_S", 0.0)
    monkeypatch.setattr(pipeline._DataCache, "data_for", lambda self, cfg: object())
    return seen, warmups


def _parent(experiment):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


def test_a_budgeted_run_sizes_its_stages_records_the_plan_and_a_replay_reuses_it(mlflow_store, sized_stages, tmp_path):
    seen, warmups = sized_stages
    cfg = load_config(overrides=["name=budget-test", "budget.minutes=0.5"])  # 30 s: tune and squeeze must cut
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    assert warmups == ["budget-test", "budget-test"]  # tune and squeeze, not inspect
    assert seen["tune"]["stages.tune.n_trials"] < 16 and seen["squeeze"]["stages.squeeze.members"] < 5
    stages = {s["stage"]: s for s in out.report["stages"]}
    tune_check = next(c for c in stages["tune"]["checks"] if c["name"] == "budget")
    assert "cut tune trials 16 → " in tune_check["observed"]
    assert out.report["budget"]["minutes"] == 0.5

    client, runs = _parent("budget-test")
    parent = next(r for r in runs if r.data.tags[tracking.TAG_KIND] == "flow")
    local = client.download_artifacts(parent.info.run_id, budget.PLAN_FILE, str(tmp_path))
    with open(local, encoding="utf-8") as f:
        doc = json.load(f)
    assert [s["stage"] for s in doc["stages"]] == ["inspect", "tune", "squeeze"]
    assert doc["overrides"]["stages.tune.n_trials"] == seen["tune"]["stages.tune.n_trials"]
    assert parent.data.params["budget.plan.stages.tune.n_trials"] == str(seen["tune"]["stages.tune.n_trials"])
    assert all(s["used_s"] is not None for s in doc["stages"])

    # the replay: the same sizes, nothing timed, and every stage's reuse key matches the budgeted run's
    replayed = budget.replay(cfg, budget.load_plan(local))
    seen.clear()
    warmups.clear()
    messages = []
    again = pipeline.run_recipe(replayed, say=messages.append)
    assert warmups == [] and again.report["reused"] == ["inspect", "tune", "squeeze"]
    # and run afresh, the replay hands each stage exactly the sizes the budget chose
    fresh = pipeline.run_recipe(replayed, say=lambda m: None, fresh=True)
    assert fresh.exit_code == 0 and seen["tune"] == {**seen["tune"], **doc["stages"][1]["sizes"]}
    assert seen["squeeze"]["stages.squeeze.members"] == doc["stages"][2]["sizes"]["stages.squeeze.members"]


def test_the_last_stage_of_a_run_fills_more_of_its_share_and_its_deadline_follows(
    mlflow_store, sized_stages, monkeypatch
):
    """Sizing fills budget.FIT of a stage's share, the last stage of the run budget.LAST_FIT (no stage after it
    needs the time an estimate may miss): squeeze in a whole run, tune in a run that ends there. The deadline a
    stage gets is that same fraction of its share."""
    fits: dict[str, float] = {}
    deadlines: dict[str, float] = {}
    size_stage = budget.size_stage

    def recording(stage, cfg, cost, share_s, fixed=None, fit=budget.FIT):
        fits[stage] = fit
        return size_stage(stage, cfg, cost, share_s, fixed, fit)

    monkeypatch.setattr(budget, "size_stage", recording)
    inner = dict(pipeline.STAGES)
    for name in ("tune", "squeeze"):

        def run(ctx, name=name):
            deadlines[name] = ctx.deadline - time.time()
            return inner[name].run(ctx)

        monkeypatch.setitem(pipeline.STAGES, name, type("M", (), {"run": staticmethod(run)}))
    cfg = load_config(overrides=["name=budget-fit", "budget.minutes=0.5"])
    assert pipeline.run_recipe(cfg, say=lambda m: None).exit_code == 0
    assert fits == {"tune": budget.FIT, "squeeze": budget.LAST_FIT} and budget.LAST_FIT > budget.FIT
    # squeeze is the last stage: its deadline is about LAST_FIT of what was left of the 30 s
    assert 0 < deadlines["squeeze"] <= budget.LAST_FIT * 30
    fits.clear()
    pipeline.run_recipe(cfg, stage="tune", say=lambda m: None, fresh=True)
    assert fits == {"tune": budget.LAST_FIT}  # the run ends at tune


def test_sizing_to_the_last_stage_s_fit_keeps_what_the_others_fit_would_cut():
    cfg = load_config(overrides=["name=budget-fit"])
    sizes = budget.current_sizes("squeeze", cfg)
    two = {**sizes, "stages.squeeze.members": 2, "squeeze.longer": 1, "squeeze.snapshots": 0, "squeeze.distill": 0}
    share = budget.stage_cost("squeeze", two, COST) / 0.9  # two members need 0.9 of the share
    assert budget.size_stage("squeeze", cfg, COST, share).sizes["stages.squeeze.members"] == 1
    last = budget.size_stage("squeeze", cfg, COST, share, fit=budget.LAST_FIT)
    assert last.sizes["stages.squeeze.members"] == 2 and last.estimate_s <= budget.LAST_FIT * share


def test_the_same_budgeted_run_again_reuses_every_stage_at_the_sizes_its_plan_recorded(mlflow_store, sized_stages):
    """`make run` twice: the second run reuses all stages (the last budgeted run's plan gives the sizes its reuse
    keys cover), times nothing, reads no test split again and keeps the plan on its own parent run; another
    budget, or a stage of that run missing, reruns the sized stages."""
    seen, warmups = sized_stages
    cfg = load_config(overrides=["name=budget-test", "budget.minutes=0.5"])
    first = pipeline.run_recipe(cfg, say=lambda m: None)
    warmups.clear()
    seen.clear()
    messages: list[str] = []
    again = pipeline.run_recipe(cfg, say=messages.append)
    assert again.report["reused"] == ["inspect", "tune", "squeeze"] and warmups == [] and seen == {}
    assert [s["run_id"] for s in again.report["stages"]] == [s["run_id"] for s in first.report["stages"]]
    assert any("at the sizes of the last budgeted run's plan" in m for m in messages), messages
    assert not any(m.startswith("no passing run") for m in messages), messages
    client, runs = _parent("budget-test")
    parent = client.get_run(again.report["parent_run_id"])
    assert parent.data.params["budget.plan.stages.tune.n_trials"] == str(
        first.report["stages"][1]["metrics"].get(
            "tune/n_trials_planned", parent.data.params["budget.plan.stages.tune.n_trials"]
        )
    )
    # a third run still finds the plan (on the second run's parent run too), and reuses again
    assert pipeline.run_recipe(cfg, say=lambda m: None).report["reused"] == ["inspect", "tune", "squeeze"]

    other = load_config(overrides=["name=budget-test", "budget.minutes=0.6"])  # another budget: sized again
    out = pipeline.run_recipe(other, say=messages.append)
    assert out.report["reused"] == ["inspect"] and warmups == ["budget-test", "budget-test"]
    assert any("sized by this run's warm-ups, so none is reused" in m for m in messages), messages


def test_a_budgeted_run_stopped_by_ctrl_c_is_resumed_reusing_the_sized_stages_it_finished(
    mlflow_store, sized_stages, monkeypatch, tmp_path
):
    """The plan is logged as each stage ends, so a budgeted run stopped in squeeze (Ctrl-C) leaves tune's sizes:
    the same command again reuses tune at them and sizes only squeeze by its own warm-up (a new user's trial:
    the interrupted run's finished overfit was trained again), and its plan holds both, so `--plan` replays the
    whole run. `--rerun-from squeeze` reuses tune at the plan's sizes too (it reran it)."""
    seen, warmups = sized_stages
    cfg = load_config(overrides=["name=budget-stop", "budget.minutes=0.5"])
    squeeze = pipeline.STAGES["squeeze"]

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline.STAGES, "squeeze", type("M", (), {"run": staticmethod(interrupted)}))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(cfg, say=lambda m: None)
    tune_sizes = dict(seen["tune"])
    client, runs = _parent("budget-stop")
    stopped = next(r for r in runs if r.data.tags[tracking.TAG_KIND] == "flow")
    assert stopped.info.status == "KILLED"
    monkeypatch.setitem(pipeline.STAGES, "squeeze", squeeze)

    seen.clear()
    warmups.clear()
    messages: list[str] = []
    out = pipeline.run_recipe(cfg, say=messages.append)
    assert out.report["reused"] == ["inspect", "tune"] and warmups == ["budget-stop"]  # squeeze's warm-up only
    assert "tune" not in seen and "squeeze" in seen
    assert any("stage tune: up to date" in m and "at the sizes of the last budgeted run's plan" in m for m in messages)
    assert any("stage squeeze and those after it are sized by this run's warm-ups (" in m for m in messages), messages
    local = client.download_artifacts(out.report["parent_run_id"], budget.PLAN_FILE, str(tmp_path))
    doc = budget.load_plan(local)
    plan = json.loads(open(local, encoding="utf-8").read())
    assert [p["stage"] for p in plan["stages"]] == ["tune", "squeeze"]
    assert doc["stages.tune.n_trials"] == tune_sizes["stages.tune.n_trials"]
    assert doc["stages.squeeze.members"] == seen["squeeze"]["stages.squeeze.members"]
    warmups.clear()
    replay = pipeline.run_recipe(budget.replay(cfg, doc), say=lambda m: None)
    assert replay.report["reused"] == ["inspect", "tune", "squeeze"] and warmups == []

    seen.clear()
    rerun = pipeline.run_recipe(cfg, say=messages.append, rerun_from="squeeze")
    assert rerun.report["reused"] == ["inspect", "tune"] and "tune" not in seen and "squeeze" in seen
    assert any(m.startswith("--rerun-from squeeze: running squeeze") for m in messages), messages


def test_an_epoch_sized_run_does_not_reuse_a_budgeted_stage_that_cut(mlflow_store, sized_stages):
    seen, _ = sized_stages
    cfg = load_config(overrides=["name=budget-test", "budget.minutes=0.5"])
    pipeline.run_recipe(cfg, say=lambda m: None)
    plain = load_config(overrides=["name=budget-test"])
    out = pipeline.run_recipe(plain, say=lambda m: None)
    assert out.report["reused"] == ["inspect"]  # tune ran with fewer trials: not the epoch-sized result
    assert seen["tune"]["stages.tune.n_trials"] == 16


def test_a_budgeted_run_warns_when_a_stage_minimum_does_not_fit(mlflow_store, sized_stages):
    cfg = load_config(overrides=["name=budget-test", "budget.minutes=0.01"])
    out = pipeline.run_recipe(cfg, say=lambda m: None)
    tune = next(s for s in out.report["stages"] if s["stage"] == "tune")
    check = next(c for c in tune["checks"] if c["name"] == "budget")
    assert tune["verdict"] == "warn" and check["verdict"] == "warn" and "raise budget.minutes" in check["advice"]


def test_a_budget_below_the_smallest_plan_is_told_at_the_first_warm_up(mlflow_store, sized_stages):
    seen, warmups = sized_stages
    said = []
    # the fakes' warm-up: runs of 1 s at 2 epochs; tune's minimum 4 runs (2 trials, 1 seed), squeeze's 1 (a member,
    # whose run also averages its weights) and 3 networks scored twice at 0.05 s: a floor of 5.3 / 0.85 = 6 s
    cfg = load_config(overrides=["name=budget-test", "budget.minutes=0.1"])  # 6 s
    pipeline.run_recipe(cfg, say=said.append)
    told = [m for m in said if "cannot fit the recipe's smallest plan" in m]
    assert len(told) == 1, said  # once, at tune's warm-up, before any sized stage ran
    assert told[0].startswith("warning: budget.minutes=0.1 cannot fit")
    assert "tune, squeeze need at least 6 s at their minimum sizes" in told[0]
    enough = float(told[0].rsplit("budget.minutes=", 1)[1].removesuffix(" or more"))
    assert enough >= 0.2  # the time so far and the 6 s floor, in minutes rounded up to a tenth
    assert said.index(told[0]) < next(i for i, m in enumerate(said) if m.startswith("stage tune: started"))

    said.clear()
    pipeline.run_recipe(load_config(overrides=["name=budget-test", "budget.minutes=0.5"]), say=said.append)
    assert not [m for m in said if "smallest plan" in m], said  # 30 s: the floor fits, nothing said


def test_the_live_view_prints_each_verdict_as_its_stage_ends_in_plain_lines(mlflow_store, monkeypatch):
    stream = io.StringIO()  # not a TTY: plain lines
    seen_before_b: list[str] = []
    a, c = fake_stage("a"), fake_stage("c", Verdict.WARN)
    inner_b = fake_stage("b")

    def run_b(ctx):
        seen_before_b.append(stream.getvalue())
        return inner_b.run(ctx)

    mods = {"a": a, "b": type("M", (), {"run": staticmethod(run_b)}), "c": c}
    monkeypatch.setattr(pipeline, "STAGES", mods)
    monkeypatch.setattr(pipeline, "stage_names", lambda: list(mods))
    view = LiveView(stream=stream)
    assert view.plain
    with view.shown():
        pipeline.run_recipe(load_config(overrides=["name=live-test"]), say=lambda m: None)
    assert pipeline.LISTENERS == []
    text = stream.getvalue()
    # a's verdict was printed before b started running, not at the end
    assert "[1/3] stage a: PASS (1 check passed)" in seen_before_b[0]
    assert "[2/3] stage b: started" in seen_before_b[0]
    lines = text.splitlines()
    assert any(line.startswith("[3/3] stage c: WARN (warn: c_ok; 0 passed)") for line in lines), lines
    assert lines[-1].startswith("recipe: WARN after ")
    assert "\x1b" not in text and "\r" not in text  # no control characters for CI logs and pipes


def test_a_listener_that_fails_does_not_stop_the_run(mlflow_store, fake_stages):
    def broken(event, info):
        raise RuntimeError("display gone")

    pipeline.LISTENERS.append(broken)
    try:
        out = pipeline.run_recipe(load_config(overrides=["name=live-test"]), say=lambda m: None)
    finally:
        if broken in pipeline.LISTENERS:
            pipeline.LISTENERS.remove(broken)
    assert out.exit_code == 0


def test_the_terminal_view_owns_the_terminal_and_still_prints_each_verdict(mlflow_store, fake_stages):
    from recipe.train.callbacks import progress as fit_bar

    stream = io.StringIO()
    owners = []
    pipeline.LISTENERS.append(lambda event, info: owners.append(fit_bar.TERMINAL_OWNER))
    try:
        with LiveView(stream=stream, plain=False).shown() as view:
            assert not view.plain
            pipeline.run_recipe(load_config(overrides=["name=live-test"]), say=lambda m: None)
    finally:
        pipeline.LISTENERS.clear()
    assert owners and all(o == "flows live view" for o in owners)  # the per-fit bars stay off meanwhile
    assert fit_bar.TERMINAL_OWNER is None
    text = stream.getvalue()
    for k, name in enumerate(["a", "b", "c"], start=1):
        assert f"[{k}/3] stage {name}: PASS" in text


def test_the_live_view_names_the_stage_and_the_recipe_clocks_apart(monkeypatch):
    import flows.live

    now = [1000.0]
    monkeypatch.setattr(flows.live.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    view = LiveView(stream=stream, plain=True)
    view("run_start", {"stages": ["inspect", "overfit"], "budget_s": None})
    now[0] += 200  # inspect took 3:20 of the recipe
    view("stage_start", {"stage": "overfit", "index": 2, "total": 2, "runs": 4})
    now[0] += 30
    view("run_done", {})
    line = stream.getvalue().splitlines()[-1]
    # the stage's 0:30 and the recipe's 3:50 are both shown, each named; no budget: the left time is the stage's
    assert line == (
        "[2/2] stage overfit: 1 of 4 runs done, 3 left, stage 0:30 elapsed, recipe 3:50 elapsed, "
        "about 1:30 left in the stage"
    ), line

    budgeted = LiveView(stream=io.StringIO(), plain=True)
    budgeted("run_start", {"stages": ["inspect", "overfit"], "budget_s": 600.0})
    now[0] += 100
    budgeted("stage_start", {"stage": "overfit", "index": 2, "total": 2, "runs": 4})
    now[0] += 20
    # with a budget the time left is the whole recipe's remainder, and says so
    assert budgeted.times_text() == "stage 0:20 elapsed, recipe 2:00 elapsed, about 8:00 of the budget left"
    budgeted("stage_end", {"stage": "overfit", "index": 2, "total": 2, "verdict": "pass", "seconds": 20, "line": "x"})
    assert budgeted.times_text() == "recipe 2:00 elapsed, about 8:00 of the budget left"  # between stages


def test_the_started_line_names_the_stage_s_mlflow_run_on_a_terminal_and_in_plain_lines():
    """Prefect's own "stage NAME: started (MLflow run ID)" is kept off the terminal (flows.cli._not_echo), so the
    live view's started line carries the run, plain or not: the run to open in MLflow while the stage runs."""
    for plain in (True, False):
        stream = io.StringIO()
        view = LiveView(stream=stream, plain=plain)
        view("run_start", {"stages": ["inspect", "overfit"], "budget_s": None})
        view("stage_start", {"stage": "overfit", "index": 2, "total": 2, "runs": 4, "run_id": "7a061ea0"})
        assert "[2/2] stage overfit: started (MLflow run 7a061ea0), up to 4 training runs" in stream.getvalue()
    stream = io.StringIO()
    LiveView(stream=stream, plain=True)("stage_start", {"stage": "inspect", "index": 1, "total": 2, "runs": None})
    assert stream.getvalue().strip() == "[1/2] stage inspect: started"
    # the last run's line would only precede the stage's verdict line ("1 of 1 run done, 0 left ... about 0:00")
    stream = io.StringIO()
    view = LiveView(stream=stream, plain=True)
    view("stage_start", {"stage": "overfit", "index": 2, "total": 2, "runs": 2, "run_id": "7a061ea0"})
    view("run_done", {})
    view("run_done", {})
    assert "1 of 2 runs done" in stream.getvalue() and "2 of 2" not in stream.getvalue()


def test_runs_between_stages_are_not_counted_as_a_stage_named_none():
    """A budget's warm-up of the next stage trains before that stage starts: a new user's plain log read
    '[3/6] stage None: 1 of 1 runs done' twelve times a run. Between stages a finished run is not a stage's."""
    stream = io.StringIO()
    view = LiveView(stream=stream, plain=True)
    view("run_start", {"stages": ["overfit", "regularize"], "budget_s": 600.0})
    view("stage_start", {"stage": "overfit", "index": 1, "total": 2, "runs": 1})
    view("run_done", {})
    view("stage_end", {"stage": "overfit", "index": 1, "total": 2, "verdict": "pass", "seconds": 5, "line": "x"})
    view("run_done", {})  # regularize's warm-up, before regularize starts
    view("stage_start", {"stage": "regularize", "index": 2, "total": 2, "runs": 3})
    view("run_done", {})
    lines = stream.getvalue().splitlines()
    assert not [ln for ln in lines if "stage None" in ln], lines
    assert lines[-1].startswith("[2/2] stage regularize: 1 of 3 runs done, 2 left"), lines


def test_a_verdict_line_counts_the_checks_that_could_not_judge_apart_from_those_that_passed():
    from recipe.report import Check, StageResult

    def check(name, verdict, observed):
        return Check(name, "h", observed, "e", verdict, "")

    judged = [check("loss_at_init", Verdict.PASS, "2.30 vs 2.30"), check("batch_independence", Verdict.PASS, "ok")]
    short = check("curves_plateau", Verdict.PASS, "not judged: 3 epochs, fewer than 4")
    clean = StageResult.from_checks("overfit", [*judged, short], {}, None)
    assert pipeline.verdict_line(clean) == "stage overfit: PASS (2 checks passed, 1 not judged)"
    warned = StageResult.from_checks("overfit", [*judged, short, check("lr_finder", Verdict.WARN, "x")], {}, None)
    assert pipeline.verdict_line(warned) == "stage overfit: WARN (warn: lr_finder; 2 passed, 1 not judged)"
    assert pipeline.verdict_line(StageResult.from_checks("a", judged[:1], {}, None)) == "stage a: PASS (1 check passed)"
    # a stage whose own rule keeps PASS beside a WARN check calls that check advisory
    advisory = StageResult("overfit", Verdict.PASS, warned.checks, {}, None)
    assert pipeline.verdict_line(advisory) == "stage overfit: PASS (advisory warn: lr_finder; 2 passed, 1 not judged)"
