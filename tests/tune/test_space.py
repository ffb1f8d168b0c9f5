"""The search space: YAML/--set overrides merge over the defaults, ranges resolve around the handed-on config,
and what cannot be searched is held fixed with the reason."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from recipe.config import ConfigError, RecipeConfig, load_config
from recipe.tune.space import resolve


def test_overrides_merge_over_the_default_space_and_null_holds_fixed():
    cfg = load_config(overrides=["stages.tune.space.lr.high=3", "stages.tune.space.dropout=null"])
    space = cfg.stages.tune.space
    assert space["lr"].high == 3 and space["lr"].low == 0.1 and space["lr"].key == "optim.lr"
    assert space["dropout"] is None and "width" in space
    assert cfg.with_overrides({"optim.lr": 1e-3}).stages.tune.space == space  # survives a round trip
    with pytest.raises(ConfigError, match="stages.tune.space.lr.lo"):
        load_config(overrides=["stages.tune.space.lr.lo=1"])
    with pytest.raises(ConfigError, match="low <= high"):
        load_config(overrides=["stages.tune.space.lr.low=20"])


def test_ranges_resolve_around_the_handed_on_config():
    cfg = RecipeConfig().with_overrides(
        {"optim.lr": 1e-3, "model.width": 32, "model.depth": 1, "data.augment": ["crop"]}
    )
    space = resolve(cfg, cfg.stages.tune.space)
    dims = {d.name: d.distribution for d in space.dims}
    assert dims["lr"] == FloatDistribution(1e-4, 1e-2, log=True)  # a decade each side
    assert dims["width"] == IntDistribution(16, 64, log=True)
    assert dims["depth"] == IntDistribution(1, 2)  # depth - 1 is clipped at 1
    assert dims["augment"] == CategoricalDistribution(["on", "off"])
    assert dims["schedule"] == CategoricalDistribution(["constant", "cosine", "one_cycle"])
    assert space.fixed == {}
    params = {"lr": 2e-3, "weight_decay": 0.01, "augment": "off", "schedule": "one_cycle", "width": 20}
    tuned = space.apply(cfg, params)
    assert tuned.optim.lr == 2e-3 and tuned.optim.name == "adamw"  # weight decay with Adam: decoupled
    assert tuned.data.augment == [] and tuned.schedule.name == "one_cycle" and tuned.model.width == 20
    assert space.apply(cfg, {"augment": "on"}).data.augment == ["crop"]


def test_what_cannot_be_searched_is_held_fixed_with_the_reason():
    cfg = RecipeConfig().with_overrides({"model.name": "linear", "stages.tune.space.schedule": None})
    space = resolve(cfg, cfg.stages.tune.space)
    assert "already off" in space.fixed["augment"]  # regularize did not keep augmentation
    assert "has no model.width" in space.fixed["width"] and "has no model.dropout" in space.fixed["dropout"]
    assert "null" in space.fixed["schedule"]
    assert {d.name for d in space.dims} == {"lr", "weight_decay", "batch_size"}
    bad = RecipeConfig().with_overrides({"stages.tune.space.x": {"key": "optim.nope", "low": 0, "high": 1}})
    with pytest.raises(ValueError, match="not a config key"):
        resolve(bad, bad.stages.tune.space)
