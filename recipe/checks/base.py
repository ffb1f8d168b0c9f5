"""What a check function returns, and the small statistics the data checks share.

A check function takes plain data (a manifest, a few settings) and returns :class:`Finding` records: the
:class:`~recipe.report.Check` the user reads, every offender behind it (for the ``inspect/problems.json``
artifact: the check's ``observed`` text names only the first few), and the metrics it measured. No MLflow,
no Great Expectations, no plotting here, so every check is unit-testable on a hand-made DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recipe.data.errors import inline
from recipe.report import Check, Verdict

MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal data
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi/2): the same for the mean absolute deviation (fallback when MAD = 0)


@dataclass(frozen=True)
class Finding:
    """One check's verdict plus everything behind it."""

    check: Check
    items: list[dict[str, Any]] = field(default_factory=list)  # every offender, JSON-able
    metrics: dict[str, float] = field(default_factory=dict)  # "data/..." summary statistics

    @property
    def name(self) -> str:
        """The check's name ("duplicates", "loss_at_init", ...)."""
        return self.check.name

    @property
    def verdict(self) -> Verdict:
        """The check's verdict (PASS, WARN or FAIL)."""
        return self.check.verdict


@dataclass
class DataReport:
    """All findings about one manifest, in the order they should be read."""

    findings: list[Finding]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def checks(self) -> list[Check]:
        """The findings' checks, in reading order."""
        return [f.check for f in self.findings]

    def __getitem__(self, name: str) -> Finding:
        for f in self.findings:
            if f.name == name:
                return f
        raise KeyError(f"no check named {name!r}; checks: {', '.join(f.name for f in self.findings)}")

    def __contains__(self, name: str) -> bool:
        return any(f.name == name for f in self.findings)

    def problems(self) -> dict[str, Any]:
        """check name -> verdict, observed text and the full list of offenders, for checks that have any."""
        return {
            f.name: {"verdict": f.verdict.value, "observed": f.check.observed, "count": len(f.items), "items": f.items}
            for f in self.findings
            if f.items
        }


def finding(
    name: str,
    hypothesis: str,
    observed: str | float,
    expected: str | float,
    verdict: Verdict,
    advice: str = "",
    items: list[dict[str, Any]] | None = None,
    metrics: dict[str, float] | None = None,
) -> Finding:
    """A Finding whose advice is dropped when it passes (advice is for what needs looking at)."""
    check = Check(name, hypothesis, observed, expected, verdict, advice if verdict is not Verdict.PASS else "")
    return Finding(check, items or [], metrics or {})


@dataclass(frozen=True)
class CheckBuilder:
    """One check's name and hypothesis, given once; calling it gives the Finding for one outcome:

        check = CheckBuilder("fixed_seed", hypothesis)
        return check(FAIL, observed, expected, ADVICE["fixed_seed.not_reproducible"], metrics=metrics)

    ``hypothesis=`` overrides the hypothesis for one outcome (a skipped check states a shorter one)."""

    name: str
    hypothesis: str

    def __call__(
        self,
        verdict: Verdict,
        observed: str | float,
        expected: str | float,
        advice: str = "",
        *,
        hypothesis: str | None = None,
        metrics: dict[str, float] | None = None,
        items: list[dict[str, Any]] | None = None,
    ) -> Finding:
        return finding(
            self.name,
            self.hypothesis if hypothesis is None else hypothesis,
            observed,
            expected,
            verdict,
            advice,
            items=items,
            metrics=metrics,
        )


def names(items: Iterable[object], cap: int) -> str:
    """``a, b, c, ... and 7 more``: a capped inline listing for a check's observed text."""
    items = list(items)
    if cap <= 0:
        return f"{len(items)} items" if items else ""
    return inline(items, cap)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``3 files``; ``many`` for an irregular plural (``plural(2, "index", "indices")``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def fmt(v: float) -> str:
    """``v`` to 4 significant digits (``nan`` and ``inf`` as such), for observed texts."""
    return f"{v:.4g}"


@dataclass(frozen=True)
class Bounds:
    """``median ± k · scale``: the robust range of a property; values outside it are outliers."""

    median: float
    scale: float  # a robust standard deviation: 1.4826 · MAD (or 1.2533 · mean |x - median| when MAD = 0)
    k: float
    lo: float
    hi: float

    def z(self, x: np.ndarray | pd.Series) -> np.ndarray:
        """Robust z-scores of ``x`` (same shape): (x - median) / scale; ±inf off the median when scale is 0."""
        x = np.asarray(x, dtype=np.float64)
        if self.scale == 0:
            return np.where(x == self.median, 0.0, np.inf * np.sign(x - self.median))
        return (x - self.median) / self.scale

    def outside(self, x: np.ndarray | pd.Series) -> np.ndarray:
        """A boolean mask, same shape as ``x``: below ``lo`` or above ``hi`` (NaN is never outside)."""
        x = np.asarray(x, dtype=np.float64)
        return (x < self.lo) | (x > self.hi)


def robust_bounds(values: np.ndarray | pd.Series, k: float) -> Bounds | None:
    """Median ± k robust standard deviations of the finite values (None when there are none).

    MAD ignores up to half the data being odd, so a few corrupt samples cannot widen the range that is
    meant to catch them. When more than half the values are equal, MAD is 0; the mean absolute deviation
    then still measures the spread of the rest (if every value is equal, nothing is an outlier).
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    med = float(np.median(x))
    dev = np.abs(x - med)
    scale = float(np.median(dev)) * MAD_TO_SIGMA
    if scale == 0:
        scale = float(dev.mean()) * MEAN_AD_TO_SIGMA
    return Bounds(med, scale, k, med - k * scale, med + k * scale)


def json_value(v: Any) -> Any:
    """numpy / pandas scalars -> plain JSON values (NaN and NA -> None)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return None
        return v if np.isfinite(v) else str(v)  # JSON has no inf; keep it visible as "inf" / "-inf"
    if isinstance(v, np.bool_):
        return bool(v)
    return v
