"""Stage 3, overfit: the hero-free config, the learning-rate decision, the training target, and a run that cannot
reach the target (it grows the model, then fails, naming what it saw). The passing digits run is in
test_overfit_regularize_digits.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from recipe import tracking
from recipe.config import OverfitConfig, RecipeConfig, load_config
from recipe.report import StageResult, Verdict
from recipe.stages import overfit
from recipe.stages.base import StageContext
from recipe.train.callbacks import LRSuggestion

IMAGE, TABLE = (1, 8, 8), (13,)


@pytest.mark.parametrize(
    "model, in_shape, device, expected",
    [
        ("cnn", IMAGE, "cpu", "cnn"),
        ("resnet", IMAGE, "cpu", "resnet"),
        ("linear", IMAGE, "cpu", "cnn"),
        ("mlp", IMAGE, "cuda", "resnet18"),
        ("resnet18", IMAGE, "cpu", "resnet"),  # too slow on a CPU: the narrow resnet
        ("resnet18", IMAGE, "cuda", "resnet18"),
        ("tests.models.custom_net:TinyNet", IMAGE, "cpu", "tests.models.custom_net:TinyNet"),
        ("mlp", TABLE, "cpu", "mlp"),
        ("linear", TABLE, "cpu", "mlp"),
        ("cnn", TABLE, "cpu", "mlp"),
    ],
)
def test_dont_be_a_hero_picks_a_known_architecture(model, in_shape, device, expected):
    cfg = RecipeConfig().with_overrides({"model.name": model})
    new, _, check = overfit.hero_free(cfg, OverfitConfig(), in_shape, device)
    assert new.model.name == expected
    assert check.check.verdict is Verdict.PASS and expected in check.check.observed


def test_hero_free_means_adam_constant_lr_and_no_regularisation():
    cfg = RecipeConfig().with_overrides(
        {
            "optim.name": "sgd",
            "optim.lr": 0.1,
            "optim.weight_decay": 5e-4,
            "schedule.name": "cosine",
            "model.dropout": 0.5,
            "data.augment": ["crop"],
            "budget.early_stopping": 3,
            "model.width": 48,
        }
    )
    new, changes, _ = overfit.hero_free(cfg, OverfitConfig(), IMAGE, "cpu")
    assert (new.optim.name, new.optim.lr, new.optim.weight_decay, new.schedule.name) == ("adam", 3e-4, 0.0, "constant")
    assert (new.model.dropout, new.data.augment, new.budget.early_stopping) == (0.0, [], None)
    assert new.model.width == 48  # the architecture's own size is the user's
    assert "optim.lr: 0.1 -> 0.0003" in changes and "data.augment: ['crop'] -> []" in changes
    kept = overfit.hero_free(cfg, OverfitConfig(optimizer="config"), IMAGE, "cpu")[0]
    assert (kept.optim.name, kept.optim.lr, kept.optim.weight_decay) == ("sgd", 0.1, 0.0)


def sugg(lr, at_min=None, reason=""):
    return LRSuggestion(lr, "min_div_10", at_min or (lr or 1.0) * 10, lr or 1.0, 2.3, 1.0, True, reason)


@pytest.mark.parametrize(
    "start, suggestion, chosen, verdict, text",
    [
        (3e-4, sugg(5e-4), 3e-4, Verdict.PASS, "kept 0.0003"),  # within x3 of the suggestion
        (3e-4, sugg(2.6e-3), 3e-3, Verdict.PASS, "replaced 0.0003 by 0.003"),  # rounded to one digit
        (3e-4, sugg(2e-5), 2e-5, Verdict.PASS, "replaced"),
        (3e-4, sugg(3e-4, at_min=3.5e-4), 3e-4, Verdict.PASS, "kept"),  # below the minimum's lr
        (3e-4, sugg(None, reason="the smoothed loss never fell"), 3e-4, Verdict.WARN, "never fell"),
        (3e-4, sugg(1.0, at_min=10.0), 1.0, Verdict.WARN, "replaced"),  # lowest at the end of the sweep
    ],
)
def test_the_lr_is_kept_in_the_good_region_else_replaced(start, suggestion, chosen, verdict, text):
    lr, f = overfit.decide_lr(start, suggestion, tolerance=3.0, lr_max=10.0)
    assert lr == pytest.approx(chosen)
    assert f.verdict is verdict and text in f.check.observed


def fake_trained(task="classification", acc=1.0, loss=0.01, mse=None, std=None):
    metrics = {"accuracy": acc} if task == "classification" else {"mse": mse, "mae": 1.0}
    return SimpleNamespace(
        data=SimpleNamespace(task=task, target_std=std), train=SimpleNamespace(metrics=metrics, loss=loss)
    )


@pytest.mark.parametrize(
    "trained, settings, met",
    [
        (fake_trained(acc=0.995), OverfitConfig(), True),
        (fake_trained(acc=0.98), OverfitConfig(), False),
        (fake_trained(acc=0.995, loss=0.2), OverfitConfig(target_loss=0.05), False),  # both must hold
        (fake_trained(acc=0.5, loss=0.01), OverfitConfig(target_accuracy=None, target_loss=0.05), True),
        (fake_trained("regression", mse=4.0, std=10.0), OverfitConfig(), True),  # 4 / 100 <= 0.1
        (fake_trained("regression", mse=40.0, std=10.0), OverfitConfig(), False),
    ],
)
def test_training_target(trained, settings, met):
    assert overfit.target_met(trained, settings)[0] is met


def test_a_model_that_cannot_fit_grows_one_rung_at_a_time_then_fails(mlflow_store, tmp_path):
    cfg = load_config(
        "digits",
        overrides=[
            "trainer.progress=false",
            "stages.overfit.epochs=1",
            "stages.overfit.max_rungs=1",
            "stages.overfit.lr_finder=false",
            "model.name=cnn",  # no batch norm, at the safe 3e-4: one epoch cannot fit it
            "stages.overfit.lr=3e-4",
            "model.width=8",
            "data.augment=[crop]",
        ],
    )
    baselines = StageResult("baselines", Verdict.PASS, [], {"baseline/majority_accuracy": 0.1}, cfg)
    tracking.setup(cfg.name)
    with tracking.start_run("overfit", {tracking.TAG_STAGE: "overfit"}) as run:
        result = overfit.run(
            StageContext(cfg=cfg, input_cfg=cfg, results={"baselines": baselines}, workdir=tmp_path / "overfit")
        )
    checks = {c.name: c for c in result.checks}
    assert result.verdict is Verdict.FAIL
    assert checks["train_target"].verdict is Verdict.FAIL
    assert "after 1 epochs at rung 1" in checks["train_target"].observed
    assert checks["capacity_ladder"].verdict is Verdict.WARN
    assert "cnn width 8 depth 2" in checks["capacity_ladder"].observed
    assert "cnn width 16 depth 2" in checks["capacity_ladder"].observed
    assert "linear_accuracy missing: no bar" in checks["beats_baselines"].observed
    assert result.config.model.width == 16  # the grown model is handed on
    assert result.config.data.augment == [] and result.config.budget.epochs == 30  # the user's budget
    assert any("data.augment: ['crop'] -> []" in n for n in result.notes)
    client = mlflow.MlflowClient()
    rungs = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(r.data.tags["recipe.candidate"] for r in rungs) == ["rung0", "rung1"]
    assert {r.data.tags[tracking.TAG_KIND] for r in rungs} == {"candidate"}
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/curves.png", "plots/update_ratio.png"} <= arts
    assert result.checkpoint_uri.endswith("checkpoint/overfit.pt")
    assert np.isfinite(result.metrics["overfit/train_accuracy"])


def _one_rung_on_digits(tmp_path, *overrides: str) -> tuple[StageContext, Any]:
    """The overfit stage's context on digits with one rung of a width-8 net, no LR finder, and ``overrides``; and
    a function that runs the stage in its MLflow run."""
    base = ["trainer.progress=false", "stages.overfit.max_rungs=0", "stages.overfit.lr_finder=false", "model.width=8"]
    cfg = load_config("digits", overrides=[*base, *overrides])
    tracking.setup(cfg.name)
    ctx = StageContext(cfg=cfg, input_cfg=cfg, results={}, workdir=tmp_path / "overfit")

    def run():
        with tracking.start_run("overfit", {tracking.TAG_STAGE: "overfit"}):
            return overfit.run(ctx)

    return ctx, run


def test_min_steps_raises_the_epochs_of_a_small_split_and_says_so(mlflow_store, tmp_path):
    ctx, run = _one_rung_on_digits(tmp_path, "stages.overfit.epochs=1", "budget.min_steps=50")
    per_epoch = -(-len(ctx.data().rows("train")) // ctx.cfg.data.batch_size)
    expected = -(-50 // per_epoch)  # ceil: the fewest epochs with at least 50 steps
    assert expected > 1
    result = run()
    train_target = {c.name: c for c in result.checks}["train_target"]
    assert f"after {expected} epochs at rung 0" in train_target.observed
    assert any(
        f"small data: 1 -> {expected} epochs per run" in n and "budget.min_steps = 50" in n for n in result.notes
    )
    assert result.config.budget.epochs == 30  # the user's budget is handed on; the next stage resolves its own


def test_stop_at_target_ends_a_rung_at_the_first_validation_that_meets_it(mlflow_store, tmp_path):
    """stages.overfit.stop_at_target (a budgeted run's): the rung stops once the epoch's train-mode accuracy and
    then the eval-mode accuracy on the whole training split meet the target; train_target judges those weights."""
    epochs = 40
    _, run = _one_rung_on_digits(tmp_path, f"stages.overfit.epochs={epochs}", "stages.overfit.stop_at_target=true")
    result = run()
    checks = {c.name: c for c in result.checks}
    assert checks["train_target"].verdict is Verdict.PASS
    ran = result.metrics["overfit/epochs"]
    assert 4 <= ran < epochs, ran  # 4 or more: on the step cadence (2 epochs a validation) it would log ran / 2
    assert result.metrics["train/accuracy"] >= 0.99
    assert any("reached the training target after" in n for n in result.notes)
    # a validation every data epoch (no step cadence): the curve checks have a point per epoch to judge
    rung = mlflow.search_runs(filter_string="tags.`recipe.candidate` = 'rung0'", output_format="list")[0]
    history = MlflowClient().get_metric_history(rung.info.run_id, "val/loss")
    assert len(history) >= ran - 1, (len(history), ran)


def test_stop_at_target_needs_the_eval_mode_check_too():
    """A train-mode metric at the target is only the trigger: the eval-mode pass over the whole training split
    decides (a model whose eval-mode predictions miss keeps training), and a ceiling caps the target."""
    import torch

    from recipe.train.events import CancelFit

    x, y = torch.randn(12, 3), torch.tensor([0, 1] * 6)
    data = SimpleNamespace(
        task="classification",
        config=SimpleNamespace(eval_batch_size=4),
        batches=lambda split, batch_size, device: [
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, 12, 4)
        ],
    )

    class Oracle(torch.nn.Module):  # predicts the labels of x (rows alternate 0, 1) when right, else always 0
        def __init__(self, right: bool) -> None:
            super().__init__()
            self.right = right

        def forward(self, xb):
            n = len(xb)
            cls = torch.arange(n) % 2 if self.right else torch.zeros(n, dtype=torch.long)
            return torch.nn.functional.one_hot(cls, 2).float() * 10

    s = OverfitConfig(target_accuracy=0.99)
    for right, stops in ((False, False), (True, True)):
        cb = overfit.StopAtTarget(data, s)
        cb.trainer = SimpleNamespace(
            metrics={"train/accuracy": 1.0, "train/loss": 0.01},
            model=Oracle(right),
            device="cpu",
            step=7,
            stop=lambda reason: (_ for _ in ()).throw(CancelFit(reason)),
        )
        if stops:
            with pytest.raises(CancelFit, match="after 7 steps"):
                cb.after_epoch()
            assert cb.stopped_step == 7
        else:
            cb.after_epoch()
            assert cb.stopped_step is None
    cb.trainer.metrics["train/accuracy"] = 0.9  # below the target in train mode: no eval-mode pass at all
    cb.trainer.model = None
    cb.after_epoch()
    assert overfit.StopAtTarget(data, s, ceiling=0.9)._met({"accuracy": 0.9}, 0.1)


def _table_ctx(tmp_path, frame, target, overrides, baselines=None):
    """A StageContext on ``frame`` written as a CSV, the tabular preset with ``overrides``."""
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    cfg = load_config(
        "tabular",
        overrides=[
            f"data.root={path}",
            f"data.target={target}",
            "trainer.progress=false",
            "stages.overfit.lr_finder=false",
            "data.batch_size=32",  # the gates' cases were sized at batch 32 without min_steps (the preset's TabM
            "budget.min_steps=null",  # trains at batch 256 with at least 400 steps)
            *overrides,
        ],
    )
    results = {"baselines": StageResult("baselines", Verdict.PASS, [], baselines or {}, cfg)}
    tracking.setup(cfg.name)
    return cfg, StageContext(cfg=cfg, input_cfg=cfg, results=results, workdir=tmp_path / "overfit")


def _hard_table(n: int = 1200, seed: int = 0):
    """Clean labels (a deterministic function of the features) that a small MLP needs many epochs to fit."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (np.sin(3 * x[:, 0]) * np.cos(2 * x[:, 1]) + x[:, 2] * x[:, 3] > 0).astype(int)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(y=y)


def test_a_clean_hard_task_whose_model_is_still_improving_warns_with_the_budget_it_needs(mlflow_store, tmp_path):
    _, ctx = _table_ctx(
        tmp_path,
        _hard_table(),
        "y",
        ["model.name=mlp", "stages.overfit.epochs=12", "stages.overfit.max_rungs=0", "stages.overfit.lr=0.003"],
        {"baseline/majority_accuracy": 0.5, "baseline/linear_accuracy": 0.55},
    )
    with tracking.start_run("overfit", {tracking.TAG_STAGE: "overfit"}):
        result = overfit.run(ctx)
    checks = {c.name: c for c in result.checks}
    target = checks["train_target"]
    assert target.verdict is Verdict.WARN and result.verdict is Verdict.WARN  # short of 99%, but no bug
    assert "x the dumb predictor's" in target.observed and "train accuracy" in target.observed
    assert "more epochs (stages.overfit.epochs=" in target.observed or "gives no estimate" in target.observed
    assert "not a bug" in target.advice
    assert checks["beats_baselines"].verdict is Verdict.PASS


def test_a_frozen_net_fails_and_the_ladder_stops_when_a_rung_does_not_help(mlflow_store, tmp_path):
    _, ctx = _table_ctx(
        tmp_path,
        _hard_table(n=400),
        "y",
        ["model.name=mlp", "stages.overfit.epochs=3", "stages.overfit.max_rungs=3", "stages.overfit.lr=1e-9"],
        {"baseline/majority_accuracy": 0.5},
    )
    with tracking.start_run("overfit", {tracking.TAG_STAGE: "overfit"}):
        result = overfit.run(ctx)
    checks = {c.name: c for c in result.checks}
    assert result.verdict is Verdict.FAIL and checks["train_target"].verdict is Verdict.FAIL
    assert "stalled near the dumb predictor's" in checks["train_target"].advice
    ladder = checks["capacity_ladder"].observed
    assert "stopped growing: the last rung cut the training error only" in ladder  # rung 1 did not help
    assert result.metrics["overfit/rungs"] == 1.0


@pytest.mark.parametrize(
    ("before", "after", "stalled"),
    [(0.30, 0.10, False), (0.30, 0.29, True), (0.05, 0.044, False), (0.05, 0.048, True)],
)
def test_the_ladder_grows_again_only_when_the_last_rung_cut_the_training_error(before, after, stalled):
    fits = [fake_trained(acc=1 - e) for e in (before, after)]
    assert bool(overfit.rung_stalled(*fits, min_gain=0.1)) is stalled


def test_the_target_is_capped_by_the_ceiling_conflicting_duplicates_allow():
    assert overfit.target_met(fake_trained(acc=0.97), OverfitConfig(), ceiling=0.97)[0]
    assert not overfit.target_met(fake_trained(acc=0.96), OverfitConfig(), ceiling=0.97)[0]


def _short_fit(train_loss: float, losses: list[float]):
    """A stand-in evaluated fit short of the 99% target (train accuracy 0.90): what _target_finding reads."""
    train = SimpleNamespace(loss=train_loss, metrics={"accuracy": 0.90}, metric=0.90, scores=np.zeros(1000))
    val = SimpleNamespace(metric=0.86)
    return SimpleNamespace(
        data=SimpleNamespace(task="classification"), train=train, val=val, epochs=40, smooth_losses=losses, history=[]
    )


@pytest.mark.parametrize(
    ("ratio", "falling", "verdict", "says"),
    [
        (0.40, False, Verdict.WARN, "not a bug: the model fits"),  # far below the dumb predictor's
        (0.60, True, Verdict.WARN, "not a bug: the model fits"),  # still falling
        (0.60, False, Verdict.WARN, "a plateau, not a stall"),  # a noisy table's ceiling (attrition, credit)
        (0.89, False, Verdict.WARN, "a plateau, not a stall"),  # just under the stall line
        (0.90, False, Verdict.FAIL, "stalled near the dumb predictor's"),  # at the line: a bug
        (0.99, False, Verdict.FAIL, "stalled near the dumb predictor's"),  # a frozen net
    ],
)
def test_train_target_fails_only_on_a_stall_near_the_dumb_predictor(ratio, falling, verdict, says):
    dumb = 0.44  # nats: a 16%-positive binary target (attrition)
    curve = list(np.linspace(1.0, 0.3, 40)) if falling else [ratio * dumb] * 40
    found = overfit._target_finding(_short_fit(ratio * dumb, curve), OverfitConfig(), 0, reference_loss=dumb).check
    assert found.verdict is verdict
    assert says in f"{found.observed} {found.advice}"
