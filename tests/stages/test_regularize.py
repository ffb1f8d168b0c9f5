"""Stage 4, regularize: which candidates a config asks for, and the checkpoint plumbing of the pretrain
candidate. The digits run is in test_overfit_regularize_digits.py; the keep/drop/combine rules are unit-tested
in tests/checks/test_ablation.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from recipe.checks import ablation
from recipe.checks.ablation import CandidateResult, Choice, Decision
from recipe.config import RecipeConfig
from recipe.fit import load_matching, resolve_checkpoint
from recipe.report import StageResult, Verdict
from recipe.stages.regularize import _overfit_checkpoint, candidate_specs

IMAGES, TABLES = SimpleNamespace(in_shape=(1, 8, 8)), SimpleNamespace(in_shape=(13,))


def specs(data=IMAGES, **settings):
    cfg = RecipeConfig().with_overrides({f"stages.regularize.{k}": v for k, v in settings.items()})
    return {s.name: s for s in candidate_specs(cfg, cfg.stages.regularize, data)}


def test_one_candidate_per_regulariser_each_a_single_change():
    got = specs()
    assert list(got) == [
        "augment_crop_rotate",
        "weight_decay_0.05",
        "weight_decay_0.5",
        "dropout_0.3",
        "early_stopping_3",
        "image_size_6",
        "batch_size_32",
        "pretrained",
    ]
    assert got["augment_crop_rotate"].changes == {"data.augment": ["crop", "rotate"]}
    assert got["weight_decay_0.05"].changes == {"optim.name": "adamw", "optim.weight_decay": 0.05}
    assert got["weight_decay_0.05"].group == got["weight_decay_0.5"].group == "weight_decay"
    assert got["image_size_6"].changes == {"data.image_size": 6}
    assert got["batch_size_32"].changes == {"data.batch_size": 32}
    assert "nothing is downloaded" in got["pretrained"].skip
    assert all(not s.skip for n, s in got.items() if n != "pretrained")


def test_tables_get_noise_only_and_no_smaller_input():
    got = specs(TABLES, augment=["crop", "noise"])
    assert got["augment_noise"].changes == {"data.augment": ["noise"]}
    assert "dropping features is not automated" in got["smaller_input"].skip


@pytest.mark.parametrize(
    "settings, name, skip",
    [
        (
            {
                "augment": ["crop"],
                "weight_decay": [],
                "dropout": [],
                "early_stopping": None,
                "smaller_input": None,
                "smaller_batch": None,
            },
            "augment_crop",
            "",
        ),
        ({"augment": ["sharpen"]}, "augment", "unknown augmentation"),
        ({"init_from": "/some/run.pt"}, "pretrained", ""),
    ],
)
def test_settings_choose_the_candidates(settings, name, skip):
    got = specs(**settings)
    assert name in got and (skip in got[name].skip if skip else not got[name].skip)
    if settings.get("weight_decay") == []:
        assert set(got) == {"augment_crop", "pretrained"}


def test_weight_decay_stays_l2_for_sgd():
    cfg = RecipeConfig().with_overrides({"optim.name": "sgd"})
    got = {s.name: s for s in candidate_specs(cfg, cfg.stages.regularize, IMAGES)}
    assert got["weight_decay_0.05"].changes["optim.name"] == "sgd"


def test_a_checkpoint_loads_where_names_and_shapes_match(tmp_path):
    src = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    path = tmp_path / "w.pt"
    torch.save({"model": src.state_dict(), "epoch": 3}, path)  # a recipe checkpoint holds more than weights
    dst = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))  # a new head: 5 classes
    loaded, skipped = load_matching(dst, path)
    assert loaded == ["0.weight", "0.bias"] and skipped == ["2.weight", "2.bias"]
    assert torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(ValueError, match="no tensor"):
        load_matching(nn.Linear(7, 7), path)


def test_nothing_is_fetched_from_the_web(tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded from the web"):
        resolve_checkpoint("https://example.com/resnet.pt", tmp_path)
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(str(tmp_path / "missing.pt"), tmp_path)
    (tmp_path / "w.pt").write_bytes(b"x")
    assert resolve_checkpoint((tmp_path / "w.pt").as_uri(), tmp_path) == tmp_path / "w.pt"


# --- the gates -----------------------------------------------------------------------------------------------


def _result(name, val_loss, train_loss, acc=0.98, train_acc=1.0):
    return CandidateResult(
        name,
        name,
        {"x": 1} if name != "reference" else {},
        val_metric=acc,
        train_metric=train_acc,
        val_loss=val_loss,
        train_loss=train_loss,
    )


def test_nothing_helping_warns_with_the_reference_curves():
    ref = _result("reference", 0.09, 0.0002)
    t_ref = SimpleNamespace(history=[{"train/loss": 2.3 * 0.7**i, "val/loss": 2.3 * 0.8**i} for i in range(10)])
    f = ablation.improves_on_reference(
        ref,
        ref,
        Choice(ref, "no candidate beat the reference"),
        decisions={},
        metric="accuracy",
        criterion="loss",
        ref_history=t_ref.history,
        init_loss=math.log(10),
    )
    assert f.verdict is Verdict.WARN
    assert "nothing helped" in f.check.observed and "reference's curves" in f.check.observed
    assert ablation.gap_shrinks(ref, ref, True, metric="accuracy", criterion="loss").verdict is Verdict.WARN


def test_a_kept_change_passes_when_the_gap_shrinks():
    ref, aug = _result("reference", 0.09, 0.0002), _result("augment", 0.04, 0.01, acc=0.989)
    d = {"augment": Decision("augment", True, 0.05, 0.03, "beyond noise")}
    f = ablation.improves_on_reference(
        ref,
        aug,
        Choice(aug, "only kept change"),
        decisions=d,
        metric="accuracy",
        criterion="loss",
        ref_history=[],
        init_loss=None,
    )
    assert f.verdict is Verdict.PASS and "val loss 0.04 vs reference 0.09" in f.check.observed
    gap = ablation.gap_shrinks(ref, aug, True, metric="accuracy", criterion="loss")
    assert gap.verdict is Verdict.PASS and "0.0898 (reference) -> 0.03" in gap.check.observed
    wider = _result("wd", 0.08, 0.0001)  # a smaller val loss, a smaller gap
    assert ablation.gap_shrinks(ref, wider, True, metric="accuracy", criterion="loss").verdict is Verdict.PASS
    worse_gap = _result("bs", 0.085, -0.02)
    assert ablation.gap_shrinks(ref, worse_gap, True, metric="accuracy", criterion="loss").verdict is Verdict.WARN


def test_the_overfit_checkpoint_is_found_locally_or_by_its_uri(tmp_path):
    w = tmp_path / "overfit.pt"
    w.write_bytes(b"x")
    local = StageResult("overfit", Verdict.PASS, [], {}, RecipeConfig(), artifacts={"checkpoint_path": str(w)})
    assert _overfit_checkpoint(local, tmp_path) == w
    by_uri = StageResult(
        "overfit",
        Verdict.PASS,
        [],
        {},
        RecipeConfig(),
        checkpoint_uri=w.as_uri(),
        artifacts={"checkpoint_path": str(tmp_path / "gone.pt")},
    )  # another process's workdir
    assert _overfit_checkpoint(by_uri, tmp_path) == w
    assert _overfit_checkpoint(None, tmp_path) is None


def mirror_specs(mirror, augment):
    cfg = RecipeConfig().with_overrides({"data.mirror_symmetric": mirror, "stages.regularize.augment": augment})
    return {s.name: s for s in candidate_specs(cfg, cfg.stages.regularize, IMAGES)}


@pytest.mark.parametrize(
    "mirror, augment, name, note",
    [
        # declared not mirror-symmetric (digits): a listed flip is dropped from the candidate, with the reason
        (False, ["crop", "hflip"], "augment_crop", "hflip left out: data.mirror_symmetric=false"),
        # declared mirror-symmetric and listed: tried as listed
        (True, ["crop", "hflip"], "augment_crop_hflip", ""),
        # unknown and listed: the user's call, tried as listed
        (None, ["hflip", "crop"], "augment_hflip_crop", ""),
        # not listed: never added by the stage, and the note says how to ask for it
        (None, ["crop"], "augment_crop", "no hflip: data.mirror_symmetric is unset"),
        (True, ["crop"], "augment_crop", "data.mirror_symmetric=true allows it"),
        (False, ["crop"], "augment_crop", "no hflip: data.mirror_symmetric=false"),
    ],
)
def test_mirroring_follows_the_declared_symmetry_and_says_so(mirror, augment, name, note):
    got = mirror_specs(mirror, augment)
    assert name in got and not got[name].skip
    assert got[name].changes == {"data.augment": name.removeprefix("augment_").split("_")}
    assert note in got[name].note if note else got[name].note == ""


def test_a_flip_alone_on_data_that_is_not_mirror_symmetric_is_skipped():
    got = mirror_specs(False, ["hflip"])
    assert got["augment"].skip.startswith("hflip left out: data.mirror_symmetric=false")
    assert "augment_hflip" not in got


def test_tables_get_no_mirroring_note():
    cfg = RecipeConfig().with_overrides({"stages.regularize.augment": ["noise"]})
    got = {s.name: s for s in candidate_specs(cfg, cfg.stages.regularize, TABLES)}
    assert got["augment_noise"].note == ""


def _bar_against_linear(train, val):
    """regularize's beats_baselines for a model at 0.73 val accuracy on 5,000 val samples against a linear baseline
    at 0.82 (9 se behind by the aggregate bound) and a majority class at 0.10, with the chosen run's curves."""
    from recipe.checks.ablation import BarEvidence
    from recipe.checks.curves import diagnose_curves
    from recipe.stages.regularize import beats_baselines

    baselines = {"baseline/majority_accuracy": 0.10, "baseline/linear_accuracy": 0.82}
    curves = diagnose_curves(train, val, reference_loss=2.3)
    return curves, beats_baselines(0.73, "classification", baselines, BarEvidence(n=5000), curves)


def test_trailing_the_linear_baseline_while_still_learning_warns_and_once_converged_fails():
    epochs = range(1, 21)
    # both losses still falling steeply at the end (a budget's short candidates): under-trained, no bug shown
    curves, still = _bar_against_linear([2.3 - 0.08 * e for e in epochs], [2.3 - 0.07 * e for e in epochs])
    assert any(f.name == "curves_train_longer" and f.verdict == Verdict.WARN for f in curves)
    assert still.verdict == Verdict.WARN and "under-trained" in still.check.advice, still.check
    # the same numbers after the curves have flattened: behind a linear model at convergence is a FAIL
    flat_train = [2.3 * 0.5**e + 0.7 for e in epochs]
    flat_val = [2.3 * 0.5**e + 0.8 for e in epochs]
    curves, converged = _bar_against_linear(flat_train, flat_val)
    assert not any(f.name == "curves_train_longer" and f.verdict == Verdict.WARN for f in curves)
    assert converged.verdict == Verdict.FAIL and "linear" in converged.check.advice, converged.check
