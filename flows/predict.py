"""``flows predict``: a registered model on a folder of images or a CSV, predictions written as a CSV.

The model is any MLflow pyfunc URI the champion format serves (``models:/<name>@champion``,
``models:/<name>/<version>``, ``runs:/<run>/champion``); inputs are gathered here, the model's own
preprocessing (:mod:`recipe.champion`) does the rest.
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


def load_model(uri: str):
    """The pyfunc at ``uri``; a missing model is bad input (exit 2), an unreachable store a backend error (3)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from recipe.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        text = str(e)
        if (
            "RESOURCE_DOES_NOT_EXIST" in getattr(e, "error_code", "")
            or "not found" in text.lower()
            or "does not exist" in text.lower()
            or "alias" in text.lower()
        ):
            raise PredictError(
                f"no model at {uri} in the tracking store {tracking_uri()}: {text.splitlines()[0]}\n"
                "run the recipe to the squeeze stage to register a champion, or check the name "
                "(models:/<recipe name>@champion) and MLFLOW_TRACKING_URI"
            ) from None
        raise PredictError(f"cannot load {uri} from {tracking_uri()}: {text.splitlines()[0]}", code=3) from None
    except OSError as e:
        raise PredictError(f"cannot load {uri}: {e}", code=3) from None


def predict_path(uri: str, path: Path, out: Path):
    """Predict every image under ``path`` (a folder or one image) or every row of ``path`` (a .csv) with the
    model at ``uri``; write ``out`` (CSV: ``path`` or ``row``, then ``label`` and ``prob_<class>`` columns, or
    ``prediction``) and return the predictions DataFrame. Raises :class:`PredictError`."""
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
    model = load_model(uri)
    schema = model.metadata.get_input_schema()
    wanted = schema.input_names() if schema is not None else []
    lacking = [c for c in wanted if c not in inputs.columns]
    if lacking:
        what = "a CSV of rows" if is_csv else "image files"
        raise PredictError(
            f"{uri} takes inputs with the column(s) {', '.join(map(repr, wanted))}, but {what} from "
            f"{path} give(s) {', '.join(map(repr, inputs.columns))}; missing: "
            f"{', '.join(map(repr, lacking))} (an image model takes a folder of images, a table model "
            "a CSV with the training features)"
        )
    try:
        preds = model.predict(inputs)
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
