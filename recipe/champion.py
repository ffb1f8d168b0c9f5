"""The champion: a registered MLflow model that takes raw inputs and returns labels and probabilities.

What squeeze hands a user is not a state_dict but a model that carries its own preprocessing, so that::

    model = mlflow.pyfunc.load_model("models:/digits@champion")
    model.predict(pd.DataFrame({"path": ["a.png", "b.png"]}))        # images: file paths
    model.predict(pd.read_csv("new_rows.csv"))                       # tables: raw feature columns

gives one row per input: ``label`` (the class name; regression: ``prediction`` in the target's units) and,
for classification, ``prob_<class>`` for every class. The preprocessing is the training pipeline's own:
images go through :func:`recipe.data.sources.decode_image` (EXIF orientation, gray or RGB, resized to the
training side), are scaled to 0..1 and standardised with the train split's per-channel statistics; table
cells go through the same placeholder rules (:data:`recipe.data.sources.MISSING_TOKENS`), one-hot levels (rare
and unseen values in the ``<other>`` column, missing cells in the ``<missing>`` indicators), train medians for
missing numbers and the train scaling (robust centre and scale, then the soft clip). An ensemble champion averages its members'
probabilities (regression: predictions).

Format: an MLflow pyfunc (``mlflow.pyfunc.PythonModel``), chosen over ``mlflow.pytorch``'s default
torch.export format on purpose: the artefact must hold the preprocessing and possibly several members, and
load without re-tracing a graph. The ``recipe`` package travels inside the model (``code_paths``), so loading
needs the pinned dependencies, not this checkout. Weights are plain state_dicts, loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # the class is defined whether or not mlflow is importable (tests of the preprocessing need no mlflow)
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[misc,assignment]

SPEC_FILE = "champion.json"
PATH_COLUMN = "path"


class PredictInputError(ValueError):
    """Inputs the champion cannot take (missing columns, unreadable images); the message says what to pass."""


@dataclass
class Member:
    """One network of the champion: its model config (``RecipeConfig.model`` as a dict), weights file and its
    weight in the champion's average (a weighted ensemble, :mod:`recipe.squeeze.weighted`; 1.0 for every member
    of a plain average, and for specs written before the field existed)."""

    model: dict[str, Any]
    weights: str  # file name among the model's artifacts: a state_dict saved with torch.save
    weight: float = 1.0


@dataclass
class ChampionSpec:
    """Everything needed to turn raw inputs into the networks' inputs, and their outputs into answers.

    ``kind`` is "image" or "table". Images: ``mode`` ("L" | "RGB"), ``in_shape`` (C, H, W) the networks take,
    ``image_size`` (the resize side used in training, or None: files had H x W already), ``mean``/``std`` per
    channel on the 0..1 scale. Tables: ``columns`` (raw feature columns, in order), ``encoded`` (the network's
    inputs: a raw column name, or ``col=level`` for a one-hot level), ``fill`` (train medians of the encoded
    columns), ``mean``/``std`` per encoded column. Regression outputs are ``output * target_std +
    target_mean`` (identity when the targets were not standardised).
    """

    task: str  # "classification" | "regression"
    kind: str  # "image" | "table"
    in_shape: list[int]
    classes: list[str]
    members: list[Member]
    mean: list[float]
    std: list[float]
    mode: str | None = None
    image_size: int | None = None
    columns: list[str] = field(default_factory=list)
    encoded: list[str] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)
    kinds: list[list[str]] = field(default_factory=list)
    squash: float | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    description: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ChampionSpec:
        """The spec written by :meth:`to_json` (``champion.json``), members rebuilt as :class:`Member`.

        Raises json.JSONDecodeError on text that is not JSON, KeyError/TypeError on missing or unknown fields."""
        data = json.loads(text)
        data["members"] = [Member(**m) for m in data["members"]]
        return cls(**data)

    @property
    def classifier(self) -> bool:
        from recipe.tasks import task_for

        return task_for(self.task).classifier

    @property
    def output_columns(self) -> list[str]:
        if self.classifier:
            return ["label", *(f"prob_{c}" for c in self.classes)]
        return ["prediction"]


def spec_for(data: Any, members: list[Member], description: str = "") -> ChampionSpec:
    """The spec of a champion whose ``members`` were trained on ``data`` (a :class:`recipe.data.DataBundle`)."""
    m = data.manifest
    image = m.image_mode is not None
    encoded = [] if image else list(m.feature_columns)
    kinds = [] if image else [list(m.feature_kinds.get(c, (c, "number"))) for c in encoded]
    shift, scale = getattr(data, "target_shift", None), getattr(data, "target_scale", None)
    return ChampionSpec(
        task=data.task,
        kind="image" if image else "table",
        in_shape=list(data.in_shape),
        classes=list(data.classes),
        members=members,
        mean=list(data.mean),
        std=list(data.std),
        mode=m.image_mode,
        image_size=m.image_size,
        columns=_raw_columns(encoded, kinds),
        encoded=encoded,
        kinds=kinds,
        squash=getattr(data, "squash", None),
        fill=list(getattr(data, "feature_fill", None) or []),
        target_mean=float(shift) if shift is not None else 0.0,
        target_std=float(scale) if scale is not None else 1.0,
        description=description,
    )


def _raw_columns(encoded: list[str], kinds: list[list[str]] | None = None) -> list[str]:
    """The CSV columns behind the encoded ones (``colour=red`` comes from ``colour``), in order."""
    out: list[str] = []
    for j, col in enumerate(encoded):
        name = kinds[j][0] if kinds else col.split("=", 1)[0]
        if name not in out:
            out.append(name)
    return out


# --- preprocessing ----------------------------------------------------------------------------------------------


def image_inputs(spec: ChampionSpec, items: list[Any]) -> np.ndarray:
    """(N, C, H, W) float32 network inputs from file paths (str / Path) or uint8 arrays (H x W [x 3]).

    Raises :class:`PredictInputError` naming every file that cannot be read, at once.
    """
    from PIL import Image

    from recipe.data.sources import decode_image, to_mode

    c, h, w = spec.in_shape
    arrays, bad = [], []
    for item in items:
        if isinstance(item, (str, Path)):
            d = decode_image(str(item), spec.image_size)
            if d.array is None:
                bad.append(f"{item}: {d.error}")
                continue
            a = d.array
        else:
            a = np.asarray(item)
            if a.dtype != np.uint8:
                bad.append(f"an array of dtype {a.dtype}: pass uint8 pixels (0..255), H x W or H x W x 3")
                continue
        a = to_mode(a, spec.mode or ("L" if c == 1 else "RGB"))
        if a.shape[:2] != (h, w):  # another size than training's: resize as training did (bilinear)
            a = np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BILINEAR))
        arrays.append(a)
    if bad:
        raise PredictInputError(f"{len(bad)} input(s) cannot be read as images:\n" + "\n".join(f"  - {b}" for b in bad))
    x = np.stack(arrays).astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


def table_inputs(spec: ChampionSpec, frame: pd.DataFrame) -> np.ndarray:
    """(N, F) float32 network inputs from raw table rows (the CSV's feature columns; extra columns ignored).

    Raises :class:`PredictInputError` when a feature column is missing.
    """
    from recipe.data.sources import MISSING, MISSING_TOKENS

    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise PredictInputError(
            f"the rows lack the feature column(s) {', '.join(map(repr, missing))}; the model "
            f"takes: {', '.join(spec.columns)}"
        )
    text = {c: frame[c].astype("string").str.strip() for c in spec.columns}
    cells = {c: t.mask(t.str.lower().isin(MISSING_TOKENS) | t.isna()) for c, t in text.items()}
    kinds = spec.kinds or [[c.split("=", 1)[0], "level" if "=" in c else "number"] for c in spec.encoded]
    levels: dict[str, list[str]] = {}
    for (source, kind), col in zip(kinds, spec.encoded):
        if kind == "level":
            levels.setdefault(source, []).append(col[len(source) + 1 :])
    out = np.empty((len(frame), len(spec.encoded)), np.float64)
    for j, ((source, kind), col) in enumerate(zip(kinds, spec.encoded)):
        s = cells[source]
        if kind == "number":
            s = s.str.lower().replace({"true": "1", "false": "0"})
            out[:, j] = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        elif kind == "level":
            hit = (s == col[len(source) + 1 :]).fillna(False).astype(float)
            out[:, j] = np.where(s.isna(), np.nan if not spec.kinds else 0.0, hit)  # old specs: NaN, then filled
        elif kind == MISSING:
            out[:, j] = s.isna().astype(float)
        else:  # OTHER: a value present but none of the column's levels (rare in training, or never seen)
            out[:, j] = (s.notna() & ~s.isin(levels.get(source, [])).fillna(False)).astype(float)
    fill = np.asarray(spec.fill or np.zeros(len(spec.encoded)), np.float64)
    out = np.where(np.isfinite(out), out, fill)
    x = (out - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.squash:
        x = x / np.sqrt(1 + (x / spec.squash) ** 2)
    return x.astype(np.float32)


def answers(spec: ChampionSpec, outputs: np.ndarray) -> pd.DataFrame:
    """Labels and probabilities from averaged probabilities (N, K), or predictions from outputs (N, 1)."""
    if spec.classifier:
        frame = pd.DataFrame(outputs, columns=[f"prob_{c}" for c in spec.classes])
        frame.insert(0, "label", np.asarray(spec.classes, dtype=object)[outputs.argmax(1)])
        return frame
    return pd.DataFrame({"prediction": outputs[:, 0] * spec.target_std + spec.target_mean})


# --- the model -------------------------------------------------------------------------------------------------


def build_members(spec: ChampionSpec, weights_dir: Path) -> list[Any]:
    """The member networks with their weights, in eval mode on the CPU."""
    import torch

    from recipe.config import ModelConfig
    from recipe.models import build_model

    nets = []
    for member in spec.members:
        net = build_model(
            ModelConfig.model_validate(member.model), tuple(spec.in_shape), len(spec.classes) if spec.classifier else 1
        )
        state = torch.load(weights_dir / member.weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        nets.append(net.eval())
    return nets


def predict_outputs(spec: ChampionSpec, nets: list[Any], x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Averaged class probabilities (N, K) or predictions (N, 1) of the members on network inputs ``x``, each
    member weighted by its ``weight`` (normalised to sum to 1)."""
    import torch

    w = torch.tensor([float(m.weight) for m in spec.members], dtype=torch.float32)
    w = w / w.sum()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
            per = [net(xb).float() for net in nets]
            if spec.classifier:
                per = [p.softmax(-1) for p in per]
            outs.append(torch.einsum("m,mnk->nk", w, torch.stack(per)).numpy())
    k = len(spec.classes) if spec.classifier else 1
    return np.concatenate(outs) if outs else np.zeros((0, k), np.float32)


class ChampionModel(PythonModel):
    """The pyfunc: raw inputs in (a DataFrame with a ``path`` column for images, or raw feature columns for
    tables; also a list of paths or uint8 arrays for images), a DataFrame of answers out (see the module)."""

    def load_context(self, context: Any) -> None:
        """MLflow's load hook: read the spec from the ``spec`` artifact and build the member networks (eval
        mode, CPU) from the state_dicts in the ``weights`` artifact folder. Raises what :meth:`ChampionSpec.from_json`
        and ``torch.load(weights_only=True)`` raise on a broken or missing file."""
        spec_path = Path(context.artifacts["spec"])
        self.spec = ChampionSpec.from_json(spec_path.read_text())
        self.nets = build_members(self.spec, Path(context.artifacts["weights"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_frame(self.spec, self.nets, model_input)


def predict_frame(spec: ChampionSpec, nets: list[Any], model_input: Any) -> pd.DataFrame:
    """:meth:`ChampionModel.predict` without MLflow: inputs as described there, answers as a DataFrame."""
    if spec.kind == "image":
        if isinstance(model_input, pd.DataFrame):
            if PATH_COLUMN not in model_input.columns:
                raise PredictInputError(
                    f"image models take a DataFrame with a {PATH_COLUMN!r} column of file "
                    f"paths; got columns {list(model_input.columns)}"
                )
            items = model_input[PATH_COLUMN].tolist()
        else:
            items = list(model_input)
        x = image_inputs(spec, items)
    else:
        if not isinstance(model_input, pd.DataFrame):
            raise PredictInputError("table models take a DataFrame of the CSV's feature columns")
        x = table_inputs(spec, model_input)
    return answers(spec, predict_outputs(spec, nets, x))


# --- logging and registering ----------------------------------------------------------------------------------


def log_champion(
    spec: ChampionSpec,
    states: list[Any],
    *,
    registered_name: str,
    example: Any,
    alias: str = "champion",
    name: str = "champion",
) -> Any:
    """Log the champion to the active MLflow run as a pyfunc with signature and input example, register it
    under ``registered_name`` and point ``alias`` at the new version; returns the ModelVersion.

    ``states``: one state_dict per member of ``spec.members``, in order. ``example``: raw inputs as the
    model takes them (a few rows), used for the input example and the signature (inferred from its output).
    """
    import mlflow
    import torch
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from mlflow.utils import logging_utils

    import recipe

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        weights.mkdir()
        for member, state in zip(spec.members, states, strict=True):
            torch.save({k: v.detach().cpu() for k, v in state.items()}, weights / member.weights)
        (Path(tmp) / SPEC_FILE).write_text(spec.to_json())
        nets = build_members(spec, weights)
        signature = infer_signature(example, predict_frame(spec, nets, example))
        # MLflow's own event lines ("Validating input example against model signature", "Successfully registered
        # model 'digits'.", "Created version '1' ...") went to the user's terminal between the live view's lines;
        # the squeeze stage's notes say what was registered, and an error still raises.
        stream = logging_utils.MLFLOW_LOGGING_STREAM
        was_enabled = stream.enabled
        logging_utils.disable_logging()
        try:
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(Path(__file__).with_name("champion_model.py")),
                artifacts={"spec": str(Path(tmp) / SPEC_FILE), "weights": str(weights)},
                code_paths=[str(Path(recipe.__file__).parent)],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                registered_model_name=registered_name,
            )
        finally:
            if was_enabled:
                logging_utils.enable_logging()
    client = MlflowClient()
    version = client.get_model_version(registered_name, str(info.registered_model_version))
    client.set_registered_model_alias(registered_name, alias, str(version.version))
    return version


def _requirements() -> list[str]:
    """The pinned packages the model needs at load time (explicit: MLflow's inference would load the model)."""
    from importlib.metadata import version

    return [
        f"{p}=={version(p)}"
        for p in ("torch", "torchvision", "numpy", "pandas", "pillow", "pydantic", "pyyaml", "mlflow")
    ]
