"""One policy for every import, address and file a run can reach from its parameters.

DESIGN.md, "Trust boundaries": the CLI user is trusted; a deployment run's parameters (the Prefect "Custom run"
form, an API call, a schedule's parameters) are not. Whatever such a run can make the worker import, connect to
or read goes through the rules here, enforced where the thing is used (not only at flow start):

========================  ==============================================  ====================================
what                      rule for an untrusted run                       operator's setting on the worker
========================  ==============================================  ====================================
``module:callable``       its module is under an allowed prefix (checked  ``RECIPE_ALLOWED_MODEL_MODULES``
models                    in ``build_model``, so every path: model.name,
                          the overfit architecture, tune trials, squeeze
                          members, a champion's spec)
``stages.tune.space``     keys among :data:`SEARCHABLE` (every run)       (none: a fixed list)
``stages.tune.            ``tcp://HOST:PORT`` in the allow-list           ``RECIPE_ALLOWED_DASK_ADDRESSES``
dask_address``
``stages.tune.storage``   a URL (password redacted) or journal path in    ``RECIPE_ALLOWED_STORAGE``
                          the allow-list; else ``RECIPE_OPTUNA_STORAGE``
``preset``                a shipped preset's name (every run)             (none)
job variables             no ``command``, ``env`` or ``working_dir``      (none: the pool's template has
                                                                          none either, ``flows deploy``)
resource caps (sizes,     always on: ``RECIPE_LIFT_CAPS`` / ``--no-caps``  (none: only the CLI user lifts them,
widths, epochs, steps,    are ignored (:func:`caps_lifted`), checked when  for their own runs)
parallelism)              the config validates and again at flow start
========================  ==============================================  ====================================

Why these: a custom model name imports and calls any attribute; a Dask client unpickles its scheduler's messages
and hands it Prefect's settings (the API auth string with them); a storage URL sends the worker's connections
(and the trials' parameters) to another database; a preset path reads any YAML; and ``command`` / ``env`` replace
what the worker runs and with which secrets.

The allow-lists are comma-separated environment variables of the worker (set by its operator, never by a run):
empty means nothing beyond the built-in defaults (registry models, a local process pool, the worker's own
storage). Every refusal is a :class:`PolicyError` (a bad-input error, exit code 2) naming the setting and the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

ALLOWED_MODULES_ENV = "RECIPE_ALLOWED_MODEL_MODULES"
ALLOWED_DASK_ENV = "RECIPE_ALLOWED_DASK_ADDRESSES"
ALLOWED_STORAGE_ENV = "RECIPE_ALLOWED_STORAGE"
UNTRUSTED_ENV = "RECIPE_UNTRUSTED_RUN"  # "1" in a process running a deployment's parameters (child processes too)
LIFT_CAPS_ENV = "RECIPE_LIFT_CAPS"  # "1": the CLI user lifts the config's resource caps (`--no-caps` sets it)

# What stages.tune.space may set: the hyperparameters the tuning playbook searches, never what to import or read.
SEARCHABLE_SECTIONS = ("optim.", "schedule.")
SEARCHABLE_KEYS = frozenset(
    {
        "model.width",
        "model.depth",
        "model.dropout",
        "data.batch_size",
        "data.augment",
        "trainer.grad_clip",
        "trainer.ema_decay",
        "budget.early_stopping",
    }
)
JOB_VARIABLES_REFUSED = ("command", "env", "working_dir")


class PolicyError(ValueError):
    """A run's parameters reach something the policy does not allow (exit code 2); the message names the setting
    and what the operator (or the CLI user) can do instead."""


def _listed(env: str) -> list[str]:
    return [p.strip() for p in os.environ.get(env, "").split(",") if p.strip()]


def allowed_model_modules() -> list[str]:
    """The module prefixes allowed for ``module:callable`` models in untrusted runs
    (``RECIPE_ALLOWED_MODEL_MODULES``, comma-separated, e.g. ``mycompany.models,recipe.models``)."""
    return _listed(ALLOWED_MODULES_ENV)


def untrusted() -> bool:
    """Whether this process runs a deployment's parameters (see :func:`untrusted_run`)."""
    return os.environ.get(UNTRUSTED_ENV) == "1"


def caps_lifted() -> bool:
    """Whether the config's resource caps (:func:`recipe.config.resource_caps`: image size, width, depth, batch
    sizes, epochs, steps, seconds, trials, parallelism, members) are lifted in this process: ``RECIPE_LIFT_CAPS=1``
    (``flows run --no-caps`` sets it, so trial processes inherit it) and not an untrusted run. A deployment run's
    form cannot lift them, whatever the worker's environment says (issue 22: "overridable on the CLI, not from a
    form"); the bounds of meaning (no negatives, fractions below 1, finite numbers) are never lifted."""
    return os.environ.get(LIFT_CAPS_ENV) == "1" and not untrusted()


@contextlib.contextmanager
def untrusted_run() -> Iterator[None]:
    """Mark this process (and the trial processes it starts) as running untrusted parameters until exit."""
    before = os.environ.get(UNTRUSTED_ENV)
    os.environ[UNTRUSTED_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(UNTRUSTED_ENV, None)
        else:
            os.environ[UNTRUSTED_ENV] = before


def check_model_module(name: str, key: str = "model.name", allowed: list[str] | None = None) -> None:
    """Refuse a ``module:callable`` model whose module is not under an allowed prefix. Registry names pass.

    A prefix allows the module itself and its submodules (``a.b`` allows ``a.b`` and ``a.b.c``, not ``a.bc``).

    Raises:
        PolicyError: naming the setting ``key``, the module, the allowed prefixes and the variable that extends them.
    """
    if ":" not in name:
        return
    allowed = allowed_model_modules() if allowed is None else allowed
    module = name.partition(":")[0]
    if any(module == p or module.startswith(p + ".") for p in allowed):
        return
    listed = ", ".join(allowed) if allowed else "none"
    raise PolicyError(
        f"{key}={name!r} imports module {module!r}, which runs from a deployment may not do "
        f"(allowed module prefixes: {listed}); the operator can allow it on the worker with "
        f"{ALLOWED_MODULES_ENV}={module}, or use a registered model name"
    )


def check_build(name: str, key: str = "model.name") -> None:
    """The check ``build_model`` makes before importing a custom model: in an untrusted process, the allow-list."""
    if untrusted():
        check_model_module(name, key)


def check_tune_space(space: dict[str, Any]) -> None:
    """Every ``stages.tune.space`` entry sets a searchable hyperparameter (:data:`SEARCHABLE_SECTIONS`,
    :data:`SEARCHABLE_KEYS`), for every run: a search over ``model.name``, ``data.root`` or a storage would import,
    read or connect to what each trial's draw says.

    Raises:
        PolicyError: naming the entry, its key and the keys that may be searched.
    """
    for name, spec in space.items():
        if spec is None:
            continue
        key = spec.key if hasattr(spec, "key") else spec.get("key")
        if key in SEARCHABLE_KEYS or str(key).startswith(SEARCHABLE_SECTIONS):
            continue
        raise PolicyError(
            f"stages.tune.space.{name} searches {key!r}, which is not a hyperparameter tune may search; "
            f"searchable: {', '.join(s + '*' for s in SEARCHABLE_SECTIONS)}, {', '.join(sorted(SEARCHABLE_KEYS))} "
            f"(choose the model with model.name or the overfit stage, not in the search)"
        )


def check_dask_address(address: str | None) -> None:
    """An untrusted run's ``stages.tune.dask_address`` must be one the operator listed in
    ``RECIPE_ALLOWED_DASK_ADDRESSES`` (exact match, e.g. ``tcp://scheduler:8786``)."""
    if not address:
        return
    allowed = _listed(ALLOWED_DASK_ENV)
    if address in allowed:
        return
    raise PolicyError(
        f"stages.tune.dask_address={address!r} is not an allowed Dask scheduler for runs from a deployment "
        f"(allowed: {', '.join(allowed) or 'none'}): a Dask client trusts its scheduler with pickled code and "
        f"Prefect's settings; the operator can allow it on the worker with {ALLOWED_DASK_ENV}={address}, or leave "
        "stages.tune.dask_address unset for a local process pool"
    )


def check_storage(storage: str | None) -> None:
    """An untrusted run's ``stages.tune.storage`` must be listed in ``RECIPE_ALLOWED_STORAGE`` (compared with
    passwords redacted); unset, the worker's own (``RECIPE_OPTUNA_STORAGE`` or the journal beside the store) is
    used."""
    if not storage:
        return
    from recipe.secrets import redact_url

    allowed = [redact_url(a) for a in _listed(ALLOWED_STORAGE_ENV)]
    if redact_url(storage) in allowed:
        return
    raise PolicyError(
        f"stages.tune.storage={redact_url(storage)!r} is not an allowed study storage for runs from a deployment "
        f"(allowed: {', '.join(allowed) or 'none'}); leave it unset to use the worker's own "
        f"(RECIPE_OPTUNA_STORAGE), or the operator can allow it with {ALLOWED_STORAGE_ENV}"
    )


def check_preset_name(preset: str) -> None:
    """A preset is a shipped preset's name: no path separators, no ``..`` (every run; the CLI takes files with
    ``--config``).

    Raises:
        PolicyError: naming the setting and the presets there are.
    """
    if preset and "/" not in preset and "\\" not in preset and ".." not in preset and not preset.startswith("~"):
        return
    from recipe.config import preset_names

    what = "is empty" if not preset else "is a path"
    raise PolicyError(
        f"preset={preset!r} {what}; a preset is the name of a shipped one: {', '.join(preset_names())} "
        "(pass the whole config in the `config` parameter instead)"
    )


def check_job_variables(job_variables: dict[str, Any] | None) -> None:
    """Refuse a flow run whose job variables replace the worker's ``command``, ``env`` or ``working_dir``
    (``flows deploy`` creates pools whose template has none of them; this covers pools made another way)."""
    bad = [k for k in JOB_VARIABLES_REFUSED if (job_variables or {}).get(k) not in (None, "", {}, [])]
    if bad:
        raise PolicyError(
            f"job variable(s) {', '.join(bad)} may not be set on a run: they replace what the worker runs, where, "
            "and with which secrets; set them on the work pool (the operator) instead"
        )


def check_untrusted_config(cfg: Any) -> None:
    """Everything in ``cfg`` (a RecipeConfig) an untrusted run could reach, checked at flow start so the refusal
    comes before any work (the same rules are enforced again where each thing is used).

    Raises:
        PolicyError: the first setting that breaks a rule.
        recipe.config.ConfigError: settings above their resource caps (every one named); Prefect validated the
            run's ``config`` before the untrusted mark was set, so a worker with ``RECIPE_LIFT_CAPS=1`` would
            otherwise have let them through.
    """
    from recipe.config import check_caps

    check_caps(cfg)
    check_model_module(cfg.model.name, "model.name")
    check_model_module(cfg.stages.overfit.architecture, "stages.overfit.architecture")
    for name, spec in cfg.stages.tune.space.items():
        if spec is not None and spec.key == "model.name":
            for choice in spec.choices or []:
                check_model_module(str(choice), f"stages.tune.space.{name}")
    check_tune_space(cfg.stages.tune.space)
    check_dask_address(cfg.stages.tune.dask_address)
    check_storage(cfg.stages.tune.storage)
