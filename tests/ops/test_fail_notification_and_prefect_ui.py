"""Where a user hears of and reads a FAIL, against a real `prefect server start` (with its UI, its triggers and
actions services) on loopback:

- the FAIL automation of deploy/automations.yaml (``flows.notify``) sends a loopback HTTP receiver a notification
  naming the recipe, the failing stage, its failing check and the check's advice;
- a real headless Chromium (Debian's, driven by Selenium) opens the flow run's page in the Prefect UI (3.8's
  default UI, under /v2), its Artifacts tab, and finds the failed stage's checks-table artifact with its verdict. The
  screenshot is saved under the test's tmp path (printed);
- the same browser opens the artifact pages a user reaches from a key (``/v2/artifacts/key/<key>``, its newest entry
  ``/v2/artifacts/artifact/<id>``, the routes of the UI bundle shipped with Prefect 3.8.8): the stage's checks table
  rendered with the failing check's row (verdict, advice), the stage's MLflow pointer and the flow run's summary,
  each with a screenshot.

The recipe is the real flow with stand-in stages (tests/ops/fail_recipe.py) run in its own process, as a worker
would run it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.deployments import REPO_ROOT
from tests.ops.conftest import copy_mlflow_store, prefect_server_at, run_cli
from tests.ops.test_mlflow_ui_browser import browser, wait_for  # noqa: F401  (fixture)

pytestmark = [pytest.mark.ops, pytest.mark.timeout(420)]


class Receiver(ThreadingHTTPServer):
    """A loopback HTTP server that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture(scope="module")
def prefect_ui_server(ops_tmp: Path):
    """A real `prefect server start` with its UI and every service, on a free loopback port: yields (the UI's base
    URL, the environment a client of it needs)."""
    with prefect_server_at(ops_tmp, "prefect-server-ui", ui=True) as server:
        yield server


@pytest.fixture(scope="module")
def failed_run(prefect_ui_server, _mlflow_template, ops_tmp: Path):
    """The FAIL automation pointed at a loopback receiver, then one flow run of a recipe whose baselines stage
    fails; yields (the UI's base URL, the flow run id, the receiver)."""
    base, env = prefect_ui_server
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**env, "PYTHONPATH": str(REPO_ROOT)}
        done = run_cli([sys.executable, "-m", "flows.notify", "--webhook", receiver.url], env=env, timeout=120)
        assert "recipe-stage-fail" in done.stdout
        env["MLFLOW_TRACKING_URI"] = copy_mlflow_store(_mlflow_template, ops_tmp / "fail-mlruns")
        done = run_cli([sys.executable, "-m", "tests.ops.fail_recipe"], env=env, timeout=180, cwd=REPO_ROOT)
        flow_run_id = done.stdout.strip().splitlines()[-1]
        yield base, flow_run_id, receiver
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_failed_stage_notifies_the_webhook_with_the_failing_check_and_its_advice(failed_run):
    _, _, receiver = failed_run
    deadline = time.monotonic() + 60
    while not receiver.bodies and time.monotonic() < deadline:
        time.sleep(0.5)
    assert receiver.bodies, "no notification reached the webhook within 60 s of the FAIL"
    assert len(receiver.bodies) == 1, receiver.bodies  # inspect passed: no notification for it
    note = receiver.bodies[0]
    assert note["subject"] == "recipe nightly-fail: stage baselines FAILED"
    assert "stage baselines: FAIL" in note["body"]
    assert "- baselines_ok (FAIL): observed no, expected yes. What to do: look here" in note["body"]


def test_the_prefect_ui_shows_each_stages_verdict_on_the_flow_run_page(failed_run, browser, tmp_path):
    base, flow_run_id, _ = failed_run
    browser.get(f"{base}/v2/runs/flow-run/{flow_run_id}")  # Prefect 3.8's default UI lives under /v2
    wait_for(lambda: "nightly-fail:recipe" in browser.page_source, what="the flow run's name", ui="Prefect")
    tab = wait_for(
        lambda: [
            e for e in browser.find_elements("css selector", "[role='tab'], button") if e.text.strip() == "Artifacts"
        ],
        what="the Artifacts tab",
        ui="Prefect",
    )[0]
    tab.click()
    wait_for(lambda: "recipe-nightly-fail-baselines" in browser.page_source, what="the stage's artifact", ui="Prefect")
    wait_for(lambda: "stage baselines: FAIL" in browser.page_source, what="the stage's verdict", ui="Prefect")
    time.sleep(1)  # let the cards finish drawing before the screenshot
    shot = tmp_path / "prefect-flow-run.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print("screenshot:", shot)


def _latest_artifact(base: str, key: str) -> dict:
    """The newest artifact under ``key``, read from the server's REST API (what the UI's key page lists first)."""
    import httpx

    found = httpx.post(
        f"{base}/api/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        timeout=30,
    )
    found.raise_for_status()
    assert found.json(), f"no artifact under the key {key}"
    return found.json()[0]


def _open_from_key_page(browser, base: str, key: str) -> str:
    """Open the UI's page of ``key`` (``/artifacts/key/<key>``: a timeline of every run's artifact under it), click
    the newest one as a user would, and return the artifact id of the page it lands on
    (``/artifacts/artifact/<id>``)."""
    browser.get(f"{base}/v2/artifacts/key/{key}")
    link = wait_for(
        lambda: browser.find_element("css selector", "[data-testid^='timeline-card-'] a[href*='/artifacts/artifact/']"),
        what=f"the timeline of the key {key}",
        ui="Prefect",
    )
    link.click()
    wait_for(lambda: "/artifacts/artifact/" in browser.current_url, what=f"the artifact page of {key}", ui="Prefect")
    return browser.current_url.split("/artifacts/artifact/")[1].split("?")[0]


def test_the_prefect_ui_artifact_page_shows_the_failed_stages_checks_table(failed_run, browser, tmp_path):
    base, flow_run_id, _ = failed_run
    key = "recipe-nightly-fail-baselines"
    newest = _latest_artifact(base, key)
    assert newest["flow_run_id"] == flow_run_id and newest["type"] == "table"

    assert _open_from_key_page(browser, base, key) == newest["id"]
    table = wait_for(
        lambda: browser.find_element("css selector", "[data-testid='table-display'] table"),
        what="the checks table",
        ui="Prefect",
    )
    headers = [h.text.strip() for h in table.find_elements("css selector", "thead th")]
    assert headers == ["check", "verdict", "observed", "expected", "advice"], headers

    def failing_row():
        rows = [
            [td.text.strip() for td in tr.find_elements("css selector", "td")]
            for tr in table.find_elements("css selector", "tbody tr")
        ]
        return next((r for r in rows if r and r[0] == "baselines_ok"), None)

    assert wait_for(failing_row, what="the failing check's row", ui="Prefect") == [
        "baselines_ok",
        "FAIL",
        "no",
        "yes",
        "look here",
    ]
    wait_for(
        lambda: "stage baselines: FAIL" in browser.page_source, what="the verdict in the description", ui="Prefect"
    )
    time.sleep(1)  # let the page finish drawing before the screenshot
    shots = [tmp_path / "prefect-artifact-checks.png"]
    assert browser.save_screenshot(str(shots[-1]))

    # the stage's MLflow pointer: a sqlite store has no UI address, so a markdown with the run and `mlflow ui`
    pointer = _latest_artifact(base, "recipe-nightly-fail-baselines-mlflow")
    assert _open_from_key_page(browser, base, pointer["key"]) == pointer["id"]
    wait_for(
        lambda: (
            "mlflow ui --backend-store-uri"
            in browser.find_element("css selector", "[data-testid='markdown-display']").text
        ),
        what="the stage's MLflow run and the command that opens its store",
        ui="Prefect",
    )
    shots.append(tmp_path / "prefect-artifact-mlflow.png")
    assert browser.save_screenshot(str(shots[-1]))

    # the flow run's summary: each stage's verdict, where it stopped, and the failing check's advice
    summary = _latest_artifact(base, "recipe-nightly-fail-summary")
    assert summary["flow_run_id"] == flow_run_id
    assert _open_from_key_page(browser, base, summary["key"]) == summary["id"]
    shown = wait_for(
        lambda: (
            (t := browser.find_element("css selector", "[data-testid='markdown-display']").text)
            and "Stopped at" in t
            and t
        ),
        what="the flow run's summary",
        ui="Prefect",
    )
    assert "recipe nightly-fail: FAIL" in shown, shown
    assert "baselines_ok (FAIL): look here" in shown, shown
    shots.append(tmp_path / "prefect-artifact-summary.png")
    assert browser.save_screenshot(str(shots[-1]))
    print("screenshots:", *shots)
    assert all(s.stat().st_size > 10_000 for s in shots)
