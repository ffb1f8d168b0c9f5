"""Prefect flows and the ``flows`` command.

Prefect's server sends telemetry by default; these machines have no network for it, and a
training tool has no business phoning home, so it is off unless the user turns it on.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
