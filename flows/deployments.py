"""The deployments in ``deploy/prefect.yaml``, read for ``flows deploy`` and ``flows serve``.

``prefect deploy`` reads that file itself; ``flows serve`` (no work pool) reads the same schedules and
parameters from it through here, so the file stays the one place they are written. Importing this module
costs only PyYAML; Prefect is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deploy" / "prefect.yaml"

# The schedule keys `prefect deploy` understands (prefect.cli.deploy._schedules) and flow.serve takes too.
_SCHEDULE_KEYS = {"cron", "interval", "rrule", "timezone", "active", "parameters", "slug", "anchor_date", "day_or"}


class DeploymentFileError(ValueError):
    """deploy/prefect.yaml is missing, malformed, or lacks the deployment asked for."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of ``deploy/prefect.yaml``: name, flow entrypoint (``path.py:flow`` or
    ``module:flow``), flow parameters, schedules as written in the file (``interval`` in seconds), the work pool's
    name (None when the file names none), tags and description."""

    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    work_pool: str | None = None
    tags: list[str] = field(default_factory=list)
    description: str | None = None

    @property
    def entrypoint_for_loading(self) -> str:
        """The entrypoint, a file path in it made absolute (file entrypoints are relative to the repository)."""
        path, _, obj = self.entrypoint.rpartition(":")
        if path.endswith(".py"):
            return f"{REPO_ROOT / path}:{obj}"
        return self.entrypoint

    def prefect_schedules(self) -> list[Any]:
        """The schedules as ``prefect.schedules.Schedule`` objects for ``flow.serve(schedules=...)``."""
        from datetime import datetime, timedelta

        from prefect.schedules import Schedule

        out = []
        for raw in self.schedules:
            kwargs = dict(raw)
            if isinstance(kwargs.get("interval"), (int, float)):
                kwargs["interval"] = timedelta(seconds=kwargs["interval"])
            if isinstance(kwargs.get("anchor_date"), str):
                kwargs["anchor_date"] = datetime.fromisoformat(kwargs["anchor_date"])
            out.append(Schedule(**kwargs))
        return out


def load_prefect_file(path: Path = PREFECT_FILE) -> dict[str, Any]:
    """The parsed ``deploy/prefect.yaml`` (or ``path``) as a dict with a non-empty ``deployments`` list.

    Raises DeploymentFileError when the file is missing, not valid YAML, or has no deployments."""
    import yaml

    if not path.is_file():
        raise DeploymentFileError(f"no deployment file at {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DeploymentFileError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list) or not data["deployments"]:
        raise DeploymentFileError(f"{path} has no 'deployments' list")
    return data


def deployment_specs(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """Every deployment of the file as a :class:`DeploymentSpec`, in file order.

    Raises DeploymentFileError when the file cannot be read (:func:`load_prefect_file`), a deployment lacks a
    name or entrypoint, or a schedule has keys ``prefect deploy`` does not know."""
    specs = []
    for i, raw in enumerate(load_prefect_file(path)["deployments"]):
        where = f"{path}: deployments[{i}]"
        if not isinstance(raw, dict) or not raw.get("name") or not raw.get("entrypoint"):
            raise DeploymentFileError(f"{where} needs a name and an entrypoint")
        schedules = raw.get("schedules") or []
        for s in schedules:
            unknown = set(s) - _SCHEDULE_KEYS
            if unknown:
                raise DeploymentFileError(
                    f"{where} ({raw['name']}): unknown schedule keys {sorted(unknown)}; known: {sorted(_SCHEDULE_KEYS)}"
                )
        specs.append(
            DeploymentSpec(
                name=raw["name"],
                entrypoint=raw["entrypoint"],
                parameters=dict(raw.get("parameters") or {}),
                schedules=[dict(s) for s in schedules],
                work_pool=(raw.get("work_pool") or {}).get("name"),
                tags=list(raw.get("tags") or []),
                description=raw.get("description"),
            )
        )
    return specs


def deployment_spec(name: str | None = None, path: Path = PREFECT_FILE) -> DeploymentSpec:
    """The deployment called ``name`` (default: the first one in the file)."""
    specs = deployment_specs(path)
    if name is None:
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    raise DeploymentFileError(f"no deployment named {name!r} in {path}; there are: {', '.join(s.name for s in specs)}")


def work_pools(path: Path = PREFECT_FILE, names: list[str] | None = None) -> list[str]:
    """The work pools the (selected) deployments run on, in file order, without repeats."""
    pools: list[str] = []
    for spec in deployment_specs(path):
        if (not names or spec.name in names) and spec.work_pool and spec.work_pool not in pools:
            pools.append(spec.work_pool)
    return pools


def locked_job_template(template: dict[str, Any]) -> dict[str, Any]:
    """A work pool's base job template without the per-run ``command``, ``env`` and ``working_dir`` overrides.

    Prefect's default template lets every flow run replace the command the worker runs, its environment and
    folder through job variables: whoever can start a "Custom run" could run a shell command with the worker's
    secrets (its MLflow password among them). Here those variables are gone from the schema, which also refuses
    unknown ones (``additionalProperties: false``: the server answers 422 to a run that sets them), and from the
    job configuration, so the worker uses its defaults (Prefect's engine command, its own environment and
    folder). The rule is :data:`recipe.policy.JOB_VARIABLES_REFUSED`; the flow checks it again at start."""
    import copy

    from recipe.policy import JOB_VARIABLES_REFUSED

    out = copy.deepcopy(template)
    variables = out.setdefault("variables", {"type": "object", "properties": {}})
    for key in JOB_VARIABLES_REFUSED:
        variables.get("properties", {}).pop(key, None)
        out.get("job_configuration", {}).pop(key, None)
    if variables.get("required"):
        variables["required"] = [r for r in variables["required"] if r not in JOB_VARIABLES_REFUSED]
    variables["additionalProperties"] = False
    return out


async def ensure_work_pools(names: list[str], pool_type: str = "process") -> dict[str, str]:
    """Create each missing work pool (type ``pool_type``, Prefect's default job template locked by
    :func:`locked_job_template`); lock the template of an existing pool of that type that still lets runs set
    ``command``, ``env`` or ``working_dir``.

    Returns ``{name: "created" | "exists (<type>)" | "exists (<type>), template locked"}``. Talks to the API in the
    current Prefect settings.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    out: dict[str, str] = {}
    async with get_client() as client:
        for name in names:
            try:
                pool = await client.read_work_pool(name)
                out[name] = f"exists ({pool.type})"
                locked = locked_job_template(pool.base_job_template or {})
                if pool.type == pool_type and pool.base_job_template and locked != pool.base_job_template:
                    await client.update_work_pool(name, WorkPoolUpdate(base_job_template=locked))
                    out[name] += ", template locked"
                continue
            except ObjectNotFound:
                pass
            template = locked_job_template(await get_default_base_job_template_for_infrastructure_type(pool_type))
            try:
                await client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template))
                out[name] = "created"
            except ObjectAlreadyExists:  # a worker created it meanwhile (workers create their pool if missing)
                out[name] = "exists"
    return out
