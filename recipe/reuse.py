"""What makes a stage's earlier result reusable: its reuse key (config + data + code) and the code version.

A stage's result is a function of three things, and its reuse key covers exactly them:

- **the config it depends on**: the settings every stage shares (data, model, optim, schedule, budget, trainer,
  seed, name) and ``stages.<s>`` of this stage and of the stages before it (a stage starts from what the earlier
  ones handed on). The settings of later stages do not change it (``stages.squeeze.members`` leaves inspect's
  result alone), nor do the settings that change how a stage runs rather than what it computes
  (:data:`recipe.config.EXECUTION_ONLY`: trial parallelism, the Dask address, the study storage, the progress
  bar, the description, ``budget.minutes``: a budgeted stage's key covers the sizes it chose, see
  ``recipe.budget``);
- **the data**: the manifest's fingerprint (:func:`recipe.data.build_manifest`);
- **the code**: :func:`code_version`.

Every stage run is tagged with its key (``recipe.reuse_key``) and every run with the code version
(``recipe.code_version``); ``recipe.pipeline`` reuses the latest passing run whose key matches.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from recipe.config import RecipeConfig, result_settings

# The packages whose sources are the code of a result (the library and the flows that drive it).
PACKAGES = ("recipe", "flows")
SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json")
# Libraries whose version changes the numbers a stage computes (kernels, samplers, validators, encoders).
LIBRARIES = ("torch", "numpy", "scikit-learn", "optuna", "pandas", "great-expectations", "cleanlab", "skrub")


def source_hash(roots: Iterable[Path]) -> str:
    """12 hex digits of sha256 over every source file under ``roots`` (``*.py``, ``*.yaml``, ``*.yml``,
    ``*.json``; ``__pycache__`` skipped), each as its path relative to its root's parent and its bytes, in
    sorted order: a changed, added, removed or renamed file changes it; compiled files and timestamps do not."""
    h = hashlib.sha256()
    for root in roots:
        root = Path(root)
        files = sorted(
            p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts and p.is_file()
        )
        for path in files:
            h.update(path.relative_to(root.parent).as_posix().encode())
            h.update(b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:12]


def _library_versions() -> list[str]:
    out = []
    for name in LIBRARIES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}==absent")
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of the code that computes a result: 12 hex digits of sha256 over the sources of the
    ``recipe`` and ``flows`` packages (:func:`source_hash`) and the versions of :data:`LIBRARIES`.

    Always a hash of the sources, never the git commit: a commit changes with every edit of a README or a test
    (which would invalidate every stored result for nothing), does not see uncommitted edits, and does not exist
    where the code runs from an installed package or a worker without ``.git``; the same sources give the same
    version on every machine. A package that is not installed (``flows`` beside a bare ``recipe``) is left
    out. Computed once per process (about 10 ms on the development machine)."""
    from importlib.util import find_spec

    # located, not imported: importing flows would run its package setup in a library process
    specs = [find_spec(p) for p in PACKAGES]
    roots = [Path(spec.origin).parent for spec in specs if spec is not None and spec.origin]
    h = hashlib.sha256(source_hash(roots).encode())
    h.update("\n".join(_library_versions()).encode())
    return h.hexdigest()[:12]


def stage_settings(cfg: RecipeConfig | dict[str, Any], stage: str, order: Sequence[str]) -> dict[str, Any]:
    """The settings ``stage``'s result depends on: :func:`recipe.config.result_settings` of ``cfg`` without the
    ``stages.<s>`` sections of the stages after ``stage`` in ``order``. A stage not in ``order`` (a plugin)
    keeps every section."""
    data = result_settings(cfg)
    if stage in order:
        for later in order[order.index(stage) + 1 :]:
            data.get("stages", {}).pop(later, None)
    return data


def stage_key(cfg: RecipeConfig, stage: str, fingerprint: str, code: str, order: Sequence[str]) -> str:
    """12 hex digits of sha256 over :func:`stage_settings`, the data ``fingerprint`` and the ``code`` version:
    equal keys mean the stage would compute the same result."""
    payload = {"config": stage_settings(cfg, stage, order), "data": fingerprint, "code": code, "stage": stage}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def uncovered_settings(cfg: RecipeConfig, stage: str, order: Sequence[str]) -> dict[str, Any]:
    """What ``stage``'s reuse key does not cover, as dotted overrides from ``cfg`` (this run's input): the
    ``stages.<s>`` sections of the stages after ``stage`` in ``order`` and the
    :data:`recipe.config.EXECUTION_ONLY` settings. A reused stage's recorded config carries these as they were
    when it ran; the stages after it must get them as they are now (a second run with ``--set
    stages.squeeze.members=1`` reused tune and trained squeeze's members as the first run had set them)."""
    from recipe.config import EXECUTION_ONLY

    data = cfg.to_dict()
    out: dict[str, Any] = {}
    if stage in order:
        for later in order[order.index(stage) + 1 :]:
            if later in data.get("stages", {}):
                out[f"stages.{later}"] = data["stages"][later]
    flat = cfg.flat()
    out.update({key: flat.get(key) for key in EXECUTION_ONLY})
    return out


__all__ = ["code_version", "source_hash", "stage_key", "stage_settings", "uncovered_settings"]
