"""Under CI, a skipped test is a failed test: a prerequisite that is missing there (PostgreSQL, Chromium, setpriv)
must turn the run red, not green with a line in the summary nobody reads.

Loaded by tests/conftest.py (``pytest_runtest_makereport`` is a hook). "Under CI" is the ``CI`` environment variable
set to anything but ``""``, ``0``, ``false`` or ``no`` (GitHub Actions, GitLab CI and ``.ci/run`` set ``CI=true``).
Exempt: tests marked ``cuda`` (no CI machine is promised a GPU; ``bench/gpu_check.sh`` runs them) and ``xfail``
outcomes. A test that must skip under CI for another reason has to earn a new exemption here, in review.
"""

from __future__ import annotations

import os

import pytest

EXEMPT_MARKERS = ("cuda",)
CI_OFF = ("", "0", "false", "no")


def under_ci() -> bool:
    """Whether this session runs under CI (``CI`` set to a true value)."""
    return os.environ.get("CI", "").strip().lower() not in CI_OFF


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not under_ci():
        return
    if any(item.get_closest_marker(m) for m in EXEMPT_MARKERS):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"CI={os.environ['CI']}: this test skipped ({reason}); under CI a missing prerequisite is a failure. "
        "Install it (.ci/run installs PostgreSQL and Chromium with apt-get), or run without CI set."
    )
