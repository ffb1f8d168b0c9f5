"""The ``flows`` command.

Heavy libraries (torch, prefect, mlflow, great_expectations) are imported inside the
commands, never at module level: ``flows --help`` must stay instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="flows",
    help="A Recipe for Training Neural Networks, as staged, gated, tracked flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PresetOpt = Annotated[
    str | None, typer.Option("--preset", "-p", help="A shipped preset: digits, imagefolder, tabular.")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config file (instead of a preset).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set optim.lr=1e-3 (repeatable)."),
]

NoCapsOpt = Annotated[
    bool,
    typer.Option(
        "--no-caps",
        help="Lift the resource caps (image size, width, depth, batch sizes, epochs, steps, time, trials, "
        "parallelism; `flows config --explain` lists them) for this run: for a machine that can take it. "
        "Same as RECIPE_LIFT_CAPS=1; a deployment run can never lift them.",
    ),
]


def _load(preset: str | None, config: Path | None, overrides: list[str] | None, no_caps: bool = False):
    from recipe.config import ConfigError, load_config

    if no_caps:  # in the environment, so trial processes and the flow's own validation see it too
        from recipe.policy import LIFT_CAPS_ENV

        os.environ[LIFT_CAPS_ENV] = "1"
    try:
        return load_config(preset=preset, path=config, overrides=overrides or [])
    except ConfigError as e:
        _fail(str(e))


def _console():
    """A terminal's own width; 140 columns in logs and pipes, where rich would otherwise wrap at 80."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    from recipe.secrets import redact_text

    # soft_wrap: never break a path or a key across lines; users copy them from here
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(redact_text(message))}", highlight=False)
    raise typer.Exit(code)


@app.command()
def presets() -> None:
    """List the shipped presets."""
    from recipe.config import preset_names, preset_path

    for name in preset_names():
        text = preset_path(name).read_text()
        desc = next(
            (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("description:")), ""
        )
        typer.echo(f"{name:12s} {desc}")


@app.command()
def config(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_caps: NoCapsOpt = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="List every setting: key, type, default and what it means.")
    ] = False,
) -> None:
    """Print the resolved config (preset or file, then overrides) and its hash; --explain documents every key."""
    import yaml

    if explain:
        from recipe.config import explain as explain_fields
        from recipe.config import numeric_range

        for doc in explain_fields():
            allowed = numeric_range(doc.key.split("."))
            typer.echo(
                f"{doc.key}  ({doc.type}, default {json.dumps(doc.default, default=str)})\n    {doc.description}"
                + (f" (allowed: {allowed})" if allowed else "")
            )
        return
    cfg = _load(preset, config, set_, no_caps)
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    typer.echo(f"# config_hash: {cfg.config_hash()}")


@app.command()
def train(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override budget.epochs.")] = None,
    no_caps: NoCapsOpt = False,
) -> None:
    """Train the config's model on its data once with the shared trainer and print the result (no stages).

    Exit 1 when the run diverged or ended at chance level (the message says what to try), 2 on bad input.
    """
    cfg = _load(preset, config, set_, no_caps)
    if epochs is not None:
        cfg = cfg.with_overrides({"budget.epochs": epochs})
    from recipe.preflight import PreflightError, check_data, check_names

    try:
        check_data(cfg)
        check_names(cfg)
    except PreflightError as e:
        _fail(str(e))
    uri = _reachable_store(read_only=False)
    from recipe import tracking
    from recipe.config import ConfigError
    from recipe.data import DataError
    from recipe.fit import fit

    try:
        tracking.setup(cfg.name)
        with tracking.start_run(
            f"{cfg.name}:train", tags=tracking.run_tags(cfg, None, stage="train", kind="train")
        ) as run:
            tracking.log_params(cfg.flat())
            try:
                result = fit(cfg, evaluate=False, log=True)
            except (DataError, ConfigError) as e:
                _fail(str(e))
    except tracking.TrackingError as e:
        _fail(str(e), code=EXIT_BACKEND)
    _print_metrics(cfg.name, result.metrics, result.seconds)
    typer.echo(
        f"MLflow: run {run.info.run_id} ({cfg.name}:train) in experiment {cfg.name!r} of {_redacted(uri)}; "
        f"to see it: {_mlflow_hint()}"
    )
    if result.stop_reason:
        typer.echo(f"stopped early: {result.stop_reason}")
    problems = judge_fit(result)
    if problems:
        _fail("; ".join(problems), code=1)


def judge_fit(result) -> list[str]:
    """What is wrong with a finished training run, with advice; empty when nothing is.

    - Diverged: the trainer's NaN guard tripped, a loss is not finite, or (classification) the final training
      cross-entropy is above twice that of a uniform guess, ln(C): a model that learnt anything is below it
      ("verify loss @ init", Karpathy's recipe, step 2).
    - Chance level (classification): validation accuracy not above the majority-class rate of the training
      split by two binomial standard errors (n = the validation split's size).

    Args:
        result: a ``recipe.fit.FitResult`` (metrics ``train/loss``, ``val/loss``, ``val/accuracy``; data with
            ``task``, ``num_classes``, ``class_counts``, ``split_sizes``).
    """
    import math

    m, data = result.metrics, result.data
    lr_advice = (
        "lower optim.lr (e.g. --set optim.lr=1e-3; `flows run recipe --stage overfit` finds one with an "
        "LR finder), or add warm-up"
    )
    train_loss, val_loss = m.get("train/loss"), m.get("val/loss")
    if result.diverged or any(v is not None and not math.isfinite(v) for v in (train_loss, val_loss)):
        return [f"the run diverged (train/loss {train_loss}, val/loss {val_loss}): {lr_advice}"]
    from recipe.tasks import task_for

    if not task_for(data.task).classifier or data.num_classes < 2:
        return []
    uniform = math.log(data.num_classes)
    if train_loss is not None and train_loss > 2 * uniform:
        return [
            f"the run diverged: train/loss {train_loss:.4g} ended above twice the loss of a uniform guess "
            f"(ln {data.num_classes} = {uniform:.3f}): {lr_advice}"
        ]
    acc, n_val = m.get("val/accuracy"), data.split_sizes.get("val", 0)
    if acc is not None and data.class_counts and n_val:
        chance = max(data.class_counts) / sum(data.class_counts)
        margin = 2 * math.sqrt(chance * (1 - chance) / n_val)
        if acc <= chance + margin:
            return [
                f"the run is at chance level: val/accuracy {acc:.4f} is not above the majority-class rate "
                f"{chance:.4f} (+ {margin:.4f}, two standard errors on {n_val} samples): check the learning "
                f"rate ({lr_advice}), then the labels and inputs with `flows run recipe --stage baselines`"
            ]
    return []


run_app = typer.Typer(help="Run a flow.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("recipe")
def run_recipe(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    stage: Annotated[str | None, typer.Option(help="Run up to this stage (default: all of them).")] = None,
    force: Annotated[bool, typer.Option(help="Carry on past a failed stage (runs are tagged as forced).")] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Rerun every stage; by default up-to-date passing stages are reused.")
    ] = False,
    rerun_from: Annotated[
        str | None,
        typer.Option(
            "--rerun-from",
            metavar="STAGE",
            help="Reuse up-to-date stages before STAGE only; rerun STAGE and every stage after it (how an "
            "interrupted --fresh run resumes).",
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="When another run is tuning the same study, stop (exit 5) instead of waiting for it "
            "(stages.tune.wait=false).",
        ),
    ] = False,
    no_caps: NoCapsOpt = False,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Replay a budgeted run's sizes exactly: its budget_plan.json (an MLflow artifact of the parent "
            "run); budget.minutes is turned off, nothing is timed.",
        ),
    ] = None,
) -> None:
    """Run the training recipe: every stage in order, each gated on the one before.

    A stage whose latest passing run in MLflow has the same config (its own settings and the earlier stages'),
    data (fingerprint) and code (version) is reused, not rerun, and the terminal names the run; --fresh reruns all,
    --rerun-from STAGE reruns STAGE and those after it.

    Exit codes: 0 pass (warnings allowed), 1 a stage failed its checks, 2 bad input, 3 a backend (the MLflow
    store, the Prefect server, the tune study's storage) failed, 4 a crash (a bug: the message names the log with
    the traceback), 5 busy: another run is tuning the same study and --no-wait was given, 130 / 143 interrupted by
    SIGINT (Ctrl-C) / SIGTERM.
    """

    order = _stage_order()
    for option, value in (("stage", stage), ("--rerun-from", rerun_from)):
        if value is not None and value not in order:
            import difflib

            close = difflib.get_close_matches(value.lower(), order, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(f"unknown {option} {value!r}{hint}; stages, in order: {', '.join(order)}")
    cfg = _load(preset, config, [*(set_ or []), *(["stages.tune.wait=false"] if no_wait else [])], no_caps)
    _use_store(read_only=False)
    if plan is not None:
        cfg = _replay_plan(cfg, plan)
    _preflight(cfg)
    if report is not None:
        _check_writable_file(report, "--report")
    from flows.signals import interrupts, signal_of

    log = _run_log_path()
    with interrupts(on_second=_say_second_interrupt) as received:
        try:
            outcome = _run_flow(cfg, stage, force, log, fresh=fresh, rerun_from=rerun_from)
        except typer.Exit:
            raise
        except BaseException as e:
            received.taken = True  # reported here: the interrupt watchdog stops (flows.signals)
            sig = signal_of(e) if not isinstance(e, Exception) else None
            if sig is not None:
                _report_interrupt(cfg, sig, log, report=report)
            if received.first is not None:  # a signal came first: this failed while the run was stopping
                _report_interrupt(cfg, received.first, log, failed_while_stopping=e, report=report)
            if report is not None and isinstance(e, _backend_error_types()):  # exit 3: the report still says so
                _write_stopped_report(report, cfg, "backend", EXIT_BACKEND, error=e)
            _fail_on_exception(e, log)
    if "error" in outcome:  # bad input: the message says what and what to do
        _fail(f"{outcome['error']}\n(anything recorded before this error is in MLflow: {_mlflow_hint()})")
    from recipe.report import render_summary

    render_summary(outcome, _console())
    if outcome["verdict"] == "fail":
        typer.echo(_kept_and_resume(outcome))
    if report is not None:
        _write_report(report, outcome)
    typer.echo(f"MLflow: parent run {outcome['parent_run_id']} in experiment {cfg.name!r} ({_mlflow_hint()})")
    raise typer.Exit(1 if outcome["verdict"] == "fail" else 0)


def _replay_plan(cfg, path: Path):
    """``cfg`` with the sizes of the plan at ``path`` (recipe.budget.replay); exit 2 naming the problem."""
    from recipe.budget import PlanError, load_plan, replay
    from recipe.config import ConfigError

    try:
        return replay(cfg, load_plan(path))
    except (PlanError, ConfigError) as e:
        _fail(f"--plan {path}: {e}" if isinstance(e, ConfigError) else str(e))


EXIT_BACKEND = 3
EXIT_CRASH = 4
EXIT_BUSY = 5


def _use_store(read_only: bool) -> str:
    """Resolve the tracking store (recipe.preflight.resolve_store) into MLFLOW_TRACKING_URI; a read-only command
    with no store anywhere is bad input (exit 2). Every command says on stderr, before it starts, which store it
    uses when the store was not named by the environment or found in the current folder (a run in a fresh
    checkout inside a folder that holds a store records there)."""
    from recipe.preflight import PreflightError, use_store
    from recipe.secrets import redact_url

    try:
        uri, origin = use_store(read_only=read_only)
    except PreflightError as e:
        _fail(str(e))
    if origin not in ("MLFLOW_TRACKING_URI", "the current folder"):  # e.g. found in a folder above this one
        typer.echo(f"MLflow store: {redact_url(uri)} ({origin})", err=True)
    return uri


def _exit_on_preflight(check, arg) -> None:
    """``check(arg)``, a :mod:`recipe.preflight` check, with its failures as exits: bad input 2, a backend that
    does not answer 3."""
    from recipe.preflight import BackendUnreachable, PreflightError

    try:
        check(arg)
    except PreflightError as e:
        _fail(str(e))
    except BackendUnreachable as e:
        _fail(str(e), code=EXIT_BACKEND)


def _reachable_store(read_only: bool) -> str:
    """:func:`_use_store`, then the store checked: a malformed URI is bad input (exit 2), a server that does not
    answer exits 3."""
    from recipe.preflight import check_tracking_uri

    uri = _use_store(read_only=read_only)
    _exit_on_preflight(check_tracking_uri, uri)
    return uri


def _preflight(cfg) -> None:
    """Bad input (exit 2) and an unreachable tracking server (exit 3), before any server starts."""
    from recipe.preflight import check

    _exit_on_preflight(check, cfg)


def _check_writable_file(path: Path, what: str) -> None:
    from recipe.preflight import PreflightError, _check_creatable

    if path.is_dir():
        _fail(f"{what} {path} is a folder; give a file name, e.g. {path / 'report.json'}")
    try:
        _check_creatable(path.parent, what=f"{what}: the folder", fix="choose another place for it")
    except PreflightError as e:
        _fail(str(e))
    if not path.parent.is_dir():
        return  # created when the report is written; _check_creatable found the nearest folder writable
    existed = path.exists()
    try:  # a folder can look writable and still refuse the file (/proc, a read-only mount): try it now
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        _fail(f"{what} {path} cannot be written ({e.strerror or e}); choose another place for it")
    if not existed:
        path.unlink(missing_ok=True)


def _write_report(path: Path, outcome: dict) -> None:
    """The JSON report, or, when the file cannot be written after all, exit 2 naming it (the run's results are
    in MLflow whatever happens here)."""
    from recipe.report import write_report

    try:
        write_report(path, outcome)
    except OSError as e:
        _fail(
            f"--report {path} could not be written ({e.strerror or e}); the run's results are in MLflow "
            f"({_mlflow_hint()})"
        )
    typer.echo(f"report written to {path}")


def _run_log_path() -> Path:
    """Where this run's log goes (kept: a crash message points at it). ``RECIPE_LOG_DIR``, else a folder of this
    user's own in the system's temporary directory (``recipe-flows-logs-<uid>``, mode 0700: logs name paths,
    configs and errors, which are nobody else's business, and a folder another user created first must neither
    block nor read this user's runs)."""
    import os
    import tempfile
    import time

    folder = Path(os.environ.get("RECIPE_LOG_DIR") or Path(tempfile.gettempdir()) / f"recipe-flows-logs-{os.getuid()}")
    return folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _private_folder(folder: Path) -> None:
    """``folder`` exists as this user's own folder that only this user can enter (made 0700 when created).

    Raises:
        OSError: it is a symlink, a file, or another user's; the message says to set RECIPE_LOG_DIR.
    """
    import os
    import stat

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(
            f"the log folder {folder} is not a folder of yours (a symlink, a file or another user's); "
            "set RECIPE_LOG_DIR to a folder of your own"
        )
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)


def _open_private(path: Path, mode: str = "a"):
    """``path`` opened for appending text, created 0600, never through a symlink planted in its place."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, mode, encoding="utf-8")


def _setup_logging(log: Path):
    """Every Prefect log record, with tracebacks, goes to ``log``; the terminal gets the records without
    tracebacks (a traceback on the terminal is a defect; the crash message names the log). Passwords in URLs are
    written as ``***`` in both (:class:`recipe.secrets.RedactingFilter`). Returns a function that detaches the
    file handler."""
    import logging

    from recipe.secrets import RedactingFilter

    class PrivateFileHandler(logging.FileHandler):
        def _open(self):
            return _open_private(Path(self.baseFilename), self.mode)

    _private_folder(log.parent)
    handler = PrivateFileHandler(log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    redacting = RedactingFilter()
    handler.addFilter(redacting)
    # The root gets everything that propagates; "prefect" needs the handler of its own only when Prefect's logging
    # config stops it propagating (with both, every Prefect line was written to the log twice).
    prefect_logger = logging.getLogger("prefect")
    targets = [logging.getLogger()] + ([] if prefect_logger.propagate else [prefect_logger])
    for logger in targets:
        logger.addHandler(handler)
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    consoles = []
    for logger in loggers:
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                consoles.append(h)
                h.addFilter(_not_recipe)  # the summary table shows the verdicts; the log file keeps the records
                h.addFilter(_not_interrupt_crash)  # the CLI's own interrupt report says it once
                h.addFilter(_not_echo)  # the live view's lines say these once
                if not getattr(h, "_recipe_no_tracebacks", False):
                    h.format = _without_traceback(h.format)
                    h.addFilter(redacting)
                    h._recipe_no_tracebacks = True

    def detach() -> None:
        for logger in targets:
            logger.removeHandler(handler)
        for h in consoles:
            h.removeFilter(_not_recipe)
            h.removeFilter(_not_interrupt_crash)
            h.removeFilter(_not_echo)
        handler.close()

    return detach


def _not_recipe(record) -> bool:
    """False for the ``recipe`` package's records (verdicts, advice, trials): the terminal shows them once, as the
    summary table; they go to the log file and the Prefect flow run's log."""
    return not (record.name == "recipe" or record.name.startswith("recipe."))


_STAGE_STARTED = re.compile(r"stage \w+: started \(MLflow run \w+\)$")


def _not_echo(record) -> bool:
    """False for Prefect's records that repeat a line of the live view (flows/live.py) on the terminal: a stage's
    "stage NAME: started (MLflow run ID)" (the live view's started line carries the run) and a task run's
    "Finished in state Completed()" (the live view prints the stage's verdict). A new user read each stage's
    start twice and a Completed() line under every trial. They still go to the log file and the Prefect UI."""
    if record.levelno > 20:  # logging.INFO: warnings and errors always show
        return True
    if record.name == "prefect.task_runs":
        return not record.getMessage().startswith("Finished in state Completed(")
    if record.name == "prefect.flow_runs":
        return not _STAGE_STARTED.match(record.getMessage())
    return True


INTERRUPT_CRASHES = ("aborted by an interrupt signal", "aborted by a termination signal")


def _not_interrupt_crash(record) -> bool:
    """False for Prefect's records of a crash by Ctrl-C or SIGTERM: "Crash detected! Execution was aborted by an
    interrupt (termination) signal." and "Finished in state Crashed('Execution was aborted by an interrupt
    signal.')", which the task run and the flow run each log. The CLI reports the interrupt itself (what was kept,
    how to resume), and a new user read Prefect's "Crashed" line first, as if the run had crashed. The log file
    keeps them; a crash for any other reason still shows."""
    if not record.name.startswith("prefect"):
        return True
    text = record.getMessage()
    crashed = text.startswith("Crash detected!") or "Crashed(" in text
    return not (crashed and any(m in text for m in INTERRUPT_CRASHES))


def _without_traceback(fmt):
    import copy

    def format(record):
        if record.exc_info or record.exc_text or record.stack_info:
            record = copy.copy(record)
            record.exc_info = record.exc_text = record.stack_info = None
        return fmt(record)

    return format


def _run_flow(
    cfg, stage: str | None, force: bool, log: Path, fresh: bool = False, rerun_from: str | None = None
) -> dict:
    """Connect to (or start) the Prefect API, run the flow, return its outcome (the report, or
    ``{"error": ...}`` for bad input found by a stage). Raises what the flow raised."""

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.local_server import BackendError, client_settings, ensure_server, healthy

    url = _prefect_api_url()
    lease = None
    if url:
        if not healthy(url, timeout=10):
            raise BackendError(
                f"the Prefect API at PREFECT_API_URL={url} does not answer; start that server, or "
                f"unset PREFECT_API_URL to use a local one that flows run starts itself"
            )
        updates = {PREFECT_API_URL: url}
    else:
        url, lease = ensure_server(say=lambda m: print(m, file=sys.stderr, flush=True))
        updates = client_settings(url)  # the local server requires its generated auth string
    detach = None
    try:
        with temporary_settings(updates=updates):
            from flows.live import LiveView
            from flows.recipe_flow import recipe as recipe_flow

            detach = _setup_logging(log)
            with LiveView().shown():  # stage k of n, runs left, time left; each verdict as its stage ends
                state = recipe_flow(
                    config=cfg, stage=stage, force=force, fresh=fresh, rerun_from=rerun_from, return_state=True
                )
            outcome = state.result(raise_on_failure=False)
    finally:
        if detach is not None:
            detach()
        if lease is not None:
            lease.release()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _say_second_interrupt(signum: int) -> None:
    import os

    os.write(2, b"\nsecond interrupt: exiting now; runs left RUNNING are ended KILLED by the next run\n")


def _first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its type's name when it has none."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _kept_runs(progress) -> dict[str, str]:
    """From a run's progress (recipe.pipeline.Progress, or None before it started): stage -> MLflow run of each
    recorded stage, in order: the stages the next run of the same command reuses (under ``budget.minutes`` too:
    the run's plan, logged as each stage ends, gives the sizes their reuse keys cover, recipe.pipeline)."""
    return {n: r for n, r in progress.recorded if r} if progress is not None else {}


def _write_stopped_report(
    path: Path, cfg, reason: str, exit_code: int, signum: int | None = None, error: BaseException | None = None
) -> str:
    """The ``--report`` of a run stopped by a signal or a backend failure (recipe.report.stopped_report_dict):
    verdict ``interrupted`` / ``error``, the stages recorded before it stopped (recipe.pipeline.LAST_PROGRESS),
    the stage that was running, the stages the next run reuses and the command that resumes. Returns the line to
    print: where it was written, or why it could not be (the run's exit code stays the stop's)."""
    import signal

    from recipe.report import stopped_report_dict, write_report
    from recipe.secrets import redact_text

    progress = getattr(sys.modules.get("recipe.pipeline"), "LAST_PROGRESS", None)
    runs = _kept_runs(progress)
    names = kept = list(runs)
    running = progress.running if progress is not None else None
    stopped = {
        "reason": reason,
        "exit_code": exit_code,
        **({"signal": signal.Signals(signum).name} if signum is not None else {}),
        **({"error": redact_text(_first_line(error))} if error else {}),
        "running": {"stage": running[0], "run_id": running[1]} if running else None,
        "kept": kept,
        "resume": _resume_command(rerun_from=_first_after(kept)),
    }
    results = [progress.results[n] for n in names if n in progress.results] if progress is not None else []
    try:
        write_report(
            path,
            stopped_report_dict(
                cfg.name,
                results,
                progress.parent_run_id if progress is not None else None,
                stopped,
                reused=[n for n in progress.reused if n in names] if progress is not None else [],
            ),
        )
    except (OSError, ValueError) as e:  # ValueError: pydantic's ValidationError, a bug, but not a reason to hide
        return f"--report {path} could not be written ({getattr(e, 'strerror', None) or e})"
    return f"report written to {path} (verdict {'interrupted' if reason == 'signal' else 'error'})"


def _report_interrupt(
    cfg,
    signum: int,
    log: Path,
    failed_while_stopping: BaseException | None = None,
    report: Path | None = None,
) -> None:
    """What was recorded and where, then exit 128 + signum. ``failed_while_stopping``: an error raised after the
    signal (a store that refused the KILLED records): said in one line, the exit code stays the signal's.
    ``report``: the ``--report`` file, written with verdict ``interrupted`` (:func:`_write_stopped_report`)."""
    import signal

    name = signal.Signals(signum).name
    progress = getattr(sys.modules.get("recipe.pipeline"), "LAST_PROGRESS", None)
    running = progress.running if progress is not None else None
    where = f" during stage {running[0]} (its MLflow run {running[1]} is not recorded as passing)" if running else ""
    lines = [f"interrupted by {name}{where}: the run stopped."]
    if "recipe.tracking" in sys.modules:
        from recipe import tracking

        if tracking.KILLED_RUNS:
            lines.append(
                f"MLflow runs ended KILLED (tag {tracking.TAG_ENDED_BY}): "
                f"{', '.join(tracking.KILLED_RUNS)} in experiment {cfg.name!r} ({_mlflow_hint()})"
            )
        elif failed_while_stopping is None:
            lines.append("no MLflow run was open yet: nothing was recorded")
    if failed_while_stopping is not None:
        what = _first_line(failed_while_stopping)
        with contextlib.suppress(OSError):  # its traceback goes to the log, as a crash's does
            import traceback

            from recipe.secrets import redact_text

            with _open_private(log) as f:
                f.write(redact_text("".join(traceback.format_exception(failed_while_stopping))))
        lines.append(
            f"while it stopped: {what[:300]}; a run it could not end is ended KILLED by the next run on this store"
        )
    elif "recipe.tracking" not in sys.modules:  # no store was opened at all
        lines.append("it stopped before anything was recorded")
    runs = _kept_runs(progress)
    reused = list(runs)
    if progress is not None:
        kept = ", ".join(f"{n} (run {runs[n]})" for n in reused) or "none"
        lines.append(f"stages kept (reused by the next run): {kept}")
    # nothing kept: from the first stage (a --fresh run must not resume by reusing older runs), as the report says
    lines.append(f"to resume: {_resume_command(rerun_from=_first_after(reused))}")
    flow_mod = sys.modules.get("flows.recipe_flow")
    if flow_mod is not None and getattr(flow_mod, "LAST_FLOW_RUN_ID", None):
        lines.append(
            f"Prefect flow run {flow_mod.LAST_FLOW_RUN_ID} ended crashed ({_prefect_api_url() or 'local server'})"
        )
    lines.append(f"log: {log}")
    if report is not None:
        lines.append(
            _write_stopped_report(report, cfg, "signal", 128 + signum, signum=signum, error=failed_while_stopping)
        )
    typer.echo("\n".join(lines), err=True)
    raise typer.Exit(128 + signum)


def _command(name: str) -> str:
    """How this shell calls the console script ``name`` of the running environment: its bare name when PATH finds
    that same script (an activated virtual environment), else its path, relative to the current folder when it is
    under it (``.venv/bin/flows`` after ``make run``, which does not activate the environment). The folder is the
    one of the script this process was started by (``sys.argv[0]``, symlinks kept: a ``.venv`` linked from
    elsewhere is named as the user typed it) when ``name`` is there, else ``sys.executable``'s."""
    import shutil

    typed = Path(os.path.abspath(sys.argv[0])).parent / name if sys.argv and sys.argv[0] else None
    here = typed if typed is not None and typed.is_file() else Path(sys.executable).parent / name
    if not here.is_file():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == here.resolve():
        return name
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def _stage_order() -> list[str]:
    """The stage names in the order the pipeline runs them: ``recipe.pipeline.stage_names`` once that module is
    loaded (where a test's stand-in stages are installed), else ``recipe.stages.stage_names`` without loading the
    pipeline (and MLflow) just to check a name."""
    pipeline = sys.modules.get("recipe.pipeline")
    if pipeline is not None:
        return list(pipeline.stage_names())
    from recipe.stages import stage_names

    return stage_names()


def _first_after(kept: list[str]) -> str | None:
    """The stage after the last of ``kept`` (stage names, in order; none kept: the first stage), or None."""
    order = _stage_order()
    at = max((order.index(n) for n in kept if n in order), default=-1) + 1
    return order[at] if at < len(order) else None


def _resume_command(argv: list[str] | None = None, rerun_from: str | None = None) -> str:
    """This run's command line again, without ``--fresh`` (which would redo the stages kept): up-to-date passing
    stages are reused and the run goes on from the first one that is not. When this run reused nothing after a
    point (``--fresh``, ``--rerun-from``), ``--rerun-from rerun_from`` (the first stage it did not keep) replaces
    that option: without it the next run would reuse older passing runs of the later stages, which the user had
    asked to rerun (a new user's trial: an interrupted --fresh run resumed by reusing the runs before it)."""
    import shlex

    args = list(sys.argv[1:] if argv is None else argv)
    rerunning = "--fresh" in args or any(a == "--rerun-from" or a.startswith("--rerun-from=") for a in args)
    kept: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--rerun-from":
            skip = True
        elif a != "--fresh" and not a.startswith("--rerun-from="):
            kept.append(a)
    if rerunning and rerun_from is not None:
        kept += ["--rerun-from", rerun_from]
    return f"{_command('flows')} " + shlex.join(kept)


def _kept_and_resume(outcome: dict, argv: list[str] | None = None) -> str:
    """After a FAIL: the stages kept (passing or warning, reused by the next run, under ``budget.minutes`` too),
    the one that failed, and the command that resumes there once its advice is followed."""
    stages = outcome.get("stages") or []
    kept = [st["stage"] for st in stages if st["verdict"] != "fail"]
    failed = outcome.get("stopped_at") or next((st["stage"] for st in stages if st["verdict"] == "fail"), None)
    resume = _resume_command(argv, rerun_from=_first_after(kept))
    lines = [
        f"stages kept (reused by the next run): {', '.join(kept) or 'none'}",
        f"failed: {failed}; follow its advice above, then resume with: {resume}"
        + (" (or change the config with --set; the kept stages are reused while their settings are unchanged)"),
    ]
    return "\n".join(lines)


def _backend_error_types() -> tuple[type[BaseException], ...]:

    from flows.local_server import BackendError
    from recipe.preflight import BackendUnreachable

    types: list[type[BaseException]] = [BackendError, BackendUnreachable]
    if "recipe.tracking" in sys.modules:
        types.append(sys.modules["recipe.tracking"].TrackingError)
    if "httpx" in sys.modules:
        import httpx

        types += [httpx.TransportError]
    if "prefect" in sys.modules:
        from prefect.exceptions import PrefectHTTPStatusError

        types.append(PrefectHTTPStatusError)
    return tuple(types)


def _fail_on_exception(e: BaseException, log: Path) -> None:
    """A backend failure: one line, exit 3. Anything else is a crash: one line, the traceback in ``log``,
    exit 4."""
    import traceback

    busy = sys.modules.get("recipe.tune.lock")
    if busy is not None and isinstance(e, busy.StudyBusy):
        _fail(str(e), code=EXIT_BUSY)
    if isinstance(e, _backend_error_types()):
        message = _first_line(e)
        if type(e).__module__.startswith(("httpx", "prefect")):
            detail, hint = (
                f"{type(e).__name__}: {message}",
                "see `flows server status`, or the server PREFECT_API_URL names",
            )
            message = f"the Prefect API failed ({detail}); {hint}"
            progress = getattr(sys.modules.get("recipe.pipeline"), "LAST_PROGRESS", None)
            if progress is not None and (progress.recorded or progress.running):  # it failed mid-run: say what is kept
                message = f"{progress.message('the Prefect API', detail)}; {hint}"
        _fail(message, code=EXIT_BACKEND)
    from recipe.secrets import redact_text

    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    try:
        _private_folder(log.parent)
        with _open_private(log) as f:
            f.write(redact_text("".join(traceback.format_exception(e))))
    except OSError as err:  # the log folder itself is the problem: say so instead of naming a log that isn't
        _fail(f"{type(e).__name__}: {first}; no log could be written ({err})", code=EXIT_CRASH)
    _fail(
        f"the run crashed (a bug, please report it): {type(e).__name__}: {first}; the traceback is in {log}; "
        f"what was recorded before the crash is in MLflow ({_mlflow_hint()})",
        code=EXIT_CRASH,
    )


def _redacted(uri: str) -> str:
    from recipe.secrets import redact_url

    return redact_url(uri)


def _mlflow_hint() -> str:
    from recipe.secrets import redact_url
    from recipe.tracking import tracking_uri

    uri = redact_url(tracking_uri())
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"{_command('mlflow')} ui --backend-store-uri {uri}"


@app.command()
def stages(preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List the stages in order and, for the config (default: digits), each one's latest verdict in MLflow."""
    import os

    from rich.table import Table

    from recipe.preflight import PreflightError
    from recipe.report import VERDICT_COLOUR as colour
    from recipe.stages import DESCRIPTIONS, stage_names

    cfg = _load(preset, config, set_)
    from recipe.preflight import resolve_store

    try:
        uri, _ = resolve_store(read_only=True)
    except PreflightError:  # no store anywhere: nothing ran yet, so no verdicts (and no empty store is created)
        uri = None
    try:
        if uri is None:
            latest = {}
        elif uri.startswith("sqlite:///"):  # read-only, without importing MLflow: well under a second
            from recipe.store_sqlite import latest_stage_verdicts as from_sqlite

            latest = from_sqlite(Path(uri.removeprefix("sqlite:///")), cfg.name, cfg.config_hash())
        else:
            from recipe.preflight import check_tracking_uri
            from recipe.tracking import latest_stage_verdicts

            os.environ["MLFLOW_TRACKING_URI"] = uri
            check_tracking_uri(uri)
            latest = latest_stage_verdicts(cfg.name, cfg.config_hash())
    except PreflightError as e:
        _fail(str(e))
    except Exception as e:  # sqlite3.Error, MlflowException, BackendUnreachable: the store cannot be read
        _fail(f"cannot read the MLflow store {uri}: {type(e).__name__}: {e}", code=EXIT_BACKEND)
    table = Table(title=f"stages of recipe {cfg.name!r} (config {cfg.config_hash()})", title_justify="left")
    for col in ("#", "stage", "what it does", "latest verdict", "run"):
        table.add_column(col)

    older = stale_stages(latest, stage_names())
    for i, name in enumerate(stage_names(), start=1):
        info = latest.get(name)
        verdict = f"[{colour.get(info['verdict'], 'white')}]{info['verdict']}[/]" if info else "-"
        if name in older:
            verdict += f" (older than {older[name]}'s)"
        table.add_row(str(i), name, DESCRIPTIONS[name], verdict, info["run_id"] if info else "")
    if older:
        table.caption = (
            "older than X's: recorded before X's latest run, so it did not follow from that run; `flows run recipe` "
            "reuses it only while its reuse key (its settings, the stages before it, data, code) still matches"
        )
        table.caption_justify = "left"
    _console().print(table)


def stale_stages(latest: dict[str, dict], order: list[str]) -> dict[str, str]:
    """The stages whose latest run (``latest``: stage -> {"start_time": ms, ...}, from
    :func:`recipe.tracking.latest_stage_verdicts`) started before the latest run of an earlier stage in ``order``,
    each mapped to the latest-run earlier stage it is older than (a new user's trial: after a killed regularize,
    tune and squeeze still showed `pass` from an older run, as if they followed it)."""
    out: dict[str, str] = {}
    newest: tuple[int, str] | None = None  # (start time, stage) of the most recent run among earlier stages
    for name in order:
        info = latest.get(name)
        if info is None:
            continue
        start = int(info.get("start_time") or 0)
        if newest is not None and start < newest[0]:
            out[name] = newest[1]
        if newest is None or start >= newest[0]:
            newest = (start, name)
    return out


PrefectFileOpt = Annotated[
    Path | None,
    typer.Option("--prefect-file", help="The deployment file. Default: deploy/prefect.yaml in this repository."),
]
_NO_API_HINT = (
    "start the stack (deploy/stack.sh up) and `source .stack/env`, or export PREFECT_API_URL "
    "(e.g. http://127.0.0.1:4200/api)"
)


def _prefect_api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


@app.command()
def deploy(
    name: Annotated[
        list[str] | None,
        typer.Option("--name", "-n", help="Deploy only this deployment of the file (repeatable). Default: all."),
    ] = None,
    prefect_file: PrefectFileOpt = None,
) -> None:
    """Create or update the deployments of deploy/prefect.yaml on the Prefect server (PREFECT_API_URL).

    Creates missing work pools (type process), then runs `prefect --no-prompt deploy` with the file.
    """
    import asyncio
    import subprocess

    from flows.deployments import PREFECT_FILE, REPO_ROOT, DeploymentFileError, deployment_specs, ensure_work_pools

    path = (prefect_file or PREFECT_FILE).resolve()
    try:
        known = [s.name for s in deployment_specs(path)]
    except DeploymentFileError as e:
        _fail(str(e))
    unknown = [n for n in name or [] if n not in known]
    if unknown:
        _fail(f"no deployment named {', '.join(map(repr, unknown))} in {path}; there are: {', '.join(known)}")
    url = _prefect_api_url()
    if not url:
        _fail(f"PREFECT_API_URL is not set, so there is no server to deploy to: {_NO_API_HINT}")
    from flows.deployments import work_pools

    try:
        created = asyncio.run(ensure_work_pools(work_pools(path, name)))
    except Exception as e:  # connection refused, auth, TLS: all mean "cannot reach the API"
        _fail(f"cannot reach the Prefect API at {url}: {type(e).__name__}: {e}\n({_NO_API_HINT})")
    for pool, what in created.items():
        typer.echo(f"work pool {pool!r}: {what}")
    selection = [arg for n in name for arg in ("--name", n)] if name else ["--all"]
    # From the repository root: file entrypoints (and prefect's default pull step) are relative to it.
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(path), *selection]
    code = subprocess.call(cmd, cwd=REPO_ROOT)
    if code:
        _fail(f"prefect deploy exited with {code} (command: {' '.join(cmd)})", code=code)
    typer.echo(
        f"deployed {', '.join(name or known)} to {url}; runs need a worker on "
        f"{', '.join(work_pools(path, name))} with RECIPE_FLOWS_HOME={REPO_ROOT} "
        f"(deploy/stack.sh up starts one)"
    )


@app.command()
def serve(
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Which deployment of the file. Default: the first.")
    ] = None,
    as_: Annotated[
        str | None, typer.Option("--as", help="Register under this deployment name. Default: the file's name.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many runs at once. Default: no limit.")] = None,
    prefect_file: PrefectFileOpt = None,
) -> None:
    """Serve the recipe flow from this process, with the schedule and parameters of deploy/prefect.yaml.

    No work pool, no worker: runs go in this process until Ctrl-C, which pauses the schedule.
    """
    from flows.deployments import PREFECT_FILE, DeploymentFileError, deployment_spec

    path = (prefect_file or PREFECT_FILE).resolve()
    try:
        spec = deployment_spec(name, path)
        schedules = spec.prefect_schedules()
    except (DeploymentFileError, ValueError) as e:
        _fail(str(e))
    import contextlib

    from prefect.deployments.runner import EntrypointType
    from prefect.flows import load_flow_from_entrypoint
    from prefect.settings import temporary_settings

    from flows.local_server import BackendError, client_settings, ensure_server

    settings, lease = contextlib.nullcontext(), None
    if not _prefect_api_url():
        try:
            url, lease = ensure_server(say=lambda m: typer.echo(m, err=True))
            updates = client_settings(url)  # the local server's auth string; the served runs inherit it
        except BackendError as e:
            _fail(str(e), code=EXIT_BACKEND)
        typer.echo(
            f"PREFECT_API_URL is not set: serving against the local Prefect server {url} (UI "
            f"{url.removesuffix('/api')}; `flows server status`)",
            err=True,
        )
        settings = temporary_settings(updates=updates)
    try:
        with settings:
            flow = load_flow_from_entrypoint(spec.entrypoint_for_loading)
            # Runs load the flow by module, as deployments do.
            flow.serve(
                name=as_ or spec.name,
                schedules=schedules,
                parameters=spec.parameters,
                tags=spec.tags,
                description=spec.description,
                limit=limit,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
    finally:
        if lease is not None:
            lease.release()


server_app = typer.Typer(
    help="The local Prefect server that `flows run` starts and shares (one per PREFECT_HOME).", no_args_is_help=True
)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status() -> None:
    """Show the local Prefect server of PREFECT_HOME: pid, URL, runs using it (exit 1 when none runs)."""
    from flows.local_server import healthy, live_leases, prefect_home, read_info, state_dir

    home = prefect_home()
    info = read_info(home)
    if info is None or not info.alive():
        typer.echo(f"no local Prefect server runs for PREFECT_HOME={home}; the next `flows run` starts one")
        raise typer.Exit(1)
    state = "healthy" if healthy(info.url) else "NOT answering"
    users = live_leases(home)
    typer.echo(
        f"local Prefect server for PREFECT_HOME={home}: pid {info.pid}, {info.url} ({state}); "
        f"UI http://127.0.0.1:{info.port}; runs using it: {len(users)}"
        f"{' (pids ' + ', '.join(map(str, users)) + ')' if users else ''}; log {info.log}"
    )
    auth = state_dir(home) / "auth"
    typer.echo(
        f"it requires basic auth (the UI signs in with {auth}'s user:password); for the prefect CLI: "
        f'export PREFECT_API_URL={info.url} PREFECT_API_AUTH_STRING="$(cat {auth})"'
    )


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server of PREFECT_HOME (runs still using it will fail with exit 3)."""
    from flows.local_server import prefect_home, stop_server

    info = stop_server()
    if info is None:
        typer.echo(f"no local Prefect server was recorded for PREFECT_HOME={prefect_home()}")
        return
    typer.echo(f"stopped the local Prefect server (pid {info.pid}, {info.url})")


def _print_metrics(title: str, metrics: dict[str, float], seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"{title}: trained in {seconds:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if "/" in key and not key.startswith("update_ratio"):
            table.add_row(key, f"{metrics[key]:.4f}")
    _console().print(table)


@app.command()
def champion(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="The registered model (the recipe's name). Default: the config's name."),
    ] = None,
    promote: Annotated[
        str | None, typer.Option("--promote", help="Point the alias `champion` at this version (by hand).")
    ] = None,
) -> None:
    """Show the registered champion and challenger of a recipe (and its other versions), or promote a version.

    Every squeeze registers a version with the alias `challenger`; `champion` moves to it only when the stage did not
    fail and it is at least as good as the champion on the same validation split. Exit 2: no such model or version,
    3: the MLflow store cannot be read.
    """
    model = name or _load(preset, config, set_).name
    uri = _reachable_store(read_only=True)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        _fail(f"no MLflow store at {uri}, so no model is registered yet: run the recipe to its squeeze stage first")
    from recipe.squeeze.promotion import RegistryError, describe, promote_by_hand

    try:
        if promote is not None:
            before, warnings = promote_by_hand(model, promote)
            for w in warnings:
                typer.echo(f"note: {w}", err=True)
            was = f"was version {before}" if before else "there was none"
            typer.echo(f"models:/{model}@champion is now version {promote} ({was})")
        info = describe(model)
    except RegistryError as e:
        _fail(str(e))
    except Exception as e:  # the store cannot be opened or read
        _fail(f"cannot read the model registry at {uri}: {type(e).__name__}: {e}", code=EXIT_BACKEND)
    _print_champion(info)


def _print_champion(info: dict) -> None:
    from rich.table import Table

    by_version = {r["version"]: r for r in info["versions"]}
    for alias in ("champion", "challenger"):
        v = info[alias]
        if v is None:
            typer.echo(f"{alias}: none")
            continue
        r = by_version[v]
        typer.echo(
            f"{alias}: version {v} (models:/{info['name']}@{alias}): squeeze {r['verdict'] or '?'}, val loss "
            f"{r['val_loss'] or '?'}, val metric {r['val_metric'] or '?'}, data {r['data_fingerprint'] or '?'}, "
            f"config {r['config_hash'] or '?'}, code {r['code_version'] or '?'}, run {r['run_id']}"
            + (f"; promoted {r['promoted']}" if alias == "champion" and r["promoted"] else "")
        )
    table = Table(title=f"versions of registered model {info['name']!r}", title_justify="left")
    for col in ("version", "aliases", "squeeze", "val loss", "val metric", "data", "config", "code"):
        table.add_column(col)
    for r in info["versions"][:20]:
        table.add_row(
            r["version"],
            ", ".join(r["aliases"]),
            r["verdict"],
            r["val_loss"],
            r["val_metric"],
            r["data_fingerprint"],
            r["config_hash"],
            r["code_version"],
        )
    _console().print(table)


@app.command()
def predict(
    path: Annotated[
        list[Path],
        typer.Argument(help="Folders of images (searched recursively), image files, or one .csv file."),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="The model URI: models:/<recipe name>@champion (a CSV's recipe: the file's name)."
        ),
    ] = "models:/digits@champion",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the predictions CSV.")] = Path(
        "predictions.csv"
    ),
    trust_model_code: Annotated[
        bool,
        typer.Option(
            "--trust-model-code",
            help="Load the model's own pyfunc code (runs it). Default: rebuild a champion of this project from its "
            "spec and weights only.",
        ),
    ] = False,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable", help="Leave out files that cannot be read as images (listed) instead of stopping."
        ),
    ] = False,
) -> None:
    """Predict with a registered model: one CSV row per image (or table row), with label and probabilities.

    The model is loaded once for every file given, as data: a champion registered by a squeeze run of this project,
    rebuilt from its spec and weights by the local package; --trust-model-code runs the model's own code instead.
    Warns (with counts) on images unlike the training images (size, colour, polarity, pixel statistics). No Prefect
    server is started. Files that are not images (by extension) are skipped and counted, as training skips them;
    the inputs are read before the model or the store. The tracking store: MLFLOW_TRACKING_URI, else
    mlruns/mlflow.db in the current folder or one above it, else this checkout's; none is ever created. Exit 2: bad input (no such model, unreadable files
    without --skip-unreadable), 3: the store cannot be read."""
    from flows.predict import PredictError, not_images_note, predict_inputs, read_inputs

    try:  # the inputs first: a missing path or an unreadable image is said before torch, MLflow or the store
        inputs = read_inputs(list(path), skip_unreadable=skip_unreadable)
    except PredictError as e:
        _fail(str(e), code=e.code)
    if inputs.not_images:
        typer.echo(not_images_note(inputs.not_images), err=True)
    _use_store(read_only=True)
    try:
        done = predict_inputs(model, inputs, out, trust_code=trust_model_code)
    except PredictError as e:
        _fail(str(e), code=e.code)
    for f, why in done.skipped:
        typer.echo(f"skipped (unreadable): {f}: {why}", err=True)
    for w in done.warnings:
        typer.echo(f"warning: {w}", err=True)
    result = done.frame
    label = "label" if "label" in result.columns else "prediction"
    counts = result[label].value_counts().head(5).to_dict() if label == "label" else {}
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
    skipped = f"; {len(done.skipped)} unreadable file(s) skipped" if done.skipped else ""
    skipped += f"; {len(done.not_images)} file(s) that are not images skipped" if done.not_images else ""
    typer.echo(
        f"{len(result)} prediction{'' if len(result) == 1 else 's'} written to {out}"
        + (f" (most common: {summary})" if summary else "")
        + skipped
    )


_EXIT_STATUS: list[object] = []  # the status main() is exiting with, for _exit_without_teardown


def _exit_without_teardown() -> None:
    """Exit with main()'s status as soon as the exit handlers registered after main() started have run.

    What is left to the interpreter after them is tearing down every module it imported (torch, MLflow, Prefect,
    pandas, scikit-learn): 1.5-3 s a ``flows`` process on the 2-core machine (measured: ``flows run recipe
    --stage inspect`` printed its last line 1.7 s before it exited; every exit handler together took 0.01 s),
    which the user waits for and buys nothing: the operating system frees the memory, files and sockets anyway.
    Registered first by main(), this handler runs after every handler registered later (atexit is last-in,
    first-out: the libraries' flushes and MLflow's, Prefect's and multiprocessing's clean-ups, imported inside the
    commands, all run first; non-daemon threads were joined before any of them). What was registered before
    main() (logging's shutdown) is done here by hand, and the standard streams are flushed. Skipped, so the
    interpreter exits the usual way, when the status is not an integer (``sys.exit("message")``) or a coverage
    tracer, whose exit handler was registered before main(), is loaded. The same move as ``os._exit`` after the
    work is done in CPython's own test runner and in many CLIs (e.g. Mercurial's ``hg``)."""
    if not _EXIT_STATUS or "coverage" in sys.modules:
        return
    status = _EXIT_STATUS[-1]
    status = 0 if status is None else status
    if not isinstance(status, int):
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(status)


def main() -> None:  # pragma: no cover - console entry point (tests drive it in subprocesses)
    """The console entry point: typer's standalone mode (usage errors exit 2, a Ctrl-C outside a run exits
    130), plus: a crash no command caught is one line and a log with the traceback (exit 4). The process then
    exits without tearing down its imported modules (_exit_without_teardown)."""
    import atexit

    atexit.register(_exit_without_teardown)
    piped = _stdout_is_pipe()
    try:
        _main()
    except SystemExit as e:
        if e.code == 1 and _stdout_closed(piped):
            # click ends a command whose output pipe closed (`flows config --explain | head`) with status 1, the
            # status of a failed stage here: the shell's status of a process ended by SIGPIPE instead, as `git
            # log | head` gives, and no message (the README's exit-code table)
            import signal

            e = SystemExit(128 + signal.SIGPIPE)
        _EXIT_STATUS.append(e.code)
        raise e from None


def _stdout_is_pipe() -> bool:
    """Whether the standard output is a pipe (``flows ... | head``)."""
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(1).st_mode)
    except OSError:
        return False


def _stdout_closed(piped: bool) -> bool:
    """Whether the output pipe was found closed (EPIPE): click (typer's copy of it) wraps the standard streams in
    its ``PacifyFlushWrapper``; rich (``--help``) points a pipe's descriptor at /dev/null (``Console.on_broken_pipe``)
    before its ``SystemExit(1)``. ``piped``: the output was a pipe when the command started."""
    if type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
        return True
    if not piped:
        return False
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def _main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except BaseException as e:
        from flows.signals import signal_of

        sig = signal_of(e) if not isinstance(e, Exception) else None
        if sig is not None:
            print(f"interrupted by signal {sig}", file=sys.stderr)
            sys.exit(128 + sig)
        try:
            _fail_on_exception(e, _run_log_path())
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
