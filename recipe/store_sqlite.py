"""Read-only queries on a local MLflow sqlite store with the standard library's ``sqlite3``.

For quick listings (``flows stages``): importing MLflow costs seconds of CPU, and opening a store through it
creates the schema when the file is missing. Here the file is opened read-only (``mode=ro``); a missing
file means no runs. The tables are MLflow's: ``experiments``, ``runs`` (``run_uuid``, ``status``,
``start_time``, ``lifecycle_stage``), ``tags`` (``key``, ``value``, ``run_uuid``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

TAG_STAGE = "recipe.stage"
TAG_VERDICT = "recipe.verdict"
TAG_FINGERPRINT = "recipe.data_fingerprint"
TAG_CONFIG_HASH = "recipe.config_hash"
TAG_KIND = "recipe.kind"


def latest_stage_verdicts(db: Path, experiment: str, config_hash: str) -> dict[str, dict[str, Any]]:
    """The latest stage run of each stage for this experiment and config hash: verdict (the verdict tag, or
    the run status in lower case), run id, start time (ms since the epoch), data fingerprint.

    Raises:
        sqlite3.Error: the file is not an MLflow store (or is locked for longer than 10 s).
    """
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            """
            SELECT r.run_uuid, r.status, r.start_time,
                   (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) AS stage,
                   (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) AS verdict,
                   (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) AS fingerprint
            FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id
            WHERE e.name = ? AND r.lifecycle_stage = 'active'
              AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = 'stage')
              AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?)
            ORDER BY r.start_time DESC
            LIMIT 500
            """,
            (TAG_STAGE, TAG_VERDICT, TAG_FINGERPRINT, experiment, TAG_KIND, TAG_CONFIG_HASH, config_hash),
        ).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, Any]] = {}
    for run_id, status, start, stage, verdict, fingerprint in rows:
        if stage and stage not in out:
            out[stage] = {
                "verdict": verdict or status.lower(),
                "run_id": run_id,
                "start_time": start,
                "fingerprint": fingerprint or "",
            }
    return out
