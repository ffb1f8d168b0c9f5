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
from .data import (
    SIZE_PROPERTIES,
    SPLITS,
    constant_images,
    has_files,
    is_image,
    leak_bound,
    property_bounds,
    property_values,
    usable,
)
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


E = ExpectationSpec


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

SAMPLE_COLUMNS = ("id", "path", "label", "split", "height", "width", "channels", "mean", "std", "hash", "readable")
IMAGE_COLUMNS = ("height", "width", "channels", "mean", "std")


def gx_frames(m: Manifest) -> dict[str, pd.DataFrame]:
    """The batches GX validates: the manifest's columns plus derived ones (``samples``, one row per sample),
    and for CSV data the encoded features with id and split (``features``, the same rows).

    Derived columns: ``splits_sharing_content`` / ``labels_sharing_content`` (how many distinct splits /
    labels hold a sample with this content; null for unreadable rows), ``class_count`` (readable samples
    of this row's class), and ``pixels`` / ``aspect`` when image sizes vary.
    """
    frames = {"samples": _samples_frame(m).reset_index(drop=True)}
    if m.features is not None:
        f = m.features.copy()
        f = f.replace([np.inf, -np.inf], np.nan)  # GX's "not null" should also catch the infinities
        f.insert(0, "split", m.df["split"].to_numpy())
        f.insert(0, "id", m.df["id"].to_numpy())
        frames["features"] = f.reset_index(drop=True)
    return frames


def _samples_frame(m: Manifest) -> pd.DataFrame:
    """The ``samples`` batch of :func:`gx_frames`, indexed like the manifest."""
    df = m.df
    keep = [c for c in SAMPLE_COLUMNS if c in df.columns]
    if not has_files(m):
        keep.remove("path")
    if not is_image(m):
        keep = [c for c in keep if c not in IMAGE_COLUMNS]
    s = df[keep].copy()
    # images that decode to one value are image_decoding's finding, not shared content
    ok = df["readable"].astype(bool) & (df["hash"].astype(str) != "") & ~constant_images(m)
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
        for p in SIZE_PROPERTIES:
            if p in values:
                s[p] = values[p].reindex(s.index)
    return s


def plan_suite(m: Manifest, cfg: RecipeConfig) -> list[ExpectationSpec]:
    """Expectations derived from the data, in the order of the checks they back (``meta.check``); see the
    module docstring for how severities map to verdicts. Each states one recipe check's rule (the sources are
    in :mod:`recipe.checks.data` and :mod:`recipe.checks.tables`) with an expectation from GX's gallery
    (https://greatexpectations.io/expectations/); bounds are in the checked column's units."""
    ic = cfg.stages.inspect
    needed = list(SPLITS) if (cfg.data.split.test > 0 or m.source == "torchvision") else ["train", "val"]
    specs = _row_specs(m, needed)
    if task_for(m).classifier:
        specs += _class_specs(m, ic.imbalance_warn_ratio)
    if is_image(m):
        specs += _image_specs(m, ic.outlier_mad)
    specs += _duplicate_specs(m)
    if m.features is not None:
        specs += _feature_specs(m, ic.range_margin)
    return specs


def _row_specs(m: Manifest, needed: list[str]) -> list[ExpectationSpec]:
    """split_sizes, no_nulls and files_readable: every row in a known split, and complete."""
    specs = [
        E("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(SPLITS)}, "split_sizes"),
        E("ExpectColumnDistinctValuesToContainSet", {"column": "split", "value_set": needed}, "split_sizes"),
    ]
    for col in ["id", "label", "split"] + (["path"] if has_files(m) else []):
        specs.append(E("ExpectColumnValuesToNotBeNull", {"column": col}, "no_nulls"))
    if is_image(m):
        specs.append(E("ExpectColumnValuesToBeInSet", {"column": "readable", "value_set": [True]}, "files_readable"))
    return specs


def _class_specs(m: Manifest, imbalance_warn_ratio: float) -> list[ExpectationSpec]:
    """labels_in_class_set, at_least_two_classes and class_balance (a floor on each row's class count)."""
    specs = [
        E("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": list(m.classes)}, "labels_in_class_set"),
        E("ExpectColumnUniqueValueCountToBeBetween", {"column": "label", "min_value": 2}, "at_least_two_classes"),
    ]
    counts = usable(m)["label"].astype(str).value_counts()
    if len(counts):
        floor = float(counts.max()) / imbalance_warn_ratio
        specs.append(
            E(
                "ExpectColumnValuesToBeBetween",
                {"column": "class_count", "min_value": floor},
                "class_balance",
                "warning",
            )
        )
    return specs


def _image_specs(m: Manifest, outlier_mad: float) -> list[ExpectationSpec]:
    """consistent_shapes (the majority height, width and channel count) and pixel_stats_outliers (the
    robust bounds of each property)."""
    specs = []
    ok = usable(m)
    if len(ok):
        if not m.image_size:
            h0, w0 = ok.groupby(["height", "width"]).size().sort_values(ascending=False, kind="stable").index[0]
            specs += [
                E("ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [int(h0)]}, "consistent_shapes"),
                E("ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [int(w0)]}, "consistent_shapes"),
            ]
        c0 = int(ok["channels"].value_counts().index[0])
        specs.append(
            E("ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [c0]}, "consistent_shapes", "warning")
        )
    for p, b in property_bounds(m, outlier_mad).items():
        kwargs = {"column": p, "min_value": b.lo, "max_value": b.hi}
        specs.append(E("ExpectColumnValuesToBeBetween", kwargs, "pixel_stats_outliers", "warning"))
    return specs


def _duplicate_specs(m: Manifest) -> list[ExpectationSpec]:
    """duplicates_within_split, no_leakage_across_splits and (classification) duplicate_labels_agree."""
    specs = [
        E(
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["split", "hash"], "ignore_row_if": "any_value_is_missing"},
            "duplicates_within_split",
            "warning",
        ),
    ]
    sharing = {"column": "splits_sharing_content", "value_set": [1]}
    if m.image_mode is None:  # a table: a few copies WARN, more than leak_bound FAIL (each copy has a partner)
        n, held = len(m.df), int((m.df["split"] != "train").sum())
        mostly = max(1e-6, 1 - 2 * leak_bound(held) / max(n, 1))
        specs.append(E("ExpectColumnValuesToBeInSet", sharing, "no_leakage_across_splits", "warning"))
        specs.append(E("ExpectColumnValuesToBeInSet", sharing | {"mostly": mostly}, "no_leakage_across_splits"))
    else:
        specs.append(E("ExpectColumnValuesToBeInSet", sharing, "no_leakage_across_splits"))
    if task_for(m).classifier:
        kwargs = {"column": "labels_sharing_content", "value_set": [1]}
        specs.append(E("ExpectColumnValuesToBeInSet", kwargs, "duplicate_labels_agree", "warning"))
    return specs


def _feature_specs(m: Manifest, margin: float) -> list[ExpectationSpec]:
    """feature_types (the exact column set), then per column feature_nulls and feature_ranges or
    constant_features, then (regression) target_values."""
    cols = list(m.features.columns)
    column_set = {"column_set": ["id", "split", *cols, *m.bad_columns], "exact_match": True}
    specs = [E("ExpectTableColumnsToMatchSet", column_set, "feature_types", batch="features")]
    ranges = train_ranges(m)
    train = (m.df["split"] == "train").to_numpy()
    held = int((~train & m.df["readable"].astype(bool).to_numpy()).sum())
    bound = chance_outside(int(train.sum()), held, CHANCE_ALPHA / max(len(cols), 1))
    mostly = max(1e-6, 1 - bound / max(len(m.df), 1))  # the chance allowance of the table checks, as a fraction
    for c in cols:
        specs.append(E("ExpectColumnValuesToNotBeNull", {"column": c}, "feature_nulls", "warning", "features"))
        specs += _range_specs(c, ranges.loc[c, "min"], ranges.loc[c, "max"], mostly)
    if not task_for(m).classifier:
        specs += _target_specs(m, margin)
    return specs


def _range_specs(column: str, lo: float, hi: float, mostly: float) -> list[ExpectationSpec]:
    """A varying column: nothing beyond FAR_RANGES x its train range (feature_ranges: no chance event).
    Constant in train: other values in val/test only in a ``1 - mostly`` fraction of rows (constant_features).
    None for a column without finite train values."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return []
    if hi > lo:
        pad = FAR_RANGES * (hi - lo)
        kwargs = {"column": column, "min_value": float(lo - pad), "max_value": float(hi + pad)}
        return [E("ExpectColumnValuesToBeBetween", kwargs, "feature_ranges", "warning", "features")]
    kwargs = {"column": column, "min_value": float(lo), "max_value": float(hi), "mostly": mostly}
    return [E("ExpectColumnValuesToBeBetween", kwargs, "constant_features", "warning", "features")]


def _target_specs(m: Manifest, margin: float) -> list[ExpectationSpec]:
    """target_values for regression: every target within the train range ± ``margin`` x range."""
    y = usable(m)
    ty = y.loc[y["split"] == "train", "label"].astype(np.float64)
    ty = ty[np.isfinite(ty)]
    if not len(ty):
        return []
    lo, hi = float(ty.min()), float(ty.max())
    kwargs = {"column": "label", "min_value": lo - margin * (hi - lo), "max_value": hi + margin * (hi - lo)}
    return [E("ExpectColumnValuesToBeBetween", kwargs, "target_values", "warning")]


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
    """Build the suite from the data (:func:`plan_suite`), validate each batch of :func:`gx_frames` with its
    own GX Checkpoint, and (with ``docs_dir``) render Data Docs there (``docs_dir/index.html``; the folder is
    emptied first). A failed expectation is a result, not an error; GX's own errors (ImportError when it is
    not installed, its exceptions on a broken context) propagate. See
    https://docs.greatexpectations.io/docs/core/trigger_actions_based_on_results/create_a_checkpoint_with_actions
    for the Checkpoint and Data Docs action used."""
    t0 = time.perf_counter()
    _quiet_gx()
    specs = plan_suite(m, cfg)
    frames = gx_frames(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GX's own deprecation chatter; our results do not depend on it
        from great_expectations.checkpoint import UpdateDataDocsAction

        if docs_dir is not None:
            shutil.rmtree(docs_dir, ignore_errors=True)
            docs_dir.mkdir(parents=True, exist_ok=True)
        context = _context(docs_dir)
        source = context.data_sources.add_pandas("manifest")
        actions = [UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
        batches = [b for b in ("samples", "features") if b in frames]
        runs = [_run_batch(context, source, b, [s for s in specs if s.batch == b], frames[b], actions) for b in batches]
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


def _run_batch(context, source, batch: str, specs: list[ExpectationSpec], frame: pd.DataFrame, actions: list):
    """Validate one batch (``samples`` or ``features``) against its expectations; the CheckpointResult."""
    import great_expectations as gx

    name = f"{SUITE_PREFIX}.{batch}"
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=name,
            suite=context.suites.add(_suite(name, specs)),
            data=source.add_dataframe_asset(batch).add_batch_definition_whole_dataframe("all"),
        )
    )
    # one checkpoint per batch: a checkpoint passes the same batch parameters to all its definitions
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name=name, validation_definitions=[definition], result_format=RESULT_FORMAT, actions=actions)
    )
    return checkpoint.run(batch_parameters={"dataframe": frame})


def _suite(name: str, specs: list[ExpectationSpec]):
    """The GX ExpectationSuite of ``specs``, each expectation with its severity and ``meta.check``."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    suite = gx.ExpectationSuite(name=name)
    for spec in specs:
        kwargs = dict(spec.kwargs)
        if spec.train_only:
            kwargs["row_condition"] = Column("split") == "train"
        cls = getattr(gx.expectations, spec.type)
        suite.add_expectation(cls(**kwargs, severity=spec.severity, meta={"check": spec.check}))
    return suite


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
    """The ``gx_suite`` check: FAIL if a critical expectation failed, WARN if only warning ones did (items:
    ``failed``, as :func:`_failure` condenses them). The severities are GX's (``critical`` / ``warning``)."""
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
