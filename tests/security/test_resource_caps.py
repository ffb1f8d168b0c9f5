"""Resource caps (issue 22, "overridable on the CLI, not from a form"): a size, width, epoch or parallelism
setting above its cap is refused by default with exit 2 naming the key, the value and the range; the CLI user
lifts the caps with ``--no-caps`` or ``RECIPE_LIFT_CAPS=1``; a deployment run (``RECIPE_UNTRUSTED_RUN=1``) can
never lift them, and the bounds of meaning (no negatives, finite numbers, fractions below 1) are never lifted.
"""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from flows import cli
from recipe import policy
from recipe.config import MAX_INT, ConfigError, load_config, numeric_range, resource_caps

# key, a value over its cap as typed on the command line, the value the config holds when the caps are lifted
OVER_CAP = [
    ("data.image_size", "100000", 100000),
    ("model.width", "1e6", 1_000_000),
    ("model.depth", "1000", 1000),
    ("budget.epochs", "1e9", 1_000_000_000),
    ("budget.time_limit_s", "1e8", 1e8),
    ("stages.tune.parallel", "10000", 10000),
    ("stages.tune.n_trials", "1e5", 100_000),
    ("stages.squeeze.members", "1000", 1000),
]
IDS = [key for key, _, _ in OVER_CAP]


@pytest.fixture(autouse=True)
def _caps_env(monkeypatch):
    """Neither mark set at the start; whatever a test (or --no-caps, which sets the variable) leaves is undone."""
    for name in (policy.LIFT_CAPS_ENV, policy.UNTRUSTED_ENV):
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)


def _config(*args: str):
    return CliRunner().invoke(cli.app, ["config", *args])


def _value(output: str, key: str):
    node = yaml.safe_load(output.split("# config_hash:")[0])
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(("key", "text", "value"), OVER_CAP, ids=IDS)
def test_over_a_cap_is_refused_by_default_naming_key_value_and_range(key, text, value):
    result = _config("--set", f"{key}={text}")
    assert result.exit_code == 2, result.output
    assert key in result.output and repr(value) in result.output, result.output
    assert f"allowed: {numeric_range(key.split('.'))}" in result.output
    assert "--no-caps" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("key", "text", "value"), OVER_CAP, ids=IDS)
def test_the_cli_user_lifts_the_caps(key, text, value, monkeypatch):
    flag = _config("--no-caps", "--set", f"{key}={text}")
    assert flag.exit_code == 0, flag.output
    assert _value(flag.output, key) == value
    monkeypatch.delenv(policy.LIFT_CAPS_ENV)  # --no-caps set it; now the variable alone
    monkeypatch.setenv(policy.LIFT_CAPS_ENV, "1")
    env = _config("--set", f"{key}={text}")
    assert env.exit_code == 0, env.output
    assert _value(env.output, key) == value


@pytest.mark.parametrize(("key", "text", "value"), OVER_CAP, ids=IDS)
def test_a_deployment_run_cannot_lift_the_caps(key, text, value, monkeypatch):
    monkeypatch.setenv(policy.UNTRUSTED_ENV, "1")
    monkeypatch.setenv(policy.LIFT_CAPS_ENV, "1")
    result = _config("--no-caps", "--set", f"{key}={text}")
    assert result.exit_code == 2, result.output
    assert key in result.output and repr(value) in result.output
    assert "a deployment run cannot lift resource caps" in result.output


@pytest.mark.parametrize(
    "override",
    [
        "model.width=-1",
        "model.width=0",
        "budget.epochs=.inf",
        "budget.time_limit_s=.nan",
        "model.dropout=1.5",
        f"budget.max_steps={MAX_INT + 1}",
        "split.seed=4294967296",
    ],
)
def test_the_bounds_of_meaning_stay_on_with_the_caps_lifted(override, monkeypatch):
    monkeypatch.setenv(policy.LIFT_CAPS_ENV, "1")
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert override.split("=")[0] in str(err.value)


def test_check_caps_refuses_a_config_validated_before_the_untrusted_mark(monkeypatch):
    """Prefect validates a deployment run's ``config`` before the flow marks itself untrusted: in a worker with
    RECIPE_LIFT_CAPS=1 that lets an over-cap config through, and the flow's start check must still refuse it."""
    monkeypatch.setenv(policy.LIFT_CAPS_ENV, "1")
    cfg = load_config(overrides=["model.width=100000", "stages.tune.parallel=10000"])
    policy.check_untrusted_config(cfg)  # trusted: lifted, nothing to refuse
    with policy.untrusted_run(), pytest.raises(ConfigError) as err:
        policy.check_untrusted_config(cfg)
    message = str(err.value)
    assert "model.width" in message and "100000" in message and "1 <= model.width <= 4096" in message
    assert "stages.tune.parallel" in message and "1 <= stages.tune.parallel <= 256" in message


def test_assignment_and_trial_overrides_meet_the_same_caps():
    cfg = load_config()
    with pytest.raises(ValueError, match="resource cap"):
        cfg.model.width = 100_000
    with pytest.raises(ConfigError, match="model.width"):
        cfg.with_overrides({"model.width": 100_000})


def test_the_caps_are_the_resource_settings_and_explain_lists_them():
    caps = resource_caps()
    assert {"data.image_size", "model.width", "budget.epochs", "stages.tune.parallel", "stages.tune.n_trials"} <= set(
        caps
    )
    assert not {"model.dropout", "split.seed", "optim.lr"} & set(caps)  # bounds of meaning, never liftable
    explained = CliRunner().invoke(cli.app, ["config", "--explain"]).output
    assert "(allowed: 4 <= data.image_size <= 4096)" in explained
