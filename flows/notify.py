"""Who hears of a FAIL: a Prefect event per stage verdict, and the automation that turns a FAIL into a notification.

Every stage that runs (or is reused) in a flow run emits one Prefect event (https://docs.prefect.io/v3/automate/events)
named :data:`EVENT` (``recipe.stage.verdict``) on the resource ``recipe.<recipe>.<stage>``, labelled with
``recipe.name``, ``recipe.stage`` and ``recipe.verdict`` (``pass``/``warn``/``fail``); its payload holds the stage,
the verdict, the MLflow run id, whether the stage was reused, and each check that did not pass with its observed
value, expectation and advice. The event is related to the flow run, so the Prefect UI's event feed links them.

:func:`ensure_fail_automation` (``python -m flows.notify --webhook URL``) saves a notification block and creates
or updates the automation :data:`AUTOMATION` of ``deploy/automations.yaml``: a reactive trigger on
``recipe.stage.verdict`` events whose ``recipe.verdict`` label is ``fail`` (a ``--force`` run past a failed stage
notifies too), whose action sends the block a message naming the recipe, the stage, the failing checks and their
advice. Automations need the server's ``triggers`` and ``actions`` services, which ``prefect server start`` runs
by default (``PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED``, ``..._ACTIONS_ENABLED``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from recipe.report import StageResult, _fmt

EVENT = "recipe.stage.verdict"
AUTOMATION_FILE = Path(__file__).resolve().parents[1] / "deploy" / "automations.yaml"
AUTOMATION = "recipe-stage-fail"
BLOCK = "recipe-fail"  # the default name of the notification block the automation sends to


def resource_id(recipe: str, stage: str) -> str:
    """``recipe.<recipe>.<stage>``: the event's resource, one per recipe and stage (so Prefect's event feed can be
    filtered to one stage's history)."""
    return f"recipe.{recipe}.{stage}"


def verdict_event(recipe: str, result: StageResult, run_id: str | None, reused: bool = False) -> dict[str, Any]:
    """The keyword arguments of :func:`prefect.events.emit_event` for a stage's verdict (see the module docstring):
    ``event``, ``resource`` (id and labels) and ``payload`` (stage, verdict, run_id, reused, failing_checks, a
    list of {check, verdict, observed, expected, advice} for every check that did not pass)."""
    verdict = result.verdict.value
    return {
        "event": EVENT,
        "resource": {
            "prefect.resource.id": resource_id(recipe, result.stage),
            "prefect.resource.name": f"{recipe}:{result.stage}",
            "recipe.name": recipe,
            "recipe.stage": result.stage,
            "recipe.verdict": verdict,
        },
        "payload": {
            "recipe": recipe,
            "stage": result.stage,
            "verdict": verdict,
            "run_id": run_id,
            "reused": reused,
            "failing_checks": [
                {
                    "check": c.name,
                    "verdict": c.verdict.value,
                    "observed": _fmt(c.observed),
                    "expected": _fmt(c.expected),
                    "advice": c.advice or c.hypothesis,
                }
                for c in result.checks
                if c.verdict.value != "pass"
            ],
        },
    }


def emit_verdict(recipe: str, result: StageResult, run_id: str | None, reused: bool = False) -> None:
    """Emit the stage's verdict event, related to the current flow run (Prefect adds it). Events are sent in the
    background; an error of the Prefect API is a warning in the run's log, never the end of a stage."""
    try:
        from prefect.events import emit_event

        emit_event(**verdict_event(recipe, result, run_id, reused))
    except Exception as e:
        from prefect.logging import get_run_logger

        get_run_logger().warning(
            "could not emit the verdict event of stage %s: %s: %s", result.stage, type(e).__name__, e
        )


def automation_spec(block_document_id: str, path: Path = AUTOMATION_FILE) -> dict[str, Any]:
    """The automation of ``deploy/automations.yaml`` as the Prefect API takes it, sending to the block
    ``block_document_id``."""
    spec = yaml.safe_load(path.read_text())["automations"][0]
    for action in spec["actions"]:
        if action["type"] == "send-notification":
            action["block_document_id"] = block_document_id
    return spec


def ensure_fail_automation(webhook: str | None = None, block: str = BLOCK, path: Path = AUTOMATION_FILE) -> str:
    """Create or update the FAIL automation (``deploy/automations.yaml``); returns its id.

    ``webhook``: save a :class:`~prefect.blocks.notifications.CustomWebhookNotificationBlock` named ``block`` that
    POSTs ``{"subject": ..., "body": ...}`` as JSON to this URL (overwriting one of that name). Without it, the
    block ``block`` must exist already, of any notification type (a ``SlackWebhook``, a ``SendgridEmail``, ...,
    saved in the Prefect UI under *Blocks* or in Python).

    Raises:
        ValueError: no notification block of that name exists (and no ``webhook`` was given).
    """
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if webhook:
        CustomWebhookNotificationBlock(
            name=block,
            url=webhook,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        ).save(block, overwrite=True)
    block_id = _block_document_id(block)
    spec = automation_spec(str(block_id), path)
    automation = Automation.model_validate(spec)
    try:
        existing = Automation.read(name=spec["name"])
    except ValueError:
        existing = None
    if existing is None:
        return str(automation.create().id)
    automation.id = existing.id
    automation.update()
    return str(existing.id)


def _block_document_id(name: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = [d for d in client.read_block_documents() if d.name == name and not d.is_anonymous]
    if not docs:
        raise ValueError(
            f"no notification block named {name!r} on this Prefect server: pass --webhook URL, or save a SlackWebhook "
            f"or SendgridEmail block named {name!r} (Prefect UI: Blocks → +)"
        )
    return docs[0].id


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.notify [--webhook URL] [--block NAME]``: set up the FAIL notification on the Prefect
    server of ``PREFECT_API_URL``; exit 0, or 2 with the problem named."""
    p = argparse.ArgumentParser(prog="python -m flows.notify", description=ensure_fail_automation.__doc__)
    p.add_argument("--webhook", help="URL that receives a JSON POST {subject, body} for every FAIL")
    p.add_argument("--block", default=BLOCK, help=f"the notification block to send to (default {BLOCK})")
    args = p.parse_args(argv)
    try:
        automation_id = ensure_fail_automation(args.webhook, args.block)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"automation {AUTOMATION} ({automation_id}) sends every FAIL to the block {args.block!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
