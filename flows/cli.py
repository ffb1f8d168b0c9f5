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

    from flows.recipe import recipe as recipe_flow
    from recipe.report import render_summary, write_report

    state = recipe_flow(config=cfg, stage=stage, force=force, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):  # a bug, not bad input: Prefect has logged the traceback
        _fail(f"the flow crashed: {type(outcome).__name__}: {outcome}\n"
              f"what was recorded before the crash is in MLflow ({_mlflow_hint()})")
    if "error" in outcome:  # bad input: the message says what and what to do
        _fail(f"{outcome['error']}\n(anything recorded before this error is in MLflow: {_mlflow_hint()})")
    render_summary(outcome, Console())
    if report is not None:
        write_report(report, outcome)
        typer.echo(f"report written to {report}")
    typer.echo(f"MLflow: parent run {outcome['parent_run_id']} in experiment {cfg.name!r} ({_mlflow_hint()})")
    raise typer.Exit(1 if outcome["verdict"] == "fail" else 0)


def _mlflow_hint() -> str:
    from recipe.tracking import tracking_uri

    return f"mlflow ui --backend-store-uri {tracking_uri()}"


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
    Console().print(table)


def _print_metrics(title: str, metrics: dict[str, float], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: trained in {seconds:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if "/" in key and not key.startswith("update_ratio"):
            table.add_row(key, f"{metrics[key]:.4f}")
    Console().print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()
