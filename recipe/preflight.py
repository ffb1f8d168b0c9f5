"""Everything about a run that can be checked before any server starts, answered in seconds.

``flows run`` calls :func:`check` after loading the config and before it starts (or connects to) the Prefect
server and opens the MLflow store, so bad input costs seconds, not the minutes a busy machine needs to start
the backends. Each problem is a :class:`PreflightError` (exit code 2) whose message names the problem and
the fix; an unreachable tracking server is a :class:`recipe.tracking.TrackingError`-like
:class:`BackendUnreachable` (exit code 3).

What is checked:
- ``data.root``: exists, and is a folder (imagefolder) or a file (csv); torchvision: its folder can be made.
- Names that must exist: ``data.augment`` and ``stages.regularize.augment`` (recipe.data.augment),
  ``model.name`` and ``stages.overfit.architecture`` (the model registry, or ``module:callable`` whose
  module can be found with ``importlib.util.find_spec``, without importing it).
- ``MLFLOW_TRACKING_URI``: a scheme MLflow 3 stores runs in (sqlite, postgresql, mysql, mssql, http,
  https, databricks); a local sqlite file whose folder can be created and written, and which, if present,
  can be written; a tracking server that answers its ``/health`` endpoint.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlparse

from recipe.config import RecipeConfig

TRACKING_ENV = "MLFLOW_TRACKING_URI"
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")


class PreflightError(ValueError):
    """Bad input found before the run started (exit code 2); the message says what and how to fix it."""


class BackendUnreachable(RuntimeError):
    """A tracking server that does not answer (exit code 3)."""


def check(cfg: RecipeConfig, *, uri: str | None = None, reach: bool = True) -> None:
    """Check ``cfg`` and the tracking URI (default: MLFLOW_TRACKING_URI, else the repository's store).

    Raises:
        PreflightError: the first problem found, with its fix.
        BackendUnreachable: ``reach`` and the tracking URI is a server that does not answer within 10 s.
    """
    check_data(cfg)
    check_names(cfg)
    check_tracking_uri(uri, reach=reach)


def check_data(cfg: RecipeConfig) -> None:
    """Check that ``data.root`` fits ``data.source``: an existing folder for imagefolder, an existing file for
    csv; for torchvision a folder, or one that can be created when ``data.download`` is true. No root: nothing to
    check. Raises PreflightError with the fix."""
    d = cfg.data
    if d.root is None:
        return
    root = Path(d.root).expanduser()
    fix = "point data.root at it (--set data.root=PATH, or data: root: in the config file)"
    if d.source == "imagefolder":
        if not root.exists():
            raise PreflightError(
                f"data.root {root} does not exist: data.source=imagefolder needs a folder with "
                f"one sub-folder of images per class; {fix}"
            )
        if not root.is_dir():
            raise PreflightError(
                f"data.root {root} is a file, not a folder: data.source=imagefolder needs a "
                f"folder with one sub-folder of images per class; {fix}"
            )
        _check_image_folder(root, fix)
    elif d.source == "csv":
        if not root.exists():
            raise PreflightError(f"data.root {root} does not exist: data.source=csv needs a .csv file; {fix}")
        if not root.is_file():
            raise PreflightError(f"data.root {root} is a folder, not a file: data.source=csv needs a .csv file; {fix}")
        _check_csv_header(root, d.target, d.drop_columns)
    elif d.source == "torchvision":
        if root.exists() and not root.is_dir():
            raise PreflightError(
                f"data.root {root} is a file: data.source=torchvision needs a folder to hold the download; {fix}"
            )
        if not root.exists() and not d.download:
            raise PreflightError(
                f"data.root {root} does not exist and data.download is false: set "
                f"data.download=true to fetch {d.name}, or {fix}"
            )
        if not root.exists():
            _check_creatable(root, what="data.root", fix=fix)


# The image extensions the loader reads (recipe.data.folders.IMAGE_EXTENSIONS; a test keeps them equal). Kept here
# so that this check does not import recipe.data, which imports torch: seconds on a busy machine.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # as recipe.data.folders.hidden


def _check_image_folder(root: Path, fix: str) -> None:
    """A first look at an image folder, without decoding a pixel or importing torch: a folder with no class
    sub-folders (an empty one, or images loose at the top) or with no file that has an image extension anywhere
    under its class folders (a folder of documents) is refused, naming what it holds. The walk stops at the first
    image; links, layouts and decoding are the loader's and the inspect stage's."""
    entries = sorted((e for e in os.scandir(root) if not _hidden(e.name)), key=lambda e: e.name)
    classes = [e for e in entries if e.is_dir()]
    others: list[str] = []
    for folder in classes:
        for dirpath, dirnames, filenames in os.walk(folder.path):
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
            for f in filenames:
                if _hidden(f):
                    continue
                if Path(f).suffix.lower() in IMAGE_EXTENSIONS:
                    return
                others.append(os.path.relpath(os.path.join(dirpath, f), root))
    kinds = f"image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    if not entries:
        held = "it is empty"
    elif not classes:
        held = f"it holds no sub-folders, only {_listed([e.name for e in entries])}"
    else:
        held = f"its class folders {_listed([e.name for e in classes])} hold " + (
            f"no {kinds}, only {_listed(others)}" if others else "no files"
        )
    raise PreflightError(
        f"no images under data.root {root}: {held}; data.source=imagefolder needs one sub-folder per class "
        f"holding {kinds}, e.g. {root / 'cat' / '001.png'}; {fix}"
    )


def _listed(names: list[str], cap: int = 5) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > cap else ""
    return ", ".join(names[:cap]) + more


def _check_csv_header(path: Path, target: str | None, drop: list[str] | None = None) -> None:
    """The CSV's header (read alone, with pandas as the loader reads it) names ``data.target`` and every column of
    ``data.drop_columns`` (``drop``): an unset target, a column that is not there (a typo; the closest column is
    suggested) or a dropped target is refused, as is a file that is no CSV or a header with no row under it."""
    import difflib

    import pandas as pd

    from recipe.data.errors import drop_columns_problem, no_rows_problem  # light: recipe.data imports lazily

    try:
        head = pd.read_csv(path, nrows=1, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PreflightError(
            f"data.root {path} cannot be read as a CSV ({str(e).splitlines()[0]}); check it is comma-separated "
            "UTF-8 text with a header row"
        ) from None
    columns = [str(c) for c in head.columns]
    if head.empty:
        raise PreflightError(no_rows_problem(path, columns))
    if target is None:
        raise PreflightError(
            f"{path}: data.target is not set; pass --set data.target=COLUMN, one of: {_listed(columns, 20)}"
        )
    if target not in columns:
        close = difflib.get_close_matches(target, columns, n=1)
        hint = f"; did you mean {close[0]!r} (--set data.target={close[0]})?" if close else ""
        raise PreflightError(f"{path}: target column {target!r} not found{hint} (columns: {_listed(columns, 20)})")
    problem = drop_columns_problem(path, list(drop or []), columns, target)
    if problem:
        raise PreflightError(problem)


def check_names(cfg: RecipeConfig) -> None:
    """Check that every name the run will look up exists: ``data.augment`` and ``stages.regularize.augment``
    entries in ``AUGMENTATIONS``, ``model.name`` and ``stages.overfit.architecture`` (unless "auto") in the model
    registry or as a ``module:callable`` whose module can be found. Raises PreflightError with the choices."""
    from recipe.data.augment import AUGMENTATIONS

    for key, names in (
        ("data.augment", cfg.data.augment),
        ("stages.regularize.augment", cfg.stages.regularize.augment),
    ):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise PreflightError(
                f"{key} has unknown augmentation {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(AUGMENTATIONS)} (e.g. --set {key}='[crop, rotate]')"
            )
    check_model_name(cfg.model.name, key="model.name")
    from recipe.policy import PolicyError, check_tune_space

    try:
        check_tune_space(cfg.stages.tune.space)
    except PolicyError as e:
        raise PreflightError(str(e)) from None
    arch = cfg.stages.overfit.architecture
    if arch != "auto":
        check_model_name(arch, key="stages.overfit.architecture")


def check_model_name(name: str, key: str = "model.name") -> None:
    """A registry name, or ``module:callable`` whose module can be found (it is not imported here)."""
    from recipe.models import MODELS

    if name in MODELS:
        return
    if ":" not in name:
        import difflib

        close = difflib.get_close_matches(name, sorted(MODELS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PreflightError(
            f"{key}={name!r} is not a registered model; {hint}use one of {', '.join(sorted(MODELS))}"
            f", or 'package.module:callable' for a model of your own"
        )
    module, _, attr = name.partition(":")
    if not module or not attr:
        raise PreflightError(
            f"{key}={name!r}: write a model of your own as 'package.module:callable' (both parts non-empty)"
        )
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package that is missing
        spec = None
    if spec is None:
        raise PreflightError(
            f"{key}={name!r}: module {module!r} cannot be found; install it or run from the "
            f"folder that holds it (it must be importable as {module!r})"
        )


ALLOWED_MODULES_ENV = "RECIPE_ALLOWED_MODEL_MODULES"  # the rules themselves live in recipe.policy


def allowed_model_modules() -> list[str]:
    """The module prefixes an operator allows for ``module:callable`` models in deployment runs
    (``RECIPE_ALLOWED_MODEL_MODULES``, comma-separated; see :mod:`recipe.policy`)."""
    from recipe.policy import allowed_model_modules as allowed

    return allowed()


def check_model_imports_allowed(cfg: RecipeConfig, allowed: list[str]) -> None:
    """Refuse ``module:callable`` model names (``model.name``, ``stages.overfit.architecture``) outside the
    ``allowed`` module prefixes (:func:`recipe.policy.check_model_module`). Registry names always pass.

    Raises:
        PreflightError: naming the model, the allowed prefixes and the setting that extends them.
    """
    from recipe.policy import PolicyError, check_model_module

    try:
        check_model_module(cfg.model.name, "model.name", allowed)
        check_model_module(cfg.stages.overfit.architecture, "stages.overfit.architecture", allowed)
    except PolicyError as e:
        raise PreflightError(str(e)) from None


def check_tracking_uri(uri: str | None = None, *, reach: bool = True) -> str:
    """Check the tracking URI before anything opens it; returns it.

    Raises:
        PreflightError: an unknown scheme, a file store (MLflow 3 refuses it), or a local sqlite path whose
            folder cannot be created or written, or whose file cannot be written.
        BackendUnreachable: ``reach`` and an http(s) tracking server does not answer within 10 s.
    """
    from recipe.tracking import tracking_uri

    uri = uri or tracking_uri()
    where = f"{TRACKING_ENV}={uri}" if os.environ.get(TRACKING_ENV) else f"the tracking URI {uri}"
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower()
    if scheme in ("", "file"):
        raise PreflightError(
            f"{where}: a folder (file store) is not supported by MLflow 3; use a database, "
            f"e.g. export {TRACKING_ENV}=sqlite:///mlruns/mlflow.db, or a server "
            f"(http://host:port)"
        )
    if scheme not in DB_SCHEMES + SERVER_SCHEMES + ("databricks",):
        raise PreflightError(
            f"{where}: unknown scheme {scheme!r}; use sqlite:///PATH/mlflow.db (local), "
            f"postgresql://... or http://HOST:PORT (a tracking server), or unset {TRACKING_ENV} "
            f"for the default store"
        )
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri == "sqlite:///" or uri.startswith("sqlite:///:memory:"):
            raise PreflightError(
                f"{where}: a sqlite store needs a file path, e.g. sqlite:///mlruns/mlflow.db "
                f"(relative) or sqlite:////abs/path/mlflow.db"
            )
        db = Path(uri.removeprefix("sqlite:///"))
        fix = f"make it writable, or export {TRACKING_ENV}=sqlite:///A/WRITABLE/PATH/mlflow.db"
        if db.is_dir():
            raise PreflightError(
                f"{where}: {db} is a folder; give the database file, e.g. sqlite:///{db / 'mlflow.db'}"
            )
        if db.exists():
            if not os.access(db, os.R_OK | os.W_OK):
                raise PreflightError(f"{where}: the database {db} is not writable; {fix}")
            if not os.access(db.parent, os.W_OK | os.X_OK):  # sqlite writes a journal beside the file
                raise PreflightError(
                    f"{where}: the folder {db.parent} of the database is not writable "
                    f"(sqlite needs it for its journal); {fix}"
                )
        else:
            _check_creatable(db.parent, what=f"{where}: the folder of the database", fix=fix)
    if scheme in SERVER_SCHEMES and reach:
        _check_server(uri, where)
    return uri


def _check_creatable(path: Path, *, what: str, fix: str) -> None:
    """``path`` exists as a writable folder, or can be created: its nearest existing ancestor is a writable
    folder."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PreflightError(f"{what} {path} cannot be created: {probe} is a file; {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PreflightError(f"{what} {path} cannot be created or written: {probe} is not writable; {fix}")


def _check_server(uri: str, where: str) -> None:
    import httpx

    try:
        response = httpx.get(uri.rstrip("/") + "/health", timeout=10)
    except httpx.HTTPError as e:
        raise BackendUnreachable(
            f"the MLflow tracking server at {uri} does not answer ({type(e).__name__}); start it, or fix {TRACKING_ENV}"
        ) from None
    if response.status_code == 401:
        return  # it answers; credentials are MLflow's business (MLFLOW_TRACKING_USERNAME/PASSWORD)
    if response.status_code >= 400:
        raise BackendUnreachable(
            f"the MLflow tracking server at {uri} answered {response.status_code} to "
            f"/health; check that {where} names an MLflow server"
        )


STORE_FILE = Path("mlruns") / "mlflow.db"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout this code runs from


def _sqlite_uri(db: Path) -> str:
    return f"sqlite:///{db.resolve()}"


def resolve_store(*, read_only: bool, cwd: Path | None = None) -> tuple[str, str]:
    """The tracking store a command uses, and where it came from (a phrase for the terminal).

    In order: ``MLFLOW_TRACKING_URI``; the nearest ``mlruns/mlflow.db`` in the current folder or one above it (a
    checkout's store, found from any folder inside it); for a ``read_only`` command, the store of the checkout
    this code runs from (:data:`PACKAGE_ROOT`, where ``make run`` writes). A command that records runs falls back to
    ``./mlruns/mlflow.db`` (created on first use); a read-only one never creates a store (MLflow would create an
    empty one, and then report that no model exists).

    Returns:
        (URI with an absolute path for sqlite, origin such as ``"MLFLOW_TRACKING_URI"`` or ``"found in /x"``).

    Raises:
        PreflightError: ``read_only`` and no store exists anywhere it looked; the message lists the places and
            says how to point at one (exit 2).
    """
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env, TRACKING_ENV
    here = (cwd or Path.cwd()).resolve()
    looked = []
    for folder in (here, *here.parents):
        db = folder / STORE_FILE
        looked.append(str(db))
        if db.is_file():
            return _sqlite_uri(db), ("the current folder" if folder == here else f"found in {folder}")
    if read_only:
        db = PACKAGE_ROOT / STORE_FILE
        if db.is_file():
            return _sqlite_uri(db), f"the store of the checkout {PACKAGE_ROOT}"
        shown = looked[:3] + (["..."] if len(looked) > 3 else []) + [str(db)]
        raise PreflightError(
            f"no MLflow tracking store found: {TRACKING_ENV} is unset and there is no {STORE_FILE} in the "
            f"current folder, the folders above it, or the checkout (looked at {', '.join(shown)}); run from the "
            f"checkout where the recipe ran, or export {TRACKING_ENV}=sqlite:////ABS/PATH/mlruns/mlflow.db "
            "(or http://HOST:PORT for a tracking server)"
        )
    return _sqlite_uri(here / STORE_FILE), "a new store in the current folder"


def use_store(*, read_only: bool) -> tuple[str, str]:
    """:func:`resolve_store`, then put the URI in ``MLFLOW_TRACKING_URI`` for this process and its children (trial
    workers, ``recipe.tracking.tracking_uri``). Raises PreflightError as resolve_store."""
    uri, origin = resolve_store(read_only=read_only)
    os.environ[TRACKING_ENV] = uri
    return uri, origin
