"""The manifest as a Great Expectations suite built from the data, validated, and rendered as Data Docs.

The recipe's own checks (:mod:`recipe.checks.data`, :mod:`recipe.checks.tables`) decide the verdicts; this
module states the same hypotheses as GX expectations so they are recorded in a standard, browsable form
(the validation result JSON and Data Docs HTML). The suite is derived from the manifest, not written per
dataset: the class set, the majority shape, the robust pixel-statistic bounds, the train-split feature
ranges are all measured first and then expected.

Planning (:func:`plan_suite`, :func:`gx_frames`) is plain pandas, testable without GX. Only
:func:`validate` imports Great Expectations (about 4 s), inside the function, so importing ``recipe``
stays fast.

Each expectation carries ``meta.check``: the recipe check it backs; and a severity: ``critical`` where
that check FAILs, ``warning`` where it WARNs. The ``gx_suite`` check FAILs when a critical expectation
fails, WARNs when only warning ones do.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recipe.report import Verdict
from recipe.tasks import task_for

from .base import Finding, finding, names, plural
from .data import SPLITS, has_files, is_image, property_bounds, property_values, usable
from .tables import CHANCE_ALPHA, FAR_RANGES, chance_outside, train_ranges

if TYPE_CHECKING:
    from recipe.config import RecipeConfig
    from recipe.data import Manifest

SUITE_PREFIX = "inspect"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20, "unexpected_index_column_names": ["id"]}
_DOCS_SITE = "recipe"


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, described in plain data: the GX class name, its keyword arguments, the recipe
    check it backs, its severity, and which batch (``samples``: the manifest; ``features``: CSV features)
    it runs on. ``train_only`` restricts it to the train split's rows."""

    type: str  # a class in great_expectations.expectations, e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict[str, Any]
    check: str
    severity: str = "critical"  # "critical" (the check FAILs) | "warning" (the check WARNs)
    batch: str = "samples"
    train_only: bool = False


@dataclass
class GXOutcome:
    """What a GX validation gave: the JSON result, the failed expectations, the Data Docs, the verdict."""

    result: dict[str, Any]  # {"success", "statistics", "validations": [per-batch GX results]}
    failed: list[dict[str, Any]]  # one entry per failed expectation: type, column, check, severity, counts
    n_expectations: int
    docs_dir: Path | None  # the Data Docs site (index.html inside), None if not built
    seconds: float
    finding: Finding = field(init=False)

    def __post_init__(self) -> None:
        self.finding = summarise(self.failed, self.n_expectations)


# --- planning (no GX import) --------------------------------------------------------------------------------


def gx_frames(m: Manifest) -> dict[str, pd.DataFrame]:
    """The batches GX validates: the manifest's columns plus derived ones (``samples``), and for CSV data
    the encoded features with id and split (``features``).

    Derived columns: ``splits_sharing_content`` / ``labels_sharing_content`` (how many distinct splits /
    labels hold a sample with this content; null for unreadable rows), ``class_count`` (readable samples
    of this row's class), and ``pixels`` / ``aspect`` when image sizes vary.
    """
    df = m.df
    keep = [
        c
        for c in ("id", "path", "label", "split", "height", "width", "channels", "mean", "std", "hash", "readable")
        if c in df.columns
    ]
    if not has_files(m):
        keep.remove("path")
    if not is_image(m):
        keep = [c for c in keep if c not in ("height", "width", "channels", "mean", "std")]
    s = df[keep].copy()
    ok = df["readable"].astype(bool) & (df["hash"].astype(str) != "")
    s["hash"] = df["hash"].where(ok, None)
    shared = pd.DataFrame({"hash": df["hash"], "split": df["split"], "label": df["label"].astype(str)})[ok]
    shared = shared.groupby("hash").nunique()
    s["splits_sharing_content"] = pd.array(s["hash"].map(shared["split"]), dtype="Int64")
    # missing labels are not counted (no_nulls reports them), so a lone unlabelled sample has 1, not 0
    s["labels_sharing_content"] = pd.array(s["hash"].map(shared["label"].clip(lower=1)), dtype="Int64")
    if task_for(m).classifier:
        counts = usable(m)["label"].astype(str).value_counts()
        count = df["label"].astype(str).map(counts).fillna(0).where(df["label"].notna(), None)
        s["class_count"] = pd.array(count, dtype="Int64")
    if is_image(m):
        values = property_values(m)
        for p in ("pixels", "aspect"):
            if p in values:
                s[p] = values[p].reindex(s.index)
    frames = {"samples": s.reset_index(drop=True)}
    if m.features is not None:
        f = m.features.copy()
        f = f.replace([np.inf, -np.inf], np.nan)  # GX's "not null" should also catch the infinities
        f.insert(0, "split", df["split"].to_numpy())
        f.insert(0, "id", df["id"].to_numpy())
        frames["features"] = f.reset_index(drop=True)
    return frames


def plan_suite(m: Manifest, cfg: RecipeConfig) -> list[ExpectationSpec]:
    """Expectations derived from the data (see the module docstring for how severities map to verdicts)."""
    ic = cfg.stages.inspect
    E = ExpectationSpec
    specs: list[ExpectationSpec] = [
        E("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(SPLITS)}, "split_sizes"),
    ]
    needed = list(SPLITS) if (cfg.data.split.test > 0 or m.source == "torchvision") else ["train", "val"]
    specs.append(E("ExpectColumnDistinctValuesToContainSet", {"column": "split", "value_set": needed}, "split_sizes"))
    for col in ["id", "label", "split"] + (["path"] if has_files(m) else []):
        specs.append(E("ExpectColumnValuesToNotBeNull", {"column": col}, "no_nulls"))
    if is_image(m):
        specs.append(E("ExpectColumnValuesToBeInSet", {"column": "readable", "value_set": [True]}, "files_readable"))
    if task_for(m).classifier:
        specs += [
            E("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": list(m.classes)}, "labels_in_class_set"),
            E("ExpectColumnUniqueValueCountToBeBetween", {"column": "label", "min_value": 2}, "at_least_two_classes"),
        ]
        counts = usable(m)["label"].astype(str).value_counts()
        if len(counts):
            floor = float(counts.max()) / ic.imbalance_warn_ratio
            specs.append(
                E(
                    "ExpectColumnValuesToBeBetween",
                    {"column": "class_count", "min_value": floor},
                    "class_balance",
                    "warning",
                )
            )
    if is_image(m):
        ok = usable(m)
        if len(ok):
            if not m.image_size:
                h0, w0 = ok.groupby(["height", "width"]).size().sort_values(ascending=False, kind="stable").index[0]
                specs += [
                    E("ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [int(h0)]}, "consistent_shapes"),
                    E("ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [int(w0)]}, "consistent_shapes"),
                ]
            c0 = ok["channels"].value_counts().index[0]
            specs.append(
                E(
                    "ExpectColumnValuesToBeInSet",
                    {"column": "channels", "value_set": [int(c0)]},
                    "consistent_shapes",
                    "warning",
                )
            )
        for p, b in property_bounds(m, ic.outlier_mad).items():
            specs.append(
                E(
                    "ExpectColumnValuesToBeBetween",
                    {"column": p, "min_value": b.lo, "max_value": b.hi},
                    "pixel_stats_outliers",
                    "warning",
                )
            )
    specs += [
        E(
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["split", "hash"], "ignore_row_if": "any_value_is_missing"},
            "duplicates_within_split",
            "warning",
        ),
        E(
            "ExpectColumnValuesToBeInSet",
            {"column": "splits_sharing_content", "value_set": [1]},
            "no_leakage_across_splits",
        ),
    ]
    if task_for(m).classifier:
        specs.append(
            E(
                "ExpectColumnValuesToBeInSet",
                {"column": "labels_sharing_content", "value_set": [1]},
                "duplicate_labels_agree",
                "warning",
            )
        )
    if m.features is not None:
        specs += _feature_specs(m, ic.range_margin)
    return specs


def _feature_specs(m: Manifest, margin: float) -> list[ExpectationSpec]:
    E = ExpectationSpec
    cols = list(m.features.columns)
    specs = [
        E(
            "ExpectTableColumnsToMatchSet",
            {"column_set": ["id", "split", *cols, *m.bad_columns], "exact_match": True},
            "feature_types",
            batch="features",
        )
    ]
    ranges = train_ranges(m)
    train = (m.df["split"] == "train").to_numpy()
    held = int((~train & m.df["readable"].astype(bool).to_numpy()).sum())
    bound = chance_outside(int(train.sum()), held, CHANCE_ALPHA / max(len(cols), 1))
    mostly = max(1e-6, 1 - bound / max(len(m.df), 1))  # the chance allowance of the table checks, as a fraction
    for c in cols:
        specs.append(E("ExpectColumnValuesToNotBeNull", {"column": c}, "feature_nulls", "warning", "features"))
        lo, hi = ranges.loc[c, "min"], ranges.loc[c, "max"]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        if hi > lo:  # a value this far out is no chance event (feature_ranges)
            pad = FAR_RANGES * (hi - lo)
            specs.append(
                E(
                    "ExpectColumnValuesToBeBetween",
                    {"column": c, "min_value": float(lo - pad), "max_value": float(hi + pad)},
                    "feature_ranges",
                    "warning",
                    "features",
                )
            )
        else:  # constant in train: other values in val/test only as often as chance allows (constant_features)
            specs.append(
                E(
                    "ExpectColumnValuesToBeBetween",
                    {"column": c, "min_value": float(lo), "max_value": float(hi), "mostly": mostly},
                    "constant_features",
                    "warning",
                    "features",
                )
            )
    if not task_for(m).classifier:
        y = usable(m)
        ty = y.loc[y["split"] == "train", "label"].astype(np.float64)
        ty = ty[np.isfinite(ty)]
        if len(ty):
            lo, hi = float(ty.min()), float(ty.max())
            span = hi - lo
            specs.append(
                E(
                    "ExpectColumnValuesToBeBetween",
                    {"column": "label", "min_value": lo - margin * span, "max_value": hi + margin * span},
                    "target_values",
                    "warning",
                )
            )
    return specs


# --- running (imports GX) -----------------------------------------------------------------------------------


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # GX reads this; no usage statistics leave the machine
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites[_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=sites,
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def validate(m: Manifest, cfg: RecipeConfig, docs_dir: Path | None = None) -> GXOutcome:
    """Build the suite from the data, validate the manifest with a GX Checkpoint, and (with ``docs_dir``)
    render Data Docs there (``docs_dir/index.html``)."""
    t0 = time.perf_counter()
    _quiet_gx()
    specs = plan_suite(m, cfg)
    frames = gx_frames(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GX's own deprecation chatter; our results do not depend on it
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction
        from great_expectations.expectations.row_conditions import Column

        if docs_dir is not None:
            shutil.rmtree(docs_dir, ignore_errors=True)
            docs_dir.mkdir(parents=True, exist_ok=True)
        context = _context(docs_dir)
        source = context.data_sources.add_pandas("manifest")
        actions = [UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
        runs = []
        for batch in [b for b in ("samples", "features") if b in frames]:
            name = f"{SUITE_PREFIX}.{batch}"
            suite = gx.ExpectationSuite(name=name)
            for spec in (s for s in specs if s.batch == batch):
                kwargs = dict(spec.kwargs)
                if spec.train_only:
                    kwargs["row_condition"] = Column("split") == "train"
                cls = getattr(gx.expectations, spec.type)
                suite.add_expectation(cls(**kwargs, severity=spec.severity, meta={"check": spec.check}))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(
                    name=name,
                    suite=context.suites.add(suite),
                    data=source.add_dataframe_asset(batch).add_batch_definition_whole_dataframe("all"),
                )
            )
            # one checkpoint per batch: a checkpoint passes the same batch parameters to all its definitions
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[definition],
                    result_format=RESULT_FORMAT,
                    actions=actions,
                )
            )
            runs.append(checkpoint.run(batch_parameters={"dataframe": frames[batch]}))
    validations = [r.to_json_dict() for run in runs for r in run.run_results.values()]
    failed = [_failure(r) for v in validations for r in v["results"] if not r["success"]]
    n = sum(len(v["results"]) for v in validations)
    result = {
        "success": all(v["success"] for v in validations),
        "statistics": {"evaluated_expectations": n, "unsuccessful_expectations": len(failed)},
        "validations": validations,
    }
    if docs_dir is not None:
        prune_static(docs_dir)
    return GXOutcome(result, failed, n, docs_dir, time.perf_counter() - t0)


def _failure(r: dict[str, Any]) -> dict[str, Any]:
    """The parts of a failed expectation's result a person needs: what, on which column, how badly, examples."""
    config, res = r["expectation_config"], r.get("result") or {}
    kwargs = config.get("kwargs", {})
    out = {
        "expectation": config["type"],
        "column": kwargs.get("column") or kwargs.get("column_list"),
        "check": (config.get("meta") or {}).get("check"),
        "severity": str(config.get("severity", "critical")).removeprefix("FailureSeverity.").lower(),
    }
    for key in ("unexpected_count", "element_count", "observed_value"):
        if key in res:
            out[key] = res[key]
    examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list")
    if examples:
        out["examples"] = examples
    exc = r.get("exception_info") or {}
    if exc.get("raised_exception"):
        out["exception"] = exc.get("exception_message")
    return out


def summarise(failed: list[dict[str, Any]], n_expectations: int, cap: int = 10) -> Finding:
    """The ``gx_suite`` check: FAIL if a critical expectation failed, WARN if only warning ones did."""
    critical = [f for f in failed if f["severity"] == "critical"]
    verdict = Verdict.FAIL if critical else Verdict.WARN if failed else Verdict.PASS

    def label(f: dict[str, Any]) -> str:
        col = f["column"] if isinstance(f["column"], str) else "+".join(f["column"] or [])
        count = f": {plural(f['unexpected_count'], 'row')} unexpected" if f.get("unexpected_count") else ""
        return f"{f['expectation']}({col}){count} -> {f['check']}"

    observed = (
        f"{len(failed)} of {plural(n_expectations, 'expectation')} failed: {names(map(label, failed), cap)}"
        if failed
        else f"all {plural(n_expectations, 'expectation')} met"
    )
    return finding(
        "gx_suite",
        "the manifest meets the Great Expectations suite derived from it",
        observed,
        "every expectation met",
        verdict,
        "open gx/data_docs/index.html in this run's artifacts; each failed expectation names (meta.check) the "
        "recipe check that explains it and what to do",
        failed,
        {"data/gx_expectations": n_expectations, "data/gx_failed_expectations": len(failed)},
    )


def prune_static(docs_dir: Path) -> None:
    """Delete the files of ``static/`` that no page or stylesheet refers to (GX ships ~4 MB of images for
    its own tutorials there), so each logged copy of the Data Docs stays small."""
    static = docs_dir / "static"
    if not static.is_dir():
        return
    text = "\n".join(p.read_text(errors="ignore") for p in docs_dir.rglob("*") if p.suffix in (".html", ".css", ".js"))
    used = set(re.findall(r"[\w.-]+\.\w+", text))
    for p in static.rglob("*"):
        if p.is_file() and p.suffix not in (".css", ".js") and p.name not in used:
            p.unlink()
