"""RecipeConfig: the single description of a recipe run.

A config is loaded from a YAML preset or file, then overridden with dotted
``--set key.path=value`` strings. Every section forbids unknown keys, so a typo
is an error that names the full key path instead of a silently ignored setting
(a misconfigured net still trains -- only worse -- so configs must not be lax).

The whole config is saved with every run and checkpoint; ``config_hash`` gives a
short, key-order-independent identity used to find earlier stage results.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and what to do."""


class _Section(BaseModel):
    # extra="forbid": unknown keys are errors. validate_assignment: `cfg.optim.lr = "x"` fails early too.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Section):
    """Fractions of the data held out for validation and test; the rest trains.

    Splits are stratified by label (classification), seeded, and saved beside the
    data so every stage, and every later run on the same data, sees the same ones.
    """

    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.9:
            raise ValueError(f"val + test = {self.val + self.test:.2f} leaves under 10% to train on; lower them")
        return self


class DataConfig(_Section):
    """Where the data comes from and how it is batched.

    User-facing contract: ``data.root`` points at the user's data (a folder of class
    sub-folders for ``imagefolder``, a .csv file for ``csv``, the download folder for
    ``torchvision``); ``data.target`` names the CSV target column.
    """

    source: Literal["digits", "imagefolder", "csv", "torchvision"] = "digits"
    root: Path | None = None  # None: data/<source-name> under the working directory
    name: str | None = None  # torchvision: MNIST, FashionMNIST, CIFAR10; csv without root: an embedded table
    download: bool = False  # torchvision only; nothing is downloaded unless asked
    target: str | None = None  # csv: target column
    task: Literal["auto", "classification", "regression"] = "auto"
    image_size: int | None = Field(None, ge=4)  # resize images to a square of this side; None keeps their size
    grayscale: bool | None = None  # None: keep what the files are (1 channel if all are grayscale)
    normalize: bool = True  # standardise inputs with statistics from the training split
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    num_workers: int = Field(0, ge=0)  # DataLoader workers, for data that does not fit in memory
    in_memory: Literal["auto", "always", "never"] = "auto"
    max_memory_mb: int = Field(2048, ge=1)  # "auto" keeps data in memory when it fits under this
    augment: list[str] = Field(default_factory=list)  # label-preserving transforms, e.g. ["crop", "rotate"]
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "torchvision" and not self.name:
            raise ValueError("data.source=torchvision needs data.name (MNIST, FashionMNIST or CIFAR10)")
        if self.source == "csv" and self.root is None and not self.name:
            raise ValueError(
                "data.source=csv needs data.root=PATH/TO/FILE.csv and data.target=COLUMN "
                "(or data.name=wine|breast_cancer|diabetes for a table that ships with scikit-learn)"
            )
        if self.source == "imagefolder" and self.root is None:
            raise ValueError("data.source=imagefolder needs data.root=PATH/TO/FOLDER with one sub-folder per class")
        return self


class ModelConfig(_Section):
    """Which network to build. ``name`` is a registry name (linear, mlp, cnn, resnet,
    resnet18, resnet34) or ``package.module:callable``; the callable is called with
    keyword arguments ``in_shape`` and ``num_classes`` (plus ``kwargs``) and returns an
    ``nn.Module``. ``width`` and ``depth`` are the capacity knobs stages turn."""

    name: str = "cnn"
    width: int = Field(32, ge=1)
    depth: int = Field(2, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    init_bias: bool = True  # set the final bias from class priors / target mean ("init well")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    init_from: str | None = None  # start from this checkpoint (local file or MLflow artifact URI): tensors whose
    # names and shapes match are loaded, the rest (e.g. a new head) keep their init. Set by regularize when
    # initialising from an earlier run helps


class OptimConfig(_Section):
    """torch's own optimisers. ``weight_decay`` is decoupled for adamw, L2 for the rest."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(3e-4, gt=0)  # "Adam is safe" at 3e-4
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd, rmsprop
    nesterov: bool = False  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = Field(1e-8, gt=0)


class ScheduleConfig(_Section):
    """Learning-rate schedule. Constant by default: the recipe tunes decay last."""

    name: Literal[
        "constant", "step", "cosine", "linear", "inverse_sqrt", "one_cycle", "cosine_restarts", "plateau"
    ] = "constant"
    warmup_steps: int = Field(0, ge=0)  # linear warm-up, for inverse_sqrt
    step_epochs: int = Field(10, ge=1)  # step: decay every this many epochs
    gamma: float = Field(0.1, gt=0, le=1)  # step: decay factor
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine / linear / cosine_restarts: floor as a fraction of lr
    restart_epochs: int = Field(10, ge=1)  # cosine_restarts: first period
    restart_mult: int = Field(1, ge=1)  # cosine_restarts: period multiplier
    max_lr_mult: float = Field(10.0, ge=1)  # one_cycle: peak lr = lr * this
    pct_start: float = Field(0.25, gt=0, lt=1)  # one_cycle: fraction of steps spent warming up
    plateau_patience: int = Field(3, ge=0)  # plateau: epochs without val improvement before halving
    plateau_factor: float = Field(0.5, gt=0, lt=1)  # plateau: multiplier ("halve on plateau")


class BudgetConfig(_Section):
    """How much training a stage may spend; the first limit reached stops training."""

    epochs: int = Field(30, ge=1)
    max_steps: int | None = Field(None, ge=1)
    time_limit_s: float | None = Field(None, gt=0)
    early_stopping: int | None = Field(None, ge=1)  # stop when val/loss has not improved for this many epochs
    # and restore the best weights; None: off. Set by regularize when early stopping helps


class TrainerConfig(_Section):
    """Trainer behaviour shared by every stage."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: cuda, then mps, then cpu
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on cuda, fp32 elsewhere
    grad_clip: float | None = Field(None, gt=0)  # clip the global gradient norm to this
    ema_decay: float | None = Field(None, gt=0, lt=1)  # keep EMA (Polyak) weights and validate with them
    progress: bool = True  # rich progress bar, shown only on a terminal
    deterministic: bool = True  # torch.use_deterministic_algorithms where the device allows


class InspectConfig(_Section):
    """Stage 1, become one with the data.

    Every check lists all its offenders in the ``inspect/problems.json`` artifact; the caps below only
    bound what a check's one-line ``observed`` text names before "... and N more".
    """

    imbalance_warn_ratio: float = Field(5.0, ge=1)  # largest / smallest class count above this warns
    outlier_mad: float = Field(6.0, gt=0)  # robust z (median/MAD) beyond which a sample is an outlier
    max_outliers_listed: int = Field(20, ge=0)  # outliers named in the pixel_stats_outliers check
    max_listed: int = Field(10, ge=0)  # offenders (files, rows, columns) named in the other checks
    range_margin: float = Field(0.5, ge=0)  # csv: val/test values beyond the train range by more than this
    # fraction of the train range (max - min) are flagged (feature_ranges, target_values)
    samples_per_class: int = Field(8, ge=1, le=32)  # images per class in plots/samples.png


class BaselinesConfig(_Section):
    """Stage 2, set up the end-to-end skeleton and get dumb baselines.

    Every check trains briefly, so the defaults keep the stage well under a minute on a CPU for data the
    size of digits. Losses are in nats for classification (cross-entropy) and in squared target units
    for regression (MSE); "fractions" are of the reference value named in each comment.
    """

    short_steps: int = Field(150, ge=10)  # optimiser steps of the short run on the full training set (and of
    # the zero-input run and the clean augmentation-check run, which must match it)
    seed_steps: int = Field(8, ge=2)  # steps compared between two runs of the same seed (and another seed)
    seed_tol: float = Field(1e-6, ge=0)  # largest loss difference, relative, that still counts as identical
    init_loss_warn: float = Field(0.1, gt=0)  # loss at init further than this from the expected value warns
    # (nats for classification; a fraction of the expected MSE for regression) ...
    init_loss_fail: float = Field(0.3, gt=0)  # ... and further than this fails
    hockey_steps: int = Field(50, ge=5)  # steps plotted with and without the final bias set from the data
    input_margin: float = Field(0.1, gt=0, lt=1)  # real inputs must end with a val loss at least this
    # fraction below the same model trained for the same steps on all-zero inputs
    linear_steps: int = Field(300, ge=10)  # steps of the linear baseline
    linear_lr: float = Field(3e-3, gt=0)  # Adam learning rate of the linear baseline (a fair, fast fit);
    # regression: times the train target std (raw targets need steps of their size)
    require_beat_linear: bool = False  # warn when the short run does not beat the linear baseline yet
    # (off: a short run is not meant to; the overfit stage must)
    human_baseline: float | None = None  # human-level val accuracy (0-1), or MAE for regression; None: none
    overfit_examples: int = Field(8, ge=2, le=16)  # examples in the one batch to overfit
    overfit_steps: int = Field(500, ge=10)  # step budget to overfit them, per model size tried (stops when reached)
    overfit_ratio: float = Field(0.01, gt=0, lt=1)  # "near zero": the batch loss must fall below this
    # fraction of its value at init
    overfit_max_grow: int = Field(2, ge=0)  # capacity-ladder rungs (recipe.models.grow) to try when it cannot
    decrease_margin: float = Field(0.1, gt=0, lt=1)  # the smoothed training loss over the last window of the
    # short run must be this fraction below the first window's
    batch_examples: int = Field(6, ge=2, le=64)  # examples in the batch-independence gradient check
    batch_leak_tol: float = Field(1e-6, ge=0)  # gradient reaching other examples, relative to the own one,
    # above which examples count as mixed
    input_mean_tol: float = Field(0.25, gt=0)  # the decoded batch entering the net warns when its mean is off
    # the train split's by more than this many train standard deviations (averaged over channels/features; plus
    # 2/sqrt(batch size) for chance) ...
    input_std_factor: float = Field(1.5, gt=1)  # ... or its standard deviation by more than this factor
    snapshot_examples: int = Field(16, ge=1, le=64)  # validation examples whose predictions are tracked
    augment_warn_retained: float = Field(0.4, gt=0, le=1)  # with data.augment set: a model trained on clean
    # data should keep this fraction of its skill above the dumb baseline on augmented val inputs (less warns:
    # the augmentation may change labels, or be stronger than this model can absorb) ...
    augment_fail_retained: float = Field(0.2, ge=0, le=1)  # ... and keeping less than this fails: the
    # augmentation destroys the signal or scrambles labels (skill falls towards chance)
    augment_repeats: int = Field(2, ge=1)  # augmented passes over the val split averaged in that check
    plots: bool = True  # draw and log plots/*.png (about a quarter of the stage's time on small data)


class OverfitConfig(_Section):
    """Stage 3, overfit: a model big enough to fit the training set.

    "Don't be a hero": the stage trains a known architecture with Adam at ``lr``, a constant schedule and no
    regularisation (no augmentation, weight decay, dropout or early stopping), whatever the incoming config
    says, and lists what it changed. An LR finder confirms or replaces ``lr``; a model that cannot reach the
    target grows one rung of the capacity ladder (``recipe.models.grow``) at a time.
    """

    architecture: str = "auto"  # auto: keep model.name when it suits the data and device (cnn / resnet / your
    # module:callable for images, mlp for tables, resnet18/34 only on a GPU), else cnn (CPU) or resnet18 (GPU)
    # for images and mlp for tables; or a model name to use as is
    optimizer: Literal["adam", "config"] = "adam"  # adam: Adam at `lr`, constant schedule; config: keep optim.*
    lr: float = Field(3e-4, gt=0)  # the starting learning rate ("Adam is safe" at 3e-4), confirmed by the finder
    epochs: int | None = Field(None, ge=1)  # training budget per rung; None: budget.epochs
    max_rungs: int = Field(2, ge=0)  # how many times the model may grow when it cannot reach the target
    target_accuracy: float | None = Field(0.99, gt=0, le=1)  # classification: train accuracy (eval mode) to reach
    target_loss: float | None = Field(None, gt=0)  # classification: train loss (nats) to get under; None: not used
    # (with both set, both must hold)
    target_mse_ratio: float = Field(0.1, gt=0, le=1)  # regression: train MSE under this fraction of the target
    # variance (R^2 above 1 - this)
    lr_finder: bool = True  # sweep the learning rate before training and confirm or replace `lr`
    lr_min: float = Field(1e-7, gt=0)  # first lr of the sweep
    lr_max: float = Field(10.0, gt=0)  # last lr of the sweep (it stops earlier when the loss diverges)
    lr_steps: int = Field(100, ge=10)  # optimiser steps of the sweep
    lr_rule: Literal["min_div_10", "steepest"] = "min_div_10"  # the suggestion: a tenth of the lr at the smoothed
    # loss minimum, or the lr where the smoothed loss falls fastest
    lr_tolerance: float = Field(3.0, ge=1)  # keep `lr` when within this factor of the suggestion (and below the
    # lr of the loss minimum); otherwise take the suggestion
    update_ratio_low: float = Field(-4.0, lt=0)  # log10 update/weight ratio below which a layer barely learns
    update_ratio_high: float = Field(-2.0, lt=0)  # ... and above which it is thrashed (healthy: about -3)


class RegularizeConfig(_Section):
    """Stage 4, regularize: give up some training fit for validation, one change at a time.

    Each candidate is the overfit stage's config plus one regulariser, trained for `epochs` from the same seed
    (its own nested MLflow run) and compared with the unregularised reference on the validation metric. A
    candidate is kept when it beats the reference by more than `noise_z` paired standard errors (and
    `min_delta`); the best kept value of each kind is combined and the combination verified. Empty lists and
    None skip a kind of candidate.
    """

    epochs: int = Field(30, ge=1)  # budget of every candidate, the reference included (regularisers need a
    # reference that has had time to overfit, and augmentation needs epochs to pay off)
    augment: list[str] = Field(default_factory=lambda: ["crop", "rotate"])  # one candidate with these label-
    # preserving transforms (recipe.data.augment; never hflip for digits or text)
    weight_decay: list[float] = Field(default_factory=lambda: [0.05, 0.5])  # one AdamW candidate per value
    # (decoupled: each step shrinks the weights by lr x this)
    dropout: list[float] = Field(default_factory=lambda: [0.3])  # one candidate per model.dropout value
    early_stopping: int | None = Field(3, ge=1)  # a candidate stopping when val loss has not improved for this
    # many epochs (restoring the best weights)
    smaller_input: float | None = Field(0.75, gt=0, lt=1)  # images: a candidate at data.image_size = this x side
    smaller_batch: float | None = Field(0.5, gt=0, lt=1)  # a candidate at this x data.batch_size
    init_from: str | None = None  # transfer/pretrain candidate: a local checkpoint or state_dict file, or an MLflow
    # artifact URI (runs:/..., models:/..., mlflow-artifacts:/...); tensors whose shapes match are loaded. Nothing
    # is downloaded from anywhere else; None skips the candidate
    init: Literal["scratch", "overfit"] = "scratch"  # scratch: every candidate starts from the same seeded init
    # (a fair comparison); overfit: candidates with the overfit model's architecture and input fine-tune its
    # checkpoint
    criterion: Literal["loss", "metric"] = "loss"  # what a candidate must improve: the val loss (per-sample
    # paired, and the val metric must not get worse beyond noise), or the val metric (accuracy / MAE) itself
    noise_z: float = Field(1.0, ge=0)  # "beyond noise": the gain must exceed this many paired standard errors
    min_delta: float = Field(0.0, ge=0)  # ... and this much (in the criterion's units)


class ParamSpace(_Section):
    """One searched parameter: which config key it sets and the range or choices Optuna samples from.

    ``around`` makes the range relative to the value the previous stage handed on: ``times`` multiplies it by
    ``low`` / ``high`` (the learning rate: 0.1 to 10, a decade each side), ``plus`` adds them (depth: -1 to +1).
    ``switch`` parameters toggle between the handed-on value ("on") and ``off`` (augmentation), and are held
    fixed when the handed-on value already equals ``off``.
    """

    key: str = Field(description="the dotted config key this parameter sets, e.g. optim.lr")
    type: Literal["float", "int", "categorical", "switch"] = Field(
        "float", description="float / int: a range from low to high; categorical: one of choices; switch: the "
        "handed-on value or `off`")
    low: float | None = Field(None, description="lower end of the range (a factor or offset with `around`)")
    high: float | None = Field(None, description="upper end of the range (a factor or offset with `around`)")
    log: bool = Field(False, description="sample on a log scale (learning rates, weight decay, widths)")
    around: Literal["absolute", "times", "plus"] = Field(
        "absolute", description="absolute: low/high as given; times / plus: relative to the handed-on value")
    choices: list[Any] | None = Field(None, description="categorical: the values to choose from")
    off: Any = Field(None, description="switch: the value meaning off (e.g. [] for data.augment)")

    @model_validator(mode="after")
    def _complete(self) -> ParamSpace:
        if self.type in ("float", "int") and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"{self.key}: a {self.type} parameter needs low <= high")
        if self.type == "categorical" and not self.choices:
            raise ValueError(f"{self.key}: a categorical parameter needs choices")
        if self.log and self.type in ("float", "int") and self.low is not None and self.low <= 0:
            raise ValueError(f"{self.key}: a log-scale range needs low > 0")
        return self


def _default_space() -> dict[str, ParamSpace]:
    return {
        "lr": ParamSpace(key="optim.lr", low=0.1, high=10.0, log=True, around="times"),
        "weight_decay": ParamSpace(key="optim.weight_decay", low=1e-4, high=1.0, log=True),
        "dropout": ParamSpace(key="model.dropout", low=0.0, high=0.5),
        "width": ParamSpace(key="model.width", type="int", low=0.5, high=2.0, log=True, around="times"),
        "depth": ParamSpace(key="model.depth", type="int", low=-1, high=1, around="plus"),
        "batch_size": ParamSpace(key="data.batch_size", type="int", low=0.5, high=2.0, log=True, around="times"),
        "augment": ParamSpace(key="data.augment", type="switch", off=[]),
        "schedule": ParamSpace(key="schedule.name", type="categorical", choices=["constant", "cosine", "one_cycle"]),
    }


class TuneConfig(_Section):
    """Stage 5, tune: quasi-random search over what matters, starting from regularize's handed-on config.

    Each trial trains the handed-on config with one point of `space` for `epochs` epochs (its own nested MLflow
    run) and reports its per-epoch validation loss to the Optuna study, which may prune it. The study persists
    (an Optuna journal file beside the MLflow store, or `storage`), so an interrupted tune resumes. Then the best
    trial's config and the handed-on config are each retrained with `seeds`, and the best is handed on only when
    it beats the handed-on config beyond seed and validation-sampling noise (`noise_z`). Sources: the recipe's
    "random over grid search"; the Deep Learning Tuning Playbook (quasi-random search for exploration, ranges
    whose best point sits at an edge must be widened).
    """

    n_trials: int = Field(16, ge=1, description="trials the study should hold (completed, pruned or failed; "
                          "trials of an interrupted run count, so a resumed tune only runs the rest)")
    timeout_s: float | None = Field(None, gt=0, description="no new trials start after this many seconds of search")
    epochs: int = Field(10, ge=1, description="training epochs of every trial and every retraining")
    sampler: Literal["qmc", "tpe", "random", "gp"] = Field(
        "qmc", description="qmc: scrambled Sobol quasi-random points (exploration); tpe, random, gp: Optuna's")
    pruner: Literal["none", "median", "hyperband"] = Field(
        "none", description="stop unpromising trials early on their per-epoch validation loss")
    parallel: int = Field(1, ge=1, description="trials run at once; each gets cores // parallel torch threads")
    dask_address: str | None = Field(None, description="tcp://HOST:PORT of an existing Dask scheduler: trials "
                                     "run there (through prefect-dask) instead of a local process pool")
    storage: str | None = Field(None, description="the Optuna storage: an RDB URL (postgresql://...) or a journal "
                                "file path; None: $RECIPE_OPTUNA_STORAGE, else <MLflow store folder>/optuna/<study>.log")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="seeds the best and the "
                             "handed-on config are each retrained with after the search (seed noise); the checkpoint "
                             "handed on is the one of the config's own seed when listed, else of the first")
    noise_z: float = Field(1.0, ge=0, description="the best must beat the handed-on config by this many standard "
                           "errors (seed and validation-sampling noise combined)")
    space: dict[str, ParamSpace | None] = Field(default_factory=_default_space, description="parameter name -> what it "
                                         "sets and its range; entries merge over the defaults; set a name to "
                                         "null to hold it fixed")
    plots: bool = Field(True, description="draw and log the history, importance and slice figures")

    @field_validator("space", mode="before")
    @classmethod
    def _merge_space(cls, v: Any) -> Any:
        """Entries given in YAML or --set merge over the default of the same name (``space.lr.high=3`` changes one
        bound); an entry set to null is held fixed (it stays in the mapping as None); new names are added."""
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {k: p.model_dump() for k, p in _default_space().items()}
        for name, entry in v.items():
            if entry is None:
                out[name] = None  # kept as None so the choice survives a round trip through to_dict()
            elif isinstance(entry, dict) and name in out:
                out[name] = {**out[name], **entry}
            else:
                out[name] = entry
        return out


class StagesConfig(_Section):
    inspect: InspectConfig = Field(default_factory=InspectConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    overfit: OverfitConfig = Field(default_factory=OverfitConfig)
    regularize: RegularizeConfig = Field(default_factory=RegularizeConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)


class RecipeConfig(_Section):
    """Everything a recipe run needs. Load with :func:`load_config`."""

    name: str = "digits"  # the MLflow experiment
    description: str = ""
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be blank (it names the MLflow experiment)")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, as logged to MLflow params."""
        return flatten(self.to_dict())

    def config_hash(self) -> str:
        return config_hash(self)

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> RecipeConfig:
        """A new config with dotted overrides applied (``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``)."""
        data = self.to_dict()
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        for key, value in items:
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")


# --- loading ---------------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("recipe.presets").iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    path = Path(str(resources.files("recipe.presets").joinpath(f"{name}.yaml")))
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; the presets are: {', '.join(preset_names())}")
    return path


def load_config(
    preset: str | None = None, path: str | Path | None = None, overrides: list[str] | None = None
) -> RecipeConfig:
    """Build a RecipeConfig from a preset name or a YAML file (default: the digits preset), then overrides."""
    if preset and path:
        raise ConfigError("give a preset or a config file, not both")
    source = Path(path) if path else preset_path(preset or "digits")
    if not source.is_file():
        raise ConfigError(f"config file {str(source)!r} does not exist; check the path or use --preset")
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    for key, value in (parse_override(o) for o in overrides or []):
        _set_dotted(data, key, value)
    return _validate(data, source=str(source))


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", "1e-3")``; YAML parses the value, so lists and nulls work.

    Scalars that YAML leaves as strings (``1e-3`` is a string in YAML 1.1) are passed on as
    strings for pydantic to coerce to the field's type, which also gives typed errors."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.path=value, e.g. optim.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = data
    schema: type[BaseModel] | None = RecipeConfig
    for i, part in enumerate(parts):
        fields = schema.model_fields if schema else None
        if fields is not None and part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f"; did you mean {'.'.join([*parts[:i], close[0]])!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}: {where} has no {part!r}{hint} (known: {', '.join(fields)})"
            )
        if i == len(parts) - 1:
            node[part] = value
            return
        annotation = fields[part].annotation if fields else None
        schema = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, BaseModel):
            child = node[part] = child.model_dump(mode="json")
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child


def _validate(data: dict[str, Any], source: str) -> RecipeConfig:
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key{_suggest(err['loc'])}")
            else:
                lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"invalid config from {source}:\n" + "\n".join(lines)) from None


def _suggest(loc: tuple[Any, ...]) -> str:
    schema: type[BaseModel] = RecipeConfig
    for part in loc[:-1]:
        ann = schema.model_fields.get(str(part))
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            return ""
        schema = ann.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(schema.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- identity --------------------------------------------------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(cfg: RecipeConfig | dict[str, Any]) -> str:
    """12 hex digits of sha256 over the canonical JSON: independent of key order and of how it was written."""
    data = cfg.to_dict() if isinstance(cfg, RecipeConfig) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
