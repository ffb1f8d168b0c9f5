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
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and what to do."""


# Upper bounds shared by several settings. They are limits of meaning and of one machine's resources, not
# tuning advice: far beyond any recipe run, yet small enough that a typo (an extra zero, `1e9`) or a hostile form
# cannot ask for a week of training or a million-wide layer.
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000
MAX_SECONDS = 30 * 24 * 3600.0  # 30 days
MAX_TRIALS = 10_000
MAX_PARALLEL = 256
MAX_MEMBERS = 100
MAX_SEED = 2**32 - 1  # numpy's seed range (torch accepts 64 bits; numpy's generators do not)
# The hard ceiling of every integer setting, resource caps lifted or not: int64, what torch, numpy and MLflow hold.
MAX_INT = 2**63 - 1

CAP_KEY = "resource_cap"  # a Field's json_schema_extra key: the setting's upper bound is a liftable resource cap


def _cap(limit: float) -> dict[str, float]:
    """A Field's ``json_schema_extra`` marking ``limit`` as a resource cap: the upper bound of a size, width,
    epoch, step, time or parallelism setting. Unlike a bound of meaning (a fraction below 1, a seed in numpy's
    range), a cap only guards one machine against a typo (``1e9``) or a hostile form, so the trusted command line
    may lift it (``--no-caps``, ``RECIPE_LIFT_CAPS=1``; :func:`recipe.policy.caps_lifted`); a deployment run never
    can. The lower bound (``ge`` / ``gt``), finiteness and :data:`MAX_INT` stay on either way."""
    return {CAP_KEY: limit}


def _cap_of(info: Any) -> float | None:
    """The resource cap of a pydantic FieldInfo, or None when its upper bound (if any) is one of meaning."""
    extra = getattr(info, "json_schema_extra", None)
    return extra.get(CAP_KEY) if isinstance(extra, dict) else None


class CapError(ValueError):
    """A setting above its resource cap (or above int64); ``value`` is the number as parsed, which a message shows
    rather than pydantic's raw input (``1e9`` -> 1000000000)."""

    def __init__(self, message: str, value: float) -> None:
        super().__init__(message)
        self.value = value


def _check_cap(value: Any, cap: float) -> Any:
    """``value`` when it is within ``cap`` or caps are lifted for this process; raises :class:`CapError` otherwise
    (the message says how to lift it, or why it cannot be lifted here)."""
    from recipe import policy

    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int) and value > MAX_INT:
        raise CapError(f"above {MAX_INT} (int64), the most torch, numpy and MLflow hold", value)
    if value <= cap or policy.caps_lifted():
        return value
    if policy.untrusted():
        how = (
            "a deployment run cannot lift resource caps; run it from the command line with --no-caps "
            "if the machine can take it"
        )
    else:
        how = f"if the machine can take it, lift the caps on the command line: --no-caps (or {policy.LIFT_CAPS_ENV}=1)"
    raise CapError(f"over its resource cap of {_num(cap)}; {how}", value)


def _numeric_kinds(annotation: Any) -> set[type]:
    """The number types (int, float) an annotation admits, looking through Optional, Annotated, list and tuple."""
    if annotation in (int, float):
        return {annotation}
    return {k for arg in get_args(annotation) for k in _numeric_kinds(arg)}


def _reject_odd_numbers(value: Any, kinds: frozenset[type] | set[type] = frozenset({float})) -> Any:
    """``value`` as pydantic should see it for a number field of ``kinds``; raises ValueError for a boolean (YAML's
    ``yes``/``True``: a number field takes no truth value) and turns an integral number spelled as a float or in
    exponent notation (``1e5``, ``"1e5"``: YAML 1.1 reads that as a string) into an int, so an int field's range
    check, not a parse error, answers ``budget.epochs=1e9``."""
    if isinstance(value, bool):
        raise ValueError("a number setting takes a number, not a boolean")
    if int in kinds and float not in kinds and isinstance(value, str | float):
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number) and number.is_integer():
            return int(number)
    return value


# List items and tuple slots: the same rules, checked item by item so an error names the item.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(lambda v: _reject_odd_numbers(v, {int}))]
Fraction = Annotated[float, Field(ge=0, lt=1), BeforeValidator(_reject_odd_numbers)]
Decay = Annotated[float, Field(ge=0, le=10), BeforeValidator(_reject_odd_numbers)]


class _Section(BaseModel):
    # extra="forbid": unknown keys are errors. validate_assignment: `cfg.optim.lr = "x"` fails early too.
    # allow_inf_nan=False: `.inf`, `.nan`, `1e309` (inf in a float) are refused by every float setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        kinds = _numeric_kinds(annotation) if get_origin(annotation) not in (list, tuple) else set()
        return _reject_odd_numbers(value, kinds) if kinds else value

    @field_validator("*", mode="after")
    @classmethod
    def _resource_caps(cls, value: Any, info: ValidationInfo) -> Any:
        cap = _cap_of(cls.model_fields[info.field_name]) if info.field_name else None
        return value if cap is None or value is None else _check_cap(value, cap)


class SplitConfig(_Section):
    """Fractions of the data held out for validation and test; the rest trains.

    Splits are stratified by label (classification), seeded, and saved beside the
    data so every stage, and every later run on the same data, sees the same ones.
    """

    val: float = Field(0.15, gt=0, lt=1, description="fraction of the usable samples held out for validation")
    test: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="fraction held out for the test split (touched once, by the squeeze stage); 0: none",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seed of the stratified split (independent of the training seed)"
    )

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

    source: Literal["digits", "imagefolder", "csv", "torchvision"] = Field(
        "digits",
        description=(
            "digits (embedded, PNG folder), imagefolder (a folder of class sub-folders), csv (a table), or torchvision "
            "(MNIST, FashionMNIST, CIFAR10)"
        ),
    )
    root: Path | None = Field(
        None,
        description=(
            "the data: a folder (imagefolder), a .csv file (csv) or the download folder (torchvision); None: "
            "data/<source-name> under the working directory"
        ),
    )
    name: str | None = Field(
        None, description="torchvision: MNIST, FashionMNIST, CIFAR10; csv without root: an embedded table"
    )
    download: bool = Field(False, description="torchvision only; nothing is downloaded unless asked")
    target: str | None = Field(None, description="csv: target column")
    drop_columns: list[str] = Field(
        default_factory=list,
        description="csv: columns left out of the inputs, e.g. [rownames] (a row index or identifier: no signal, "
        "and a leak when the rows are sorted by the target; inspect's identifier_columns names them); each must be "
        "a column of the CSV other than the target",
    )
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: classification, or regression for a csv with a numeric target of many values"
    )
    image_size: int | None = Field(
        None,
        ge=4,
        json_schema_extra=_cap(4096),
        description="resize images to a square of this side; None keeps their size",
    )
    grayscale: bool | None = Field(None, description="None: keep what the files are (1 channel if all are grayscale)")
    background: str = Field(
        "white",
        description="images with transparency are composited on this colour (a name or #rrggbb), as a viewer shows "
        "them; palette files are expanded",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        json_schema_extra=_cap(400_000_000),  # 1.6 GB decoded: a form may raise the guard only this far
        description="a file whose header declares more pixels (width x height) is refused before decoding, naming "
        "it: a decompression bomb guard (about 4 bytes of memory a pixel)",
    )
    merge_similar_labels: bool = Field(
        False,
        description="merge class names that differ only in case, whitespace, _ or - (Shoes, shoes, 'shoes ') into "
        "the most frequent one; false: inspect FAILs naming them",
    )
    normalize: bool = Field(True, description="standardise inputs with statistics from the training split")
    batch_size: int = Field(
        64, ge=1, json_schema_extra=_cap(65536), description="training batch size (examples per optimiser step)"
    )
    eval_batch_size: int = Field(
        512,
        ge=1,
        json_schema_extra=_cap(65536),
        description="batch size for validation and evaluation (no gradients: can be larger)",
    )
    num_workers: int = Field(
        0, ge=0, json_schema_extra=_cap(64), description="DataLoader workers, for data that does not fit in memory"
    )
    in_memory: Literal["auto", "always", "never"] = Field(
        "auto",
        description="keep the decoded split as tensors in memory: auto (when under max_memory_mb), always, never",
    )
    max_memory_mb: int = Field(
        2048, ge=1, json_schema_extra=_cap(1_048_576), description='"auto" keeps data in memory when it fits under this'
    )
    augment: list[str] = Field(default_factory=list, description='label-preserving transforms, e.g. ["crop", "rotate"]')
    standardize_target: bool = Field(
        True,
        description="regression: train on (target - train mean) / train std; "
        "metrics are still reported in the target's units",
    )
    target_scaling: Literal["standard", "robust"] = Field(
        "standard",
        description="regression, with standardize_target: standard (train mean and std) or robust (train median and "
        "interquartile range / 1.349, so a few extreme targets do not squash the rest; inspect's target_outliers "
        "suggests it)",
    )
    mirror_symmetric: bool | None = Field(
        None,
        description="whether a left-right mirrored input keeps its label "
        "(natural photos: true; digits, letters, text: false); None: unknown. With "
        "false, data.augment=[hflip] fails the augmentation check",
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="the train/val/test split")

    @field_validator("background")
    @classmethod
    def _colour(cls, v: str) -> str:
        from PIL import ImageColor  # not recipe.data: that package imports torch

        try:
            ImageColor.getrgb(v)
        except ValueError:
            raise ValueError(
                f"{v!r} is not a colour: use a name (white, black, gray) or a hex code such as #808080"
            ) from None
        return v

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "torchvision" and not self.name:
            raise ValueError("data.source=torchvision needs data.name (MNIST, FashionMNIST or CIFAR10)")
        if self.source == "csv" and self.root is None and not self.name:
            raise ValueError(
                "data.source=csv needs data.root=PATH/TO/FILE.csv and data.target=COLUMN "
                "(or data.name=wine|breast_cancer|diabetes for a table that ships with scikit-learn)"
            )
        if self.drop_columns and self.source != "csv":
            raise ValueError(
                f"data.drop_columns={self.drop_columns} is for tables (data.source=csv); "
                f"data.source={self.source} has no columns"
            )
        if self.source == "imagefolder" and self.root is None:
            raise ValueError("data.source=imagefolder needs data.root=PATH/TO/FOLDER with one sub-folder per class")
        return self


class ModelConfig(_Section):
    """Which network to build. ``name`` is a registry name (linear, mlp, cnn, resnet,
    resnet18, resnet34) or ``package.module:callable``; the callable is called with
    keyword arguments ``in_shape`` and ``num_classes`` (plus ``kwargs``) and returns an
    ``nn.Module``. ``width`` and ``depth`` are the capacity knobs stages turn."""

    name: str = Field(
        "cnn", description="registry name (linear, mlp, cnn, resnet, resnet18, resnet34) or package.module:callable"
    )
    width: int = Field(
        32,
        ge=1,
        json_schema_extra=_cap(4096),
        description="capacity knob: channels (cnn, resnet) or hidden units (mlp)",
    )
    depth: int = Field(
        2, ge=1, json_schema_extra=_cap(256), description="capacity knob: blocks (cnn, resnet) or hidden layers (mlp)"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability before the output layer (0: none)")
    init_bias: bool = Field(True, description='set the final bias from class priors / target mean ("init well")')
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for the model's builder (a custom module:callable)"
    )
    init_from: str | None = Field(
        None,
        description=(
            "start from this checkpoint (local file or MLflow artifact URI): tensors whose names and shapes match are "
            "loaded, the rest (e.g. a new head) keep their init. Set by regularize when initialising from an earlier "
            "run helps"
        ),
    )


class OptimConfig(_Section):
    """torch's own optimisers. ``weight_decay`` is decoupled for adamw, L2 for the rest."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field(
        "adam", description="the torch optimiser: sgd, adam, adamw (decoupled weight decay) or rmsprop"
    )
    lr: float = Field(3e-4, gt=0, le=1e6, description='"Adam is safe" at 3e-4')
    weight_decay: float = Field(
        0.0, ge=0, le=10, description="weight decay: decoupled for adamw, L2 added to the gradient for the rest"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd, rmsprop")
    nesterov: bool = Field(False, description="sgd")
    betas: tuple[Fraction, Fraction] = Field((0.9, 0.999), description="adam, adamw")
    eps: float = Field(
        1e-8, gt=0, le=1, description="term added to the denominator for numerical stability (adam, adamw, rmsprop)"
    )


class ScheduleConfig(_Section):
    """Learning-rate schedule. Constant by default: the recipe tunes decay last."""

    name: Literal["constant", "step", "cosine", "linear", "inverse_sqrt", "one_cycle", "cosine_restarts", "plateau"] = (
        Field("constant", description="learning-rate schedule; constant by default (the recipe tunes decay last)")
    )
    warmup_steps: int = Field(
        0, ge=0, json_schema_extra=_cap(MAX_STEPS), description="linear warm-up, for inverse_sqrt"
    )
    step_epochs: int = Field(
        10, ge=1, json_schema_extra=_cap(MAX_EPOCHS), description="step: decay every this many epochs"
    )
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor")
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="cosine / linear / cosine_restarts: floor as a fraction of lr"
    )
    restart_epochs: int = Field(
        10, ge=1, json_schema_extra=_cap(MAX_EPOCHS), description="cosine_restarts: first period"
    )
    restart_mult: int = Field(1, ge=1, le=10, description="cosine_restarts: period multiplier")
    max_lr_mult: float = Field(10.0, ge=1, le=1000, description="one_cycle: peak lr = lr * this")
    pct_start: float = Field(0.25, gt=0, lt=1, description="one_cycle: fraction of steps spent warming up")
    plateau_patience: int = Field(
        3,
        ge=0,
        json_schema_extra=_cap(MAX_EPOCHS),
        description="plateau: epochs without val improvement before halving",
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description='plateau: multiplier ("halve on plateau")')


class BudgetConfig(_Section):
    """How much training a stage may spend; the first limit reached stops training."""

    epochs: int = Field(30, ge=1, json_schema_extra=_cap(MAX_EPOCHS), description="passes over the training split")
    max_steps: int | None = Field(
        None,
        ge=1,
        json_schema_extra=_cap(MAX_STEPS),
        description="stop after this many optimiser steps; None: no step limit",
    )
    min_steps: int | None = Field(
        None,
        ge=1,
        json_schema_extra=_cap(MAX_STEPS),
        description=(
            "small data: when budget.epochs gives fewer optimiser steps than this, every run's epochs (the "
            "budget's and the stages' own) grow by the same factor, so the budget takes at least this many steps; a "
            "preset sized in epochs for large data still trains a small folder; None: off"
        ),
    )
    time_limit_s: float | None = Field(
        None,
        gt=0,
        json_schema_extra=_cap(MAX_SECONDS),
        description="stop after this many seconds of training (makes runs irreproducible); None: no limit",
    )
    minutes: float | None = Field(
        None,
        gt=0,
        json_schema_extra=_cap(MAX_SECONDS / 60),
        description=(
            "wall-clock budget of the whole recipe in minutes (a laptop: 10), split across the stages by the plan in "
            "recipe/budget.py; each sized stage times a short warm-up and cuts its runs (epochs, rungs, candidates, "
            "trials, members) to its share. The sizes chosen are recorded (budget_plan.json) and replayed exactly by "
            "`flows run recipe --plan FILE`; None: the epoch-sized budgets as configured"
        ),
    )
    early_stopping: int | None = Field(
        None,
        ge=1,
        json_schema_extra=_cap(MAX_EPOCHS),
        description=(
            "stop when val/loss has not improved for this many epochs and restore the best weights; None: off. Set by "
            "regularize when early stopping helps"
        ),
    )


class TrainerConfig(_Section):
    """Trainer behaviour shared by every stage."""

    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: cuda, then mps, then cpu")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on cuda, fp32 elsewhere"
    )
    grad_clip: float | None = Field(None, gt=0, le=1e6, description="clip the global gradient norm to this")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep EMA (Polyak) weights and validate with them")
    precise_bn: int = Field(
        16,
        ge=0,
        le=10_000,
        description=(
            "batch-norm models: recompute the running statistics over this many training batches (at most one "
            "epoch's) at the end of fit, and before each validation over at most a quarter of an epoch's (at least "
            "4) (PreciseBN, Wu & Johnson 2021: running estimates lag fast-moving weights); 0: off"
        ),
    )
    eval_min_steps: int = Field(
        32,
        ge=0,
        le=1_000_000,
        description=(
            "tiny epochs: validate (with PreciseBN, early stopping, per-epoch logging) every max(1 epoch, this many "
            "optimiser steps), keeping at least 20 validations per run (recipe.train.cadence); 0: every epoch"
        ),
    )
    progress: bool = Field(True, description="rich progress bar, shown only on a terminal")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms where the device allows")


class InspectConfig(_Section):
    """Stage 1, become one with the data.

    Every check lists all its offenders in the ``inspect/problems.json`` artifact; the caps below only
    bound what a check's one-line ``observed`` text names before "... and N more".
    """

    imbalance_warn_ratio: float = Field(
        5.0, ge=1, le=1e6, description="largest / smallest class count above this warns"
    )
    outlier_mad: float = Field(
        6.0, gt=0, le=1000, description="robust z (median/MAD) beyond which a sample is an outlier"
    )
    max_outliers_listed: int = Field(
        20, ge=0, le=10_000, description="outliers named in the pixel_stats_outliers check"
    )
    max_listed: int = Field(
        10, ge=0, le=10_000, description="offenders (files, rows, columns) named in the other checks"
    )
    range_margin: float = Field(
        0.5,
        ge=0,
        le=1000,
        description=(
            "csv: val/test values beyond the train range by more than this fraction of the train range (max - min) are "
            "flagged (feature_ranges, target_values)"
        ),
    )
    samples_per_class: int = Field(8, ge=1, le=32, description="images per class in plots/samples.png")


class BaselinesConfig(_Section):
    """Stage 2, set up the end-to-end skeleton and get dumb baselines.

    Every check trains briefly, so the defaults keep the stage well under a minute on a CPU for data the
    size of digits. Losses are in nats for classification (cross-entropy) and in squared target units
    for regression (MSE); "fractions" are of the reference value named in each comment.
    """

    short_steps: int = Field(
        150,
        ge=10,
        json_schema_extra=_cap(MAX_STEPS),
        description=(
            "optimiser steps of the short run on the full training set (and of the zero-input run and the clean "
            "augmentation-check run, which must match it)"
        ),
    )
    seed_steps: int = Field(
        8, ge=2, le=10_000, description="steps compared between two runs of the same seed (and another seed)"
    )
    seed_tol: float = Field(
        1e-6, ge=0, le=1, description="largest loss difference, relative, that still counts as identical"
    )
    init_loss_warn: float = Field(
        0.1,
        gt=0,
        le=1000,
        description=(
            "loss at init further than this from the expected value warns (nats for classification; a fraction of the "
            "expected MSE for regression)"
        ),
    )
    init_loss_fail: float = Field(
        0.3,
        gt=0,
        le=1000,
        description="loss at init further than this from the expected value fails (units of init_loss_warn)",
    )
    hockey_steps: int = Field(
        50,
        ge=5,
        json_schema_extra=_cap(MAX_STEPS),
        description="steps plotted with and without the final bias set from the data",
    )
    input_margin: float = Field(
        0.1,
        gt=0,
        lt=1,
        description=(
            "real inputs must end with a val loss at least this fraction below the same model trained for the same "
            "steps on all-zero inputs"
        ),
    )
    linear_steps: int = Field(300, ge=10, json_schema_extra=_cap(MAX_STEPS), description="steps of the linear baseline")
    linear_lr: float = Field(
        3e-3,
        gt=0,
        le=10,
        description=(
            "Adam learning rate of the linear baseline (a fair, fast fit); regression: times the train target std (raw "
            "targets need steps of their size)"
        ),
    )
    require_beat_linear: bool = Field(
        False,
        description=(
            "warn when the short run does not beat the linear baseline yet (off: a short run is not meant to; the "
            "overfit stage must)"
        ),
    )
    human_baseline: float | None = Field(
        None, ge=0, le=1e12, description="human-level val accuracy (0-1), or MAE for regression; None: none"
    )
    overfit_examples: int = Field(8, ge=2, le=16, description="examples in the one batch to overfit")
    overfit_steps: int = Field(
        500,
        ge=10,
        json_schema_extra=_cap(MAX_STEPS),
        description="step budget to overfit them, per model size tried (stops when reached)",
    )
    overfit_ratio: float = Field(
        0.01, gt=0, lt=1, description='"near zero": the batch loss must fall below this fraction of its value at init'
    )
    overfit_max_grow: int = Field(
        2, ge=0, le=10, description="capacity-ladder rungs (recipe.models.grow) to try when it cannot"
    )
    decrease_margin: float = Field(
        0.1,
        gt=0,
        lt=1,
        description=(
            "the smoothed training loss over the last window of the short run must be this fraction below the first "
            "window's"
        ),
    )
    batch_examples: int = Field(6, ge=2, le=64, description="examples in the batch-independence gradient check")
    batch_leak_tol: float = Field(
        1e-6,
        ge=0,
        le=1,
        description="gradient reaching other examples, relative to the own one, above which examples count as mixed",
    )
    input_mean_tol: float = Field(
        0.25,
        gt=0,
        le=1000,
        description=(
            "the decoded batch entering the net warns when its mean is off the train split's by more than this many "
            "train standard deviations (averaged over channels/features; plus 2/sqrt(batch size) for chance)"
        ),
    )
    input_std_factor: float = Field(
        1.5,
        gt=1,
        le=1000,
        description="the decoded batch also warns when its standard deviation is off by more than this factor",
    )
    snapshot_examples: int = Field(16, ge=1, le=64, description="validation examples whose predictions are tracked")
    augment_warn_retained: float = Field(
        0.4,
        gt=0,
        le=1,
        description=(
            "with data.augment set: a model trained on clean data should keep this fraction of its skill above the "
            "dumb baseline on augmented val inputs (less warns: the augmentation may change labels, or be stronger "
            "than this model can absorb)"
        ),
    )
    augment_fail_retained: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "keeping less than this fraction fails: the augmentation destroys the signal or scrambles labels (skill "
            "falls towards chance)"
        ),
    )
    augment_repeats: int = Field(
        2, ge=1, le=100, description="augmented passes over the val split averaged in that check"
    )
    plots: bool = Field(
        True, description="draw and log plots/*.png (about a quarter of the stage's time on small data)"
    )


class OverfitConfig(_Section):
    """Stage 3, overfit: a model big enough to fit the training set.

    "Don't be a hero": the stage trains a known architecture with Adam at ``lr``, a constant schedule and no
    regularisation (no augmentation, weight decay, dropout or early stopping), whatever the incoming config
    says, and lists what it changed. An LR finder confirms or replaces ``lr``; a model that cannot reach the
    target grows one rung of the capacity ladder (``recipe.models.grow``) at a time.
    """

    architecture: str = Field(
        "auto",
        description=(
            "auto: keep model.name when it suits the data and device (cnn / resnet / your module:callable for images, "
            "mlp for tables, resnet18/34 only on a GPU), else cnn (CPU) or resnet18 (GPU) for images and mlp for "
            "tables; or a model name to use as is"
        ),
    )
    optimizer: Literal["adam", "config"] = Field(
        "adam", description="adam: Adam at `lr`, constant schedule; config: keep optim.*"
    )
    lr: float = Field(
        3e-4, gt=0, le=1e6, description='the starting learning rate ("Adam is safe" at 3e-4), confirmed by the finder'
    )
    epochs: int | None = Field(
        None, ge=1, json_schema_extra=_cap(MAX_EPOCHS), description="training budget per rung; None: budget.epochs"
    )
    max_rungs: int = Field(
        2, ge=0, le=10, description="how many times the model may grow when it cannot reach the target"
    )
    target_accuracy: float | None = Field(
        0.99, gt=0, le=1, description="classification: train accuracy (eval mode) to reach"
    )
    target_loss: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="classification: train loss (nats) to get under; None: not used (with both set, both must hold)",
    )
    target_mse_ratio: float = Field(
        0.1,
        gt=0,
        le=1,
        description="regression: train MSE under this fraction of the target variance (R^2 above 1 - this)",
    )
    stop_at_target: bool = Field(
        False,
        description=(
            "stop a rung at the first validation where the training target is met (the epoch's train-mode metric, "
            "confirmed in eval mode on the whole training split): the stage's question is answered; a wall-clock "
            "budget (budget.minutes) turns it on so the time passes to the stages after; off: every rung trains "
            "its whole budget"
        ),
    )
    lr_finder: bool = Field(True, description="sweep the learning rate before training and confirm or replace `lr`")
    lr_min: float = Field(1e-7, gt=0, le=1, description="first lr of the sweep")
    lr_max: float = Field(
        10.0, gt=0, le=1000, description="last lr of the sweep (it stops earlier when the loss diverges)"
    )
    lr_steps: int = Field(100, ge=10, le=100_000, description="optimiser steps of the sweep")
    lr_rule: Literal["min_div_10", "steepest"] = Field(
        "min_div_10",
        description=(
            "the suggestion: a tenth of the lr at the smoothed loss minimum, or the lr where the smoothed loss falls "
            "fastest"
        ),
    )
    lr_tolerance: float = Field(
        3.0,
        ge=1,
        le=1000,
        description=(
            "keep `lr` when within this factor of the suggestion (and below the lr of the loss minimum); otherwise "
            "take the suggestion"
        ),
    )
    update_ratio_low: float = Field(
        -4.0, lt=0, ge=-20, description="log10 update/weight ratio below which a layer barely learns"
    )
    update_ratio_high: float = Field(
        -2.0,
        lt=0,
        ge=-20,
        description="log10 update/weight ratio above which a layer is thrashed (healthy: about -3)",
    )
    min_rung_gain: float = Field(
        0.1,
        ge=0,
        lt=1,
        description=(
            "grow the model again only when the last rung cut the training error (1 - accuracy, or the MSE ratio) "
            "by at least this fraction of the rung before's; 0: grow while the target is not met"
        ),
    )
    fit_loss_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description=(
            "short of the target, the model still shows it can fit when its training loss is under this fraction "
            "of the dumb predictor's (or still falling): WARN with the budget it would need"
        ),
    )
    stall_loss_ratio: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "short of the target with a flat training loss, FAIL (evidence of a bug: a frozen or detached net, "
            "labels unrelated to the inputs) only when that loss is still above this fraction of the dumb "
            "predictor's; a flat loss between fit_loss_ratio and this is a plateau (label noise or capacity on a "
            "noisy table): WARN"
        ),
    )


class RegularizeConfig(_Section):
    """Stage 4, regularize: give up some training fit for validation, one change at a time.

    Each candidate is the overfit stage's config plus one regulariser, trained for `epochs` from the same seed
    (its own nested MLflow run) and compared with the unregularised reference on the validation metric. A
    candidate is kept when it beats the reference by more than `noise_z` paired standard errors (and
    `min_delta`); the best kept value of each kind is combined and the combination verified. Empty lists and
    None skip a kind of candidate.
    """

    epochs: int = Field(
        30,
        ge=1,
        json_schema_extra=_cap(MAX_EPOCHS),
        description=(
            "budget of every candidate, the reference included (regularisers need a reference that has had time to "
            "overfit, and augmentation needs epochs to pay off)"
        ),
    )
    augment: list[str] = Field(
        default_factory=lambda: ["crop", "rotate"],
        description=(
            "one candidate with these label- preserving transforms (recipe.data.augment; never hflip for digits or "
            "text)"
        ),
    )
    weight_decay: list[Decay] = Field(
        default_factory=lambda: [0.05, 0.5],
        description="one AdamW candidate per value (decoupled: each step shrinks the weights by lr x this)",
    )
    dropout: list[Fraction] = Field(default_factory=lambda: [0.3], description="one candidate per model.dropout value")
    early_stopping: int | None = Field(
        3,
        ge=1,
        json_schema_extra=_cap(MAX_EPOCHS),
        description=(
            "a candidate stopping when val loss has not improved for this many epochs (restoring the best weights)"
        ),
    )
    smaller_input: float | None = Field(
        0.75, gt=0, lt=1, description="images: a candidate at data.image_size = this x side"
    )
    smaller_batch: float | None = Field(0.5, gt=0, lt=1, description="a candidate at this x data.batch_size")
    init_from: str | None = Field(
        None,
        description=(
            "transfer/pretrain candidate: a local checkpoint or state_dict file, or an MLflow artifact URI (runs:/..., "
            "models:/..., mlflow-artifacts:/...); tensors whose shapes match are loaded. Nothing is downloaded from "
            "anywhere else; None skips the candidate"
        ),
    )
    init: Literal["scratch", "overfit"] = Field(
        "scratch",
        description=(
            "scratch: every candidate starts from the same seeded init (a fair comparison); overfit: candidates with "
            "the overfit model's architecture and input fine-tune its checkpoint"
        ),
    )
    criterion: Literal["loss", "metric"] = Field(
        "loss",
        description=(
            "what a candidate must improve: the val loss (per-sample paired, and the val metric must not get worse "
            "beyond noise), or the val metric (accuracy / MAE) itself"
        ),
    )
    noise_z: float = Field(
        1.0, ge=0, le=100, description='"beyond noise": the gain must exceed this many paired standard errors'
    )
    min_delta: float = Field(
        0.0, ge=0, le=1e6, description="the gain must also exceed this much (in the criterion's units)"
    )


class ParamSpace(_Section):
    """One searched parameter: which config key it sets and the range or choices Optuna samples from.

    ``around`` makes the range relative to the value the previous stage handed on: ``times`` multiplies it by
    ``low`` / ``high`` (the learning rate: 0.1 to 10, a decade each side), ``plus`` adds them (depth: -1 to +1).
    ``switch`` parameters toggle between the handed-on value ("on") and ``off`` (augmentation), and are held
    fixed when the handed-on value already equals ``off``.
    """

    key: str = Field(description="the dotted config key this parameter sets, e.g. optim.lr")
    type: Literal["float", "int", "categorical", "switch"] = Field(
        "float",
        description="float / int: a range from low to high; categorical: one of choices; switch: the "
        "handed-on value or `off`",
    )
    low: float | None = Field(
        None, ge=-1e9, le=1e9, description="lower end of the range (a factor or offset with `around`)"
    )
    high: float | None = Field(
        None, ge=-1e9, le=1e9, description="upper end of the range (a factor or offset with `around`)"
    )
    log: bool = Field(False, description="sample on a log scale (learning rates, weight decay, widths)")
    around: Literal["absolute", "times", "plus"] = Field(
        "absolute", description="absolute: low/high as given; times / plus: relative to the handed-on value"
    )
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

    n_trials: int = Field(
        16,
        ge=1,
        json_schema_extra=_cap(MAX_TRIALS),
        description="trials the study should hold (completed, pruned or failed; "
        "trials of an interrupted run count, so a resumed tune only runs the rest)",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        json_schema_extra=_cap(MAX_SECONDS),
        description="no new trials start after this many seconds of search",
    )
    epochs: int = Field(
        10, ge=1, json_schema_extra=_cap(MAX_EPOCHS), description="training epochs of every trial and every retraining"
    )
    sampler: Literal["qmc", "tpe", "random", "gp"] = Field(
        "qmc", description="qmc: scrambled Sobol quasi-random points (exploration); tpe, random, gp: Optuna's"
    )
    pruner: Literal["none", "median", "hyperband"] = Field(
        "none", description="stop unpromising trials early on their per-epoch validation loss"
    )
    parallel: int = Field(
        1,
        ge=1,
        json_schema_extra=_cap(MAX_PARALLEL),
        description="trials run at once; each gets cores // parallel torch threads",
    )
    dask_address: str | None = Field(
        None,
        description="tcp://HOST:PORT of an existing Dask scheduler: trials "
        "run there (through prefect-dask) instead of a local process pool",
    )
    wait: bool = Field(
        True,
        description="when another run is tuning the same study: wait for it (saying so), or, false, stop at once "
        "(exit code 5; `flows run --no-wait`). One tune per study: two would reap each other's trials",
    )
    storage: str | None = Field(
        None,
        description="the Optuna storage: an RDB URL (postgresql://...) or a journal "
        "file path; None: $RECIPE_OPTUNA_STORAGE, else <MLflow store folder>/optuna/<study>.log",
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        max_length=32,
        description="seeds the best and the "
        "handed-on config are each retrained with after the search (seed noise); the checkpoint "
        "handed on is the one of the config's own seed when listed, else of the first",
    )
    noise_z: float = Field(
        1.0,
        ge=0,
        le=100,
        description="the best must beat the handed-on config by this many standard "
        "errors (seed and validation-sampling noise combined)",
    )
    space: dict[str, ParamSpace | None] = Field(
        default_factory=_default_space,
        description="parameter name -> what it "
        "sets and its range; entries merge over the defaults; set a name to "
        "null to hold it fixed",
    )
    plots: bool = Field(True, description="draw and log the history, importance and slice figures")

    @field_validator("storage", "dask_address")
    @classmethod
    def _conceal_password(cls, v: str | None) -> str | None:
        """A password in the URL is kept out of the config (and so out of params, hashes and Prefect's
        parameters): the config holds ``user:***@``, :func:`recipe.secrets.reveal` gives the real URL back where
        it is opened."""
        from recipe.secrets import conceal

        return conceal(v)

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


class SqueezeConfig(_Section):
    """Stage 6, squeeze out the juice: ensembles, weight averaging, longer training and distillation, compared on
    the validation split with the paired noise rule; the champion is registered and the test split read once.

    Sources: the recipe's "ensembles ... a pretty much guaranteed way to gain 2%", "distilling your ensemble into
    a network using dark knowledge" (Hinton et al., 2015) and "leave it training"; seed 001's snapshot ensembles
    and Polyak averaging; SWA (Izmailov et al., 2018).
    """

    epochs: int | None = Field(
        None,
        ge=1,
        json_schema_extra=_cap(MAX_EPOCHS),
        description="budget of every candidate; None: the handed-on budget.epochs",
    )
    members: int = Field(
        5,
        ge=1,
        json_schema_extra=_cap(MAX_MEMBERS),
        description="ensemble members, trained with seeds seed .. seed+members-1 through "
        "the trial map (the recipe: ensembles top out around 5); 1: no ensemble",
    )
    longer: float = Field(
        3.0,
        ge=1,
        le=100,
        description="leave it training: a run of this many times the budget with a "
        "cosine decay, the best-validation weights kept; 1 skips it",
    )
    swa_start: float = Field(
        0.75, gt=0, lt=1, description="SWA averages the end-of-epoch weights from this fraction of the budget on"
    )
    ema_decay: float = Field(0.99, gt=0, lt=1, description="Polyak averaging: per-step decay of the weights' EMA")
    snapshots: int = Field(
        5,
        ge=0,
        le=100,
        description="snapshot ensemble: cosine warm restarts with this many cycles in "
        "the budget, one member per cycle (Huang et al., 2017); 0 or 1 skips it",
    )
    distill: bool = Field(
        True, description="train a student of the member architecture on the ensemble's softened outputs"
    )
    temperature: float = Field(
        4.0, gt=0, le=100, description="distillation temperature T (the soft term is scaled by T²)"
    )
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the soft (teacher) term in the student's loss")
    ensemble_selection: int = Field(
        25,
        ge=0,
        le=1000,
        description="one more candidate, 'weighted': the other candidates blended by greedy forward selection "
        "with replacement on the val loss for this many rounds (Caruana et al. 2004, AutoGluon's WeightedEnsemble; "
        "the blend's networks fit max_params); 0 skips it",
    )
    ensemble_selection_init: int = Field(
        25,
        ge=0,
        le=1000,
        description="ensemble selection starts from the ensemble counted this many times (Caruana et al.'s sorted "
        "initialisation, with the recipe's prior that ensembles are a gain): the greedy rounds can then move at most "
        "rounds/(rounds+this) of the weight away from it; 0: plain greedy selection from nothing",
    )
    rule: Literal[
        "weighted",
        "weighted_first",
        "ensemble_first",
        "student_if_close",
        "best_val_metric",
        "best_val_loss",
        "cheapest_within_noise",
    ] = Field(
        "weighted",
        description="how the champion is chosen on validation (recipe.squeeze.selection): weighted, the weighted "
        "ensemble of ensemble_selection (the lowest test regret in bench/selection_regret.py); weighted_first, it "
        "unless another candidate beats its val metric beyond noise; ensemble_first, the ensemble unless another "
        "candidate beats its val metric beyond noise; student_if_close, then the distilled student when the "
        "ensemble does not beat it beyond noise; best_val_metric (val loss breaks ties); best_val_loss; "
        "cheapest_within_noise, the cheapest candidate the best on val `criterion` does not beat beyond noise "
        "(the rule before #24)",
    )
    max_params: int | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        description="cost limit: candidates with more parameters (all their networks together) are not "
        "eligible as champion, and the choice says which were left out (the student and single networks keep "
        "one network's size); None: no limit",
    )
    criterion: Literal["loss", "metric"] = Field(
        "loss",
        description="what the best single network, the promotion over the current champion and the "
        "cheapest_within_noise rule compare: the val loss (paired per sample) or the val metric",
    )
    noise_z: float = Field(
        1.0,
        ge=0,
        le=100,
        description="a costlier candidate is chosen over a cheaper one only when it "
        "is better by more than this many paired standard errors",
    )
    classical: bool = Field(
        True,
        description="fit the tuned classical baseline (RBF SVM for images, gradient-"
        "boosted trees for tables) for the test table",
    )
    bootstrap: int = Field(2000, ge=100, le=1_000_000, description="bootstrap resamples for the test intervals")
    registry: bool = Field(
        True,
        description="register the champion in the MLflow model registry under the "
        "recipe's name with the alias `champion`",
    )


class StagesConfig(_Section):
    """Per-stage settings of the six stages of Karpathy's recipe (seeds/004), in the order they run."""

    inspect: InspectConfig = Field(default_factory=InspectConfig, description="stage 1, become one with the data")
    baselines: BaselinesConfig = Field(
        default_factory=BaselinesConfig, description="stage 2, the end-to-end skeleton and dumb baselines"
    )
    overfit: OverfitConfig = Field(
        default_factory=OverfitConfig, description="stage 3, a model big enough to fit the training set"
    )
    regularize: RegularizeConfig = Field(
        default_factory=RegularizeConfig, description="stage 4, trade training fit for validation performance"
    )
    tune: TuneConfig = Field(default_factory=TuneConfig, description="stage 5, quasi-random search over what matters")
    squeeze: SqueezeConfig = Field(
        default_factory=SqueezeConfig, description="stage 6, ensembles, averaging, distillation, the test split once"
    )


class RecipeConfig(_Section):
    """Everything a recipe run needs. Load with :func:`load_config`."""

    name: str = Field(
        None,  # type: ignore[assignment]  # filled from the data before validation (_name_from_data)
        description="the recipe's name: its MLflow experiment and the registered model's name (a model belongs to "
        "one data set); None: derived from the data (the CSV's or the folder's name, the torchvision or embedded "
        "data set's name, digits)",
    )
    description: str = Field("", description="free text shown with the recipe")
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of model init, data order, augmentation and dropout (one seed, one result)",
    )
    data: DataConfig = Field(default_factory=DataConfig, description="where the data comes from and how it is batched")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the network to build")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="the optimiser")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="the learning-rate schedule")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="how much training a stage may spend")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="trainer behaviour shared by every stage")
    stages: StagesConfig = Field(default_factory=StagesConfig, description="settings of each stage")

    @model_validator(mode="before")
    @classmethod
    def _name_from_data(cls, values: Any) -> Any:
        """A config without a name takes :func:`name_for_data` of its data section."""
        if isinstance(values, dict) and values.get("name") is None:
            data = values.get("data")
            data = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
            values = {**values, "name": name_for_data(data if isinstance(data, dict) else {})}
        return values

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be blank (it names the MLflow experiment)")
        # It also names the experiment's artifact folder inside the store: no path separators, no "..".
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v):
            raise ValueError(
                "name names the MLflow experiment and its artifact folder: use 1-100 letters, digits, '_', '-' "
                "or '.', starting with a letter or digit (e.g. name=my-recipe)"
            )
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
        items = list(overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides))
        keys = {key for key, _ in items}
        if "name" not in keys and self.name == name_for_data(data["data"]):
            data["name"] = None  # a derived name follows the data: derived again from the changed data section
        for key, value in items:
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")


def name_for_data(data: dict[str, Any]) -> str:
    """The default recipe name of a data section (a dict as in ``DataConfig``): the CSV file's stem or the image
    folder's name (``root``), else the torchvision or embedded table's ``name``, else the source (``digits``);
    characters a name cannot hold become ``-`` and it is cut to 100 characters. So two data sets in one MLflow
    store get two experiments and two registered models (two CSVs named alike in different folders share one;
    set ``name`` to part them)."""
    source = str(data.get("source") or "digits")
    root, named = data.get("root"), data.get("name")
    raw = ""
    if root and source in ("csv", "imagefolder"):
        path = Path(str(root)).expanduser()
        raw = path.stem if source == "csv" else (path.name or path.resolve().name)
    raw = raw or str(named or "") or source
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-_.")[:100].strip("-_.")
    return clean or source


# --- loading ---------------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("recipe.presets").iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of the packaged preset ``name`` (``recipe/presets/<name>.yaml``).

    Raises ConfigError naming the known presets when there is no such preset, or when ``name`` is a path
    (``/``, ``..``: a preset is a name, files come with ``--config``; recipe.policy)."""
    from recipe.policy import PolicyError, check_preset_name

    try:
        check_preset_name(name)
    except PolicyError as e:
        raise ConfigError(str(e)) from None
    path = Path(str(resources.files("recipe.presets").joinpath(f"{name}.yaml")))
    if not path.is_file():
        names = preset_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; the presets are: {', '.join(names)}")
    return path


def load_config(
    preset: str | None = None, path: str | Path | None = None, overrides: list[str] | None = None
) -> RecipeConfig:
    """Build a RecipeConfig from a preset name or a YAML file (default: the digits preset), then overrides."""
    if preset is not None and path:
        raise ConfigError("give a preset or a config file, not both")
    # an empty name (`--preset "$UNSET"`) is an unknown preset, not the default: it ran the whole epoch-sized recipe
    source = Path(path) if path else preset_path("digits" if preset is None else preset)
    if not source.is_file():
        raise ConfigError(f"config file {str(source)!r} does not exist; check the path or use --preset")
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if data is None:  # an empty file would silently run the defaults
        raise ConfigError(
            f"{source} is empty; write the sections to change (e.g. `data: {{source: csv}}`), "
            f"or use --preset digits for the defaults"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    given: dict[str, str] = {}
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        given[key] = text.strip()
    return _validate(data, source=str(source), overrides=given)


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
            # a close match is the fix; the whole list (19 keys under stages.overfit) only when there is none
            hint = (
                f"; did you mean {'.'.join([*parts[:i], close[0]])!r}?" if close else f" (known: {', '.join(fields)})"
            )
            raise ConfigError(f"unknown config key {key!r}: {where} has no {part!r}{hint}")
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


def _override_for(loc: str, overrides: dict[str, str]) -> str | None:
    """The ``--set`` text behind the error at ``loc`` (dotted): an override of that key, of a section holding it,
    or of a key inside it (a section-level rule); None when the value came from the file."""
    for key, text in overrides.items():
        if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
            return text
    return None


def _validate(data: dict[str, Any], source: str, overrides: dict[str, str] | None = None) -> RecipeConfig:
    """``data`` as a RecipeConfig. Raises ConfigError listing every invalid key, each attributed to the ``--set``
    that gave it (``overrides``: key -> the ``key=value`` text) or else to ``source``."""
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as e:
        lines = []
        from_set = 0
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            given = _override_for(loc, overrides or {})
            from_set += given is not None
            origin = f" [from --set {given}]" if given else ""
            if err["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key{_suggest(err['loc'])}{origin}")
            else:  # a section-level rule's input is the whole section: naming the value helps only for a value
                msg = err["msg"].removeprefix("Value error, ")
                got = err.get("input")
                if isinstance(cause := (err.get("ctx") or {}).get("error"), CapError):
                    got = cause.value  # the number as parsed: 1e9 -> 1000000000
                allowed = numeric_range(err["loc"])
                lines.append(
                    f"  {loc}: {msg}"
                    + ("" if isinstance(got, dict) else f" (got {got!r})")
                    + (f"; allowed: {allowed}" if allowed else "")
                    + origin
                )
        if from_set == len(lines):
            head = f"invalid --set override{'s' if from_set > 1 else ''} (on top of {source}):"
        elif from_set:
            head = f"invalid config ({source} with the --set overrides marked):"
        else:
            head = f"invalid config from {source}:"
        raise ConfigError(head + "\n" + "\n".join(lines)) from None


def numeric_bounds(loc: tuple[Any, ...] | list[Any]) -> dict[str, float] | None:
    """The bounds (``ge`` / ``gt`` / ``le`` / ``lt`` -> value) of the number setting at ``loc`` (a pydantic error
    location, e.g. ``("optim", "betas", 1)`` or ``("stages", "tune", "space", "lr", "low")``), or None when ``loc``
    is not a number setting of :class:`RecipeConfig`."""
    schema: type[BaseModel] | None = RecipeConfig
    annotation: Any = None
    metadata: list[Any] = []
    cap: float | None = None
    for part in loc:
        if schema is not None:
            info = schema.model_fields.get(str(part))
            if info is None:
                return None
            annotation, metadata, cap = info.annotation, list(info.metadata), _cap_of(info)
        else:  # inside a container: step into its element (list item, tuple slot, dict value)
            (annotation, metadata), cap = _element(annotation, part), None
        schema = _model_in(annotation)
    if annotation is None or schema is not None or not _numeric_kinds(annotation):
        return None
    bounds = {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None}
    return {**bounds, "le": cap} if cap is not None else bounds


def resource_caps() -> dict[str, float]:
    """Every setting of :class:`RecipeConfig` whose upper bound is a liftable resource cap -> that cap (dotted key
    paths, e.g. ``{"data.image_size": 4096, "model.width": 4096, ...}``); the README's table of caps."""

    def walk(schema: type[BaseModel], prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, info in schema.model_fields.items():
            model = _model_in(info.annotation)
            if model is not None:
                out.update(walk(model, f"{prefix}{name}."))
            elif (cap := _cap_of(info)) is not None:
                out[f"{prefix}{name}"] = cap
        return out

    return walk(RecipeConfig, "")


def check_caps(cfg: RecipeConfig, source: str = "the run's parameters") -> None:
    """Raise :class:`ConfigError` naming every setting of ``cfg`` above its resource cap, unless this process may
    lift caps. A deployment run calls it after marking itself untrusted, because Prefect validates the run's
    ``config`` parameter before the flow's code starts (in a worker that may have ``RECIPE_LIFT_CAPS=1`` set)."""
    flat = cfg.flat()
    lines = []
    for key, cap in resource_caps().items():
        value = flat.get(key)
        try:
            if value is not None:
                _check_cap(value, cap)
        except ValueError as e:
            lines.append(f"  {key}: {e} (got {value!r}); allowed: {numeric_range(key.split('.'))}")
    if lines:
        raise ConfigError(f"invalid config from {source}:\n" + "\n".join(lines))


def numeric_range(loc: tuple[Any, ...] | list[Any]) -> str:
    """``numeric_bounds`` as text for a message, e.g. ``"4 <= data.image_size <= 4096"``; "" when unbounded."""
    b = numeric_bounds(loc)
    if not b:
        return ""
    key = ".".join(str(p) for p in loc)
    low = f"{_num(b['ge'])} <= " if "ge" in b else f"{_num(b['gt'])} < " if "gt" in b else ""
    high = f" <= {_num(b['le'])}" if "le" in b else f" < {_num(b['lt'])}" if "lt" in b else ""
    return f"{low}{key}{high}"


def _num(x: float) -> str:
    """A bound as written: integers in full (4294967295), other numbers short (1e-08, 0.5)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if type(None) in get_args(annotation) and len(args) == 1 else annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    a = _strip_optional(annotation)
    return a if isinstance(a, type) and issubclass(a, BaseModel) else None


def _element(annotation: Any, part: Any) -> tuple[Any, list[Any]]:
    """The annotation and constraint metadata of item ``part`` of a list / tuple / dict annotation."""
    container = _strip_optional(annotation)
    args = get_args(container)
    origin = getattr(container, "__origin__", None)
    if origin is tuple and args and isinstance(part, int) and part < len(args):
        item = args[part]
    elif origin is dict and len(args) == 2:
        item = args[1]
    elif args:
        item = args[0]
    else:
        return None, []
    if getattr(item, "__metadata__", None):  # Annotated[float, Field(ge=0, lt=1)]
        inner = get_args(item)[0]
        return inner, [c for f in item.__metadata__ for c in getattr(f, "metadata", [f])]
    return item, []


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
    """Nested dict -> ``{"a.b.c": leaf}``, dotted from ``prefix``; an empty dict is kept as a leaf (MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# Settings that change how a run goes, not what it computes: they are left out of the config hash, so changing
# them reuses earlier results (recipe.reuse) and resumes the same tune study. The trials' parallelism and where
# they run (a Dask scheduler, the study's storage), whether a run waits for a busy study, the progress bar, the
# free-text description.
EXECUTION_ONLY = (
    "description",
    "budget.minutes",  # how sizes are chosen; the sizes a budgeted stage used go into its reuse key (recipe.budget)
    "trainer.progress",
    "stages.tune.parallel",
    "stages.tune.dask_address",
    "stages.tune.storage",
    "stages.tune.wait",
)


def result_settings(cfg: RecipeConfig | dict[str, Any]) -> dict[str, Any]:
    """The config as a nested dict without the :data:`EXECUTION_ONLY` settings (a copy; ``cfg`` is unchanged)."""
    data = json.loads(json.dumps(cfg.to_dict() if isinstance(cfg, RecipeConfig) else cfg, default=str))
    for key in EXECUTION_ONLY:
        *path, leaf = key.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def config_hash(cfg: RecipeConfig | dict[str, Any]) -> str:
    """12 hex digits of sha256 over the canonical JSON of :func:`result_settings`: independent of key order, of
    how it was written and of the :data:`EXECUTION_ONLY` settings."""
    data = result_settings(cfg)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- documentation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDoc:
    """One setting as ``flows config --explain`` lists it."""

    key: str  # dotted path, e.g. "optim.lr"
    type: str  # the annotation as written, e.g. "float", "int | None", "Literal['adam', 'sgd']"
    default: Any  # JSON-able default value
    description: str  # meaning, unit, and what None / special values do


def explain(schema: type[BaseModel] | None = None, prefix: str = "") -> list[FieldDoc]:
    """Every leaf setting of ``schema`` (default :class:`RecipeConfig`), in declaration order, with its type,
    default and the ``Field(description=...)`` that the JSON schema and the Prefect UI form also show."""
    schema = schema or RecipeConfig
    out: list[FieldDoc] = []
    for name, info in schema.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += explain(ann, f"{prefix}{name}.")
            continue
        default = info.get_default(call_default_factory=True)
        default = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
        typ = getattr(ann, "__name__", None) if isinstance(ann, type) else None
        text = typ or str(ann).replace("typing.", "").replace("pathlib.", "")
        out.append(FieldDoc(f"{prefix}{name}", text, default, info.description or ""))
    return out
