"""Bad input to `flows run recipe` is answered before any server starts: exit 2 (3 for a backend that does not
answer), one message that names the problem and the fix, no traceback, no Prefect server, no MLflow store.

In-process (CliRunner) where the case needs no environment Prefect reads at import; a few real subprocesses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dead_port():
    """A loopback port nothing answers on, for the test's duration: bound (so no other process takes it) but not
    listening, so a connection is refused. A fixed port (9, discard) may be served on some machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _files(tmp: Path) -> dict[str, str]:
    """Things on disk the cases point at."""
    (tmp / "empty.yaml").write_text("")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "broken.yaml").write_text("data: {source: [\n")
    (tmp / "a-file.txt").write_text("x")
    (tmp / "a-folder").mkdir()
    (tmp / "docs" / "cats").mkdir(parents=True)
    (tmp / "docs" / "cats" / "notes.txt").write_text("not an image")
    (tmp / "loose").mkdir()
    (tmp / "loose" / "a.png").write_bytes(b"")
    (tmp / "credit.csv").write_text("Status,Age,Income\ngood,30,129\nbad,41,80\n")
    (tmp / "header-only.csv").write_text("Status,Age,Income\n\n")
    return {"tmp": str(tmp)}


# (id, args, environment, expected exit code, substrings the message must contain: the problem and the fix)
CASES = [
    ("config-missing", ["--config", "{tmp}/nope.yaml"], {}, 2, ["nope.yaml", "does not exist", "--preset"]),
    ("config-empty", ["--config", "{tmp}/empty.yaml"], {}, 2, ["empty.yaml", "is empty", "--preset digits"]),
    ("config-not-mapping", ["--config", "{tmp}/list.yaml"], {}, 2, ["list.yaml", "must be a mapping", "list"]),
    ("config-bad-yaml", ["--config", "{tmp}/broken.yaml"], {}, 2, ["broken.yaml", "not valid YAML"]),
    ("preset-unknown", ["--preset", "digitz"], {}, 2, ["unknown preset 'digitz'", "digits"]),
    ("preset-and-config", ["--preset", "digits", "--config", "{tmp}/empty.yaml"], {}, 2, ["not both"]),
    ("key-typo", ["--set", "optim.lrr=1"], {}, 2, ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'"]),
    ("override-no-equals", ["--set", "optim.lr"], {}, 2, ["'optim.lr'", "key.path=value"]),
    ("value-type", ["--set", "optim.lr=abc"], {}, 2, ["optim.lr", "'abc'"]),
    ("batch-size-zero", ["--set", "data.batch_size=0"], {}, 2, ["data.batch_size", "greater than or equal to 1"]),
    (
        "bad-set-blamed-on-set",
        ["--set", "data.batch_size=-8"],
        {},
        2,
        ["invalid --set override (on top of", "data.batch_size", "[from --set data.batch_size=-8]"],
    ),
    (
        "image-folder-empty",
        ["--preset", "imagefolder", "--set", "data.root={tmp}/a-folder"],
        {},
        2,
        ["no images under data.root {tmp}/a-folder: it is empty", "one sub-folder per class"],
    ),
    (
        "image-folder-of-documents",
        ["--preset", "imagefolder", "--set", "data.root={tmp}/docs"],
        {},
        2,
        ["no images under data.root {tmp}/docs", "only cats/notes.txt", ".png"],
    ),
    (
        "image-folder-without-class-folders",
        ["--preset", "imagefolder", "--set", "data.root={tmp}/loose"],
        {},
        2,
        ["no images under data.root {tmp}/loose: it holds no sub-folders, only a.png"],
    ),
    (
        "csv-target-typo",
        ["--preset", "tabular", "--set", "data.root={tmp}/credit.csv", "--set", "data.target=Statuss"],
        {},
        2,
        ["target column 'Statuss' not found", "did you mean 'Status' (--set data.target=Status)?", "Age, Income"],
    ),
    (
        "stage-unknown",
        ["--stage", "overfitt"],
        {},
        2,
        ["unknown stage 'overfitt' (did you mean 'overfit'?)", "inspect, baselines"],
    ),
    ("stage-case", ["--stage", "Tune"], {}, 2, ["unknown stage 'Tune' (did you mean 'tune'?)"]),
    ("name-escapes-store", ["--set", "name=../../x"], {}, 2, ["name", "letters, digits", "name=my-recipe"]),
    ("name-with-slash", ["--set", "name=a/b"], {}, 2, ["name", "artifact folder", "name=my-recipe"]),
    ("name-blank", ["--set", "name=' '"], {}, 2, ["name must not be blank"]),
    ("optimizer-unknown", ["--set", "optim.name=sgdd"], {}, 2, ["optim.name", "'sgd'", "'adam'"]),
    ("schedule-unknown", ["--set", "schedule.name=bogus"], {}, 2, ["schedule.name", "'bogus'"]),
    (
        "imagefolder-root-missing",
        ["--preset", "imagefolder", "--set", "data.root={tmp}/nope"],
        {},
        2,
        ["data.root", "nope", "does not exist", "--set data.root=PATH"],
    ),
    (
        "imagefolder-root-is-file",
        ["--preset", "imagefolder", "--set", "data.root={tmp}/a-file.txt"],
        {},
        2,
        ["a-file.txt", "is a file", "one sub-folder of images per class"],
    ),
    (
        "csv-header-only",
        ["--preset", "tabular", "--set", "data.root={tmp}/header-only.csv", "--set", "data.target=Status"],
        {},
        2,
        ["header-only.csv has a header (Status, Age, Income) but no data rows", "add the samples"],
    ),
    (
        "csv-root-missing",
        ["--preset", "tabular", "--set", "data.root={tmp}/nope.csv", "--set", "data.target=y"],
        {},
        2,
        ["nope.csv", "does not exist", "needs a .csv file", "--set data.root=PATH"],
    ),
    (
        "csv-root-is-folder",
        ["--preset", "tabular", "--set", "data.root={tmp}/a-folder", "--set", "data.target=y"],
        {},
        2,
        ["a-folder", "is a folder", ".csv file"],
    ),
    (
        "torchvision-no-download",
        ["--set", "data.source=torchvision", "--set", "data.name=MNIST", "--set", "data.root={tmp}/mnist"],
        {},
        2,
        ["mnist", "data.download=true"],
    ),
    ("augment-unknown", ["--set", "data.augment=[blur]"], {}, 2, ["data.augment", "'blur'", "crop", "rotate"]),
    (
        "regularize-augment-unknown",
        ["--set", "stages.regularize.augment=[flip]"],
        {},
        2,
        ["stages.regularize.augment", "'flip'", "hflip"],
    ),
    (
        "model-typo",
        ["--set", "model.name=cnnn"],
        {},
        2,
        ["model.name='cnnn'", "did you mean 'cnn'", "package.module:callable"],
    ),
    (
        "model-module-missing",
        ["--set", "model.name=no_such_pkg.models:build"],
        {},
        2,
        ["no_such_pkg.models", "cannot be found", "install it"],
    ),
    ("model-empty-callable", ["--set", "model.name=':build'"], {}, 2, ["package.module:callable"]),
    (
        "architecture-unknown",
        ["--set", "stages.overfit.architecture=transformer"],
        {},
        2,
        ["stages.overfit.architecture='transformer'", "not a registered model"],
    ),
    (
        "tracking-unknown-scheme",
        [],
        {"MLFLOW_TRACKING_URI": "foo://bar"},
        2,
        ["MLFLOW_TRACKING_URI=foo://bar", "unknown scheme 'foo'", "sqlite:///"],
    ),
    (
        "tracking-file-store",
        [],
        {"MLFLOW_TRACKING_URI": "{tmp}/mlruns"},
        2,
        ["MLFLOW_TRACKING_URI=", "file store", "sqlite:///mlruns/mlflow.db"],
    ),
    ("tracking-memory", [], {"MLFLOW_TRACKING_URI": "sqlite:///:memory:"}, 2, ["needs a file path"]),
    (
        "tracking-db-is-folder",
        [],
        {"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/a-folder"},
        2,
        ["a-folder is a folder", "mlflow.db"],
    ),
    (
        "tracking-under-a-file",
        [],
        {"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/a-file.txt/mlflow.db"},
        2,
        ["MLFLOW_TRACKING_URI=", "a-file.txt is a file", "A/WRITABLE/PATH"],
    ),
    (
        "tracking-server-down",
        [],
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{dead_port}"},
        3,
        ["http://127.0.0.1:{dead_port}", "does not answer", "MLFLOW_TRACKING_URI"],
    ),
    ("report-is-folder", ["--report", "{tmp}/a-folder"], {}, 2, ["--report", "is a folder", "report.json"]),
    (  # /proc looks writable to root, yet refuses new files: found before the run, not after it (as a crash)
        "report-cannot-be-written",
        ["--report", "/proc/recipe-report.json"],
        {},
        2,
        ["--report /proc/recipe-report.json cannot be written", "choose another place"],
    ),
]


@pytest.mark.parametrize(("args", "env", "code", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_answered_up_front(tmp_path, monkeypatch, dead_port, args, env, code, expected):
    subst = {**_files(tmp_path), "dead_port": str(dead_port)}
    home = tmp_path / "prefect-home"
    store = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**subst))
    result = runner.invoke(app, ["run", "recipe", *[a.format(**subst) for a in args]])
    assert result.exit_code == code, result.output
    message = " ".join(result.output.split())  # the console may wrap long lines
    for part in expected:
        assert part.format(**subst) in message, message
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, AttributeError))
    assert not (home / "recipe-server").exists()  # no Prefect server was started or looked for
    assert not store.exists()  # no MLflow store was created


NOBODY = 65534  # the conventional unprivileged uid / gid


def _as_unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without root's right to write anywhere: as root (CI runs as root), through ``setpriv`` as
    ``nobody``; as any other user, as is. Without ``setpriv`` as root the test cannot mean anything: it skips,
    and under CI=true a skip is a failure (tests/ci_skips.py)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("as root, needs setpriv (util-linux) to run the store check as an unprivileged user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


@pytest.mark.parametrize("existing_db", [False, True], ids=["new-store", "existing-store"])
def test_a_read_only_store_folder_is_named(existing_db):
    # Under a world-readable temp folder (pytest's tmp_path is root's, mode 0700): the unprivileged process must
    # reach this folder, own its HOME, PREFECT_HOME and logs, and not own the store's folder (mode 0555).
    base = Path(tempfile.mkdtemp(prefix="recipe-ro-"))
    home, folder = base / "home", base / "ro"
    try:
        base.chmod(0o755)
        home.mkdir()
        folder.mkdir()
        if existing_db:
            (folder / "mlflow.db").touch(mode=0o644)
        folder.chmod(0o555)
        if os.geteuid() == 0:
            os.chown(home, NOBODY, NOBODY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env.update(
            PYTHONPATH=str(REPO),
            PYTHONDONTWRITEBYTECODE="1",
            HOME=str(home),
            PREFECT_HOME=str(home / "prefect"),
            RECIPE_LOG_DIR=str(home / "logs"),
            RECIPE_DATA_DIR=str(home / "data"),
            MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db",
        )
        cmd = _as_unprivileged([sys.executable, "-c", "from flows.cli import main; main()", "run", "recipe"])
        out = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stdout + out.stderr
        assert str(folder) in out.stderr and "not writable" in out.stderr, out.stderr
        assert "Traceback" not in out.stdout + out.stderr
        assert not (home / "prefect" / "recipe-server").exists()  # answered before any server starts
        assert [p.name for p in folder.iterdir()] == (["mlflow.db"] if existing_db else [])
    finally:
        if folder.exists():
            folder.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def _flows(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    full.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        env=full,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_real_process_with_bad_input_exits_2_in_one_line(tmp_path):
    out = _flows(tmp_path, "run", "recipe", "--preset", "imagefolder", "--set", f"data.root={tmp_path}/nope")
    assert out.returncode == 2, out.stderr
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "prefect-home" / "recipe-server").exists()


def test_data_errors_are_exit_2_in_seconds_printed_once_without_importing_torch(tmp_path):
    """A real process: a folder of documents and a CSV target typo are answered by the preflight (no server, no
    torch import: well under the 14-21 s they took when the inspect stage found them), the message once."""
    import time

    files = _files(tmp_path)
    probe = (
        "import sys; from flows.cli import main\n"
        "try:\n    main()\nfinally:\n    print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
    )
    for args in (
        ["--preset", "imagefolder", "--set", f"data.root={files['tmp']}/docs"],
        ["--preset", "tabular", "--set", f"data.root={files['tmp']}/credit.csv", "--set", "data.target=Statuss"],
    ):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", probe, "run", "recipe", *args],
            env={**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect-home")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.perf_counter() - start
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("error:") == 1 and "no torch" in out.stderr, out.stderr
        assert seconds < 10, f"{seconds:.1f} s"  # about 1-2 s; generous for a busy 2-core machine
        assert not (tmp_path / "prefect-home" / "recipe-server").exists()


def test_a_prefect_api_that_does_not_answer_is_exit_3(tmp_path, dead_port):
    api = f"http://127.0.0.1:{dead_port}/api"
    out = _flows(tmp_path, "run", "recipe", "--stage", "inspect", PREFECT_API_URL=api)
    assert out.returncode == 3, out.stderr
    assert f"PREFECT_API_URL={api}" in out.stderr and "does not answer" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "store" / "mlflow.db").exists()
