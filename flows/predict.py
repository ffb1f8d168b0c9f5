"""``flows predict``: a registered model on a folder of images or a CSV, predictions written as a CSV.

The model is a champion URI (``models:/<name>@champion``, ``models:/<name>/<version>``, ``runs:/<run>/champion``);
inputs are gathered here, the champion's preprocessing (:mod:`recipe.champion`) does the rest.

A registered model is data, not code (DESIGN.md, "Trust boundaries"): anyone who can write the store can point
an alias at a model whose pyfunc code runs when MLflow loads it. So by default :func:`load_model` loads a
champion **data-only**: it checks that the version came from a squeeze run of this project (the source run's
``recipe.stage=squeeze`` tag, the champion format's ``spec`` and ``weights`` artifacts), downloads only those
two, and rebuilds the networks from the local package's model registry (``torch.load(weights_only=True)``); a
member naming a ``module:callable`` model must be in ``RECIPE_ALLOWED_MODEL_MODULES``. Loading the model's own
pyfunc code takes ``--trust-model-code``. Predictions go in chunks of :data:`CHUNK` inputs, so memory stays
bounded by the chunk, not the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class PredictError(Exception):
    """A predict run that cannot go on; ``code`` is the exit code (2 bad input, 3 the tracking store)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def gather_images(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden files skipped), sorted; ``root`` may be one file."""
    if root.is_file():
        return [root]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return files


CHUNK = 256  # inputs decoded and predicted at a time
SQUEEZE_STAGE = "squeeze"
FORMAT_ARTIFACTS = ("spec", "weights")  # the champion format's artifacts (recipe.champion.log_champion)


class DataOnlyChampion:
    """A champion rebuilt from its spec and weights alone: ``predict(frame)`` as the pyfunc's, ``input_names``
    the columns it takes (``path`` for images, the raw feature columns for tables)."""

    def __init__(self, spec, nets) -> None:
        self.spec, self.nets = spec, nets

    @property
    def input_names(self) -> list[str]:
        from recipe.champion import PATH_COLUMN

        return [PATH_COLUMN] if self.spec.kind == "image" else list(self.spec.columns)

    def predict(self, frame):
        from recipe.champion import predict_frame

        return predict_frame(self.spec, self.nets, frame)


def _not_found(uri: str, text: str) -> PredictError:
    from recipe.secrets import redact_url
    from recipe.tracking import tracking_uri

    return PredictError(
        f"no model at {uri} in the tracking store {redact_url(tracking_uri())}: {text.splitlines()[0]}\n"
        "run the recipe to the squeeze stage to register a champion, or check the name "
        "(models:/<recipe name>@champion) and MLFLOW_TRACKING_URI"
    )


def _missing(e: Exception) -> bool:
    text = str(e).lower()
    return (
        "RESOURCE_DOES_NOT_EXIST" in getattr(e, "error_code", "")
        or "not found" in text
        or "does not exist" in text
        or "alias" in text
    )


def load_model(uri: str, trust_code: bool = False):
    """The champion at ``uri``: data-only (:func:`load_champion_data`, the default) or, with ``trust_code``, the
    pyfunc with its own code. A missing model is bad input (exit 2), an unreachable store a backend error (3), a
    model that is not a champion of this project bad input naming ``--trust-model-code`` (2)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from recipe.secrets import redact_url
    from recipe.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        return mlflow.pyfunc.load_model(uri) if trust_code else load_champion_data(uri)
    except MlflowException as e:
        if _missing(e):
            raise _not_found(uri, str(e)) from None
        raise PredictError(
            f"cannot load {uri} from {redact_url(tracking_uri())}: {str(e).splitlines()[0]}", code=3
        ) from None
    except OSError as e:
        raise PredictError(f"cannot load {uri}: {e}", code=3) from None


def _source(uri: str) -> tuple[str, str]:
    """(run id, artifact URI of the model folder) behind a ``models:/`` or ``runs:/`` URI."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return run_id, f"runs:/{run_id}/{path}"
    if not uri.startswith("models:/"):
        raise PredictError(f"{uri}: give models:/<name>@<alias>, models:/<name>/<version> or runs:/<run>/<path>")
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, _, alias = ref.partition("@")
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = ref.partition("/")
        version = client.get_model_version(name, number)
    if not version.run_id:
        raise PredictError(
            f"{uri} (version {version.version}) has no source run, so it was not registered by a squeeze run of "
            "recipe-flows; refusing to load it (pass --trust-model-code to run its own code)"
        )
    return version.run_id, client.get_model_version_download_uri(name, version.version)


def load_champion_data(uri: str) -> DataOnlyChampion:
    """The champion at ``uri`` rebuilt from its spec and weights by the local package (see the module docstring).

    Raises:
        PredictError: the version's run is not a squeeze run of this project, the model lacks the champion
            format's artifacts, or a member names a model module outside ``RECIPE_ALLOWED_MODEL_MODULES`` (2).
        MlflowException: no such model, alias or run (turned into exit 2 by :func:`load_model`).
    """
    import tempfile
    from pathlib import Path

    import yaml
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from recipe.champion import ChampionSpec, build_members
    from recipe.policy import PolicyError, check_model_module
    from recipe.tracking import TAG_CONFIG_HASH, TAG_STAGE

    refuse = "refusing to load it (pass --trust-model-code to run the model's own code, if you trust whoever can write "
    refuse += "the store)"
    run_id, model_uri = _source(uri)
    tags = MlflowClient().get_run(run_id).data.tags
    if tags.get(TAG_STAGE) != SQUEEZE_STAGE or not tags.get(TAG_CONFIG_HASH):
        raise PredictError(
            f"{uri} was not registered by a squeeze run of recipe-flows (its run {run_id} has "
            f"{TAG_STAGE}={tags.get(TAG_STAGE)!r}); {refuse}"
        )
    with tempfile.TemporaryDirectory(prefix="recipe-champion-") as tmp:
        mlmodel = Path(download_artifacts(artifact_uri=f"{model_uri.rstrip('/')}/MLmodel", dst_path=tmp))
        meta = yaml.safe_load(mlmodel.read_text()) or {}
        artifacts = ((meta.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
        paths = {k: (artifacts.get(k) or {}).get("path") for k in FORMAT_ARTIFACTS}
        if set(artifacts) != set(FORMAT_ARTIFACTS) or not all(paths.values()):
            raise PredictError(
                f"{uri} is not in the champion format (its artifacts are {sorted(artifacts) or 'none'}, not "
                f"{', '.join(FORMAT_ARTIFACTS)}); {refuse}"
            )
        for key, rel in paths.items():
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise PredictError(f"{uri}: artifact {key} has the path {rel!r}, outside the model; {refuse}")
        local = {
            k: Path(download_artifacts(artifact_uri=f"{model_uri.rstrip('/')}/{rel}", dst_path=tmp))
            for k, rel in paths.items()
        }
        try:
            spec = ChampionSpec.from_json(local["spec"].read_text())
        except (ValueError, KeyError, TypeError) as e:
            raise PredictError(f"{uri}: its champion spec cannot be read ({type(e).__name__}: {e})") from None
        try:
            for i, member in enumerate(spec.members):
                check_model_module(str(member.model.get("name", "")), f"the champion's members[{i}].model.name")
                if Path(member.weights).name != member.weights:
                    raise PredictError(f"{uri}: member weights {member.weights!r} is not a file name; {refuse}")
        except PolicyError as e:
            raise PredictError(f"{e}; or pass --trust-model-code") from None
        nets = build_members(spec, local["weights"])
    return DataOnlyChampion(spec, nets)


def _input_names(model) -> list[str]:
    if isinstance(model, DataOnlyChampion):
        return model.input_names
    schema = model.metadata.get_input_schema()
    return schema.input_names() if schema is not None else []


def predict_path(uri: str, path: Path, out: Path, trust_code: bool = False, chunk: int = CHUNK):
    """Predict every image under ``path`` (a folder or one image) or every row of ``path`` (a .csv) with the
    model at ``uri`` (loaded data-only unless ``trust_code``), ``chunk`` inputs at a time; write ``out`` (CSV:
    ``path`` or ``row``, then ``label`` and ``prob_<class>`` columns, or ``prediction``) and return the predictions
    DataFrame. Raises :class:`PredictError`."""
    import pandas as pd

    from recipe.champion import PredictInputError

    if not path.exists():
        raise PredictError(f"{path} does not exist; pass a folder of images, an image file or a .csv file")
    is_csv = path.is_file() and path.suffix.lower() == ".csv"
    if is_csv:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise PredictError(f"{path} cannot be read as a CSV ({e})") from None
        if not len(frame):
            raise PredictError(f"{path} has no rows to predict")
        inputs, keys = frame, pd.Series(range(len(frame)), name="row")
    else:
        files = gather_images(path)
        if not files:
            raise PredictError(f"no image files under {path} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        inputs = pd.DataFrame({"path": [str(f) for f in files]})
        keys = inputs["path"]
    model = load_model(uri, trust_code=trust_code)
    wanted = _input_names(model)
    lacking = [c for c in wanted if c not in inputs.columns]
    if lacking:
        what = "a CSV of rows" if is_csv else "image files"
        raise PredictError(
            f"{uri} takes inputs with the column(s) {', '.join(map(repr, wanted))}, but {what} from "
            f"{path} give(s) {', '.join(map(repr, inputs.columns))}; missing: "
            f"{', '.join(map(repr, lacking))} (an image model takes a folder of images, a table model "
            "a CSV with the training features)"
        )
    try:  # in chunks: decoded images of a whole folder at once would be N x C x H x W floats in memory
        parts = [model.predict(inputs.iloc[i : i + chunk].reset_index(drop=True)) for i in range(0, len(inputs), chunk)]
        preds = pd.concat(parts, ignore_index=True)
    except PredictInputError as e:
        raise PredictError(str(e)) from None
    except Exception as e:  # MLflow wraps the model's own errors; unwrap ours
        cause = e.__cause__ or e.__context__
        if isinstance(cause, PredictInputError):
            raise PredictError(str(cause)) from None
        if isinstance(e, Exception) and "schema" in str(e).lower():
            raise PredictError(f"the inputs do not match the model's signature: {str(e).splitlines()[0]}") from None
        raise
    result = pd.concat([keys.reset_index(drop=True), preds.reset_index(drop=True)], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    return result
