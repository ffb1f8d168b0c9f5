"""The MLflow UI as a user sees it: a real headless Chromium (Debian's, driven by Selenium) opens the recipe's runs
page of a real `mlflow server` on loopback (the training runs, with the recipe's shared view: the recipe.verdict
column), finds the recipe's parent run, expands it and sees its six stage runs with their dataset, then opens a
stage run and reads its description (the verdict table). Screenshots are saved under the test's tmp path.

The runs come from the real pipeline and tracking code (``recipe.pipeline.run_recipe``) with stand-in stages
under the six real stage names: what is under test is the MLflow layout a user browses (one parent run per
flow run, one child per stage), not the stages' work. Needs ``chromium`` and ``chromium-driver`` (apt);
``.ci/run`` installs them, and the test skips, saying so, where they are missing.
"""

from __future__ import annotations

import shutil
import time

import pytest

from recipe import pipeline, tracking
from recipe.config import RecipeConfig
from tests.fakes import fake_stage
from tests.ops.conftest import mlflow_server_at

pytestmark = [pytest.mark.ops, pytest.mark.timeout(300)]
STAGES = ["inspect", "baselines", "overfit", "regularize", "tune", "squeeze"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--no-proxy-server",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(find, timeout: float = 60, what: str = "element", ui: str = "MLflow"):
    """Poll ``find`` until it returns something truthy; fail naming ``what`` the ``ui`` did not show in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = find()
            if found:
                return found
        except Exception:  # not rendered yet (NoSuchElement, stale element)
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the {ui} UI did not show the {what} within {timeout:.0f} s")
        time.sleep(0.5)


def test_the_recipe_parent_run_expands_to_its_six_stage_runs(browser, _mlflow_template, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    with mlflow_server_at(tmp_path / "store", _mlflow_template) as (url, _):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setattr(pipeline, "STAGES", {n: fake_stage(n) for n in STAGES})
        monkeypatch.setattr(pipeline, "stage_names", lambda: list(STAGES))
        outcome = pipeline.run_recipe(RecipeConfig(name="digits"), say=lambda _: None)
        parent = outcome.report["parent_run_id"]
        exp = MlflowClient(url).get_experiment_by_name("digits").experiment_id

        browser.get(tracking.experiment_runs_url(url, exp))  # opens on the training runs, the recipe's columns
        link = wait_for(lambda: browser.find_element("css selector", f"a[href*='{parent}']"), what="parent run")
        assert link.text == "digits:recipe"
        headers = wait_for(
            lambda: [h.text for h in browser.find_elements("css selector", "[role='columnheader']") if h.text],
            what="the runs table's columns",
        )
        assert any("recipe.verdict" in h for h in headers), headers
        cell = link.find_element("xpath", "./ancestor::*[@role='gridcell'][1]")
        cell.find_element("css selector", "button[data-component-id*='runnamecellrenderer']").click()  # the "+"

        def child_names():
            names = [a.text for a in browser.find_elements("css selector", "a[href*='/runs/']")]
            return [n for n in names if n in STAGES] if set(STAGES) <= set(names) else None

        assert sorted(wait_for(child_names, what="six stage runs under the parent")) == sorted(STAGES)
        wait_for(lambda: "digits-train" in browser.page_source, what="the stage runs' dataset (digits-train)")
        shots = [tmp_path / "mlflow-ui-recipe.png"]
        assert browser.save_screenshot(str(shots[-1]))

        overfit = next(s["run_id"] for s in outcome.report["stages"] if s["stage"] == "overfit")
        browser.get(f"{url}/#/experiments/{exp}/runs/{overfit}?workflowType=machine_learning")
        wait_for(lambda: "stage overfit: PASS" in browser.page_source, what="the stage run's description")
        wait_for(lambda: "overfit_ok" in browser.page_source, what="the description's checks table")
        shots.append(tmp_path / "mlflow-ui-stage-run.png")
        assert browser.save_screenshot(str(shots[-1]))
        print("screenshots:", *shots)
        assert all(s.stat().st_size > 10_000 for s in shots)
