"""Stage 1, become one with the data: look at every sample before any model does.

"The first step to training a neural net is to not touch any neural net code at all and instead begin by
thoroughly inspecting your data." This stage reads the tolerant manifest (so it works, and reports, even
when the strict loader would refuse the data), then:

- runs the recipe's data checks (:func:`recipe.checks.inspect_manifest`): unreadable files, how files were
  decoded (bit depth, alpha, palette) and files that decode to one value, channel order, folder layout (split
  folders as classes, nested folders), hidden and skipped files, labels that differ only in case or
  whitespace, nulls, labels, empty classes, shapes, split sizes, class balance, pixel-statistic outliers,
  duplicates and leakage, and
  for CSV data feature types, missing values, constant columns, ranges and the target;
- diagnoses samples with a cross-validated cheap model (:mod:`recipe.checks.labels`,
  :mod:`recipe.checks.leakage`): wrong labels (cleanlab's confident learning), near-duplicates within and
  across splits, outliers, columns that leak the target, identifier columns and row-order leaks;
- validates the same hypotheses as a Great Expectations suite derived from the data, and renders Data Docs;
- draws the data (class histogram, samples per class, extremes along each property, duplicate groups, or
  feature histograms for tables).

Logged to the stage's MLflow run: ``data/*`` metrics, ``plots/*.png``, ``gx/validation_result.json``,
``gx/data_docs/`` (open ``index.html``), ``inspect/problems.json`` (every offender of every check) and
``inspect/manifest.csv`` (one row per sample, to sort and filter). The splits are fixed by the data layer
when the manifest is built; the stage reports where they are saved and the data fingerprint, and hands
the config on unchanged.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from recipe import tracking
from recipe.checks import inspect_manifest
from recipe.checks.base import DataReport, Finding, finding
from recipe.report import StageResult, Verdict
from recipe.stages.base import StageContext
from recipe.stages.ending import Figures, finish

STAGE = "inspect"


def run(ctx: StageContext) -> StageResult:
    """Every data check of :func:`~recipe.checks.data.inspect_manifest` plus the Great Expectations suite built
    from the data; logs the evidence (problems, validation result, data docs, the manifest) and the figures.
    See the module docstring."""
    cfg, m = ctx.cfg, ctx.manifest()
    report = inspect_manifest(m, cfg)
    diagnosis, diagnosis_metrics = _diagnose(m, cfg)
    docs_dir = ctx.workdir / "gx" / "data_docs"
    gx_finding, gx_result = _validate(m, cfg, docs_dir)
    findings = [*report.findings, *diagnosis, gx_finding]
    metrics = {**report.metrics, **diagnosis_metrics, **gx_finding.metrics}  # logged now: finish() merges them
    _log_evidence(ctx, m, findings, metrics, gx_result, docs_dir)
    notes = _notes(m) + _log_figures(m, cfg)
    return finish(STAGE, findings, cfg, metrics=metrics, artifacts=_artifacts(m), notes=notes)


def _diagnose(m: Any, cfg: Any) -> tuple[list[Finding], dict[str, float]]:
    """The sample-level diagnosis: :mod:`recipe.checks.labels` (label issues, near-duplicates, outliers, from a
    cross-validated cheap model) and :mod:`recipe.checks.leakage` (columns that leak the target, identifiers,
    near-duplicates across splits), with their metrics and ``time/diagnosis_s`` (seconds). An error in them is
    a WARN naming it (traceback in ``inspect/diagnosis_error.txt``): the other checks still report."""
    import time

    from recipe.checks import labels, leakage

    start = time.perf_counter()
    try:
        ev = labels.evidence(m, cfg.seed)
        found = labels.label_checks(m, cfg, ev) + leakage.leakage_checks(m, cfg, ev)
    except Exception as e:
        tracking.log_text(traceback.format_exc(), "inspect/diagnosis_error.txt")
        found = [
            finding(
                "sample_diagnosis",
                "label quality, near-duplicates, outliers and leakage can be judged",
                f"the diagnosis raised {type(e).__name__}: {e}",
                "no error",
                Verdict.WARN,
                "see inspect/diagnosis_error.txt in this run's artifacts; the other checks are unaffected",
            )
        ]
    metrics = {k: v for f in found for k, v in f.metrics.items()}
    metrics["time/diagnosis_s"] = time.perf_counter() - start
    return found, metrics


def _log_evidence(
    ctx: StageContext, m: Any, findings: list[Finding], metrics: dict[str, float], gx_result: dict, docs_dir: Path
) -> None:
    """The metrics, the GX validation result and data docs, ``inspect/problems.json`` and the manifest as CSV."""
    tracking.log_metrics(metrics)
    tracking.log_dict(gx_result, "gx/validation_result.json")
    if (docs_dir / "index.html").is_file():
        tracking.log_artifact(docs_dir, "gx/data_docs")
    tracking.log_dict(_problems(m, findings), "inspect/problems.json")
    manifest_csv = ctx.workdir / "manifest.csv"
    manifest_csv.parent.mkdir(parents=True, exist_ok=True)
    m.df.to_csv(manifest_csv, index=False)
    tracking.log_artifact(manifest_csv, "inspect")


def _notes(m: Any) -> list[str]:
    """The data's fingerprint and size, where its splits are fixed, and the manifest's own notes."""
    notes = [f"data fingerprint {m.fingerprint} ({len(m.df)} samples from {m.root})"]
    if m.split_file is not None:
        notes.append(f"train/val/test splits are fixed in {m.split_file}")
    return notes + [n for n in m.notes if not n.startswith(("splits saved to", "splits read from"))]


def _artifacts(m: Any) -> dict[str, str]:
    """Where the stage's evidence is: the problems, the data docs and (when there is one) the split file."""
    artifacts = {
        "problems": tracking.artifact_uri("inspect/problems.json"),
        "data_docs": tracking.artifact_uri("gx/data_docs/index.html"),
    }
    if m.split_file is not None:
        artifacts["split_file"] = str(m.split_file)
    return artifacts


def _validate(m, cfg, docs_dir) -> tuple[Finding, dict[str, Any]]:
    """The gx_suite finding and the JSON result; a GX error becomes a FAIL that says so, and the other
    checks are still reported."""
    from recipe.checks import expectations

    try:
        outcome = expectations.validate(m, cfg, docs_dir)
    except Exception as e:  # a GX incompatibility must not hide the data report
        tb = traceback.format_exc()
        tracking.log_text(tb, "gx/error.txt")
        f = finding(
            "gx_suite",
            "the manifest meets the Great Expectations suite derived from it",
            f"Great Expectations failed: {type(e).__name__}: {e}",
            "every expectation met",
            Verdict.FAIL,
            "see gx/error.txt in this run's artifacts; the recipe's own checks above are unaffected",
        )
        return f, {"success": False, "error": f"{type(e).__name__}: {e}"}
    return outcome.finding, outcome.result


def _problems(m, findings: list[Finding]) -> dict[str, Any]:
    return {
        "source": m.source,
        "root": str(m.root),
        "fingerprint": m.fingerprint,
        "split_file": str(m.split_file) if m.split_file is not None else None,
        "notes": list(m.notes),
        "verdicts": {f.name: f.verdict.value for f in findings},
        "problems": DataReport(findings).problems(),
    }


def _log_figures(m, cfg) -> list[str]:
    """Draw and log every figure; one that fails to draw is skipped with a note (and its traceback in
    plots/errors.txt) rather than losing the whole data report."""
    from recipe.plots.data import figure_builders

    figures = Figures()
    for path, build in figure_builders(m, cfg).items():
        figures.log(path, build)
    return figures.close()
