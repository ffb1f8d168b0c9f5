"""A wall-clock budget for the whole recipe (``budget.minutes``): the plan that splits it across the stages, the
warm-up that measures a stage's step time, the sizing that fits a stage's runs to its share, and the replay of
a recorded plan (``flows run recipe --plan FILE``).

The plan (documented in the README, "A recipe in minutes"):

- **Shares.** Each stage gets a share of what is left when it starts (:data:`SHARES`, normalised over the stages
  still to run), so time a stage did not use passes to the ones after it, and a stage that ran over takes it from
  them.
- **Warm-up.** A sized stage (:data:`SIZED`) first trains its handed-on model on the real data for a few steps,
  timed (:func:`warm_up`): the time of one optimiser step and the fixed cost of one run (building the model and
  trainer, one validation pass), measured as the difference of two short fits so the fixed part cancels.
- **Sizing.** A stage's cost is ``runs x (run_s + epochs x epoch_s)`` (:func:`stage_cost`), the epochs those each
  run really trains: ``budget.min_steps`` raises them after the sizing, by the stages' own rule
  (:func:`recipe.fit.min_steps_epochs`), so the sizing counts the raised ones (:func:`run_epochs`). While the cost
  is over the share (:data:`FIT` of it; :data:`LAST_FIT` for the last stage of the run), the knob furthest above
  its own minimum, relative to its configured value, is cut one step
  (runs by one, epochs by a fifth; a cut that saves nothing, such as overfit's epochs held at the min_steps
  floor, is not made): runs and epochs shrink together, neither to nothing first (:func:`size_stage`). The
  knobs, their minimums and the runs they count are in :data:`SIZED`. A stage that cannot do its minimum in its
  share runs its minimum and WARNs with the time it would need. The first warm-up also tells whether the budget
  can fit the smallest plan of every sized stage still to run (:func:`floor_warning`); when it cannot, the run
  says so at once, with the budget.minutes that would, instead of stage by stage.
- **Record and replay.** The sizes each stage chose are its config overrides (``stages.tune.n_trials=6``); the
  whole plan is the MLflow artifact ``budget_plan.json`` on the parent run and params ``budget.plan.<key>``.
  ``--plan FILE`` applies those overrides and turns ``budget.minutes`` off: the same sizes, no timing, so the
  run computes the same numbers (same seeds, same config).

The reuse key (``recipe.reuse``) never sees ``budget.minutes`` (an :data:`recipe.config.EXECUTION_ONLY`
setting): a budgeted stage is tagged with the key of the sizes it actually used, which is the key an epoch-sized
run or a replay with those sizes computes.

Sources: AutoGluon's ``time_limit`` and FLAML's ``time_budget`` (a budget in seconds for the whole fit, split
over the models it tries); the recipe's own stage order (seeds/004).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recipe.config import RecipeConfig
from recipe.report import Check, Verdict

# Each stage's share of the time left when it starts (normalised over the stages still to run). Tune and
# squeeze train the most runs; inspect trains nothing.
SHARES: dict[str, float] = {
    "inspect": 0.04,
    "baselines": 0.08,
    "overfit": 0.20,
    "regularize": 0.22,
    "tune": 0.28,
    "squeeze": 0.18,
}

# The fraction of its share a stage's estimate may fill: the estimate counts training steps, validation passes and
# each run's set-up, not the stage's own evaluations, checks, plots and MLflow writes. Measured: digits at
# budget.minutes=3 sized to the whole share took 1.15x the budget on the busy 2-core machine.
FIT = 0.85
# The last stage of a run fills more of its share: no stage after it needs the time an estimate may miss. Squeeze's
# time over its estimate in 18 budgeted real-data runs (bench/realdata.py, 2026-12-07): 0.47-1.10, median 0.88;
# at 0.85 those runs ended with 4-27% of budget.minutes unused while squeeze cut its second member (Fashion-MNIST
# on a quiet machine: 2 members needed 162 s of a 174 s share).
LAST_FIT = 0.95


def fit_for(last: bool) -> float:
    """The fraction of its share a stage's estimate may fill: :data:`LAST_FIT` for the last stage of the run,
    :data:`FIT` for the others."""
    return LAST_FIT if last else FIT


PLAN_FILE = "budget_plan.json"
PLAN_VERSION = 1


class PlanError(ValueError):
    """A ``--plan`` file that cannot be replayed (missing, not JSON, not a plan); the message names the fix."""


@dataclass(frozen=True)
class Knob:
    """One size of a stage: the dotted config key, the smallest value the stage can run with, and whether it
    counts runs (``runs``) or epochs per run (``epochs``). Cuts go by tier (:meth:`tier`), lowest first, and within
    a tier to the knob cut least so far (the largest value-over-configured ratio, :func:`size_stage`): 0, cut before any other (squeeze's snapshot
    run: the worst of squeeze's candidates on test in 19 of 19 real-data runs, ``bench/selection_regret.py``);
    1, the stage's runs and epochs together (the default); 2, ``last``: only when tiers 0-1 are at their minimum
    (tune's seeds, squeeze's long run, then its student), and a knob with ``keep`` below ``keep`` (squeeze keeps
    two members, an ensemble, the recipe's "pretty much guaranteed" gain, seeds/004, until its long run and its
    student are cut; ``after`` holds a knob until another is at its minimum: the student until the long run is
    cut, so the cuts go whole run by whole run); 3, ``final``:
    after every other (squeeze's epochs: its runs are the champion's candidates, and short runs cost more than
    fewer runs: on Fashion-MNIST 3,000 one 14-epoch cosine run scored 84% test, three 7-epoch runs ensembled
    82%, ``bench/short_runs.py``). ``words`` name it in a cut note (default: the stage's ``what``, or its
    epochs)."""

    key: str
    kind: str  # "runs" or "epochs"
    minimum: int
    last: bool = False
    words: str = ""
    first: bool = False
    keep: int = 0
    final: bool = False
    after: str = ""  # a knob of the same stage that must be at its minimum before this one is cut

    def tier(self, value: int) -> int:
        """The knob's tier at ``value``: 0 cut first, 1 with the others, 2 last, 3 after every other."""
        if self.first:
            return 0
        if self.final:
            return 3
        return 2 if self.last or value <= self.keep else 1


@dataclass(frozen=True)
class Sized:
    """How a stage's sizes map to the runs and epochs it trains (``runs(values)``, ``epochs(values)``) and the
    knobs it may cut."""

    knobs: tuple[Knob, ...]
    runs: Callable[[dict[str, Any]], int]
    epochs: Callable[[dict[str, Any]], int]
    what: str  # "tune trials": the words of a cut note
    # budget.min_steps raises a run's epochs (recipe.fit.epochs_for) against a budget of epochs: the handed-on
    # budget.epochs for most stages; overfit trains its rungs with its own epochs as the budget (hero_free sets
    # budget.epochs = stages.overfit.epochs), so its runs get at least min_steps steps however its epochs are cut
    own_budget: bool = False


def _regularize_candidates(cfg: RecipeConfig) -> int:
    r = cfg.stages.regularize
    n = len(r.augment) + len(r.weight_decay) + len(r.dropout)
    n += sum(x is not None for x in (r.early_stopping, r.smaller_input, r.smaller_batch, r.init_from))
    return n


def _overfit_epochs(v: dict[str, Any]) -> int:
    return int(v["stages.overfit.epochs"])


# The stages sized to their share: their knobs (the runs knob first) and the runs and epochs the knobs give.
# overfit: the first rung and every growth rung (worst case); regularize: the reference, each candidate and, with
# two candidates or more, the combination (its candidate count is cut by dropping candidates from the end of
# stages.regularize.* lists, see :func:`regularize_overrides`); tune: the trials and two retrainings per seed;
# squeeze: the members (member 0's run also averages its weights, SWA and EMA: no run of their own), the run
# "leave it training" (``longer`` budgets), the snapshot run (its cycles fill about one budget) and the
# distillation run (only with an ensemble: two members or more). Members trained together as one vectorised
# model train the averages in one more run, which this count leaves out: the vectorised members take less than a
# run each (bench/vmap_members.py).
SIZED: dict[str, Sized] = {
    "overfit": Sized(
        (Knob("stages.overfit.max_rungs", "runs", 0), Knob("stages.overfit.epochs", "epochs", 2)),
        runs=lambda v: int(v["stages.overfit.max_rungs"]) + 1,
        epochs=_overfit_epochs,
        what="overfit growth rungs (after the first)",
        own_budget=True,
    ),
    "regularize": Sized(
        (Knob("regularize.candidates", "runs", 1), Knob("stages.regularize.epochs", "epochs", 2)),
        # the reference, each candidate, and the combination (trained when two kinds or more are kept)
        runs=lambda v: int(v["regularize.candidates"]) + 1 + (1 if int(v["regularize.candidates"]) >= 2 else 0),
        epochs=lambda v: int(v["stages.regularize.epochs"]),
        what="regularize candidates",
    ),
    "tune": Sized(
        (
            Knob("stages.tune.n_trials", "runs", 2),
            Knob("stages.tune.epochs", "epochs", 2),
            Knob("tune.seeds", "runs", 1, last=True, words="tune retraining seeds"),
        ),
        runs=lambda v: int(v["stages.tune.n_trials"]) + 2 * int(v["tune.seeds"]),
        epochs=lambda v: int(v["stages.tune.epochs"]),
        what="tune trials",
    ),
    "squeeze": Sized(
        (
            Knob("stages.squeeze.members", "runs", 1, keep=2),
            Knob("stages.squeeze.epochs", "epochs", 2, final=True),
            Knob("squeeze.longer", "runs", 1, last=True, words="squeeze's long run (budgets)"),
            Knob("squeeze.snapshots", "runs", 0, first=True, words="squeeze's snapshot run"),
            # after the long run, before the second member: the student is a smaller copy of the ensemble, the
            # ensemble the test gain (MNIST 3,000 at budget.minutes=10 on a quiet machine: 2 members and the
            # student needed 205 s of a 201 s fit, so the sizing kept 1 member, where 2 without the student,
            # 145 s, fitted)
            Knob("squeeze.distill", "runs", 0, last=True, words="squeeze's distilled student", after="squeeze.longer"),
        ),
        runs=lambda v: (
            int(v["stages.squeeze.members"])
            + (int(v["squeeze.longer"]) if int(v["squeeze.longer"]) > 1 else 0)
            + int(v["squeeze.snapshots"])
            + (int(v["squeeze.distill"]) if int(v["stages.squeeze.members"]) > 1 else 0)
        ),
        epochs=lambda v: int(v["stages.squeeze.epochs"]),
        what="squeeze members",
    ),
}


# Settings a budgeted stage always runs with, beside its sizes (recorded in the plan's overrides, so ``--plan``
# replays them): overfit stops each rung at the first validation that meets the training target
# (``stages.overfit.stop_at_target``), so the steps ``budget.min_steps`` gives a rung past that answer pass to the
# stages after it. Its sizing still counts the whole rung (the target may not be met): what it saves is time left.
ALWAYS: dict[str, dict[str, Any]] = {"overfit": {"stages.overfit.stop_at_target": True}}


def current_sizes(stage: str, cfg: RecipeConfig) -> dict[str, Any]:
    """The sizes ``stage`` would run with under ``cfg`` (the knobs of :data:`SIZED` and the fixed numbers its
    runs depend on), epochs left at None resolved to ``budget.epochs``."""
    s, e = cfg.stages, cfg.budget.epochs
    if stage == "overfit":
        return {"stages.overfit.max_rungs": s.overfit.max_rungs, "stages.overfit.epochs": s.overfit.epochs or e}
    if stage == "regularize":
        return {"regularize.candidates": _regularize_candidates(cfg), "stages.regularize.epochs": s.regularize.epochs}
    if stage == "tune":
        return {
            "stages.tune.n_trials": s.tune.n_trials,
            "stages.tune.epochs": s.tune.epochs,
            "tune.seeds": len(s.tune.seeds),
        }
    if stage == "squeeze":
        return {
            "stages.squeeze.members": s.squeeze.members,
            "stages.squeeze.epochs": s.squeeze.epochs or e,
            # the long run in budgets of the members' epochs (1: no long run)
            "squeeze.longer": math.ceil(s.squeeze.longer) if s.squeeze.longer > 1 else 1,
            "squeeze.snapshots": 1 if s.squeeze.snapshots > 1 else 0,
            "squeeze.distill": 1 if s.squeeze.distill else 0,
        }
    raise KeyError(f"stage {stage!r} is not sized by the budget; sized stages: {', '.join(SIZED)}")


def knob_of(stage: str, key: str) -> Knob:
    """``stage``'s sized knob ``key`` (:data:`SIZED`).

    Raises KeyError for a stage or a knob the budget does not size."""
    for knob in SIZED[stage].knobs:
        if knob.key == key:
            return knob
    raise KeyError(f"{key!r} is not a sized knob of stage {stage!r}")


def knob_minimum(stage: str, key: str) -> int:
    """The smallest value the budget sizes ``stage``'s knob ``key`` to (:data:`SIZED`): for a stage with a
    deadline, the runs it finishes before the deadline may stop it (tune's trials, squeeze's members).

    Raises KeyError for a stage or a knob the budget does not size."""
    return knob_of(stage, key).minimum


# --- the split ------------------------------------------------------------------------------------------------


def share_of(stage: str, remaining_s: float, to_run: Sequence[str], shares: dict[str, float] = SHARES) -> float:
    """Seconds ``stage`` may spend: ``remaining_s`` times its share over the shares of ``to_run`` (the stages still
    to run, ``stage`` first), so what earlier stages left unused passes on. 0 when nothing remains.

    Raises ValueError when ``stage`` is not in ``to_run``."""
    if stage not in to_run:
        raise ValueError(f"stage {stage!r} is not among the stages still to run ({', '.join(to_run)})")
    total = sum(shares.get(s, 0.0) for s in to_run)
    if remaining_s <= 0 or total <= 0:
        return 0.0
    return remaining_s * shares.get(stage, 0.0) / total


@dataclass
class Budget:
    """The run's clock against ``total_s`` seconds: :meth:`share` for the next stage from what is left now."""

    total_s: float
    clock: Callable[[], float] = time.perf_counter
    start: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return max(0.0, self.total_s - self.elapsed())

    def share(self, stage: str, to_run: Sequence[str]) -> float:
        return share_of(stage, self.remaining(), to_run)


# --- the warm-up ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCost:
    """What one stage's training costs on this machine: ``step_s`` seconds per optimiser step, ``run_s`` fixed
    seconds per run (model, trainer, data loaders), ``steps_per_epoch`` training batches per epoch and
    ``val_s`` seconds of one validation pass; ``min_steps`` (``budget.min_steps``, 0: off) and ``budget_epochs``
    (the handed-on ``budget.epochs``) say how many epochs a run of a given size really trains
    (:meth:`run_epochs`)."""

    step_s: float
    run_s: float
    steps_per_epoch: int
    val_s: float
    min_steps: int = 0
    budget_epochs: int = 0

    @property
    def epoch_s(self) -> float:
        """Seconds of one epoch: its steps and its validation pass."""
        return self.steps_per_epoch * self.step_s + self.val_s

    def run_epochs(self, epochs: int, own_budget: bool = False) -> int:
        """The epochs a run sized at ``epochs`` really trains on this data: ``budget.min_steps`` raises them
        (:func:`recipe.fit.min_steps_epochs`, the stages' own rule) against ``budget_epochs``, or against
        ``epochs`` itself with ``own_budget`` (the overfit stage's rungs)."""
        from recipe.fit import min_steps_epochs

        return min_steps_epochs(
            epochs, epochs if own_budget else self.budget_epochs, self.steps_per_epoch, self.min_steps
        )


def warm_up(
    cfg: RecipeConfig,
    data: Any,
    steps: int = 4,
    clock: Callable[[], float] = time.perf_counter,
    max_steps: int = 1024,
    resolution: float | None = None,
) -> StepCost:
    """Time ``cfg``'s model on ``data``: one untimed 1-step fit (imports, kernels), then a 1-step fit and a fit of
    at least ``1 + steps`` steps without validation, and a 1-step fit with it. Step time is the difference of the
    two first over the steps between them (the fixed part cancels), the fixed cost per run what is left of the
    1-step fit, the validation pass the difference the validation makes. Nothing is logged to MLflow.

    The longer fit must run the steps it is divided by: an epoch shorter than its steps (a small table: 3 batches
    at batch 256) is repeated until the fit has them, and the steps it really ran are the divisor (dividing by 4
    when a 3-batch epoch ran 2 more steps halved Sacramento's step time; its squeeze ran 2.3x its estimate).

    The difference must also stand above the noise of the fixed part. One timed fit is one sample: on a busy
    machine a stall (another process, a collection, a write) in the 1-step fit can outlast the steps it is
    compared with (ames' tune warm-up timed its 1-step fit 0.6 s, its 5-step fit less, and sized the stage at
    0.0 ms a step). So every 1-step fit is timed again with each longer fit and the least of them is the fixed
    part (the least disturbed sample: ``timeit``'s rule), and the longer fit doubles its steps until its steps
    take at least as long as that fixed part, up to ``max_steps`` steps; that fit is then timed once more and
    the lesser of its two times taken. The step time is never below
    ``resolution`` (the clock's, ``time.get_clock_info``; a difference the clock cannot tell from zero is not a
    measured zero). About ``6 x`` the fixed part and ``2 x (1 + steps)`` steps of time when steps are slow; when
    they are cheap against the fixed part, the doubling adds up to about as much again.

    Raises what :func:`recipe.fit.fit` raises (DataError, ModelConfigError)."""
    import math as _m

    from recipe.fit import bundle_for, fit

    if resolution is None:
        resolution = time.get_clock_info("perf_counter").resolution

    def timed(n: int, validate: bool, epochs: int = 1) -> float:
        t0 = clock()
        fit(cfg, data, epochs=epochs, steps_per_epoch=n, evaluate=False, log=False, validate=validate)
        return clock() - t0

    bundle = bundle_for(cfg, data)
    n_train = len(bundle.rows("train"))
    steps_per_epoch = max(1, _m.ceil(n_train / cfg.data.batch_size))
    timed(1, False)
    ones = [timed(1, False)]
    want = max(2, 1 + steps)
    while True:
        per_epoch = min(want, steps_per_epoch)  # the batches a fit of ``want`` steps an epoch really runs
        epochs = _m.ceil(want / per_epoch)
        ran = per_epoch * epochs
        more = timed(per_epoch, False, epochs)
        ones.append(timed(1, False))
        one = min(ones)
        if more - one >= one or ran >= max_steps:
            break
        want = min(2 * ran, max_steps)
    more = min(more, timed(per_epoch, False, epochs))  # the longer fit is one sample too: its least of two
    with_val = timed(1, True)
    step_s = max((more - one) / (ran - 1), resolution)
    return StepCost(
        step_s=step_s,
        run_s=max(one - step_s, 0.0),
        steps_per_epoch=steps_per_epoch,
        val_s=max(with_val - one, 0.0),
        min_steps=cfg.budget.min_steps or 0,
        budget_epochs=cfg.budget.epochs,
    )


# --- the work outside the runs ----------------------------------------------------------------------------------

# Squeeze's own work outside its training runs, beside the classical fit (timed, :func:`fixed_work`) and the
# networks' scoring passes (counted from the warm-up's validation pass): the linear baseline's refit, the
# bootstrap intervals, the weighted blend, registering and reloading the champion, the model card and plots.
# Measured on ames at budget.minutes=10 (2026-12-06, busy 2-core machine): 25.7 s from the end of squeeze's last
# training run to the end of the stage, 11.8 s of it the classical fit.
SQUEEZE_OVERHEAD_S = 14.0


def squeeze_networks(cfg: RecipeConfig, values: dict[str, Any] | None = None) -> int:
    """The networks squeeze scores on validation and test under ``cfg``: each member, the SWA and EMA weights,
    the long run, each snapshot and the student (with an ensemble); with squeeze's sized knobs at ``values``
    (:data:`SIZED`; a knob missing from ``values`` keeps ``cfg``'s): the count the sizing's estimate needs at
    each size it tries."""
    s = cfg.stages.squeeze
    sized = {**current_sizes("squeeze", cfg), **(values or {})}
    members = int(sized["stages.squeeze.members"])
    return (
        members
        + 2
        + (1 if int(sized["squeeze.longer"]) > 1 else 0)
        + (s.snapshots if int(sized["squeeze.snapshots"]) else 0)
        + (1 if int(sized["squeeze.distill"]) and members > 1 else 0)
    )


@dataclass(frozen=True)
class FixedWork:
    """A stage's own work outside its training runs (:func:`fixed_work`), as a function of its sizes: seconds
    whatever the sizes (squeeze: ``classical_s``, the classical fit, already done and kept for the stage, and
    ``overhead_s``, :data:`SQUEEZE_OVERHEAD_S`), in the words ``once``, and ``per_network_s`` seconds for each
    network the sizes give (squeeze: scoring each on validation and test, :func:`squeeze_networks`). ``cfg``
    is the stage's config before sizing."""

    stage: str
    cfg: RecipeConfig | None = None
    classical_s: float = 0.0
    overhead_s: float = 0.0
    once: tuple[str, ...] = ()
    per_network_s: float = 0.0

    def networks(self, values: dict[str, Any] | None = None) -> int:
        """The networks scored at sizes ``values`` (None: as configured); 0 for a stage that scores none."""
        if self.stage != "squeeze" or self.cfg is None:
            return 0
        return squeeze_networks(self.cfg, values)

    def seconds(self, values: dict[str, Any] | None = None) -> float:
        """Seconds of the work at sizes ``values`` (None: as configured)."""
        return self.classical_s + self.overhead_s + self.per_network_s * self.networks(values)

    def words(self, values: dict[str, Any] | None = None) -> str:
        """What the work is, in words, at sizes ``values`` ("" for none)."""
        n = self.networks(values)
        parts = list(self.once)
        if n:
            parts.insert(len(parts) - 1 if parts else 0, f"scoring {n} networks {_min(self.per_network_s * n)}")
        return ", ".join(parts)


def fixed_work(stage: str, cfg: RecipeConfig, cost: StepCost, data: Any = None) -> FixedWork:
    """``stage``'s own work outside its training runs under ``cfg`` at ``cost`` (a :class:`FixedWork`, a function
    of the sizes the budget tries; nothing for a stage with none counted). Squeeze: the tuned classical baseline
    (fitted here, on ``data``, and kept for the stage: :func:`recipe.classical.fit_classical`; left out when
    ``data`` is None), each network scored on validation and test (two validation passes of the warm-up's), and
    :data:`SQUEEZE_OVERHEAD_S`. Ames' squeeze ran 3.9 min against a 2.8 min share with this work uncounted.
    A classical fit that raises is left out (its words say so): the stage reports it when it scores the
    baselines."""
    if stage != "squeeze":
        return FixedWork(stage)
    once = [f"test table and registry {SQUEEZE_OVERHEAD_S:.0f} s"]
    classical_s = 0.0
    if cfg.stages.squeeze.classical and data is not None:
        from recipe.classical import fit_classical

        try:
            classical = fit_classical(data, seed=cfg.seed)
        except Exception as e:  # the stage says it as a note when it scores the baselines; the sizing goes on
            once.insert(0, f"the classical baseline not timed ({type(e).__name__})")
        else:
            classical_s = classical.seconds
            once.insert(0, f"the classical baseline {_min(classical.seconds)}")
    return FixedWork(stage, cfg, classical_s, SQUEEZE_OVERHEAD_S, tuple(once), 2 * cost.val_s)


# --- the sizing -----------------------------------------------------------------------------------------------


def stage_cost(stage: str, values: dict[str, Any], cost: StepCost) -> float:
    """Seconds ``stage`` takes with sizes ``values`` at ``cost``: runs x (run_s + real epochs x epoch_s), the real
    epochs those ``budget.min_steps`` gives the sized ones (:func:`run_epochs`)."""
    sized = SIZED[stage]
    return sized.runs(values) * (cost.run_s + run_epochs(stage, values, cost) * cost.epoch_s)


def run_epochs(stage: str, values: dict[str, Any], cost: StepCost) -> int:
    """The epochs each run of ``stage`` really trains with sizes ``values``: the sized epochs as the stage raises
    them for ``budget.min_steps`` (:meth:`StepCost.run_epochs`)."""
    sized = SIZED[stage]
    return cost.run_epochs(sized.epochs(values), sized.own_budget)


@dataclass
class StagePlan:
    """What the budget chose for one stage: its share, the measured cost, the sizes before and after, the config
    overrides that replay it, and the cut or the shortfall in words."""

    stage: str
    share_s: float
    step_s: float | None = None
    run_s: float | None = None
    epoch_s: float | None = None
    before: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    estimate_s: float | None = None  # the runs' time and fixed_s
    fixed_s: float | None = None  # the stage's own work outside its runs (:func:`fixed_work`), in the estimate
    epochs_run: int | None = None  # the epochs each run really trains (budget.min_steps raises the sized ones)
    needed_s: float | None = None  # the minimum's time, when it does not fit the share
    used_s: float | None = None  # measured after the stage ran (warm-up included)
    note: str = ""

    def check(self) -> Check:
        """The stage's ``budget`` check: PASS saying what was cut (or that nothing was), WARN when even the
        minimum does not fit the share, with the time it would need."""
        if self.needed_s is not None:
            return Check(
                "budget",
                f"the stage's minimum fits its share of budget.minutes ({_min(self.share_s)})",
                self.note,
                f"<= {_min(self.share_s)}",
                Verdict.WARN,
                f"its minimum needs about {_min(self.needed_s)}: raise budget.minutes by "
                f"{_min(self.needed_s - self.share_s)} or more, or give this stage fewer runs",
            )
        return Check(
            "budget",
            f"the stage fits its share of budget.minutes ({_min(self.share_s)})",
            self.note,
            f"<= {_min(self.share_s)}",
            Verdict.PASS,
        )


@dataclass(frozen=True)
class Stop:
    """What a stage's deadline can stop: the sized knob ``key`` whose runs it stops, the stage metric that counts
    what ran, the words of the note (``{ran}``, ``{of}``), and ``overrides(ran)``: the config overrides that
    replay what ran."""

    key: str
    metric: str
    words: str
    overrides: Callable[[int], dict[str, Any]]


# What a stage's deadline can stop, per stage (recipe.stages.tune.over_deadline,
# recipe.squeeze.runs.members_over_deadline and longer_to_deadline).
STOPS: dict[str, tuple[Stop, ...]] = {
    "tune": (
        Stop(
            "stages.tune.n_trials",
            "tune/n_trials",
            "the search stopped at the stage's deadline after {ran} of {of} trials",
            lambda ran: {"stages.tune.n_trials": ran},
        ),
    ),
    "squeeze": (
        Stop(
            "stages.squeeze.members",
            "squeeze/members_run",
            "the members stopped at the stage's deadline after {ran} of {of} members",
            lambda ran: {"stages.squeeze.members": ran},
        ),
        Stop(
            "squeeze.longer",
            "squeeze/longer_budgets",
            "the long run was cut at the stage's deadline to {ran} of {of} budgets (1: none)",
            lambda ran: {"stages.squeeze.longer": float(ran) if ran > 1 else 1.0},
        ),
    ),
}


def record_stop(plan: StagePlan, stage: str, metrics: dict[str, float]) -> bool:
    """After ``stage`` ran: when its budget's deadline stopped it before its sized runs (:data:`STOPS`: tune's
    search, ``tune/n_trials`` below the sized ``stages.tune.n_trials``; squeeze's members, ``squeeze/members_run``
    below ``stages.squeeze.members``, and its long run, ``squeeze/longer_budgets`` below ``squeeze.longer``), the
    plan records the runs that ran, so ``--plan`` replays exactly those (with no deadline), and its note says so.
    Returns whether the plan changed."""
    changed = False
    for stop in STOPS.get(stage, ()):
        ran = metrics.get(stop.metric)
        if ran is None or stop.key not in plan.sizes or int(ran) >= int(plan.sizes[stop.key]):
            continue
        plan.note += "; " + stop.words.format(ran=int(ran), of=plan.sizes[stop.key])
        plan.sizes[stop.key] = int(ran)
        plan.overrides.update(stop.overrides(int(ran)))
        changed = True
    return changed


def _min(seconds: float) -> str:
    """A duration as the budget speaks it: "2.4 min", or "40 s" under a minute."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{max(seconds, 1):.0f} s"


def _ms(seconds: float) -> str:
    """A step time as the budget speaks it: "46.8 ms", "0.042 ms" (two significant figures under 1 ms, so a
    measured step is never printed as 0.0)."""
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2g} ms"


def size_stage(
    stage: str,
    cfg: RecipeConfig,
    cost: StepCost,
    share_s: float,
    fixed: FixedWork | None = None,
    fit: float = FIT,
) -> StagePlan:
    """Fit ``stage``'s runs (:data:`SIZED`) to ``share_s`` seconds at the measured ``cost``: while the estimate
    (:func:`stage_cost` plus ``fixed``, the stage's work outside its runs at the sizes tried,
    :func:`fixed_work`: squeeze scores each member it keeps) is over ``fit`` of the share (:func:`fit_for`), cut
    the knob with the largest value-over-configured ratio still above its minimum (and not held by its ``after``
    knob; runs by one, epochs by a fifth, at least one), runs first on a tie. Sizes only go down: a share larger
    than the configured sizes need leaves them as they are. When even the minimum is over the share, the minimum
    is used and ``needed_s`` says what it needs (a WARN)."""
    sized = SIZED[stage]
    before = current_sizes(stage, cfg)
    values = dict(before)
    fixed = fixed or FixedWork(stage)
    plan = StagePlan(stage, share_s, cost.step_s, cost.run_s, cost.epoch_s, before=dict(before))

    def estimate(v: dict[str, Any]) -> float:
        return stage_cost(stage, v, cost) + fixed.seconds(v)

    while estimate(values) > fit * share_s:
        # a knob is open while a cut still saves time: budget.min_steps can hold a run's real epochs at its
        # floor (overfit), and a cut the stage would undo is no cut
        at_minimum = {k.key for k in sized.knobs if int(values[k.key]) <= k.minimum}
        cuts = {
            k.key: _cut(k, int(values[k.key]))
            for k in sized.knobs
            if k.key not in at_minimum and (not k.after or k.after in at_minimum)
        }
        saving = [
            k for k in sized.knobs if k.key in cuts and estimate({**values, k.key: cuts[k.key]}) < estimate(values)
        ]
        if not saving:
            plan.needed_s = estimate(values)
            break
        tier = min(k.tier(int(values[k.key])) for k in saving)  # first knobs, then the others, then last ones
        open_ = [k for k in saving if k.tier(int(values[k.key])) == tier]
        knob = max(open_, key=lambda k: (int(values[k.key]) / max(1, int(before[k.key])), k.kind == "runs"))
        values[knob.key] = cuts[knob.key]
    plan.sizes = {k.key: values[k.key] for k in sized.knobs}
    plan.estimate_s = estimate(values)
    fixed_s = fixed.seconds(values)
    plan.fixed_s = fixed_s if fixed_s else None
    plan.epochs_run = run_epochs(stage, values, cost)
    plan.overrides = {**overrides_for(stage, cfg, plan.sizes), **ALWAYS.get(stage, {})}
    cuts = [
        f"{_knob_words(stage, k)} {before[k.key]} → {values[k.key]}"
        for k in sized.knobs
        if values[k.key] != before[k.key]
    ]
    est = f"about {_min(plan.estimate_s)} at {_ms(cost.step_s)} a step"
    sized_epochs = sized.epochs(values)
    if plan.epochs_run != sized_epochs:
        est += f", {plan.epochs_run} epochs a run after budget.min_steps={cost.min_steps}"
    if fixed_s:
        est += f", {_min(fixed_s)} of it outside the runs: {fixed.words(values)}"
    if plan.needed_s is not None:
        plan.note = f"even the minimum ({', '.join(cuts) or 'as configured'}) needs {est}, over its share"
    elif cuts:
        plan.note = f"cut {', '.join(cuts)} to fit {_min(share_s)} ({est})"
    else:
        plan.note = f"nothing cut: the configured sizes fit {_min(share_s)} ({est})"
    if stage == "overfit":
        plan.note += "; each rung stops at the training target (stages.overfit.stop_at_target)"
    return plan


def _cut(knob: Knob, value: int) -> int:
    """``value`` one cut down: runs by one, epochs by a fifth (at least one), never below the knob's minimum."""
    return value - 1 if knob.kind == "runs" else max(knob.minimum, value - max(1, value // 5))


def minimum_s(stage: str, cfg: RecipeConfig, cost: StepCost) -> float:
    """Seconds ``stage`` takes at its smallest sizes (every knob of :data:`SIZED` at its minimum, or below it
    where ``cfg`` already is) at ``cost``, with its work outside the runs at those sizes (:func:`fixed_work`,
    the classical fit not timed): what no cut can go under."""
    values = current_sizes(stage, cfg)
    for knob in SIZED[stage].knobs:
        values[knob.key] = min(int(values[knob.key]), knob.minimum)
    return stage_cost(stage, values, cost) + fixed_work(stage, cfg, cost).seconds(values)


def floor_s(stages: Sequence[str], cfg: RecipeConfig, cost: StepCost) -> float:
    """The least time in which the sized stages among ``stages`` can all run their minimum at ``cost``: the sum
    of :func:`minimum_s` over :data:`FIT` (sizing fills at most that fraction of a share). A budget below it
    cannot be split so that each stage's minimum fits its share, however time passes between them; one above it
    may still not (shares are proportional), so it is a floor, not a promise. Stages not in :data:`SIZED` add
    nothing (they are not sized and their time is not estimated); squeeze's classical fit, not yet timed, is
    left out too."""
    return sum(minimum_s(s, cfg, cost) for s in stages if s in SIZED) / FIT


def floor_warning(
    minutes: float, elapsed_s: float, stages: Sequence[str], cfg: RecipeConfig, cost: StepCost, measured_by: str
) -> str | None:
    """The warning for a budget that cannot fit the smallest plan of the sized ``stages`` still to run, or None.

    ``minutes``: ``budget.minutes``; ``elapsed_s``: the run's time so far (the warm-up of ``measured_by``, the
    stage whose warm-up gave ``cost``, included); ``cost``: that warm-up's measure, used for every stage left (the
    handed-on model; a later stage's model and augmentation only cost more). Said as soon as a warm-up has
    measured the step time, the first moment it can be known: before that the budget has no step time to go on.
    """
    floor = floor_s(stages, cfg, cost)
    left = minutes * 60 - elapsed_s
    if left >= floor:
        return None
    sized = [s for s in stages if s in SIZED]
    enough = math.ceil((elapsed_s + floor) / 6) / 10  # minutes, rounded up to a tenth
    per_run = f", {cost.run_s:.1f} s a run" if cost.run_s >= 0.05 else ""  # a run's fixed cost, when measurable
    return (
        f"budget.minutes={minutes:g} cannot fit the recipe's smallest plan: at the step time {measured_by}'s "
        f"warm-up measured ({_ms(cost.step_s)} a step{per_run}), "
        f"{', '.join(sized)} need at least {_min(floor)} at their minimum sizes, and {_min(max(left, 0.0))} of the "
        f"budget is left; each will run its minimum and WARN. Give budget.minutes={enough:g} or more"
    )


def _knob_words(stage: str, knob: Knob) -> str:
    if knob.words:
        return knob.words
    if knob.kind == "runs":
        return SIZED[stage].what
    return f"{stage} epochs"


def regularize_overrides(cfg: RecipeConfig, candidates: int) -> dict[str, Any]:
    """The ``stages.regularize.*`` settings that keep the first ``candidates`` candidates, in the order the
    stage lists them (augment, weight_decay, dropout, early_stopping, smaller_input, smaller_batch, init_from),
    dropping from the end. Only the settings that change are returned."""
    r = cfg.stages.regularize
    kinds: list[tuple[str, Any]] = [
        ("augment", list(r.augment)),
        ("weight_decay", list(r.weight_decay)),
        ("dropout", list(r.dropout)),
        ("early_stopping", r.early_stopping),
        ("smaller_input", r.smaller_input),
        ("smaller_batch", r.smaller_batch),
        ("init_from", r.init_from),
    ]
    left = candidates
    out: dict[str, Any] = {}
    for name, value in kinds:
        if isinstance(value, list):
            kept = value[: max(0, left)]
            left -= len(kept)
            if kept != value:
                out[f"stages.regularize.{name}"] = kept
        elif value is not None:
            if left > 0:
                left -= 1
            else:
                out[f"stages.regularize.{name}"] = None
    return out


def overrides_for(stage: str, cfg: RecipeConfig, sizes: dict[str, Any]) -> dict[str, Any]:
    """The config overrides (dotted key -> value) that make ``stage`` run with ``sizes``: the knobs that are
    config keys as they are, regularize's candidate count as :func:`regularize_overrides`, tune's seeds as the
    first of ``stages.tune.seeds``, squeeze's long run as ``stages.squeeze.longer`` (1: none), its snapshot
    run as ``stages.squeeze.snapshots`` (0: none) and its student as ``stages.squeeze.distill``. Every epochs knob is
    written even when unchanged (a None epochs follows ``budget.epochs``, which an earlier stage may change)."""
    out: dict[str, Any] = {}
    now = current_sizes(stage, cfg)
    for key, value in sizes.items():
        if key == "regularize.candidates":
            out.update(regularize_overrides(cfg, int(value)))
        elif key.endswith(".epochs"):
            out[key] = value
        elif value == now.get(key):
            continue
        elif key == "tune.seeds":  # the first seeds (the handed-on checkpoint is the first's when its own is cut)
            out["stages.tune.seeds"] = list(cfg.stages.tune.seeds)[: int(value)]
        elif key == "squeeze.longer":
            out["stages.squeeze.longer"] = float(value) if int(value) > 1 else 1.0
        elif key == "squeeze.snapshots":
            out["stages.squeeze.snapshots"] = cfg.stages.squeeze.snapshots if int(value) else 0
        elif key == "squeeze.distill":
            out["stages.squeeze.distill"] = bool(int(value)) and cfg.stages.squeeze.distill
        else:
            out[key] = value
    return out


# --- the record and the replay --------------------------------------------------------------------------------


def plan_document(minutes: float, stages: list[StagePlan], elapsed_s: float | None = None) -> dict[str, Any]:
    """The JSON of ``budget_plan.json``: the budget, each stage's plan, and the overrides that replay it."""
    overrides: dict[str, Any] = {}
    for p in stages:
        overrides.update(p.overrides)
    return {
        "version": PLAN_VERSION,
        "budget_minutes": minutes,
        "elapsed_s": elapsed_s,
        "shares": dict(SHARES),
        "stages": [asdict(p) for p in stages],
        "overrides": overrides,
    }


def plan_params(doc: dict[str, Any]) -> dict[str, Any]:
    """MLflow params of a plan: ``budget.plan.<dotted key>`` for each override (lists as JSON)."""
    return {
        f"budget.plan.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in doc["overrides"].items()
    }


def load_plan(path: Path | str) -> dict[str, Any]:
    """The overrides of a recorded plan (``budget_plan.json``, from the parent run's artifacts).

    Raises PlanError naming the file and the fix when it is missing, not JSON or not a plan."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(
            f"--plan {path}: no such file; download budget_plan.json from the budgeted run's parent run in MLflow"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlanError(
            f"--plan {path} is not a readable JSON plan ({e}); give the budget_plan.json of a run"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("overrides"), dict) or doc.get("version") != PLAN_VERSION:
        raise PlanError(
            f"--plan {path} is not a budget plan of version {PLAN_VERSION} (an object with 'version' and "
            "'overrides'); give the budget_plan.json artifact of a budgeted run"
        )
    return dict(doc["overrides"])


def replay(cfg: RecipeConfig, overrides: dict[str, Any]) -> RecipeConfig:
    """``cfg`` with a plan's sizes and ``budget.minutes`` off: the recorded run's sizes, no timing.

    Raises recipe.config.ConfigError when an override does not fit this config's schema."""
    return cfg.with_overrides({**overrides, "budget.minutes": None})


__all__ = [
    "ALWAYS",
    "SHARES",
    "SIZED",
    "Budget",
    "PlanError",
    "StagePlan",
    "Stop",
    "StepCost",
    "floor_s",
    "fixed_work",
    "FixedWork",
    "knob_minimum",
    "knob_of",
    "floor_warning",
    "load_plan",
    "minimum_s",
    "plan_document",
    "plan_params",
    "record_stop",
    "replay",
    "run_epochs",
    "share_of",
    "size_stage",
    "stage_cost",
    "warm_up",
]
