"""The handed faults of issue 18 (items 6 and 7) through the baselines stage, as a user's model reaches it
(``model.name=module:callable``): the audit names the cause in observed, and the checks that used to give the
wrong cause are now marked as its consequences, without the wrong advice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recipe import tracking
from recipe.config import RecipeConfig, load_config
from recipe.report import StageResult, Verdict, report_dict
from recipe.stages import baselines as baselines_stage
from recipe.stages.base import StageContext

FAST = ["trainer.progress=false", "stages.baselines.plots=false", "optim.lr=1e-3"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a second spin-waiting thread only slows a shared machine down
    yield
    torch.set_num_threads(before)


def run_stage(model: str, workdir: Path) -> StageResult:
    cfg: RecipeConfig = load_config("digits", overrides=[*FAST, f"model.name=tests.models.faulty_nets:{model}"])
    tracking.setup(cfg.name)
    with tracking.start_run("baselines", tracking.run_tags(cfg, None, stage="baselines", kind="stage")):
        return baselines_stage.run(StageContext(cfg=cfg, input_cfg=cfg, workdir=workdir))


def checks(result: StageResult):
    return {c.name: c for c in result.checks}


def test_functional_dropout_in_eval_is_named_and_fixed_seed_is_its_consequence(mlflow_store, tmp_path):
    result = run_stage("FunctionalDropout", tmp_path)
    c = checks(result)
    audit = c["eval_deterministic"]
    assert audit.verdict is Verdict.FAIL
    assert "functional dropout left on in eval: F.dropout(p=0.5, training=True)" in audit.observed
    assert "training=self.training" in audit.advice
    seed = c["fixed_seed"]  # before the audit: FAIL "seed every source of randomness", the wrong cause
    assert seed.verdict is Verdict.FAIL and seed.consequence_of == "eval_deterministic"
    assert "seed every source of randomness" not in seed.advice
    assert result.diagnosis["lead"] == "eval_deterministic" and result.diagnosis["confirmed"]
    assert result.notes[0].startswith("leading cause: eval_deterministic (")
    assert report_dict("digits", [result], None)["stages"][0]["diagnosis"]["lead"] == "eval_deterministic"
    assert result.verdict is Verdict.FAIL


def test_a_conv_body_frozen_at_random_init_is_named_and_the_wrong_lr_advice_is_gone(mlflow_store, tmp_path):
    result = run_stage("FrozenBody", tmp_path)
    c = checks(result)
    audit = c["trainable_parameters"]
    assert audit.verdict is Verdict.FAIL
    assert "requires_grad=False on 2,480 of 2,650 parameters, at their random init" in audit.observed
    assert "body.0 (Conv2d, 160), body.2 (Conv2d, 2,320)" in audit.observed
    one = c["overfit_one_batch"]  # before: FAIL with four generic possibilities
    assert one.verdict is Verdict.FAIL and one.consequence_of == "trainable_parameters"
    assert "requires_grad=False or parameters missing" not in one.advice  # the generic list is gone
    slow = c["training_loss_decreases"]  # before: WARN "the learning rate may be too low"
    assert "learning rate may be too low" not in slow.advice
    assert slow.verdict is Verdict.PASS or slow.consequence_of == "trainable_parameters"
    marked = [n for n, x in c.items() if x.consequence_of]
    assert result.diagnosis["lead"] == "trainable_parameters" and result.diagnosis["consequences"] == marked


def test_the_clean_version_of_both_raises_nothing_from_the_audit(mlflow_store, tmp_path):
    result = run_stage("Mlp", tmp_path)
    c = checks(result)
    assert [c[n].verdict for n in ("trainable_parameters", "eval_deterministic", "batchnorm_train_mode")] == [
        Verdict.PASS
    ] * 3
    assert result.diagnosis is None and result.verdict is Verdict.PASS
