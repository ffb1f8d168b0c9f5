"""CI cannot go green by skipping: under CI=true a skipped test fails (tests/ci_skips.py), and `.ci/run` stops
with exit 1, before any test, when it cannot install a prerequisite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INNER_TESTS = """
import pytest

@pytest.fixture
def postgres():
    pytest.skip("no PostgreSQL")

def test_needs_postgres(postgres):
    pass

@pytest.mark.skipif(True, reason="no chromium")
def test_needs_chromium():
    pass

@pytest.mark.cuda
@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_needs_a_gpu():
    pass

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False

def test_plain():
    pass
"""


def _inner_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from tests.ci_skips import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    cuda: a GPU\n")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_under_ci_a_skipped_prerequisite_fails_the_run(tmp_path, ci):
    out = _inner_pytest(tmp_path, ci)
    assert out.returncode == 1, out.stdout
    assert "1 passed, 1 skipped, 1 xfailed, 2 errors" in out.stdout, out.stdout  # skips at set-up: errors
    assert "no PostgreSQL); under CI a missing prerequisite is a failure" in out.stdout
    assert "no chromium); under CI" in out.stdout
    assert "SKIPPED [1] test_inner.py" in out.stdout and "needs a CUDA device" in out.stdout  # exempt: cuda


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_without_ci_a_missing_prerequisite_skips(tmp_path, ci):
    out = _inner_pytest(tmp_path, ci)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in out.stdout, out.stdout


def _fake_bin(folder: Path, **scripts: str) -> Path:
    folder.mkdir()
    for tool in ("bash", "dirname", "id"):
        (folder / tool).symlink_to(shutil.which(tool))
    for name, body in scripts.items():
        (folder / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize(
    ("have", "missing"),
    [
        ({"pg_ctl": "exit 0", "chromedriver": "exit 0"}, "setpriv"),
        ({"pg_ctl": "exit 0", "setpriv": "exit 0"}, "chromium"),
    ],
)
def test_ci_run_stops_when_a_prerequisite_cannot_be_installed(tmp_path, have, missing):
    """A PATH with every prerequisite but one, and an apt-get that fails: `.ci/run` exits 1 naming it, and never
    reaches `make` (which would run the tests)."""
    marker = tmp_path / "make-ran"
    fake = _fake_bin(tmp_path / "bin", **have, **{"apt-get": "exit 100", "make": f"touch {marker}"})
    env = {"PATH": str(fake), "HOME": str(tmp_path)}
    out = subprocess.run(
        [shutil.which("bash"), str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"could not install {missing}" in out.stderr, out.stderr
    assert not marker.exists()


def test_ci_run_stops_without_apt_get_and_a_missing_prerequisite(tmp_path):
    marker = tmp_path / "make-ran"
    fake = _fake_bin(tmp_path / "bin", pg_ctl="exit 0", setpriv="exit 0", make=f"touch {marker}")
    env = {"PATH": str(fake), "HOME": str(tmp_path)}
    out = subprocess.run(
        [shutil.which("bash"), str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "chromium is missing and there is no apt-get" in out.stderr, out.stderr
    assert not marker.exists()
