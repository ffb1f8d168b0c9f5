"""`flows run recipe` through the real CLI and Prefect flow: a second run on an up-to-date store reuses every stage
(the terminal names the runs), `--fresh` reruns them (fake stages keep it about the plumbing)."""

import json
import re
import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.fakes import fake_stages  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness", "mlflow_store")
runner = CliRunner()


def test_a_second_run_reuses_every_stage_and_fresh_reruns_them(fake_stages, tmp_path):
    _, calls = fake_stages
    args = ["run", "recipe", "--set", "name=cli-reuse"]
    first = runner.invoke(app, [*args, "--report", str(tmp_path / "1.json")])
    assert first.exit_code == 0, first.output
    ids = {s["stage"]: s["run_id"] for s in json.loads((tmp_path / "1.json").read_text())["stages"]}
    calls.clear()
    start = time.perf_counter()
    second = runner.invoke(app, [*args, "--set", "stages.tune.parallel=3", "--report", str(tmp_path / "2.json")])
    seconds = time.perf_counter() - start
    assert second.exit_code == 0, second.output
    assert calls == [] and seconds < 30, seconds
    report = json.loads((tmp_path / "2.json").read_text())
    assert report["reused"] == ["a", "b", "c"] and {s["stage"]: s["run_id"] for s in report["stages"]} == ids
    text = re.sub(r"\s+", " ", second.output)
    for name, run_id in ids.items():
        # one line per reused stage: its verdict, check counts and run, not its table again
        line = rf"stage {name}: PASS, \d+ checks?(: \d+ pass)?; up to date: reused run {run_id} \(same config"
        assert re.search(line, text), text
        # said once in the summary: the line, not again as a note under it (the JSON report keeps the note)
        assert f"note: reused run {run_id}" not in text, text
    assert all(any(n.startswith("reused run ") for n in s["notes"]) for s in report["stages"])
    calls.clear()
    fresh = runner.invoke(app, [*args, "--fresh"])
    assert fresh.exit_code == 0, fresh.output
    assert [c[0] for c in calls] == ["a", "b", "c"] and "reused run" not in fresh.output


def test_rerun_from_reuses_the_stages_before_it_and_reruns_it_and_those_after(fake_stages, tmp_path):
    _, calls = fake_stages
    args = ["run", "recipe", "--set", "name=cli-rerun-from"]
    assert runner.invoke(app, args).exit_code == 0
    calls.clear()
    out = runner.invoke(app, [*args, "--rerun-from", "b", "--report", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert [c[0] for c in calls] == ["b", "c"]
    assert json.loads((tmp_path / "r.json").read_text())["reused"] == ["a"]
    bad = runner.invoke(app, [*args, "--rerun-from", "nope"])
    assert bad.exit_code == 2 and "unknown --rerun-from 'nope'" in bad.output
