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
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class PredictError(Exception):
    """A predict run that cannot go on; ``code`` is the exit code (2 bad input, 3 the tracking store)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def gather_images(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden files skipped), sorted; ``root`` may be one file."""
    return _walk(root)[0]


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``root`` (recursively, hidden entries skipped as the training loader's
    walk skips them, :func:`recipe.data.folders.hidden`), each sorted; ``root`` may be one file, which goes to
    the first list when its extension is an image's (:data:`IMAGE_EXTENSIONS`, the loader's), else the second."""
    if root.is_file():
        return ([root], []) if root.suffix.lower() in IMAGE_EXTENSIONS else ([], [root])
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for f in sorted(filenames):
            if not _hidden(f):
                (images if Path(f).suffix.lower() in IMAGE_EXTENSIONS else others).append(Path(dirpath) / f)
    return images, others


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # recipe.data.folders.hidden, without importing the package


CHUNK = 256  # inputs decoded and predicted at a time
SQUEEZE_STAGE = "squeeze"
FORMAT_ARTIFACTS = ("spec", "weights")  # the champion format's artifacts (recipe.champion.log_champion)


DEFAULT_MODEL = "models:/digits@champion"  # flows predict's --model when none is given


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
        f"no model at {uri} in the tracking store {redact_url(tracking_uri())}: {text.splitlines()[0]}"
        f"{_other_champions(uri)}\n"
        "run the recipe to the squeeze stage to register a champion, or check the name "
        "(models:/<recipe name>@champion: the recipe's name, e.g. models:/attrition@champion for attrition.csv; "
        f"{DEFAULT_MODEL} is only --model's default) and MLFLOW_TRACKING_URI"
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


@dataclass
class InputScan:
    """What the image inputs are, read before the model is loaded: ``readable`` files, ``unreadable`` (file,
    reason) pairs, and per readable file its stored height, width, whether it has colour (channels that differ),
    and its mean pixel on the 0..1 scale (grey level), and the mean of its border (:func:`border_mean`);
    ``constant``: (file, pixel) for readable files whose every pixel is alike (the one 8-bit value, or RGB triple,
    they decode to)."""

    readable: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    colour: list[bool] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    borders: list[float] = field(default_factory=list)
    constant: list[tuple[Path, tuple[int, ...]]] = field(default_factory=list)


def border_mean(a) -> float:
    """Mean grey level (0..1) of the outer ring of image ``a`` ((H, W) or (H, W, C), 8-bit), the ring
    ``max(1, min(H, W) // 8)`` pixels wide: the background, where an object is centred (MNIST, Fashion-MNIST);
    the whole image's mean when it is too small for a ring."""
    import numpy as np

    h, w = a.shape[:2]
    k = max(1, min(h, w) // 8)
    if h <= 2 * k or w <= 2 * k:
        return float(a.mean()) / 255.0
    # every channel of the ring at once: the mean of the per-pixel grey levels, with no grey copy of the image
    ring = np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])
    return float(ring.mean()) / 255.0


def scan_images(files: list[Path]) -> InputScan:
    """Decode every file once (as training does: :func:`recipe.data.sources.decode_image`, which caches) and
    note its size, colour, mean and whether every pixel is alike; a file that cannot be decoded goes to
    ``unreadable`` with the reason."""
    import numpy as np

    from recipe.data.sources import decode_image

    scan = InputScan()
    for f in files:
        d = decode_image(str(f))
        if d.array is None:
            scan.unreadable.append((f, d.error or "cannot be decoded"))
            continue
        a = d.array
        scan.readable.append(f)
        scan.sizes.append((int(a.shape[0]), int(a.shape[1])))
        colour = a.ndim == 3 and bool(np.ptp(a.astype(np.int16), axis=2).max() > 8)  # grey stored as RGB is grey
        scan.colour.append(colour)
        scan.means.append(float(a.mean()) / 255.0)
        scan.borders.append(border_mean(a))
        pixels = a.reshape(a.shape[0] * a.shape[1], -1)
        if pixels.size and (pixels == pixels[0]).all():
            scan.constant.append((f, tuple(int(v) for v in pixels[0])))
    return scan


def _pixel_name(pixel: tuple[int, ...]) -> str:
    """``all black``, ``all white``, ``all 128`` (grey) or ``all (255, 0, 0)`` (a colour) for an 8-bit pixel."""
    if len(set(pixel)) == 1:
        return {0: "all black", 255: "all white"}.get(pixel[0], f"all {pixel[0]}")
    return f"all {pixel}"


def constant_image_warning(scan: InputScan) -> list[str]:
    """A warning naming the image inputs whose every pixel is alike (all black, all white, one colour), with
    their count: there is no picture in them, so whatever class the model gives them is its guess for a blank
    input, not a reading of the image; [] when there are none. Any model, no spec needed.

    The same rule as the training data's ``image_decoding`` check (recipe.checks.data.constant_images: "decode
    to a single value, every pixel alike"), applied to the inputs of a prediction."""
    if not scan.constant:
        return []
    listed = [f"{f} ({_pixel_name(px)})" for f, px in scan.constant]
    more = f", ... ({len(listed)} in all)" if len(listed) > 5 else ""
    return [
        f"{len(scan.constant)} of {len(scan.readable)} image(s) are constant, every pixel the same value: "
        f"{', '.join(listed[:5])}{more}; there is no picture in them for the model to read, so the class predicted "
        "for them is a guess (a blank file, or a capture or export that lost the picture?)"
    ]


def blank_row_warning(frame, columns: list[str], source: str) -> list[str]:
    """A warning naming the table rows (their ``row`` number in the predictions, 0-based) whose every feature in
    ``columns`` is missing (empty, or a placeholder of :data:`recipe.data.sources.MISSING_TOKENS` such as ``?``,
    ``n/a``, ``-``, as the champion reads them): the model has none of their values, so their prediction is the
    same guess for every such row; [] when there are none. ``frame``: the CSV read as text; ``source``: the
    file, for the message."""
    from recipe.data.sources import MISSING_TOKENS

    columns = [c for c in columns if c in frame.columns]
    if not columns or not len(frame):
        return []
    blank = None
    for c in columns:
        cells = frame[c].astype("string").str.strip()
        missing = (cells.isna() | cells.str.lower().isin(MISSING_TOKENS)).to_numpy(dtype=bool)
        blank = missing if blank is None else blank & missing
    rows = [int(i) for i in blank.nonzero()[0]]
    if not rows:
        return []
    shown = ", ".join(map(str, rows[:10])) + (f", ... ({len(rows)} in all)" if len(rows) > 10 else "")
    return [
        f"{source}: {len(rows)} of {len(frame)} row(s) have every feature missing (empty or a placeholder such as "
        f"'?' or 'n/a' in all of {len(columns)} feature column(s)): row {shown}; the model has none of their "
        "values, so their prediction is the same guess for any such row"
    ]


# A mean pixel this many training pixel standard deviations from the training mean is "unlike the training data";
# 2 sd: an inverted MNIST digit (mean 0.87 vs 0.13, sd 0.31) is 2.4 sd away, the digits' own images stay within 1.
MEAN_SHIFT_SDS = 2.0
# The training data has a polarity (dark background, light strokes or the reverse) when its mean pixel is at least
# this far from mid-grey; an input on the other side of mid-grey then has the opposite polarity.
POLARITY_MARGIN = 0.15


def input_warnings(spec, scan: InputScan) -> list[str]:
    """Warnings, with counts, on image inputs unlike the champion's training inputs (``spec``: its
    :class:`recipe.champion.ChampionSpec`, which records the training images' colour mode, network input size
    H x W, the resize side and the per-channel pixel mean and standard deviation on the 0..1 scale):

    - size: files whose H x W differ from training's when training did not resize (``image_size`` None): they are
      resized here, which training never did;
    - channels: colour files for a greyscale model (converted to grey), grey files for a colour model;
    - polarity: the training images have a clear polarity (mean pixel off mid-grey by :data:`POLARITY_MARGIN`) and
      both the file's mean and its border's (its background) are on the other side of mid-grey (inverted: light
      background for dark, or the reverse); the mean alone called 5% of Fashion-MNIST's own training images
      inverted (a bag of mean pixel 0.64 on a black background, where the training mean is 0.29);
    - pixel statistics: the file's mean pixel is more than :data:`MEAN_SHIFT_SDS` training standard deviations
      from the training mean (exposure, contrast, another kind of picture).

    Constant images (every pixel alike) are left out of the polarity and pixel-statistics counts: they have no
    picture to invert or expose, and :func:`constant_image_warning` names them.

    Distribution-shift checks after Karpathy's recipe, "become one with the data": the model only knows the
    inputs it was trained on.
    """
    import numpy as np

    n = len(scan.readable)
    if spec is None or spec.kind != "image" or not n:
        return []
    out = []
    c, h, w = spec.in_shape
    if spec.image_size is None:
        odd = [s for s in scan.sizes if s != (h, w)]
        if odd:
            common = max(set(odd), key=odd.count)
            out.append(
                f"{len(odd)} of {n} image(s) are not {h}x{w} like the training images (e.g. {common[0]}x{common[1]}); "
                "they were resized, which training never did: predictions on them are less reliable"
            )
    colour = sum(scan.colour)
    if c == 1 and colour:
        out.append(
            f"{colour} of {n} image(s) are in colour; the model was trained on greyscale images, so they were "
            "converted to grey"
        )
    elif c == 3 and n - colour == n and n:
        out.append(f"all {n} image(s) are greyscale; the model was trained on colour images")
    train_mean = float(np.mean(spec.mean))
    train_sd = float(np.mean(spec.std)) or 1.0
    blank = {f for f, _ in scan.constant}  # warned about on their own (constant_image_warning): no picture to invert
    kept = [i for i, f in enumerate(scan.readable) if f not in blank]
    files = [scan.readable[i] for i in kept]
    means = np.asarray([scan.means[i] for i in kept])
    borders = np.asarray([scan.borders[i] for i in kept])
    if abs(train_mean - 0.5) >= POLARITY_MARGIN and len(kept):
        flipped = np.flatnonzero(((means - 0.5) * (train_mean - 0.5) < 0) & ((borders - 0.5) * (train_mean - 0.5) < 0))
        if len(flipped):
            kind = "dark" if train_mean < 0.5 else "light"
            other = "light" if kind == "dark" else "dark"
            named = ", ".join(f"{files[i].name} ({means[i]:.2f})" for i in flipped[:3])
            more = f" and {len(flipped) - 3} more" if len(flipped) > 3 else ""
            out.append(
                f"{len(flipped)} of {n} image(s) look inverted, a {other} background and mostly {other} where the "
                f"training images are mostly {kind} (their mean pixel {train_mean:.2f}): {named}{more}; invert them "
                "(e.g. PIL ImageOps.invert) if the background is the other way round"
            )
    shifted = int(np.sum(np.abs(means - train_mean) > MEAN_SHIFT_SDS * train_sd))
    if shifted:
        out.append(
            f"{shifted} of {n} image(s) have a mean pixel more than {MEAN_SHIFT_SDS:g} training standard deviations "
            f"from the training images' ({train_mean:.2f} +- {train_sd:.2f}): another exposure, contrast or kind "
            "of picture than the model saw"
        )
    return out


@dataclass
class Prediction:
    """What :func:`predict_path` did: the predictions, the files skipped as unreadable (with the reason), the
    files skipped for an extension that is not an image's, and the warnings on inputs unlike the training data."""

    frame: object
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)


@dataclass
class Inputs:
    """The inputs of one predict run, read and checked before the model is loaded (:func:`read_inputs`):
    ``paths`` as given; for images the decoded ``scan`` and ``not_images`` (files skipped for their extension);
    for a CSV its rows in ``frame``; ``skipped`` the unreadable files left out by ``--skip-unreadable``."""

    paths: list[Path]
    is_csv: bool
    files: list[Path]
    frame: object = None
    scan: InputScan | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)


def _shown(files: list[Path], cap: int = 5) -> str:
    more = f", ... ({len(files)} in all)" if len(files) > cap else ""
    return ", ".join(map(str, files[:cap])) + more


def not_images_note(files: list[Path]) -> str:
    """``skipped 2 file(s) that are not images (extensions ...): a/notes.txt, b.csv``; "" for none."""
    if not files:
        return ""
    return f"skipped {len(files)} file(s) that are not images (not {', '.join(sorted(IMAGE_EXTENSIONS))}): " + _shown(
        files
    )


def _gather(paths: list[Path]) -> tuple[list[Path], bool, list[Path]]:
    """The image files of ``paths`` (folders searched recursively), or one CSV: (files, is_csv, the files left
    out because their extension is not an image's, as the training loader leaves them out)."""
    for p in paths:
        if not p.exists():
            raise PredictError(f"{p} does not exist; pass a folder of images, image files or one .csv file")
    csvs = [p for p in paths if p.is_file() and p.suffix.lower() == ".csv"]
    if csvs:
        if len(paths) > 1:
            raise PredictError("give one .csv file, or images and folders of images, not both")
        return csvs, True, []
    files, others = [], []
    for p in paths:
        images, rest = _walk(p)
        files += images
        others += rest
    if not files and all(p.is_file() for p in paths):
        raise PredictError(
            f"{_shown(paths)}: not an image or a .csv file (images: {', '.join(sorted(IMAGE_EXTENSIONS))}); pass "
            "image files, a folder of images, or one .csv file of the training table's columns"
        )
    if not files:
        shown = ", ".join(map(str, paths))
        found = f"; found only {len(others)} other file(s): {_shown(others)}" if others else ""
        raise PredictError(f"no image files under {shown} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}){found}")
    return files, False, others


def read_inputs(paths: list[Path], skip_unreadable: bool = False) -> Inputs:
    """Gather and read the inputs, before any model, store or torch import: a missing path, a folder with no
    images, a CSV that cannot be parsed and an image that cannot be decoded are found here, in about a second.

    Files whose extension is not an image's are left out (:attr:`Inputs.not_images`), as the training loader
    leaves them out. Every image is decoded once (:func:`scan_images`): an unreadable one stops the run
    (PredictError, exit 2, naming the files, and ``--skip-unreadable`` when there are others to predict) unless
    ``skip_unreadable``, which leaves them out and lists them in :attr:`Inputs.skipped`.

    Raises :class:`PredictError`."""
    files, is_csv, others = _gather(paths)
    if is_csv:
        import pandas as pd

        try:
            frame = pd.read_csv(files[0], dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise PredictError(f"{files[0]} cannot be read as a CSV ({e})") from None
        if not len(frame):
            raise PredictError(f"{files[0]} has no rows to predict")
        return Inputs(paths, True, files, frame=frame)
    scan = scan_images(files)
    if scan.unreadable and not (skip_unreadable and scan.readable):
        listed = "\n".join(f"  - {f}: {why}" for f, why in scan.unreadable[:20])
        more = f"\n  ... and {len(scan.unreadable) - 20} more" if len(scan.unreadable) > 20 else ""
        if scan.readable:
            head = f"{len(scan.unreadable)} of {len(files)} file(s) cannot be read as images"
            fix = "fix or remove them, or pass --skip-unreadable to predict the others and list these"
        elif len(files) == 1:
            head, fix = "the file cannot be read as an image", "fix it, or pass an image that decodes"
        else:
            head = f"none of the {len(files)} file(s) can be read as an image"
            fix = "fix them, or pass images that decode"
        note = f"\n({not_images_note(others)})" if others else ""
        raise PredictError(f"{head}:\n{listed}{more}\n{fix}{note}")
    return Inputs(paths, False, files, scan=scan, skipped=scan.unreadable, not_images=others)


def _other_champions(uri: str) -> str:
    """``"; other champions in this store: models:/a@champion, ... (pass one with --model)"``: the registered models
    with a ``champion`` alias other than ``uri``'s, for an input that does not fit ``uri`` (``flows predict``'s
    default model is the digits one, so a table's CSV lands here); "" when there are none or the registry cannot
    be read."""
    try:
        from mlflow import MlflowClient

        names = sorted(m.name for m in MlflowClient().search_registered_models() if "champion" in (m.aliases or {}))
    except Exception:  # a hint only: the error it adds to stands on its own
        return ""
    others = [f"models:/{n}@champion" for n in names if f"models:/{n}@champion" != uri]
    if not others:
        return ""
    return f"; other champions in this store: {', '.join(others[:8])} (pass one with --model)"


def predict_inputs(uri: str, inputs: Inputs, out: Path, trust_code: bool = False, chunk: int = CHUNK) -> Prediction:
    """Predict ``inputs`` (:func:`read_inputs`) with the model at ``uri`` (loaded data-only unless ``trust_code``),
    ``chunk`` inputs at a time; write ``out`` (CSV: ``path`` or ``row``, then ``label`` and ``prob_<class>``
    columns, or ``prediction``). Inputs unlike the training data give :func:`input_warnings`.

    Raises :class:`PredictError`."""
    import pandas as pd

    from recipe.champion import PredictInputError

    if inputs.is_csv:
        frame = inputs.frame
        rows, keys = frame, pd.Series(range(len(frame)), name="row")
    else:
        rows = pd.DataFrame({"path": [str(f) for f in inputs.scan.readable]})
        keys = rows["path"]
    model = load_model(uri, trust_code=trust_code)
    wanted = _input_names(model)
    lacking = [c for c in wanted if c not in rows.columns]
    if lacking:
        what = "a CSV of rows" if inputs.is_csv else "image files"
        raise PredictError(
            f"{uri} takes inputs with the column(s) {', '.join(map(repr, wanted))}, but {what} from "
            f"{', '.join(map(str, inputs.paths))} give(s) {', '.join(map(repr, rows.columns))}; missing: "
            f"{', '.join(map(repr, lacking))} (an image model takes a folder of images, a table model "
            f"a CSV with the training features){_other_champions(uri)}"
        )
    if inputs.scan is not None:
        warnings = constant_image_warning(inputs.scan) + input_warnings(getattr(model, "spec", None), inputs.scan)
    else:
        warnings = blank_row_warning(inputs.frame, wanted or list(inputs.frame.columns), str(inputs.files[0]))
    try:  # in chunks: decoded images of a whole folder at once would be N x C x H x W floats in memory
        parts = [model.predict(rows.iloc[i : i + chunk].reset_index(drop=True)) for i in range(0, len(rows), chunk)]
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
    return Prediction(result, inputs.skipped, warnings, inputs.not_images)


def predict_path(
    uri: str,
    path: Path | list[Path],
    out: Path,
    trust_code: bool = False,
    chunk: int = CHUNK,
    skip_unreadable: bool = False,
) -> Prediction:
    """Predict every image under ``path`` (folders, images; one model load for all) or every row of ``path`` (a
    .csv): :func:`read_inputs`, then :func:`predict_inputs`. Raises :class:`PredictError`."""
    inputs = read_inputs(path if isinstance(path, list) else [path], skip_unreadable)
    return predict_inputs(uri, inputs, out, trust_code=trust_code, chunk=chunk)
