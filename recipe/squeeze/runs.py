"""The trainings squeeze compares: ensemble members through the trial map, the other candidates in-process.

* Members: the tuned config with seeds ``seed .. seed + members - 1``, independent trainings, so they go
  through ``ctx.map`` like tune's trials (:func:`recipe.tune.trial.run_trial`; a process pool or a Dask cluster
  in the flow), each in its own MLflow run nested under the squeeze run. Member 0 (the config's own seed) is
  the reference: "the tuned config trained for the full budget".
* Averaging: the reference config once more with :class:`~recipe.train.callbacks.SWA` and
  :class:`~recipe.train.callbacks.Polyak` attached: two averaged models from one run.
* Longer: ``longer`` x the budget with a cosine decay over the whole run, the best-validation weights kept.
* Snapshots: cosine warm restarts with ``snapshots`` cycles in the budget, the weights at each cycle's end.
* Student: the member architecture trained on the ensemble's softened outputs (:class:`Distill`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from recipe import tracking
from recipe.config import RecipeConfig, SqueezeConfig
from recipe.fit import FitResult, build_for, fit
from recipe.squeeze.candidates import Squeezed, ensemble_outputs
from recipe.tasks import Task
from recipe.train import load_weights, resolve_device
from recipe.train.callbacks import SWA, Distill, Polyak, Snapshots
from recipe.tune.trial import TrialResult, TrialSpec, run_trial

STAGE = "squeeze"


@dataclass
class Context:
    """What every squeeze training needs: the stage context, the tuned config, the data, the task, settings."""

    ctx: Any  # recipe.stages.base.StageContext
    cfg: RecipeConfig
    data: Any  # DataBundle
    task: Task
    s: SqueezeConfig
    epochs: int
    run_id: str  # the squeeze stage's MLflow run
    experiment_id: str
    threads: int = 1
    longer_fit: FitResult | None = None  # the long run, for its curve ("leave it training")

    def tags(self, kind: str, name: str) -> dict[str, str]:
        """MLflow tags of a squeeze child run of kind ``kind`` for candidate ``name``: the run tags of
        :func:`recipe.tracking.run_tags`, the squeeze run as parent, and run name ``squeeze:<name>``."""
        tags = tracking.run_tags(self.ctx.input_cfg, self.data.fingerprint, stage=STAGE, kind=kind)
        return {
            **tags,
            "mlflow.parentRunId": self.run_id,
            "mlflow.runName": f"{STAGE}:{name}",
            "recipe.candidate": name,
        }


def train_members(sc: Context) -> tuple[list[Squeezed], list[str]]:
    """The ``members`` seeds through the trial map; returns the members that trained (reference first) and notes
    on those that did not."""
    client, specs = MlflowClient(), []
    for k in range(sc.s.members):
        seed, name = sc.cfg.seed + k, f"member{k}"
        rid = client.create_run(sc.experiment_id, run_name=f"{STAGE}:{name}", tags=sc.tags("member", name)).info.run_id
        specs.append(
            TrialSpec(
                config=sc.cfg.with_overrides({"seed": seed}).to_dict(),
                name=name,
                run_id=rid,
                tracking_uri=tracking.tracking_uri(),
                epochs=sc.epochs,
                threads=sc.threads,
                workdir=str((sc.ctx.workdir / "members").resolve()),
                log_checkpoint=True,
            )
        )
    results = sc.ctx.map(run_trial, specs)
    members, notes = [], []
    for spec, r in zip(specs, results, strict=True):
        if not isinstance(r, TrialResult) or r.state != "complete":
            why = r.note if isinstance(r, TrialResult) else f"{type(r).__name__}: {r}"
            notes.append(f"{spec.name} (seed {spec.config['seed']}) did not train: {why}")
            continue
        cfg = RecipeConfig.model_validate(spec.config)
        net = load_weights(build_for(cfg, sc.data), _local(r, sc.ctx.workdir))
        members.append(
            Squeezed(spec.name, f"{spec.name}: seed {cfg.seed}", [net.cpu().eval()], [cfg], run_id=spec.run_id)
        )
    return members, notes


def _local(r: TrialResult, workdir: Path) -> Path:
    """The member's checkpoint here: its file when this machine has it, else fetched from its MLflow run."""
    if r.checkpoint and Path(r.checkpoint).is_file():
        return Path(r.checkpoint)
    from recipe.fit import resolve_checkpoint

    return resolve_checkpoint(r.checkpoint_uri or "", workdir / "downloaded")


def _fit_in_run(
    sc: Context, name: str, what: str, cfg: RecipeConfig, callbacks: list[Any], epochs: int
) -> tuple[FitResult, str]:
    """``cfg`` trained in-process in its own MLflow run nested under the squeeze run."""
    with tracking.start_run(f"{STAGE}:{name}", sc.tags("candidate", name), params=cfg.flat(), nested=True) as run:
        tracking.set_tags({"recipe.candidate_what": what[:5000]})
        result = fit(cfg, sc.data, callbacks=callbacks, epochs=epochs, evaluate=False)
    return result, run.info.run_id


def averaged(sc: Context) -> list[Squeezed]:
    """SWA and Polyak (EMA) weights of one run of the reference config."""
    start = max(0, min(sc.epochs - 1, math.floor(sc.s.swa_start * sc.epochs)))
    swa, ema = SWA(start_epoch=start), Polyak(sc.s.ema_decay)
    r, rid = _fit_in_run(
        sc, "averaging", f"SWA from epoch {start + 1} and EMA {sc.s.ema_decay:g}", sc.cfg, [swa, ema], sc.epochs
    )
    if r.diverged:
        return []
    return [
        Squeezed(
            "swa",
            f"SWA: end-of-epoch weights from epoch {start + 1} of {sc.epochs} averaged",
            [swa.averaged.module.cpu().eval()],
            [sc.cfg],
            run_id=rid,
        ),
        Squeezed(
            "ema",
            f"Polyak averaging: EMA of the weights, decay {sc.s.ema_decay:g} per step",
            [ema.averaged.module.cpu().eval()],
            [sc.cfg],
            run_id=rid,
        ),
    ]


def longer(sc: Context) -> tuple[Squeezed | None, FitResult | None]:
    """ "Leave it training": ``longer`` x the budget, cosine decay, best-validation weights kept."""
    epochs = math.ceil(sc.s.longer * sc.epochs)
    cfg = sc.cfg.with_overrides(
        {"schedule.name": "cosine", "schedule.min_lr_ratio": 0.0, "budget.early_stopping": sc.epochs}
    )
    r, rid = _fit_in_run(sc, "longer", f"{epochs} epochs with a cosine decay", cfg, [], epochs)
    if r.diverged:
        return None, r
    return Squeezed(
        "longer",
        f"left training: {epochs} epochs ({sc.s.longer:g}x), cosine decay, best-val weights",
        [r.model.cpu().eval()],
        [cfg],
        run_id=rid,
    ), r


def snapshots(sc: Context) -> Squeezed | None:
    """One run with cosine warm restarts; the weights at the end of each cycle form an ensemble."""
    period = max(1, sc.epochs // sc.s.snapshots)
    cfg = sc.cfg.with_overrides(
        {
            "schedule.name": "cosine_restarts",
            "schedule.restart_epochs": period,
            "schedule.restart_mult": 1,
            "schedule.min_lr_ratio": 0.0,
        }
    )
    keep = Snapshots(every_epochs=period)
    r, rid = _fit_in_run(
        sc, "snapshots", f"cosine warm restarts every {period} epochs", cfg, [keep], period * sc.s.snapshots
    )
    if r.diverged or len(keep.states) < 2:
        return None
    nets = []
    for state in keep.states:
        net = build_for(cfg, sc.data)
        net.load_state_dict(state)
        nets.append(net.cpu().eval())
    return Squeezed(
        "snapshots",
        f"snapshot ensemble: {len(nets)} cycle ends of one run (restarts every {period} epochs)",
        nets,
        [cfg] * len(nets),
        run_id=rid,
    )


def student(sc: Context, teacher: Squeezed) -> Squeezed | None:
    """The member architecture trained on ``teacher``'s outputs at temperature T (Hinton et al., 2015)."""
    device = resolve_device(sc.cfg.trainer.device)
    nets = [n.to(device) for n in teacher.nets]
    distill = Distill(
        lambda x: ensemble_outputs(nets, x, sc.task),
        temperature=sc.s.temperature,
        alpha=sc.s.alpha,
        classifier=sc.task.classifier,
    )
    what = f"student distilled from the {teacher.name} (T={sc.s.temperature:g}, alpha={sc.s.alpha:g})"
    try:
        r, rid = _fit_in_run(
            sc, "student", what, sc.cfg.with_overrides({"seed": sc.cfg.seed + 1000}), [distill], sc.epochs
        )
    finally:
        for n in nets:
            n.cpu()
    if r.diverged:
        return None
    return Squeezed("student", what, [r.model.cpu().eval()], [r.cfg], run_id=rid)
