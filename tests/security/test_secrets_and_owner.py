"""Secrets never logged (recipe.secrets) and an owner identity that survives shared hostnames (recipe.owner)."""

from __future__ import annotations

import logging
import os

import pytest
from mlflow import MlflowClient

from recipe import tracking
from recipe.config import load_config
from recipe.secrets import RedactingFilter, redact_text, redact_url, reveal

PASSWORD = "Pl4nted-pw"
URL = f"postgresql://optuna:{PASSWORD}@db.example:5432/optuna"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (URL, "postgresql://optuna:***@db.example:5432/optuna"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("http://host:5000", "http://host:5000"),
        ("tcp://user@host:8786", "tcp://user@host:8786"),
        ("/a/journal.log", "/a/journal.log"),
    ],
)
def test_urls_keep_everything_but_the_password(url, redacted):
    assert redact_url(url) == redacted
    assert redact_text(f"opening {url} now") == f"opening {redacted} now"


def test_the_config_holds_the_redacted_url_and_the_process_the_real_one():
    cfg = load_config(overrides=[f"stages.tune.storage={URL}"])
    assert cfg.stages.tune.storage == redact_url(URL) and reveal(cfg.stages.tune.storage) == URL
    assert PASSWORD not in str(cfg.to_dict()) and PASSWORD not in str(cfg.flat())
    handed_on = cfg.with_overrides({"optim.lr": 0.1})  # a stage's hand-on keeps the way to the real URL
    assert reveal(handed_on.stages.tune.storage) == URL
    other = load_config(overrides=[f"stages.tune.storage={URL.replace(PASSWORD, 'changed')}"])
    assert other.config_hash() == cfg.config_hash()  # a new password is not a new config (or a new study)


def test_the_redacting_filter_rewrites_messages_and_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "study in %s (%s)", (URL, 3), None)
    RedactingFilter().filter(record)
    assert PASSWORD not in record.getMessage() and "optuna:***@db.example" in record.getMessage()


def test_params_and_tags_are_redacted_on_the_way_to_the_store(mlflow_store):
    tracking.setup("redact")
    with tracking.start_run("r", {}, params={"where": URL}) as run:
        tracking.set_tags({"recipe.note": f"used {URL}"})
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.params["where"] == redact_url(URL) and PASSWORD not in data.tags["recipe.note"]


def test_runs_carry_boot_id_and_pid_namespace_and_other_namespaces_are_not_judged_by_pid(mlflow_store):
    from recipe.owner import boot_id, hostname, owner_gone, pid_namespace, process_start_time

    tracking.setup("owners")
    with tracking.start_run("r", {}) as run:
        pass
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags[tracking.TAG_OWNER_BOOT] == boot_id() and tags[tracking.TAG_OWNER_PIDNS] == pid_namespace()
    if not boot_id() or not pid_namespace():
        pytest.skip("no /proc boot id or pid namespace here")
    dead_pid = 2**22 + 7  # above pid_max's default: no process has it
    assert owner_gone(hostname(), str(dead_pid), "", boot_id(), pid_namespace())
    assert not owner_gone(hostname(), str(dead_pid), "", "another-boot", pid_namespace())  # a cloned machine
    assert not owner_gone(hostname(), str(dead_pid), "", boot_id(), "pid:[1]")  # a container sharing the name

    exp_id = tracking.setup("owners")
    client = MlflowClient()
    me = {
        tracking.TAG_OWNER_HOST: hostname(),
        tracking.TAG_OWNER_BOOT: boot_id(),
        tracking.TAG_OWNER_PIDNS: pid_namespace(),
        tracking.TAG_OWNER_PID: str(dead_pid),
        tracking.TAG_OWNER_START: f"{process_start_time(os.getpid()):.2f}",
    }
    here = client.create_run(exp_id, tags=me).info.run_id
    container = client.create_run(exp_id, tags={**me, tracking.TAG_OWNER_PIDNS: "pid:[1]"}).info.run_id
    clone = client.create_run(exp_id, tags={**me, tracking.TAG_OWNER_BOOT: "another-boot"}).info.run_id
    assert tracking.end_orphaned_runs() == [here]
    assert client.get_run(container).info.status == client.get_run(clone).info.status == "RUNNING"
