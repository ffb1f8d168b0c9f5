"""deploy/prefect.yaml as flows/deployments.py reads it for `flows deploy` and `flows serve` (no servers)."""

from __future__ import annotations

import pytest

from flows.deployments import (
    PREFECT_FILE,
    DeploymentFileError,
    deployment_spec,
    deployment_specs,
    work_pools,
)
from flows.recipe_flow import recipe as recipe_flow


def test_the_shipped_file_deploys_the_recipe_flow_nightly_on_a_process_pool():
    spec = deployment_spec()
    assert spec.name == "nightly" and spec.work_pool == "recipe-pool"
    assert spec.entrypoint == "flows.recipe_flow:recipe"  # by module
    assert spec.parameters["preset"] == "digits"
    assert set(spec.parameters) <= set(recipe_flow.parameters.properties)  # every default names a flow parameter
    (schedule,) = spec.prefect_schedules()
    assert schedule.cron == "0 3 * * *" and schedule.timezone == "UTC"
    assert work_pools() == ["recipe-pool"]


def test_the_entrypoint_loads_the_recipe_flow():
    from prefect.flows import load_flow_from_entrypoint

    assert load_flow_from_entrypoint(deployment_spec().entrypoint_for_loading).name == "recipe"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\n", "has no 'deployments' list"),
        ("deployments:\n  - name: a\n", r"deployments\[0\] needs a name and an entrypoint"),
        (
            "deployments:\n  - {name: a, entrypoint: m:f, schedules: [{cron: '* * * * *', every: 3}]}\n",
            r"unknown schedule keys \['every'\]",
        ),
        ("deployments: [\n", "is not valid YAML"),
    ],
)
def test_a_broken_file_is_a_clear_error(tmp_path, text, match):
    path = tmp_path / "prefect.yaml"
    path.write_text(text)
    with pytest.raises(DeploymentFileError, match=match):
        deployment_specs(path)


def test_an_unknown_deployment_name_lists_the_known_ones():
    with pytest.raises(DeploymentFileError, match="no deployment named 'weekly' .* there are: nightly"):
        deployment_spec("weekly", PREFECT_FILE)


def test_interval_schedules_and_file_entrypoints(tmp_path):
    path = tmp_path / "prefect.yaml"
    path.write_text(
        "deployments:\n  - {name: a, entrypoint: flows/recipe_flow.py:recipe, schedules: [{interval: 600}]}\n"
    )
    spec = deployment_spec(path=path)
    assert spec.prefect_schedules()[0].interval.total_seconds() == 600
    assert (
        spec.entrypoint_for_loading.endswith("/flows/recipe_flow.py:recipe") and spec.entrypoint_for_loading[0] == "/"
    )
