"""The ``flows`` command.

Heavy libraries (torch, prefect, mlflow, great_expectations) are imported inside the
commands, never at module level: ``flows --help`` must stay instant.
"""

from __future__ import annotations

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

PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="A shipped preset: digits, imagefolder, tabular.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config file (instead of a preset).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set optim.lr=1e-3 (repeatable)."),
]


def _load(preset: str | None, config: Path | None, overrides: list[str] | None):
    from recipe.config import ConfigError, load_config

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

    # soft_wrap: never break a path or a key across lines; users copy them from here
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.command()
def presets() -> None:
    """List the shipped presets."""
    from recipe.config import preset_names, preset_path

    for name in preset_names():
        text = preset_path(name).read_text()
        desc = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("description:")), "")
        typer.echo(f"{name:12s} {desc}")


@app.command()
def config(preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (preset or file, then overrides) and its hash."""
    import yaml

    cfg = _load(preset, config, set_)
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    typer.echo(f"# config_hash: {cfg.config_hash()}")


@app.command()
def train(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override budget.epochs.")] = None,
) -> None:
    """Train the config's model on its data once with the shared trainer and print the result (no stages)."""
    from recipe.fit import fit_config

    cfg = _load(preset, config, set_)
    if epochs is not None:
        cfg = cfg.with_overrides({"budget.epochs": epochs})
    from recipe.data import DataError

    try:
        result = fit_config(cfg)
    except DataError as e:
        _fail(str(e))
    _print_metrics(cfg.name, result.metrics, result.seconds)
    if result.stop_reason:
        typer.echo(f"stopped early: {result.stop_reason}")
    if result.diverged:
        raise typer.Exit(1)


run_app = typer.Typer(help="Run a flow.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("recipe")
def run_recipe(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    stage: Annotated[str | None, typer.Option(help="Run up to this stage; earlier ones are reused from MLflow.")] = None,
    force: Annotated[bool, typer.Option(help="Carry on past a failed stage (runs are tagged as forced).")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
) -> None:
    """Run the training recipe: every stage in order, each gated on the one before (exit 1 on a FAIL)."""
    from recipe.stages import stage_names

    if stage is not None and stage not in stage_names():
        _fail(f"unknown stage {stage!r}; stages, in order: {', '.join(stage_names())}")
    cfg = _load(preset, config, set_)
    from rich.console import Console

    from flows.recipe_flow import recipe as recipe_flow
    from recipe.report import render_summary, write_report

    state = recipe_flow(config=cfg, stage=stage, force=force, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):  # a bug, not bad input: Prefect has logged the traceback
        _fail(f"the flow crashed: {type(outcome).__name__}: {outcome}\n"
              f"what was recorded before the crash is in MLflow ({_mlflow_hint()})")
    if "error" in outcome:  # bad input: the message says what and what to do
        _fail(f"{outcome['error']}\n(anything recorded before this error is in MLflow: {_mlflow_hint()})")
    render_summary(outcome, _console())
    if report is not None:
        write_report(report, outcome)
        typer.echo(f"report written to {report}")
    typer.echo(f"MLflow: parent run {outcome['parent_run_id']} in experiment {cfg.name!r} ({_mlflow_hint()})")
    raise typer.Exit(1 if outcome["verdict"] == "fail" else 0)


def _mlflow_hint() -> str:
    from recipe.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


@app.command()
def stages(preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List the stages in order and, for the config (default: digits), each one's latest verdict in MLflow."""
    from rich.console import Console
    from rich.table import Table

    from recipe.stages import DESCRIPTIONS, stage_names
    from recipe.tracking import latest_stage_verdicts

    cfg = _load(preset, config, set_)
    latest = latest_stage_verdicts(cfg.name, cfg.config_hash())
    table = Table(title=f"stages of recipe {cfg.name!r} (config {cfg.config_hash()})", title_justify="left")
    for col in ("#", "stage", "what it does", "latest verdict", "run"):
        table.add_column(col)
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}
    for i, name in enumerate(stage_names(), start=1):
        info = latest.get(name)
        verdict = f"[{colour.get(info['verdict'], 'white')}]{info['verdict']}[/]" if info else "-"
        table.add_row(str(i), name, DESCRIPTIONS[name], verdict, info["run_id"] if info else "")
    _console().print(table)


PrefectFileOpt = Annotated[
    Path | None,
    typer.Option("--prefect-file", help="The deployment file. Default: deploy/prefect.yaml in this repository."),
]
_NO_API_HINT = ("start the stack (deploy/stack.sh up) and `source .stack/env`, or export PREFECT_API_URL "
                "(e.g. http://127.0.0.1:4200/api)")


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
    import sys

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
    typer.echo(f"deployed {', '.join(name or known)} to {url}; runs need a worker on "
               f"{', '.join(work_pools(path, name))} with RECIPE_FLOWS_HOME={REPO_ROOT} "
               f"(deploy/stack.sh up starts one)")


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
    if not _prefect_api_url():
        typer.echo(f"warning: PREFECT_API_URL is not set; serving against a temporary local server that ends with "
                   f"this process (no UI to watch it in): {_NO_API_HINT}", err=True)
    from prefect.deployments.runner import EntrypointType
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(spec.entrypoint_for_loading)
    # Runs load the flow by module, as deployments do.
    flow.serve(name=as_ or spec.name, schedules=schedules, parameters=spec.parameters, tags=spec.tags,
               description=spec.description, limit=limit, entrypoint_type=EntrypointType.MODULE_PATH)


def _print_metrics(title: str, metrics: dict[str, float], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: trained in {seconds:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if "/" in key and not key.startswith("update_ratio"):
            table.add_row(key, f"{metrics[key]:.4f}")
    _console().print(table)


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="A folder of images (searched recursively), an image, or a .csv file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model URI, e.g. models:/digits@champion.")] = (
        "models:/digits@champion"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the predictions CSV.")] = Path(
        "predictions.csv"),
) -> None:
    """Predict with a registered model: one CSV row per image (or table row), with label and probabilities."""
    from flows.predict import PredictError, predict_path

    try:
        result = predict_path(model, path, out)
    except PredictError as e:
        _fail(str(e), code=e.code)
    label = "label" if "label" in result.columns else "prediction"
    counts = result[label].value_counts().head(5).to_dict() if label == "label" else {}
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
    typer.echo(f"{len(result)} predictions written to {out}" + (f" (most common: {summary})" if summary else ""))


def main() -> None:  # pragma: no cover - console entry point
    app()
