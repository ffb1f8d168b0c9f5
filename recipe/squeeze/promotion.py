"""Challenger, then champion: which registered version ``models:/<recipe name>@champion`` serves.

Every squeeze registers its model as a new version of the registered model named after the recipe (one data set
per recipe name, :func:`recipe.config.name_for_data`), tags it (:data:`VERSION_TAGS`) and points the alias
``challenger`` at it. The alias ``champion`` moves to it only when

1. the squeeze stage did not FAIL (its gated checks), and
2. there is no champion yet, or the champion was trained on the same data (data fingerprint tag), and
3. the challenger is at least as good as the champion on the *same* validation split: both registered models are
   loaded through MLflow and score this run's validation inputs, raw (file paths, CSV rows) as a user's would
   come, on squeeze's criterion (``stages.squeeze.criterion``: the validation loss, or the headline metric).
   The test split is not read here: it stays read once, by :mod:`recipe.squeeze.heldout`.

Otherwise the champion stays and :func:`decide`'s check says why; ``flows champion --promote VERSION`` moves the
alias by hand. This is the registry workflow MLflow documents for aliases (a challenger evaluated against the
champion before the champion alias moves), with the data guard added because a recipe name could be reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recipe import tracking
from recipe.checks.base import Finding, finding
from recipe.report import Verdict

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_VERDICT, TAG_PARENT_RUN, TAG_RUN = tracking.TAG_VERDICT, "recipe.parent_run_id", "recipe.run_id"
TAG_VAL_LOSS, TAG_VAL_METRIC = "recipe.val_loss", "recipe.val_metric"
TAG_PROMOTED = "recipe.promoted"  # why (and by whom) the champion alias moved to this version
VERSION_TAGS = (
    TAG_VERDICT,
    tracking.TAG_CONFIG_HASH,
    tracking.TAG_FINGERPRINT,
    TAG_PARENT_RUN,
    tracking.TAG_CODE_VERSION,
    TAG_RUN,
)
CHECK = "champion_promoted"


class RegistryError(RuntimeError):
    """The registered model or version asked for does not exist (bad input); the message names what does."""


@dataclass
class Score:
    """A registered model's validation loss and headline metric on a split (the task's units)."""

    loss: float
    metric: float


@dataclass
class Decision:
    """What happened to the champion alias: moved (``promoted``) or not, and why, with both scores."""

    promoted: bool
    reason: str
    challenger: str  # version
    previous: str | None = None  # the champion's version before, None when there was none
    challenger_score: Score | None = None
    champion_score: Score | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def champion(self) -> str | None:
        """The champion's version after the decision."""
        return self.challenger if self.promoted else self.previous


def _client():
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return MlflowClient()


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The ModelVersion ``alias`` points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_tag(client: Any, version: Any, key: str) -> str | None:
    """A version's tag, else the tag of the run that logged it (versions registered before versions were tagged
    still say which data they came from through their run)."""
    if version.tags.get(key):
        return version.tags[key]
    if version.run_id:
        try:
            return client.get_run(version.run_id).data.tags.get(key)
        except Exception:  # the run was deleted: the tag is unknown
            return None
    return None


def tag_challenger(name: str, version: str, tags: dict[str, str]) -> None:
    """Tag the new version (:data:`VERSION_TAGS` and the validation scores) and point ``challenger`` at it."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)


def score_model(model: Any, inputs: Any, y: torch.Tensor, task: Any, data: Any, classes: list[str]) -> Score:
    """``model`` (a loaded champion pyfunc) on raw ``inputs`` with targets ``y`` (class indices into ``classes``,
    or the targets as the data's tensors hold them): the mean loss and the headline metric, computed with the same
    task functions as squeeze's own validation numbers (:func:`recipe.squeeze.candidates.score`).

    Raises KeyError when the model lacks a probability column of one of ``classes`` (trained on other classes)."""
    out = model.predict(inputs)
    if task.classifier:
        probs = out[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
        pred = torch.from_numpy(np.log(np.clip(probs, 1e-12, None)))
    else:
        shift = float(getattr(data, "target_shift", None) or 0.0)
        scale = float(getattr(data, "target_scale", None) or 1.0)
        pred = torch.from_numpy((out["prediction"].to_numpy(np.float64) - shift) / scale).reshape(-1, 1)
    loss = float(task.loss(pred, y).item())
    metric = task.summarise(task.scores(pred, y).double().numpy())[task.metric]
    return Score(loss, metric)


def at_least_as_good(challenger: Score, champion: Score, criterion: str, task: Any) -> bool:
    """The challenger's validation loss is not above the champion's (``criterion="loss"``), or its metric is not
    worse (``"metric"``); a score that is not a number never wins."""
    a, b = (challenger.loss, champion.loss) if criterion == "loss" else (challenger.metric, champion.metric)
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    if criterion == "loss":
        return a <= b
    return not task.better(b, a)


def decide(sc: Any, version: str, verdict: Verdict, val_inputs: Any) -> Decision:
    """Tag the new version, make it the challenger, and move the champion alias to it when the rules of the
    module docstring allow; ``sc`` is squeeze's :class:`recipe.squeeze.runs.Context`, ``verdict`` the stage's
    gated verdict, ``val_inputs`` the validation split's raw inputs (in the split's order)."""
    import mlflow

    client = _client()
    name = sc.cfg.name
    run = client.get_run(sc.run_id)
    tags = {
        TAG_VERDICT: verdict.value,
        tracking.TAG_CONFIG_HASH: run.data.tags.get(tracking.TAG_CONFIG_HASH, sc.ctx.input_cfg.config_hash()),
        tracking.TAG_FINGERPRINT: sc.data.fingerprint,
        TAG_PARENT_RUN: run.data.tags.get("mlflow.parentRunId", ""),
        tracking.TAG_CODE_VERSION: run.data.tags.get(tracking.TAG_CODE_VERSION, ""),
        TAG_RUN: sc.run_id,
    }
    current = alias_version(client, name, CHAMPION)
    previous = str(current.version) if current is not None else None
    _, y = sc.data.tensors("val")
    classes = list(sc.data.classes)
    challenger_score = score_model(
        mlflow.pyfunc.load_model(f"models:/{name}/{version}"), val_inputs, y, sc.task, sc.data, classes
    )
    tags[TAG_VAL_LOSS], tags[TAG_VAL_METRIC] = f"{challenger_score.loss:.6g}", f"{challenger_score.metric:.6g}"
    tag_challenger(name, version, tags)
    decision = Decision(False, "", version, previous, challenger_score)
    if verdict is Verdict.FAIL:
        decision.reason = f"the squeeze stage failed its checks, so version {version} stays the challenger"
        return decision
    if current is None:
        return _promote(client, name, decision, "the first model registered under this name")
    theirs = version_tag(client, current, tracking.TAG_FINGERPRINT)
    if theirs != sc.data.fingerprint:
        decision.reason = (
            f"the champion (version {previous}) was trained on other data (fingerprint {theirs or 'unknown'}, this "
            f"run's is {sc.data.fingerprint}): a challenger on other data never replaces it"
        )
        return decision
    try:
        decision.champion_score = score_model(
            mlflow.pyfunc.load_model(f"models:/{name}/{previous}"), val_inputs, y, sc.task, sc.data, classes
        )
    except Exception as e:  # it cannot be loaded or scored here: say so, keep it
        decision.reason = (
            f"the champion (version {previous}) could not be scored on this validation split "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        )
        return decision
    what = _versus(decision, sc.s.criterion, sc.task)
    if at_least_as_good(challenger_score, decision.champion_score, sc.s.criterion, sc.task):
        return _promote(client, name, decision, f"at least as good as version {previous}: {what}")
    decision.reason = f"worse than the champion (version {previous}) on the same validation split: {what}"
    return decision


def _versus(d: Decision, criterion: str, task: Any) -> str:
    a, b = d.challenger_score, d.champion_score
    key = "loss" if criterion == "loss" else task.metric
    ours, theirs = (a.loss, b.loss) if criterion == "loss" else (a.metric, b.metric)
    return f"val {key} {ours:.4g} (version {d.challenger}) vs {theirs:.4g} (version {d.previous})"


def _promote(client: Any, name: str, d: Decision, why: str) -> Decision:
    client.set_registered_model_alias(name, CHAMPION, d.challenger)
    client.set_model_version_tag(name, d.challenger, TAG_PROMOTED, f"by squeeze: {why}")
    d.promoted, d.reason = True, why
    return d


def promotion_finding(d: Decision | None, name: str, error: str = "") -> Finding:
    """The check that says whether the champion alias moved to this run's model, and why not (advisory: it never
    changes the stage's verdict; a model that did not become champion is not a broken stage)."""
    hyp = "this run's model becomes the champion: squeeze passed, same data, at least as good on validation"
    if d is None:
        return finding(
            CHECK,
            hyp,
            f"not decided: {error or 'the model was not registered'}",
            "a registered challenger",
            Verdict.WARN,
            f"see the MLflow model registry; `flows champion --name {name}` shows the champion and challenger",
        )
    if d.promoted:
        return finding(
            CHECK, hyp, f"models:/{name}@champion is now version {d.challenger}: {d.reason}", "-", Verdict.PASS
        )
    if d.previous:
        observed = f"the champion stays version {d.previous}; version {d.challenger} is the challenger: {d.reason}"
    else:
        observed = f"no champion yet; version {d.challenger} is the challenger: {d.reason}"
    return finding(
        CHECK,
        hyp,
        observed,
        "promoted",
        Verdict.WARN,
        f"compare them with `flows champion --name {name}`; promote by hand with "
        f"`flows champion --name {name} --promote {d.challenger}`",
    )


# --- reading and moving by hand (flows champion) ------------------------------------------------------------------


def describe(name: str) -> dict[str, Any]:
    """The champion and challenger of registered model ``name`` and every version, for ``flows champion``:
    ``{"champion": version|None, "challenger": version|None, "versions": [{version, aliases, created, run_id,
    verdict, data_fingerprint, config_hash, code_version, val_loss, val_metric, promoted}]}`` (newest first).

    Raises RegistryError when no model is registered under ``name``."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(_no_model(client, name)) from None
    aliases = dict(model.aliases or {})
    versions = client.search_model_versions(f"name = '{name}'", max_results=1000)
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        rows.append(
            {
                "version": str(v.version),
                "aliases": sorted(a for a, ver in aliases.items() if str(ver) == str(v.version)),
                "created": v.creation_timestamp,
                "run_id": v.run_id,
                "verdict": version_tag(client, v, TAG_VERDICT) or "",
                "data_fingerprint": version_tag(client, v, tracking.TAG_FINGERPRINT) or "",
                "config_hash": version_tag(client, v, tracking.TAG_CONFIG_HASH) or "",
                "code_version": version_tag(client, v, tracking.TAG_CODE_VERSION) or "",
                "val_loss": v.tags.get(TAG_VAL_LOSS, ""),
                "val_metric": v.tags.get(TAG_VAL_METRIC, ""),
                "promoted": v.tags.get(TAG_PROMOTED, ""),
            }
        )
    return {
        "name": name,
        CHAMPION: str(aliases[CHAMPION]) if CHAMPION in aliases else None,
        CHALLENGER: str(aliases[CHALLENGER]) if CHALLENGER in aliases else None,
        "versions": rows,
    }


def promote_by_hand(name: str, version: str) -> tuple[str | None, list[str]]:
    """Point ``champion`` at ``version`` of ``name``; returns (the version it pointed at before, warnings such as
    "trained on other data" or "its squeeze failed"). Raises RegistryError naming the versions there are."""
    from mlflow.exceptions import MlflowException

    info = describe(name)
    known = [r["version"] for r in info["versions"]]
    if str(version) not in known:
        raise RegistryError(
            f"registered model {name!r} has no version {version!r}; its versions: {', '.join(known)} "
            f"(`flows champion --name {name}` lists them)"
        )
    row = next(r for r in info["versions"] if r["version"] == str(version))
    before = info[CHAMPION]
    warnings = []
    if before is not None and before != str(version):
        old = next(r for r in info["versions"] if r["version"] == before)
        if old["data_fingerprint"] and row["data_fingerprint"] and old["data_fingerprint"] != row["data_fingerprint"]:
            warnings.append(
                f"version {version} was trained on other data (fingerprint {row['data_fingerprint']}) than version "
                f"{before} ({old['data_fingerprint']})"
            )
    if row["verdict"] == Verdict.FAIL.value:
        warnings.append(f"version {version}'s squeeze stage failed its checks")
    client = _client()
    try:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        client.set_model_version_tag(name, str(version), TAG_PROMOTED, "by hand: flows champion --promote")
    except MlflowException as e:
        raise RegistryError(f"could not move the champion alias of {name!r}: {e}") from None
    return before, warnings


def _no_model(client: Any, name: str) -> str:
    names = sorted(m.name for m in client.search_registered_models(max_results=100))
    there = f"registered models: {', '.join(names)}" if names else "no model is registered yet"
    return (
        f"no model is registered under {name!r} ({there}); squeeze registers one under the recipe's name: run "
        f"the recipe to its squeeze stage, or pass --name"
    )
