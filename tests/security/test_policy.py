"""recipe.policy: one rule set for what a deployment run's parameters can import, connect to and read."""

from __future__ import annotations

import pytest

from recipe import policy
from recipe.config import ConfigError, load_config
from recipe.models import build_model
from recipe.policy import PolicyError


def test_a_custom_model_is_refused_where_it_is_built_in_an_untrusted_process(monkeypatch):
    monkeypatch.delenv(policy.ALLOWED_MODULES_ENV, raising=False)
    cfg = load_config(overrides=["model.name=tests.models.custom_net:TinyNet"])
    build_model(cfg.model, (1, 8, 8), 10)  # the CLI user is trusted
    with policy.untrusted_run():
        with pytest.raises(PolicyError, match="tests.models.custom_net"):
            build_model(cfg.model, (1, 8, 8), 10)
        monkeypatch.setenv(policy.ALLOWED_MODULES_ENV, "tests.models")
        build_model(cfg.model, (1, 8, 8), 10)
    assert not policy.untrusted()


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("optim.lr", True),
        ("schedule.name", True),
        ("model.width", True),
        ("data.augment", True),
        ("model.name", False),
        ("data.root", False),
        ("stages.tune.storage", False),
        ("model.kwargs", False),
    ],
)
def test_tune_space_keys_are_limited_to_hyperparameters(key, ok):
    cfg = load_config(
        overrides=[
            f"stages.tune.space.x.key={key}",
            "stages.tune.space.x.type=categorical",
            "stages.tune.space.x.choices=[a, b]",
        ]
    )
    if ok:
        policy.check_tune_space(cfg.stages.tune.space)
    else:
        with pytest.raises(PolicyError, match=f"stages.tune.space.x searches '{key}'"):
            policy.check_tune_space(cfg.stages.tune.space)


def test_a_custom_model_in_the_tune_space_is_named_as_an_import(monkeypatch):
    monkeypatch.delenv(policy.ALLOWED_MODULES_ENV, raising=False)
    cfg = load_config(
        overrides=[
            "stages.tune.space.arch.key=model.name",
            "stages.tune.space.arch.type=categorical",
            "stages.tune.space.arch.choices=[cnn, 'os:system']",
        ]
    )
    with pytest.raises(PolicyError, match=r"stages.tune.space.arch='os:system' imports module 'os'"):
        policy.check_untrusted_config(cfg)


def test_the_tune_stage_resolves_no_space_that_sets_what_to_import():
    from recipe.tune.space import resolve

    cfg = load_config(
        overrides=[
            "stages.tune.space.arch.key=model.name",
            "stages.tune.space.arch.type=categorical",
            "stages.tune.space.arch.choices=[cnn, mlp]",
        ]
    )
    with pytest.raises(PolicyError, match="model.name"):
        resolve(cfg, cfg.stages.tune.space)


def test_dask_addresses_and_storage_must_be_allowed_by_the_operator(monkeypatch):
    monkeypatch.delenv(policy.ALLOWED_DASK_ENV, raising=False)
    monkeypatch.delenv(policy.ALLOWED_STORAGE_ENV, raising=False)
    with pytest.raises(PolicyError, match=f"stages.tune.dask_address='tcp://evil:8786'.*{policy.ALLOWED_DASK_ENV}"):
        policy.check_dask_address("tcp://evil:8786")
    monkeypatch.setenv(policy.ALLOWED_DASK_ENV, "tcp://scheduler:8786")
    policy.check_dask_address("tcp://scheduler:8786")
    policy.check_dask_address(None)
    with pytest.raises(PolicyError, match=r"stages.tune.storage='postgresql://u:\*\*\*@db/x'") as e:
        policy.check_storage("postgresql://u:PASSWORD@db/x")
    assert "PASSWORD" not in str(e.value)
    monkeypatch.setenv(policy.ALLOWED_STORAGE_ENV, "postgresql://u:other@db/x")
    policy.check_storage("postgresql://u:PASSWORD@db/x")  # compared without the password


@pytest.mark.parametrize("preset", ["../../etc/x", "/etc/passwd", "sub/digits", "..", "~root/x"])
def test_a_preset_is_a_name_not_a_path(preset):
    with pytest.raises(ConfigError, match="is a path; a preset is the name of a shipped one: digits"):
        load_config(preset=preset)


def test_job_variables_that_replace_the_workers_command_env_or_folder_are_refused():
    policy.check_job_variables({})
    policy.check_job_variables(None)
    policy.check_job_variables({"stream_output": True, "labels": {}})
    for key, value in [("command", "sh -c id"), ("env", {"X": "1"}), ("working_dir", "/tmp")]:
        with pytest.raises(PolicyError, match=f"job variable\\(s\\) {key} may not be set"):
            policy.check_job_variables({key: value})


def test_flows_deploy_locks_the_pools_job_template():
    import asyncio

    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    from flows.deployments import locked_job_template

    default = asyncio.run(get_default_base_job_template_for_infrastructure_type("process"))
    locked = locked_job_template(default)
    for key in policy.JOB_VARIABLES_REFUSED:
        assert key in default["variables"]["properties"]  # what Prefect's default would let a run set
        assert key not in locked["variables"]["properties"] and key not in locked["job_configuration"]
    assert locked["variables"]["additionalProperties"] is False
    assert locked_job_template(locked) == locked
