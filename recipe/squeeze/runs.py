"""The trainings squeeze compares: ensemble members through the trial map, the other candidates in-process.

* Members: the tuned config with seeds ``seed .. seed + members - 1``, independent trainings, so they go
  through ``ctx.map`` like tune's trials (:func:`recipe.tune.trial.run_trial`; a process pool or a Dask cluster
  in the flow), each in its own MLflow run nested under the squeeze run. Member 0 (the config's own seed) is
  the reference: "the tuned config trained for the full budget".
* Averaging: :class:`~recipe.train.callbacks.SWA` and :class:`~recipe.train.callbacks.Polyak` attached to member
  0's run (``TrialSpec.averages``): two averaged models from the reference's own training, which the callbacks
  leave as it is (the same weights to the bit as without them), so they cost no run of their own. Only when the
  members train together as one vectorised model (no callbacks there) is the reference config trained once more
  with them attached.
* Longer: ``longer`` x the budget with a cosine decay over the whole run, the best-validation weights kept.
* Snapshots: cosine warm restarts with ``snapshots`` cycles in the budget, the weights at each cycle's end.
* Student: the member architecture trained on the ensemble's softened outputs (:class:`Distill`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from recipe import tracking
from recipe.config import RecipeConfig, SqueezeConfig
from recipe.fit import FitResult, build_for, bundle_for, fit
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
    members_run: int = 0  # members started (trained or failed): fewer than s.members when the deadline stopped them
    member_s: float | None = None  # a member run's seconds (the median of those timed under a deadline)
    longer_budgets: int = 0  # the long run's budgets (1: none); fewer than s.longer's when the deadline cut it
    averages: dict[str, str] = field(default_factory=dict)  # member 0's SWA and EMA weight files, by name
    averages_run_id: str = ""  # member 0's MLflow run, which trained them

    def __post_init__(self) -> None:
        self.longer_budgets = math.ceil(self.s.longer) if self.s.longer > 1 else 1

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
    on those that did not. With a budget's deadline (``sc.ctx.deadline``) and members trained as separate runs,
    they go in waves of ``stages.tune.parallel`` and, after the budget's minimum of members, no wave starts that
    would end past the deadline with the rest of the stage (:func:`members_over_deadline`); the note says how
    many ran. Members trained together as one vectorised model are one fit: the budget's sizing chose them."""
    client = MlflowClient()

    def spec(k: int) -> TrialSpec:
        seed, name = sc.cfg.seed + k, f"member{k}"
        rid = client.create_run(sc.experiment_id, run_name=f"{STAGE}:{name}", tags=sc.tags("member", name)).info.run_id
        return TrialSpec(
            config=sc.cfg.with_overrides({"seed": seed}).to_dict(),
            name=name,
            run_id=rid,
            tracking_uri=tracking.tracking_uri(),
            epochs=sc.epochs,
            threads=sc.threads,
            workdir=str((sc.ctx.workdir / "members").resolve()),
            log_checkpoint=True,
            averages=(swa_start(sc), sc.s.ema_decay) if k == 0 else None,
        )

    why = _why_not_together(sc, sc.s.members)
    together = not why
    results: list[Any] = []
    specs: list[TrialSpec] = []
    if together:
        specs = [spec(k) for k in range(sc.s.members)]
        try:
            results = train_together(sc, specs)
        except Exception as e:  # anything the vectorised path cannot do: the separate runs still can
            why, together = f"the vectorised fit raised {type(e).__name__}: {e}", False
    budget_note = ""
    if not together and sc.ctx.deadline is None:
        specs = specs or [spec(k) for k in range(sc.s.members)]
        results = sc.ctx.map(run_trial, specs)
    elif not together:  # a budget's deadline: waves, each started only when it and the rest of the stage fit
        wave = max(1, sc.ctx.cfg.stages.tune.parallel)
        made, specs, results, timed = specs, [], [], []
        while len(specs) < sc.s.members:
            n = min(wave, sc.s.members - len(specs))
            stop = members_over_deadline(sc, timed, len(specs), n)
            if stop:
                budget_note = f"budget: {stop}"
                for unused in made[len(specs) :]:  # runs the vectorised attempt created for members now cut
                    client.set_terminated(unused.run_id, status="KILLED")
                break
            batch = [made[k] if k < len(made) else spec(k) for k in range(len(specs), len(specs) + n)]
            started = time.perf_counter()
            results += sc.ctx.map(run_trial, batch)
            specs += batch
            timed += [time.perf_counter() - started] * n  # a wave of up to `parallel` runs side by side
        if timed:
            sc.member_s = sorted(timed)[len(timed) // 2]
    members, notes = [], []
    for spec_, r in zip(specs, results, strict=True):
        if not isinstance(r, TrialResult) or r.state != "complete":
            note = r.note if isinstance(r, TrialResult) else f"{type(r).__name__}: {r}"
            notes.append(f"{spec_.name} (seed {spec_.config['seed']}) did not train: {note}")
            continue
        cfg = RecipeConfig.model_validate(spec_.config)
        net = load_weights(build_for(cfg, sc.data), _local(r, sc.ctx.workdir))
        if set(r.averages) == {"swa", "ema"}:  # member 0's run, trained separately (a vectorised fit keeps none)
            sc.averages = {k: str(_local_file(p, r.averages_uri.get(k), sc.ctx.workdir)) for k, p in r.averages.items()}
            sc.averages_run_id = spec_.run_id
        members.append(
            Squeezed(spec_.name, f"{spec_.name}: seed {cfg.seed}", [net.cpu().eval()], [cfg], run_id=spec_.run_id)
        )
    sc.members_run = len(results)
    if budget_note:
        notes.append(budget_note)
    if members and len(specs) > 1:
        notes.append(
            f"{len(specs)} members trained together as one vectorised model (torch.func.vmap)"
            if together
            else f"members trained as separate runs: {why}"
        )
    return members, notes


def runs_after_members(cfg: RecipeConfig, members: int) -> int:
    """The in-process runs squeeze trains after ``members`` members under ``cfg``'s ``stages.squeeze``, in member
    runs of its budget (``longer`` budgets, the snapshot run, the student with an ensemble; the SWA and EMA
    weights come from member 0's run): :data:`recipe.budget.SIZED`'s count of squeeze's runs less the members, so
    the deadline and the sizing count alike."""
    from recipe.budget import SIZED, current_sizes

    values = {**current_sizes("squeeze", cfg), "stages.squeeze.members": members}
    return SIZED["squeeze"].runs(values) - members


def members_over_deadline(sc: Context, timed: list[float], done: int, n: int) -> str | None:
    """Why squeeze starts no more members (a wave of ``n`` after ``done``), or None when they fit.

    Once the budget's minimum of members (:func:`recipe.budget.knob_minimum`) have run, the next wave must end, with the
    runs that follow the members (:func:`runs_after_members`, each about a member's time) and the stage's work
    outside its runs (``sc.ctx.fixed_s``: scoring, the test table, the registry), before ``sc.ctx.deadline``.
    Up to the members the budget keeps before its last cuts (``Knob.keep``: two, an ensemble) the long run is
    counted at none: the deadline cuts it first (:func:`longer_to_deadline`), as the sizing would
    (:class:`recipe.budget.Knob`). ``timed``: seconds of each member run so far (the members' median is a member's
    time)."""
    from recipe.budget import knob_of

    knob = knob_of("squeeze", "stages.squeeze.members")
    if done < knob.minimum or not timed or sc.ctx.deadline is None:
        return None
    member_s = sorted(timed)[len(timed) // 2]
    cfg = sc.ctx.cfg  # sc.s is sc.ctx.cfg's
    if done + n <= knob.keep:
        cfg = cfg.with_overrides({"stages.squeeze.longer": 1.0})
    after = runs_after_members(cfg, done + n) * member_s + sc.ctx.fixed_s
    left = sc.ctx.deadline - time.time()
    if member_s + after <= left:
        return None
    return (
        f"squeeze trained {done} of {sc.s.members} members: a member took {member_s:.1f} s, so one more and "
        f"the stage's other runs and work ({after:.0f} s) need about {member_s + after:.0f} s, and "
        f"{max(left, 0.0):.0f} s of the stage's share of budget.minutes is left"
    )


def longer_to_deadline(sc: Context, members: int) -> str | None:
    """Before the long run, under a budget's deadline: cut its budgets (``stages.squeeze.longer``, each about a
    member's time, ``sc.member_s``) to those that end, with the runs after it (the snapshot run, the student with
    ``members`` >= 2) and the stage's work outside its runs, before ``sc.ctx.deadline``; fewer than 2 budgets
    leaves it out. Sets ``sc.s.longer`` and ``sc.longer_budgets`` (the plan records them: ``--plan`` replays the
    cut long run) and returns the note, or None when it fits (or there is no deadline or no timed member)."""
    if sc.ctx.deadline is None or sc.member_s is None or sc.longer_budgets <= 1:
        return None
    # the runs after the long run: those after the members with no long run
    after = runs_after_members(sc.ctx.cfg.with_overrides({"stages.squeeze.longer": 1.0}), members)
    left = sc.ctx.deadline - time.time() - sc.ctx.fixed_s - after * sc.member_s
    fits = int(left // sc.member_s) if left > 0 else 0
    if fits >= sc.longer_budgets:
        return None
    was, sc.longer_budgets = sc.longer_budgets, fits if fits >= 2 else 1
    sc.s = sc.s.model_copy(update={"longer": float(sc.longer_budgets)})
    cut = f"cut to {sc.longer_budgets} budgets" if sc.longer_budgets > 1 else "left out"
    return (
        f"budget: the long run {cut} (of {was}): a member took {sc.member_s:.1f} s, and "
        f"{max(left, 0.0):.0f} s of the stage's share is left after the runs and work that follow it"
    )


def _why_not_together(sc: Context, members: int) -> str:
    """Why squeeze's members train as separate runs rather than as one vectorised model; "" when they can train
    together: the members would train one after another in this process (no process pool or cluster to spread
    them over) and :func:`recipe.train.vmap.vmappable` allows it. ``bench/vmap_members.py`` measures the
    vectorised fit against separate runs (1.4x faster for 5 digits members on 2 CPU cores)."""
    from recipe.stages.base import map_in_process

    if members < 2:
        return "a single member"
    if not (sc.ctx.map is map_in_process or getattr(sc.ctx.map, "in_thread", False)):
        return "they run in parallel through the trial map (a process pool or a cluster)"
    from recipe.train.vmap import vmappable

    cfgs = [sc.cfg.with_overrides({"seed": sc.cfg.seed + k}) for k in range(members)]
    return vmappable(cfgs, build_for(cfgs[0], bundle_for(cfgs[0], sc.data)))


def train_together(sc: Context, specs: list[TrialSpec]) -> list[TrialResult]:
    """The members of ``specs`` trained as one vectorised model (:func:`recipe.train.vmap.fit_members`), each
    recorded in its own MLflow run (params, final train/val loss and metric, checkpoint) as
    :func:`recipe.tune.trial.run_trial` records a separate member; returns one result per spec, in order.

    Raises what ``fit_members`` raises (ValueError when the members cannot train together)."""
    import os
    import time

    import torch

    from recipe.fit import evaluate_model
    from recipe.pipeline import emit
    from recipe.train.vmap import fit_members
    from recipe.tune.trial import log_config, record_result

    client = MlflowClient()
    cfgs = [RecipeConfig.model_validate(s.config) for s in specs]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, sc.threads))
    try:
        start = time.perf_counter()
        data = bundle_for(cfgs[0], sc.data)  # the members differ only in their seed: one bundle for all
        nets = fit_members(cfgs, data, sc.epochs)
        per_member = (time.perf_counter() - start) / len(nets)
        device = resolve_device(cfgs[0].trainer.device)
        out = []
        for spec, cfg, net in zip(specs, cfgs, nets, strict=True):
            bs = cfg.data.eval_batch_size
            tr = evaluate_model(net.to(device), data.batches("train", batch_size=bs, device=device), sc.task, device)
            va = evaluate_model(net, data.batches("val", batch_size=bs, device=device), sc.task, device)
            state = "complete" if math.isfinite(va.loss) and math.isfinite(tr.loss) else "diverged"
            path = Path(spec.workdir) / f"{spec.name}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": net.cpu().state_dict(), "config": cfg.to_dict()}, path)
            log_config(client, spec.run_id, cfg)
            result = TrialResult(spec.name, state, number=spec.number, pid=os.getpid())
            if state == "diverged":
                result.note = "diverged: a non-finite loss after the vectorised fit"
            result.value, result.val_metric = va.loss, va.metric
            result.train_loss, result.train_metric = tr.loss, tr.metric
            result.epochs, result.checkpoint, result.fit_seconds = spec.epochs, str(path), per_member
            if spec.log_checkpoint:
                client.log_artifact(spec.run_id, str(path), "checkpoint")
                result.checkpoint_uri = f"runs:/{spec.run_id}/checkpoint/{path.name}"
            record_result(client, spec.run_id, result, [], {"recipe.trained_with": "vmap"})
            result.seconds = per_member
            out.append(result)
            emit("run_done")
        return out
    finally:
        torch.set_num_threads(old_threads)


def _local(r: TrialResult, workdir: Path) -> Path:
    """The member's checkpoint here: its file when this machine has it, else fetched from its MLflow run."""
    return _local_file(r.checkpoint, r.checkpoint_uri, workdir)


def _local_file(path: str | None, uri: str | None, workdir: Path) -> Path:
    """A weights file a member run wrote: ``path`` when this machine has it, else ``uri`` fetched from MLflow."""
    if path and Path(path).is_file():
        return Path(path)
    from recipe.fit import resolve_checkpoint

    return resolve_checkpoint(uri or "", workdir / "downloaded")


def swa_start(sc: Context) -> int:
    """SWA's first epoch (0-based) in a run of ``sc.epochs``: ``stages.squeeze.swa_start`` of the way in."""
    return max(0, min(sc.epochs - 1, math.floor(sc.s.swa_start * sc.epochs)))


def _fit_in_run(
    sc: Context, name: str, what: str, cfg: RecipeConfig, callbacks: list[Any], epochs: int
) -> tuple[FitResult, str]:
    """``cfg`` trained in-process in its own MLflow run nested under the squeeze run."""
    with tracking.start_run(f"{STAGE}:{name}", sc.tags("candidate", name), params=cfg.flat(), nested=True) as run:
        tracking.set_tags({"recipe.candidate_what": what[:5000]})
        result = fit(cfg, sc.data, callbacks=callbacks, epochs=epochs, evaluate=False)
    return result, run.info.run_id


def averaged(sc: Context) -> list[Squeezed]:
    """SWA and Polyak (EMA) weights of the reference config's training: member 0's (``sc.averages``, trained by
    :func:`train_members`), else (members trained together, or member 0 did not train) one more run of the
    reference config with the callbacks attached."""
    start = swa_start(sc)
    swa_what = f"SWA: end-of-epoch weights from epoch {start + 1} of {sc.epochs} averaged"
    ema_what = f"Polyak averaging: EMA of the weights, decay {sc.s.ema_decay:g} per step"
    if sc.averages:
        nets = {k: load_weights(build_for(sc.cfg, sc.data), p).cpu().eval() for k, p in sc.averages.items()}
        return [
            Squeezed("swa", f"{swa_what} (member 0's run)", [nets["swa"]], [sc.cfg], run_id=sc.averages_run_id),
            Squeezed("ema", f"{ema_what} (member 0's run)", [nets["ema"]], [sc.cfg], run_id=sc.averages_run_id),
        ]
    swa, ema = SWA(start_epoch=start), Polyak(sc.s.ema_decay)
    r, rid = _fit_in_run(
        sc, "averaging", f"SWA from epoch {start + 1} and EMA {sc.s.ema_decay:g}", sc.cfg, [swa, ema], sc.epochs
    )
    if r.diverged:
        return []
    return [
        Squeezed("swa", swa_what, [swa.averaged.module.cpu().eval()], [sc.cfg], run_id=rid),
        Squeezed("ema", ema_what, [ema.averaged.module.cpu().eval()], [sc.cfg], run_id=rid),
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
