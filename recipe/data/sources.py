"""The four data sources, each turned into the same thing: one row per sample plus a reader for its array.

Every source ends as a :class:`SourceData` -- a DataFrame of samples (no split yet) and a *reader* that returns
the final array of any row -- so that splitting, fingerprinting, strict checks and batching are written once.

* ``digits`` is scikit-learn's 8x8 digits written out as a folder of PNGs on first use, then read like any
  ``imagefolder``: the default run exercises the same code path as a user's own images.
* ``imagefolder`` decodes every image once (PIL) to find unreadable files, sizes, pixel statistics and content
  hashes; the decoded arrays stay in a process-wide cache while they fit under ``data.max_memory_mb``, so the
  later stages of the same process do not read the files again.
* ``csv`` reads a table, picks the task from the target column and one-hot encodes its text columns (the
  frequent levels of each, the rare ones pooled, a missing cell a level of its own).
* ``torchvision`` wraps MNIST / FashionMNIST / CIFAR10 from disk; nothing is downloaded unless asked.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import threading
import time
import uuid
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from .decoding import (
    DEFAULT_MAX_PIXELS,
    PIXELS_IN_FLIGHT,
    WHITE,
    DecodeRefused,
    TooManyPixels,
    bomb_message,
    check_pixels,
    parse_background,
    refuse_bomb_warnings,
    to_8bit,
)
from .errors import DataError, drop_columns_problem, inline, listing, no_rows_problem
from .folders import IMAGE_EXTENSIONS, FolderScan, merge_map, scan_folder, similar_labels

if TYPE_CHECKING:
    from recipe.config import DataConfig

EMBEDDED_TABLES = {"wine": "load_wine", "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10"}
MAX_CLASSES_AUTO = 20  # task=auto: an integer target with at most this many values is a class label
MAX_ONE_HOT_LEVELS = 20  # a text column with at most this many values gets one column per value, however rare
MAX_LEVELS = 64  # a text column with more values: its most frequent levels, at most this many, get a column each
MIN_LEVEL_COUNT = 5  # ... and only those seen in at least this many rows; the rarer ones share the OTHER column
OTHER, MISSING = "<other>", "<missing>"  # the level of pooled rare values, and of missing cells (an indicator)
# Cells that mean "no value" in hand-made and exported tables (compared stripped and lower-cased): pandas
# knows some of them (empty, NA, n/a, null, NaN), not "?" (UCI's Auto MPG) or "-" (spreadsheets).
MISSING_TOKENS = frozenset({"", "?", "-", "--", "na", "n/a", "nan", "null", "none", "#n/a", "<na>", "missing"})
_EXIF_FORMATS = {"JPEG", "MPO", "TIFF", "WEBP"}  # the formats whose EXIF orientation cameras set
_EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 = upright, 2-8 = mirrored and/or rotated


def data_dir() -> Path:
    """Where embedded datasets are materialised and splits are saved (``RECIPE_DATA_DIR``, default ./data)."""
    return Path(os.environ.get("RECIPE_DATA_DIR", "data"))


class Reader(Protocol):
    """Returns the final array of manifest row ``i``: uint8 HxW / HxWx3 for images, float32 features for tables."""

    def read(self, i: int) -> np.ndarray: ...

    def read_many(self, idx: Sequence[int]) -> np.ndarray: ...


@dataclass
class SourceData:
    """What a source hands to the manifest builder (the manifest adds splits and the fingerprint)."""

    df: pd.DataFrame
    task: str
    classes: list[str]
    root: Path
    reader: Reader
    chan_stats: np.ndarray | None = None  # images: (N, 2, C) per-channel mean and mean of squares, 0..1 scale
    fixed_split: pd.Series | None = None  # splits the dataset itself dictates (torchvision's own test set)
    image_mode: str | None = None  # "L" or "RGB"
    features: pd.DataFrame | None = None  # csv: the encoded numeric features, aligned with df
    feature_kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # csv: encoded column -> (source
    # column, kind): "number", "level" (one-hot of a text value), OTHER (pooled rare values) or MISSING (indicator)
    empty_classes: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    bad_columns: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing_tokens: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # csv: column -> token -> rows
    layout: FolderScan | None = None  # image folders: what the walk found (hidden entries, split-named folders, ...)
    label_variants: dict[str, dict[str, int]] = field(default_factory=dict)  # normalised label -> {variant: count}
    merged_labels: dict[str, str] = field(default_factory=dict)  # variant -> merged label (data.merge_similar_labels)
    dropped_columns: dict[str, str] = field(default_factory=dict)  # csv: columns left out, and why


# --- decoding images, with a process-wide cache -----------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """One decoded file: its array (own colour mode, resized if asked) and what the file is as stored."""

    array: np.ndarray | None
    height: int | None = None
    width: int | None = None
    channels: int | None = None
    mode: str | None = None
    error: str = ""
    rotated: bool = False  # stored sideways (an EXIF orientation), turned upright on decoding
    note: str = ""  # what was done to reach 8-bit L / RGB (bit depth scaled, alpha composited, ...); "" if nothing

    @property
    def refused(self) -> bool:
        """Refused before decoding for its pixel count (a decompression bomb), not merely unreadable."""
        return self.error.startswith(BOMB)


BOMB = "decompression bomb refused"


class _DecodeCache:
    """Decoded images keyed by (path, mtime, size, image_size, background, pixel cap), so an edited file (or a
    new setting) is decoded afresh.

    Fill until the budget is spent, then stop adding (no eviction): a dataset larger than the budget would
    make an LRU miss on every sequential pass, while this keeps its first part hot.
    """

    def __init__(self) -> None:
        self.items: dict[tuple, Decoded] = {}
        self.nbytes = 0
        self.budget = 2048 * 2**20
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Decoded | None:
        return self.items.get(key)

    def put(self, key: tuple, value: Decoded) -> None:
        size = 0 if value.array is None else value.array.nbytes
        with self.lock:
            if key not in self.items and self.nbytes + size <= self.budget:
                self.items[key] = value
                self.nbytes += size

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.nbytes = 0


_CACHE = _DecodeCache()


def clear_cache() -> None:
    """Forget every decoded image (tests, or to free memory in a long-lived process)."""
    _CACHE.clear()


def decode_image(
    path: str,
    image_size: int | None = None,
    background: tuple[int, int, int] = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """Decode one file with PIL into 8-bit L or RGB (see :mod:`recipe.data.decoding`); a file that cannot be
    decoded, or whose header declares more than ``max_pixels`` pixels, gives ``array=None`` and an error string.
    ``background``: the RGB colour transparent pixels are composited on."""
    try:
        st = os.stat(path)
    except OSError as e:
        return Decoded(None, error=f"{type(e).__name__}: {e.strerror or e}")
    if st.st_size == 0:
        return Decoded(None, error="empty file (0 bytes): an interrupted download or copy")
    key = (path, st.st_mtime_ns, st.st_size, image_size, background, max_pixels)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _decode(path, (image_size, background, max_pixels))
        _CACHE.put(key, hit)
    return hit


def _decode(path: str, options: tuple[int | None, tuple[int, int, int], int]) -> Decoded:
    image_size, background, max_pixels = options
    try:
        with Image.open(path) as img:
            check_pixels(img, max_pixels)  # from the header: a bomb is refused before a pixel is decoded
            with PIXELS_IN_FLIGHT.hold(img.width * img.height):
                img.load()  # decode now: a truncated file fails here, not later inside a DataLoader worker
                rotated = img.format in _EXIF_FORMATS and img.getexif().get(_EXIF_ORIENTATION, 1) not in (None, 1)
                if rotated:
                    img = ImageOps.exif_transpose(img)  # phone photos are stored sideways with an EXIF rotation
                h, w, bands, mode = img.height, img.width, len(img.getbands()), img.mode
                done = to_8bit(img, background)
                out = done.image
                if image_size and out.size != (image_size, image_size):
                    out = out.resize((image_size, image_size), Image.Resampling.BILINEAR)
                return Decoded(np.asarray(out), h, w, bands, mode, rotated=rotated, note=done.note)
    except TooManyPixels as e:
        return Decoded(None, error=str(e))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return Decoded(None, error=bomb_message(e, max_pixels))
    except DecodeRefused as e:
        return Decoded(None, error=str(e))
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return Decoded(None, error=f"{type(e).__name__}: {e}")


def to_mode(a: np.ndarray, mode: str, stacked: bool = False) -> np.ndarray:
    """Make uint8 pixels gray (HxW) or RGB (HxWx3); ``stacked``: ``a`` is a batch (NxHxW / NxHxWx3)."""
    is_rgb = a.ndim == (4 if stacked else 3)
    if mode == "L" and is_rgb:
        a = a.astype(np.uint32)  # ITU-R 601-2 luma in PIL's fixed-point arithmetic, so results match convert("L")
        return ((a[..., 0] * 19595 + a[..., 1] * 38470 + a[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)
    if mode == "RGB" and not is_rgb:
        return np.repeat(a[..., None], 3, axis=-1)
    return a


_LEVELS = np.arange(256) / 255


def pixel_stats(a: np.ndarray) -> np.ndarray:
    """(2, C): per-channel mean and mean of squares on the 0..1 scale (mergeable into split statistics).

    Through per-channel histograms: exact, and several times faster than float arithmetic on the pixels.
    """
    x = a.reshape(-1, a.shape[-1] if a.ndim == 3 else 1)
    hist = np.stack([np.bincount(x[:, c], minlength=256) for c in range(x.shape[1])]) / len(x)
    return np.stack([hist @ _LEVELS, hist @ _LEVELS**2])


def content_hash(a: np.ndarray) -> str:
    """Hash of the decoded values and shape: the same picture saved as PNG and BMP hashes the same."""
    return hashlib.sha256(str(a.shape).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


class ImageReader:
    """Reads image files for manifest rows, through the decode cache; picklable for DataLoader workers."""

    def __init__(
        self,
        paths: list[str],
        mode: str,
        image_size: int | None,
        background: tuple[int, int, int] = WHITE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.paths, self.mode, self.image_size = paths, mode, image_size
        self.background, self.max_pixels = background, max_pixels

    def read(self, i: int) -> np.ndarray:
        """The image of row ``i`` as uint8, (H, W) for mode "L" or (H, W, 3) for "RGB", resized to ``image_size``
        when set. Raises DataError naming the file when it cannot be decoded."""
        d = decode_image(self.paths[i], self.image_size, self.background, self.max_pixels)
        if d.array is None:
            raise DataError(f"{self.paths[i]}: {d.error}")
        return to_mode(d.array, self.mode)

    def read_many(self, idx: Sequence[int]) -> np.ndarray:
        return np.stack([self.read(int(i)) for i in idx])


class ArrayReader:
    """Rows of an array already in memory (torchvision's tensors, a CSV's features)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def read(self, i: int) -> np.ndarray:
        return self.array[i]

    def read_many(self, idx: Sequence[int]) -> np.ndarray:
        return self.array[np.asarray(idx, dtype=np.int64)]


# --- digits and imagefolder --------------------------------------------------------------------------------


def materialise_digits(root: Path) -> None:
    """Write scikit-learn's digits as ``root/<class>/<index:04d>.png`` (8-bit gray, 0..16 -> round(v*255/16)).

    Written into a hidden temp folder and renamed into place, so an interrupted first run leaves no half
    dataset that later runs would take for the real thing.
    """
    if root.exists():
        return
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for c in range(10):
            (tmp / str(c)).mkdir(parents=True)
        for i, (img, target) in enumerate(zip(pixels, digits.target)):
            Image.fromarray(img).save(tmp / str(target) / f"{i:04d}.png")
        tmp.rename(root)
    except OSError:
        if not root.is_dir():  # else another process finished first; use its copy
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def scan_imagefolder(root: Path) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(class, relative path) of every image file, the empty class folders, and the non-image files ignored.

    Class = the first-level folder; images in deeper folders belong to it (as in torchvision's ImageFolder).
    The walk is :func:`recipe.data.folders.scan_folder` (links that leave the root or loop are refused; hidden
    entries are counted there, not here). Raises DataError as that function does."""
    scan = scan_folder(root)
    return scan.files, scan.empty, scan.ignored


@dataclass(frozen=True)
class DecodeSettings:
    """How every file of a folder is decoded: resize side, alpha background (RGB) and pixel cap."""

    image_size: int | None = None
    background: tuple[int, int, int] = WHITE
    max_pixels: int = DEFAULT_MAX_PIXELS
    luma: bool = False  # statistics of colour files as luma (data.grayscale=true)

    @classmethod
    def of(cls, cfg: DataConfig) -> DecodeSettings:
        return cls(cfg.image_size, parse_background(cfg.background), cfg.max_image_pixels, cfg.grayscale is True)


def image_source(cfg: DataConfig, root: Path, source: str) -> SourceData:
    """Scan an image folder (one sub-folder per class) and describe every file: a classification
    :class:`SourceData` with one manifest row per file, per-file channel statistics ``chan_stats`` (N, 2, C) on the
    0..1 scale, the colour mode ("L" only when every readable file is gray, unless ``data.grayscale`` says), what
    decoding did to each file (column ``decoding``), the folder's layout and notes for the inspect report.
    Class folders whose names differ only in case or whitespace are merged when ``data.merge_similar_labels``.
    ``source`` names the data source in messages.

    Raises DataError when ``data.task`` is regression (class folders carry no numeric target), when no file
    has an image extension, when a link leaves the root or loops, or when a file's header declares more than
    ``data.max_image_pixels`` pixels (a decompression bomb: every such file is named)."""
    from recipe.tasks import CLASSIFICATION, TASKS  # torch: not needed to decode a file (flows predict)

    if not TASKS.get(cfg.task, CLASSIFICATION).classifier:  # data.task "auto" means classification here
        raise DataError(
            f"data.task=regression needs a numeric target, but {source} data is labelled by class folders; "
            "use data.task=auto (or classification), or data.source=csv with a numeric target column"
        )
    scan = scan_folder(root)
    files, empty, ignored = scan.files, scan.empty, scan.ignored
    if not files:
        raise DataError(
            f"no image files under {root} (class folders: {inline(empty)}); images need one of the extensions "
            f"{inline(sorted(IMAGE_EXTENSIONS))}"
        )
    paths = [str(root / rel) for _, rel in files]
    settings = DecodeSettings.of(cfg)
    if settings.max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = settings.max_pixels  # PIL's own bomb check must not undercut the stated cap
    PIXELS_IN_FLIGHT.budget = settings.max_pixels
    refuse_bomb_warnings()  # again: a test harness or a caller may have reset the warning filters since import
    infos = _described(paths, settings)
    bombs = [(rel, f.error) for (_, rel), f in zip(files, infos) if f.error.startswith(BOMB)]
    if bombs:
        raise DataError(
            f"{len(bombs)} file(s) under {root} refused before decoding:\n"
            + listing(f"{rel}: {err}" for rel, err in bombs)
        )
    ok = [f for f in infos if not f.error]
    if cfg.grayscale is not None:
        mode = "L" if cfg.grayscale else "RGB"
    else:  # 1 channel only if every image is gray: one colour image makes them all RGB
        mode = "L" if all(f.gray for f in ok) else "RGB"
    folder_counts = Counter(c for c, _ in files)
    variants = similar_labels(folder_counts)
    merged = merge_map(variants) if cfg.merge_similar_labels else {}
    labels = [merged.get(c, c) for c, _ in files]
    classes = sorted(set(labels))
    idx = {c: i for i, c in enumerate(classes)}
    n_chan = 1 if mode == "L" else 3
    chan_stats = np.full((len(infos), 2, n_chan), np.nan)
    for i, f in enumerate(infos):
        if not f.error:
            chan_stats[i] = f.stats  # broadcasts a gray file's single channel to R, G and B
    df = pd.DataFrame(
        {
            "id": [rel for _, rel in files],
            "path": paths,
            "row": pd.array([None] * len(files), dtype="Int64"),
            "label": labels,
            "label_idx": pd.array([idx[c] for c in labels], dtype="Int64"),
            "height": pd.array([f.height for f in infos], dtype="Int64"),
            "width": pd.array([f.width for f in infos], dtype="Int64"),
            "channels": pd.array([f.channels for f in infos], dtype="Int64"),
            "mode": [f.mode for f in infos],
            **_mean_std(chan_stats),
            "hash": [f.hash for f in infos],
            "readable": [not f.error for f in infos],
            "error": [f.error for f in infos],
            "decoding": [f.note for f in infos],
        }
    )
    notes = []
    if ignored:
        notes.append(f"{len(ignored)} files without an image extension were ignored: {inline(ignored, 10)}")
    if empty:
        notes.append(f"empty class folders: {inline(empty)}")
    rotated = [rel for (_, rel), f in zip(files, infos) if f.rotated]
    if rotated:
        notes.append(
            f"{len(rotated)} of {len(files)} files are stored rotated or mirrored (EXIF orientation) and "
            f"were turned upright, as a viewer shows them: {inline(rotated, 10)}"
        )
    if mode == "L" and not all(f.gray for f in ok):
        notes.append(f"{sum(not f.gray for f in ok)} colour files were read as gray (data.grayscale=true)")
    elif mode == "RGB" and any(f.gray for f in ok):
        notes.append(
            f"{sum(f.gray for f in ok)} gray files were repeated into 3 channels, as the other files are "
            "colour (data.grayscale=true reads every file as one gray channel instead)"
        )
    if merged:
        notes.append(
            "class folders merged (data.merge_similar_labels=true): "
            + "; ".join(f"{inline(map(repr, v))} -> {merged[v[0]]!r}" for v in variants.values())
        )
    return SourceData(
        df,
        "classification",
        classes,
        root,
        ImageReader(paths, mode, cfg.image_size, settings.background, settings.max_pixels),
        chan_stats,
        image_mode=mode,
        empty_classes=empty,
        ignored_files=ignored,
        notes=notes,
        layout=scan,
        label_variants={k: {v: folder_counts[v] for v in vs} for k, vs in variants.items()},
        merged_labels={k: v for k, v in merged.items() if k != v},
    )


@dataclass(frozen=True)
class FileInfo:
    """What the manifest keeps of a decoded file (not its pixels: those live in the cache, if they fit).

    ``stats`` are taken in the file's own mode (luma for a colour file when data.grayscale is true), since
    the dataset's mode is known only after every file is seen; a gray file's statistics serve for RGB as is.
    The hash is of the pixels in the file's own mode, after resizing. ``note`` says what decoding did to the
    file (bit depth scaled, alpha composited, palette expanded, colour space converted; "" when nothing).
    """

    height: int | None
    width: int | None
    channels: int | None
    mode: str | None
    gray: bool
    stats: np.ndarray | None
    hash: str
    error: str
    rotated: bool = False
    note: str = ""


def _describe(path: str, s: DecodeSettings) -> FileInfo:
    d = decode_image(path, s.image_size, s.background, s.max_pixels)
    a = d.array
    if a is None:
        return FileInfo(None, None, None, None, False, None, "", d.error)
    gray = a.ndim == 2
    stats = pixel_stats(to_mode(a, "L") if s.luma and not gray else a)
    return FileInfo(d.height, d.width, d.channels, d.mode, gray, stats, content_hash(a), "", d.rotated, d.note)


def _describe_all(paths: list[str], s: DecodeSettings) -> list[FileInfo]:
    """Describe every file: in threads when decoding dominates, else sequentially.

    PIL releases the GIL while it decodes, so big images decode in parallel; for small ones (digits,
    thumbnails, cache hits) the per-file Python work dominates and threads only add contention (measured
    on 2 cores: 400x300 JPEGs 1.6x faster with threads, 64x64 ones 1.5x slower). So time the first files.
    The threads share :data:`recipe.data.decoding.PIXELS_IN_FLIGHT`, so large files decode one at a time.
    """
    head = 33
    infos = [_describe(p, s) for p in paths[:1]]  # not timed: it loads PIL's format plugins
    start = time.perf_counter()
    infos += [_describe(p, s) for p in paths[1:head]]
    slow = (time.perf_counter() - start) / max(len(infos) - 1, 1) > 1e-3
    workers = min(8, os.cpu_count() or 1)
    if slow and workers > 1 and len(paths) > 2 * head:
        with ThreadPoolExecutor(workers) as pool:
            return infos + list(pool.map(lambda p: _describe(p, s), paths[head:]))
    return infos + [_describe(p, s) for p in paths[head:]]


DISK_CACHE_VERSION = 2  # 2: decoding notes, background and pixel cap in the key


def disk_cache_dir() -> Path:
    """Where decoded image folders are kept between processes: ``<data dir>/cache`` (see :func:`data_dir`)."""
    return data_dir() / "cache"


def _described(paths: list[str], s: DecodeSettings) -> list[FileInfo]:
    """:func:`_describe_all`, through a disk cache of the decoded folder.

    The first process to read a folder decodes every file and saves the pixels, the per-file statistics and
    content hashes as one ``.npz`` under :func:`disk_cache_dir`; a later process (the next ``flows run``, a
    trial worker) loads that file instead of decoding again, and fills the in-process decode cache from it,
    so the reader hands out the same arrays. The file's key is a hash of every path with its modification
    time and size, and the decode settings (resize side, luma flag, alpha background, pixel cap), so editing,
    adding or removing a file makes a new key; the content hashes inside give the data fingerprint unchanged.
    Only folders whose readable images all decode to one shape (the only ones that load without resizing
    anyway, or all of them with ``data.image_size``) and whose pixels fit the decode cache's budget are saved;
    the rest decode as before.
    """
    stats = []
    for p in paths:
        try:
            st = os.stat(p)
            stats.append((p, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((p, -1, -1))
    h = hashlib.sha256(repr((DISK_CACHE_VERSION, s.image_size, s.luma, s.background, s.max_pixels)).encode())
    for p, m, size in stats:
        h.update(f"{p}\0{m}\0{size}\n".encode())
    path = disk_cache_dir() / f"decoded-{h.hexdigest()[:20]}.npz"
    if _CACHE.budget > 0 and path.is_file():
        try:
            return _load_described(path, stats, s)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # damaged or foreign: decode afresh, overwrite
            pass
    infos = _describe_all(paths, s)
    if _CACHE.budget > 0:
        _save_described(path, stats, s, infos)
    return infos


def _cache_key(stat: tuple[str, int, int], s: DecodeSettings) -> tuple:
    return (*stat, s.image_size, s.background, s.max_pixels)


def _save_described(path: Path, stats: list[tuple[str, int, int]], s: DecodeSettings, infos: list[FileInfo]) -> None:
    ok = [i for i, f in enumerate(infos) if not f.error]
    arrays = []
    for i in ok:
        d = _CACHE.get(_cache_key(stats[i], s))
        if d is None or d.array is None:
            return  # not every array stayed in the decode cache (over budget): nothing to save
        arrays.append(d.array)
    if len({a.shape for a in arrays}) > 1 or sum(a.nbytes for a in arrays) > _CACHE.budget:
        return
    n = len(infos)
    ints = np.full((n, 3), -1, dtype=np.int64)  # height, width, channels as stored
    for i, f in enumerate(infos):
        if not f.error:
            ints[i] = (f.height, f.width, f.channels)
    first = infos[ok[0]].stats if ok else np.zeros((2, 1))
    fstats = np.zeros((n, *first.shape))
    for i in ok:
        fstats[i] = infos[i].stats
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            tmp,
            pixels=np.stack(arrays) if arrays else np.zeros((0,), np.uint8),
            ok=np.array(ok, dtype=np.int64),
            ints=ints,
            stats=fstats,
            gray=np.array([f.gray for f in infos]),
            mode=np.array([f.mode or "" for f in infos]),
            hash=np.array([f.hash for f in infos]),
            error=np.array([f.error for f in infos]),
            note=np.array([f.note for f in infos]),
        )
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only data dir: the cache is an optimisation, not a requirement


def _load_described(path: Path, stats: list[tuple[str, int, int]], s: DecodeSettings) -> list[FileInfo]:
    with np.load(path, allow_pickle=False) as z:
        pixels, ok, ints, fstats = z["pixels"], z["ok"], z["ints"], z["stats"]
        gray, mode, hashes, errors = z["gray"], z["mode"].tolist(), z["hash"].tolist(), z["error"].tolist()
        notes = z["note"].tolist()
    if len(ints) != len(stats):
        raise ValueError("cache file does not match the folder")
    infos: list[FileInfo] = []
    for i, err in enumerate(errors):
        if err:
            infos.append(FileInfo(None, None, None, None, False, None, "", err))
        else:
            h, w, c = (int(v) for v in ints[i])
            infos.append(FileInfo(h, w, c, mode[i], bool(gray[i]), fstats[i], hashes[i], "", note=notes[i]))
    for j, i in enumerate(ok.tolist()):
        f = infos[i]
        _CACHE.put(_cache_key(stats[i], s), Decoded(pixels[j], f.height, f.width, f.channels, f.mode, note=f.note))
    return infos


def _mean_std(chan_stats: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample mean and std over all pixels and channels, from the per-channel moments."""
    mean = chan_stats[:, 0].mean(1)
    return {"mean": mean, "std": np.sqrt(np.maximum(chan_stats[:, 1].mean(1) - mean**2, 0))}


# --- csv --------------------------------------------------------------------------------------------------


def materialise_table(name: str, path: Path) -> None:
    """Write one of scikit-learn's bundled tables as a CSV (features + "target"), atomically."""
    if path.exists():
        return
    import sklearn.datasets

    kwargs = {"scaled": False} if name == "diabetes" else {}  # raw units, like a user's CSV; we standardise
    frame = getattr(sklearn.datasets, EMBEDDED_TABLES[name])(as_frame=True, **kwargs).frame
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def csv_source(cfg: DataConfig) -> SourceData:
    """A CSV of feature columns and a target column.

    Task "auto": classification when the target is text/bool, or integer-valued with at most
    ``MAX_CLASSES_AUTO`` distinct values; otherwise regression. ``data.task`` overrides it.
    Features (:func:`encode_features`): numbers and bools as they are; a text column of any cardinality is
    one-hot encoded (``col=value``; beyond ``MAX_ONE_HOT_LEVELS`` values only the frequent ones, the rest
    pooled in ``col=<other>``); placeholder cells (``?``, ``n/a``, ``-``, empty, ...: :data:`MISSING_TOKENS`)
    are missing values: a ``col=<missing>`` indicator column, and for numbers the train median when the data is
    loaded. A column with no value at all, or a text column whose every value is rare (an identifier, free
    text), is dropped with a note (``dropped_columns``), never a stop.
    A row with a missing target or an infinite feature is unreadable.
    """
    target = cfg.target
    if cfg.root is None:
        name = (cfg.name or "").lower()
        if name not in EMBEDDED_TABLES:
            raise DataError(
                f"data.name={cfg.name!r} is not an embedded table ({inline(EMBEDDED_TABLES)}); "
                "for your own data pass data.root=PATH/TO/FILE.csv and data.target=COLUMN"
            )
        path = data_dir() / f"{name}.csv"
        materialise_table(name, path)
        target = target or "target"
    else:
        path = Path(cfg.root)
    if not path.exists():
        raise DataError(f"data.root {path} does not exist; point data.root at a .csv file")
    if path.is_dir():
        raise DataError(f"data.root {path} is a folder; data.source=csv needs a .csv file (folders: imagefolder)")
    try:
        table, tokens = read_table(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read as a CSV ({e}); check it is comma-separated UTF-8 text") from None
    columns = list(table.columns)
    if table.empty:
        raise DataError(no_rows_problem(path, columns))
    if target is None:
        raise DataError(f"{path}: data.target is not set; pass --set data.target=COLUMN, one of: {inline(columns)}")
    if target not in columns:
        close = difflib.get_close_matches(target, columns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{path}: target column {target!r} not found{hint} (columns: {inline(columns)})")
    problem = drop_columns_problem(path, list(cfg.drop_columns), columns, target)
    if problem:
        raise DataError(problem)
    y, x = table[target], table.drop(columns=[target, *cfg.drop_columns])
    if x.shape[1] == 0:
        raise DataError(
            f"{path}: no feature columns besides the target {target!r}"
            + (f" and data.drop_columns ({inline(cfg.drop_columns)})" if cfg.drop_columns else "")
        )
    task, why_task = _table_task(y, cfg.task, f"{path}: target column {target!r}")
    features, kinds, dropped = encode_features(x)
    values = features.to_numpy(np.float64)
    infinite = np.isinf(values)
    missing_target = y.isna().to_numpy()
    errors = []
    for i in range(len(table)):
        why = ["missing target"] if missing_target[i] else []
        if infinite[i].any():
            why.append("infinite value in " + ", ".join(features.columns[infinite[i]]))
        errors.append("; ".join(why))
    notes = [f"task: {task}, because {why_task}"]
    if cfg.root is None:  # a preset's example table: say so, a user who forgot data.root would not know it
        notes.insert(
            0,
            f"no data.root: scikit-learn's {name} table ({path}), this preset's example, was used; for your own "
            "table pass --set data.root=FILE.csv --set data.target=COLUMN",
        )
    variants: dict[str, dict[str, int]] = {}
    merged: dict[str, str] = {}
    from recipe.tasks import task_for

    if task_for(task).classifier:
        labels = y.map(_label_string)
        labels, variants, merged = _similar_targets(path, target, labels, cfg.merge_similar_labels)
        classes = sorted(labels.dropna().unique(), key=_class_order)
        idx = {c: i for i, c in enumerate(classes)}
        label_idx = pd.array([idx.get(v) for v in labels], dtype="Int64")
        if [str(i) for i in range(len(classes))] != classes:
            notes.append(
                f"target values {inline(map(repr, classes), 6)} are trained as class indices "
                f"0..{len(classes) - 1} in that order; predictions are reported with the original names"
            )
    else:
        labels, classes = y.astype(float), []
        label_idx = pd.array([None] * len(table), dtype="Int64")
    missing = {c: t for c, t in tokens.items() if c in x.columns}
    kept = {c: t for c, t in missing.items() if c not in dropped}
    if kept:
        notes.append(
            "missing cells (a number: the train median of its column, and a '<missing>' indicator column; a "
            "text value: a '<missing>' level): " + "; ".join(f"{c}: {describe_tokens(t)}" for c, t in kept.items())
        )
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing row: NaN statistics
        mean, std = np.nanmean(values, 1), np.nanstd(values, 1)
    df = pd.DataFrame(
        {
            "id": [f"row:{i}" for i in range(len(table))],
            "path": None,
            "row": pd.array(range(len(table)), dtype="Int64"),
            "label": labels.to_numpy(),
            "label_idx": label_idx,
            "mean": mean,
            "std": std,
            "hash": [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in values],
            "readable": [not e for e in errors],
            "error": errors,
        }
    )
    notes += [f"dropped feature column {c!r}: {why}" for c, why in dropped.items()]
    if cfg.drop_columns:
        notes.append(f"left out of the inputs by data.drop_columns: {inline(map(repr, cfg.drop_columns))}")
    if merged:
        notes.append(
            "target values merged (data.merge_similar_labels=true): "
            + "; ".join(f"{inline(map(repr, v))} -> {merged[next(iter(v))]!r}" for v in variants.values())
        )
    return SourceData(
        df,
        task,
        classes,
        path,
        ArrayReader(values.astype(np.float32)),
        features=features,
        feature_kinds=kinds,
        dropped_columns=dropped,
        notes=notes,
        missing_tokens=missing,
        label_variants=variants,
        merged_labels={k: v for k, v in merged.items() if k != v},
    )


def _similar_targets(
    path: Path, target: str, labels: pd.Series, merge: bool
) -> tuple[pd.Series, dict[str, dict[str, int]], dict[str, str]]:
    """Class labels of a CSV target, checked for values that differ only in case or whitespace.

    :func:`read_table` strips every cell, which would merge ``'shoes '`` into ``'shoes'`` without a word; so the
    target column is read again as written. Returns the labels (the written variants kept apart, or merged into
    the most frequent one when ``merge``), normalised label -> {variant: rows}, and variant -> merged label."""
    raw = pd.read_csv(path, usecols=[target], dtype=str, keep_default_na=False)[target]
    written = raw.where(labels.notna().to_numpy())
    counts = Counter(written.dropna())
    groups = similar_labels(counts)
    if not groups:
        return labels, {}, {}
    members = {v for g in groups.values() for v in g}
    merged = merge_map(groups) if merge else {}
    kept = written.map(lambda v: merged.get(v, v) if v in members else None)
    labels = kept.where(kept.notna(), labels)
    return labels, {k: {v: counts[v] for v in g} for k, g in groups.items()}, merged


def read_table(path: Path) -> tuple[pd.DataFrame, dict[str, dict[str, list[int]]]]:
    """A CSV with placeholder cells (:data:`MISSING_TOKENS`) read as missing, and where they were.

    Each column is typed from its other cells, so a number column with a few ``?`` stays numeric (pandas alone
    would make it text, and a one-hot encoder would then invent a ``?`` category). Returns the table (numbers,
    bools or text; missing cells NaN) and ``column -> token -> row positions`` for the cells read as missing.

    Raises pandas' ParserError / EmptyDataError and UnicodeDecodeError for a file that is no CSV.
    """
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw.columns = [str(c) for c in raw.columns]
    typed, tokens = {}, {}
    for col in raw.columns:
        cells = raw[col].str.strip()
        is_token = cells.str.lower().isin(MISSING_TOKENS)
        if is_token.any():
            found: dict[str, list[int]] = {}
            for pos in np.flatnonzero(is_token.to_numpy()):
                found.setdefault(cells.iloc[pos], []).append(int(pos))
            tokens[col] = found
        typed[col] = _typed(cells.mask(is_token))
    return pd.DataFrame(typed, index=raw.index), tokens


def _typed(cells: pd.Series) -> pd.Series:
    """Numbers if every present cell parses as one, bools if every one is true/false, else the text."""
    present = cells.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return pd.to_numeric(cells)
    lower = present.str.lower()
    if len(present) and lower.isin(("true", "false")).all():
        flags = cells.str.lower().map({"true": True, "false": False})
        return flags.astype(bool) if flags.notna().all() else flags.astype(float)
    if not len(present):
        return pd.Series(np.nan, index=cells.index)  # an empty column: numeric, all missing
    return cells


def describe_tokens(found: dict[str, list[int]], cap: int = 5) -> str:
    """``'?' in 4 rows (12, 40, 77, 300)``: placeholder cells of one column, rows as 0-based positions."""
    parts = []
    for token, rows in found.items():
        shown = repr(token) if token else "empty"
        parts.append(f"{shown} in {len(rows)} row{'s' if len(rows) != 1 else ''} ({inline(rows, cap)})")
    return ", ".join(parts)


def _table_task(y: pd.Series, forced: str, what: str) -> tuple[str, str]:
    """The task for target ``y`` and why, in words (``data.task`` when set, else read from the values)."""
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if forced == "regression" and not numeric:
        raise DataError(f"{what} is not numeric (e.g. {y.dropna().iloc[0]!r}), so data.task=regression is impossible")
    n = y.nunique(dropna=True)
    if forced != "auto":
        return forced, f"data.task={forced} (the target {y.name!r} has {n} distinct values)"
    if not numeric:
        return "classification", f"the target {y.name!r} holds text or bools ({n} distinct values)"
    values = y.dropna().to_numpy(np.float64)
    integral = bool(np.all(np.mod(values, 1) == 0))
    if integral and n <= MAX_CLASSES_AUTO:
        return "classification", (
            f"the target {y.name!r} holds {n} distinct whole numbers (at most "
            f"{MAX_CLASSES_AUTO} are read as classes; data.task=regression overrides)"
        )
    kind = "whole numbers" if integral else "numbers with fractions"
    return "regression", (
        f"the target {y.name!r} holds {n} distinct {kind} (classes: whole numbers, at most "
        f"{MAX_CLASSES_AUTO} of them; data.task=classification overrides)"
    )


def _label_string(v: object) -> str | None:
    if pd.isna(v):
        return None
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))  # 1.0 -> "1": a float column that holds class numbers
    return str(v)


def _class_order(name: str) -> tuple:
    try:
        return (0, float(name), name)  # numeric labels in numeric order: "2" before "10"
    except ValueError:
        return (1, 0.0, name)


def encode_features(x: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, str]], dict[str, str]]:
    """The network's inputs from a table's raw feature columns (missing cells NaN, as :func:`read_table` gives).

    Returns ``(features, kinds, dropped)``: the encoded columns (float; NaN only in number columns, filled
    when the data is loaded), each encoded column's ``(source column, kind)`` (see
    :attr:`SourceData.feature_kinds`), and the columns left out with the reason.

    * a number or bool column stays one column; with missing cells it gains a ``col=<missing>`` 0/1 indicator
      (scikit-learn's ``SimpleImputer(add_indicator=True)``: missingness often carries signal);
    * a text column is one-hot encoded, one ``col=value`` column per level; with more than
      ``MAX_ONE_HOT_LEVELS`` levels only those seen in at least ``MIN_LEVEL_COUNT`` rows (the
      ``MAX_LEVELS`` most frequent) get a column and the rarer ones share ``col=<other>`` (the infrequent
      category of scikit-learn's ``OneHotEncoder(min_frequency=, max_categories=)``); a missing cell is a
      level of its own, ``col=<missing>``, so every missing cell is counted once, in its own column;
    * a column without a single value, or a text column with no level that frequent (an identifier, free text:
      nothing a model could learn from it carries to a new row), is dropped.

    The levels are counted over the whole table's features (no labels, so nothing of the target leaks).
    """
    parts: list[pd.Series] = []
    kinds: dict[str, tuple[str, str]] = {}
    dropped: dict[str, str] = {}

    def add(name: str, values: pd.Series, source: str, kind: str) -> None:
        parts.append(values.rename(name).astype(float))
        kinds[name] = (source, kind)

    for col in x.columns:
        s = x[col]
        absent = s.isna()
        if len(s) and absent.all():
            dropped[col] = f"all {len(s)} cells missing: nothing to learn from"
            continue
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            add(col, s, col, "number")
        else:
            text = s.astype("string")
            counts = text.value_counts(dropna=True)  # most frequent first; ties in order of appearance
            if len(counts) <= MAX_ONE_HOT_LEVELS:
                levels = sorted(counts.index)
            else:
                levels = [v for v, n in counts.items() if n >= MIN_LEVEL_COUNT][:MAX_LEVELS]
            if not levels:
                dropped[col] = (
                    f"text with {len(counts)} distinct values in {len(s)} rows, none in {MIN_LEVEL_COUNT} or more "
                    f"(e.g. {inline(map(repr, counts.index[:3]))}): an identifier or free text"
                )
                continue
            for level in levels:
                add(f"{col}={level}", (text == level).fillna(False), col, "level")
            rare = ~absent & ~text.isin(levels).fillna(False)
            if rare.any():
                add(f"{col}={OTHER}", rare, col, OTHER)
        if absent.any():
            add(f"{col}={MISSING}", absent, col, MISSING)
    features = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=x.index)
    return features, kinds, dropped


# --- torchvision ------------------------------------------------------------------------------------------


def torchvision_source(cfg: DataConfig) -> SourceData:
    """MNIST / FashionMNIST / CIFAR10 from ``data.root`` (default data/torchvision).

    The dataset's own test set is the test split (the number papers report); ``data.split.val`` of its
    training set is held out for validation, and ``data.split.test`` is not used.
    """
    import torch
    import torchvision.datasets as tvd

    key = (cfg.name or "").lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION_DATASETS:
        raise DataError(f"unknown torchvision dataset {cfg.name!r}; known: {inline(TORCHVISION_DATASETS.values())}")
    cls = getattr(tvd, TORCHVISION_DATASETS[key])
    root = Path(cfg.root) if cfg.root is not None else data_dir() / "torchvision"
    where = root / cls.base_folder if hasattr(cls, "base_folder") else root / cls.__name__ / "raw"
    try:
        sets = [cls(str(root), train=train, download=cfg.download) for train in (True, False)]
    except Exception as e:
        if cfg.download:
            raise DataError(f"downloading {cls.__name__} into {root} failed: {e}") from None
        raise DataError(
            f"{cls.__name__} not found (or incomplete) under {root} (looked in {where}); pass --set "
            "data.download=true to download it, or set data.root to the folder that already holds it"
        ) from None
    arrays = [np.asarray(s.data) for s in sets]  # uint8, N x H x W (MNIST) or N x H x W x 3 (CIFAR)
    targets = np.concatenate([np.asarray(s.targets, dtype=np.int64) for s in sets])
    a = np.concatenate(arrays)
    mode = ("L" if cfg.grayscale else "RGB") if cfg.grayscale is not None else ("L" if a.ndim == 3 else "RGB")
    a = to_mode(a, mode, stacked=True)
    if cfg.image_size and a.shape[1:3] != (cfg.image_size, cfg.image_size):
        a = _resize_stack(a, cfg.image_size, torch)
    n, h, w = a.shape[:3]
    chan_stats = np.concatenate([_stack_stats(a[i : i + 4096]) for i in range(0, n, 4096)])
    subset = np.repeat(["train", "test"], [len(arrays[0]), len(arrays[1])])
    rows = np.concatenate([np.arange(len(arrays[0])), np.arange(len(arrays[1]))])
    classes = [str(c) for c in sets[0].classes]
    df = pd.DataFrame(
        {
            "id": [f"{s}:{r}" for s, r in zip(subset, rows)],
            "path": None,
            "row": pd.array(rows, dtype="Int64"),
            "label": np.asarray(classes, dtype=object)[targets],
            "label_idx": pd.array(targets, dtype="Int64"),
            "subset": subset,
            "height": pd.array(np.full(n, h), dtype="Int64"),
            "width": pd.array(np.full(n, w), dtype="Int64"),
            "channels": pd.array(np.full(n, 1 if mode == "L" else 3), dtype="Int64"),
            "mode": mode,
            **_mean_std(chan_stats),
            "hash": [content_hash(x) for x in a],
            "readable": True,
            "error": "",
        }
    )
    fixed = pd.Series(np.where(subset == "test", "test", None), index=df.index)
    note = f"{cls.__name__}'s own test set is the test split; data.split.test is not used"
    return SourceData(df, "classification", classes, root, ArrayReader(a), chan_stats, fixed, mode, notes=[note])


def _stack_stats(a: np.ndarray) -> np.ndarray:
    x = a.reshape(len(a), -1, a.shape[-1] if a.ndim == 4 else 1).astype(np.float32) / 255
    return np.stack([x.mean(1), np.square(x).mean(1)], axis=1).astype(np.float64)


def _resize_stack(a: np.ndarray, size: int, torch) -> np.ndarray:
    out = []
    for i in range(0, len(a), 4096):
        t = torch.from_numpy(a[i : i + 4096]).float()
        t = t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True)
        t = t.round().clamp(0, 255).to(torch.uint8)
        out.append((t[:, 0] if a.ndim == 3 else t.permute(0, 2, 3, 1)).numpy())
    return np.concatenate(out)


def load_source(cfg: DataConfig) -> SourceData:
    """The :class:`SourceData` of ``cfg.source``: digits (written out as a PNG folder on first use),
    imagefolder, csv or torchvision. Raises DataError for an unknown source, or whatever that source raises."""
    if cfg.source == "digits":
        root = Path(cfg.root) if cfg.root is not None else data_dir() / "digits"
        written = cfg.root is not None and not root.exists()
        materialise_digits(root)
        src = image_source(cfg, root, "digits")
        if written:  # a user's data.root without --preset imagefolder: say that digits, not their images, are used
            src.notes.insert(
                0,
                f"data.root {root} did not exist: scikit-learn's digits (data.source=digits, the default preset's "
                "data) were written there and used; for a folder of your own images use --preset imagefolder "
                "--set data.root=PATH",
            )
        return src
    if cfg.source == "imagefolder":
        return image_source(cfg, Path(cfg.root), "imagefolder")
    if cfg.source == "csv":
        return csv_source(cfg)
    if cfg.source == "torchvision":
        return torchvision_source(cfg)
    raise DataError(f"unknown data.source {cfg.source!r}")
