"""Prefect flows and the ``flows`` command.

Prefect's server sends telemetry by default; these machines have no network for it, and a
training tool has no business phoning home, so it is off unless the user turns it on.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# torch's OpenMP threads spin while waiting for work; on a small shared CPU box (a worker next to servers)
# spinning threads starve each other (a 10x slowdown was measured on 2 cores). Passive waiting costs
# little when the machine is idle. Set before torch is imported; the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# MLflow draws a progress bar per downloaded artifact; reusing stages downloads several: noise in a log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow retries a request 7 times with exponential backoff and a 120 s timeout each: a tracking server that went
# away held a run for minutes before it failed. Three retries (2 + 4 + 8 s) ride out a restart; then the run ends
# with exit code 3 saying what was recorded. The user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
