"""The search space: ``stages.tune.space`` resolved around the config the previous stage handed on.

Each :class:`~recipe.config.ParamSpace` becomes a :class:`Dim` (an Optuna distribution plus the config key it
sets) or is **held fixed** with the reason: a range that collapses to one value, a switch whose handed-on value
is already off (regularize did not keep augmentation), a model knob the model does not have (``linear`` and
``module:callable`` models have no width, depth or dropout), or an entry set to null in the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from recipe.config import ParamSpace, RecipeConfig

MODEL_KNOBS = ("model.width", "model.depth", "model.dropout")


@dataclass(frozen=True)
class Dim:
    """One searched parameter: its name in the study, the config key it sets and its distribution."""

    name: str
    key: str
    distribution: BaseDistribution
    spec: ParamSpace
    base: Any  # the handed-on value

    @property
    def numeric(self) -> bool:
        return isinstance(self.distribution, (FloatDistribution, IntDistribution))

    def describe(self) -> str:
        """One line for the report: ``name (config key): low .. high [(log)]`` or the choices, and the handed-on
        value."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            what = " / ".join(map(str, d.choices))
        else:
            what = f"{d.low:g} .. {d.high:g}" + (" (log)" if d.log else "")
        return f"{self.name} ({self.key}): {what}; handed on {self.base!r}"

    def position(self, value: float) -> float:
        """Where ``value`` sits in the range: 0 at low, 1 at high (in log space for log ranges); nan if not
        numeric."""
        d = self.distribution
        if not self.numeric or d.high == d.low:
            return math.nan
        if d.log:
            return (math.log(value) - math.log(d.low)) / (math.log(d.high) - math.log(d.low))
        return (value - d.low) / (d.high - d.low)


@dataclass(frozen=True)
class Space:
    """The resolved search space: the searched :class:`Dim` entries and the held-fixed parameters with the reason
    (name -> why), around the config the previous stage handed on."""

    dims: list[Dim]
    fixed: dict[str, str]  # name -> why it is held fixed

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for a value of every dimension (its params)."""
        out: dict[str, Any] = {}
        for d in self.dims:
            dist = d.distribution
            if isinstance(dist, FloatDistribution):
                out[d.name] = trial.suggest_float(d.name, dist.low, dist.high, log=dist.log)
            elif isinstance(dist, IntDistribution):
                out[d.name] = trial.suggest_int(d.name, dist.low, dist.high, log=dist.log)
            else:
                out[d.name] = trial.suggest_categorical(d.name, dist.choices)
        return out

    def overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """Dotted config overrides for a trial's params (a switch's "on" is the handed-on value)."""
        out: dict[str, Any] = {}
        for d in self.dims:
            if d.name not in params:
                continue
            v = params[d.name]
            if d.spec.type == "switch":
                v = d.base if v == "on" else d.spec.off
            out[d.key] = v
        return out

    def apply(self, base: RecipeConfig, params: dict[str, Any]) -> RecipeConfig:
        """``base`` with a trial's params set. Weight decay with Adam switches to AdamW (decoupled, as the
        regularize stage does); SGD and RMSprop keep L2."""
        changes = self.overrides(params)
        if changes.get("optim.weight_decay") and base.optim.name == "adam":
            changes.setdefault("optim.name", "adamw")
        return base.with_overrides(changes) if changes else base


def _get(cfg: RecipeConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def resolve(base: RecipeConfig, space: dict[str, ParamSpace | None]) -> Space:
    """The dimensions of ``space`` around ``base`` (see the module docstring).

    Raises:
        ValueError: a key that is not in the config, or a relative range around a value that is not a
            positive number; :class:`recipe.policy.PolicyError` (a ValueError): a key tune may not search.
    """
    from recipe.policy import check_tune_space

    check_tune_space(space)  # here too, where the space is used: a search never sets what to import or read
    dims: list[Dim] = []
    fixed: dict[str, str] = {}
    custom_model = base.model.name == "linear" or ":" in base.model.name
    for name, spec in space.items():
        if spec is None:
            fixed[name] = "set to null in stages.tune.space"
            continue
        try:
            value = _get(base, spec.key)
        except AttributeError:
            raise ValueError(f"stages.tune.space.{name}: {spec.key!r} is not a config key") from None
        if spec.key in MODEL_KNOBS and custom_model:
            fixed[name] = f"model {base.model.name} has no {spec.key}"
            continue
        dist = _distribution(name, spec, value)
        if isinstance(dist, str):
            fixed[name] = dist
            continue
        dims.append(Dim(name, spec.key, dist, spec, value))
    return Space(dims, fixed)


def _distribution(name: str, spec: ParamSpace, value: Any) -> BaseDistribution | str:
    """The distribution, or a string saying why the parameter is held fixed."""
    if spec.type == "switch":
        if value == spec.off or (not value and not spec.off):
            return f"the handed-on value {value!r} is already off"
        return CategoricalDistribution(["on", "off"])
    if spec.type == "categorical":
        choices = [c if c is None or isinstance(c, (bool, int, float, str)) else str(c) for c in spec.choices or []]
        return CategoricalDistribution(choices) if len(choices) > 1 else f"one choice only: {choices}"
    low, high = float(spec.low), float(spec.high)  # the validator makes sure both are set
    if spec.around != "absolute":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or (spec.around == "times" and value <= 0):
            raise ValueError(
                f"stages.tune.space.{name}: a range {spec.around} the handed-on value needs a positive "
                f"number, got {value!r}"
            )
        low, high = (low * value, high * value) if spec.around == "times" else (low + value, high + value)
    if spec.type == "int":
        floor = min(1, int(value)) if isinstance(value, (int, float)) else 1
        lo, hi = max(floor, round(low)), max(floor, round(high))
        if lo >= hi:
            return f"the range rounds to the single value {lo}"
        return IntDistribution(lo, hi, log=spec.log and lo > 0)
    if low >= high:
        return f"the range is the single value {low:g}"
    return FloatDistribution(low, high, log=spec.log)
