"""A recipe that fails its second stage, run as a flow against the Prefect server of PREFECT_API_URL (the
notification and Prefect UI tests): the first two real stage names, stand-in stages (tests/fakes.py), the real
flow, pipeline, tracking, artifacts and events. Prints the flow run's id."""

from recipe import pipeline
from recipe.config import load_config
from recipe.report import Verdict
from tests.fakes import fake_stage

STAGES = {"inspect": fake_stage("inspect"), "baselines": fake_stage("baselines", Verdict.FAIL)}


def main() -> None:
    pipeline.STAGES = STAGES
    pipeline.stage_names = lambda: list(STAGES)
    from flows.recipe_flow import recipe

    state = recipe(config=load_config(overrides=["name=nightly-fail"]), return_state=True)
    assert state.is_failed(), state
    print(state.state_details.flow_run_id)


if __name__ == "__main__":
    main()
