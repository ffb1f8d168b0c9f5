"""The recipe's verifications as plain functions returning :class:`~recipe.checks.base.Finding` records.

- :mod:`recipe.checks.data`: stage 1's checks on any manifest (readability, labels, shapes, splits,
  balance, outliers, duplicates and leakage); :func:`inspect_manifest` runs all that apply.
- :mod:`recipe.checks.tables`: the CSV-specific ones (feature types, missing values, ranges, target).
- :mod:`recipe.checks.expectations`: the same hypotheses as a Great Expectations suite built from the data
  (imports GX only when validating).
- :mod:`recipe.checks.skeleton`: stage 2's judgements on the numbers its experiments produce (loss at init,
  input-independent baseline, overfit one batch, batch independence, ...).
- :mod:`recipe.checks.audit`: the model before training (parameters that cannot learn, eval mode that is not
  deterministic, batch norm in eval mode while training), on one batch.
- :mod:`recipe.checks.curves`: learning-curve diagnosis and update-to-weight ratios, for every stage.
- :mod:`recipe.checks.ablation`: regularize's keep / drop / combine bookkeeping and the dumb-baseline bar.
"""

from .base import Bounds, DataReport, Finding, robust_bounds
from .data import inspect_manifest

__all__ = ["Bounds", "DataReport", "Finding", "inspect_manifest", "robust_bounds"]
