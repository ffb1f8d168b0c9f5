"""Walking an image folder safely, and what its layout says about the labels.

``data.root`` holds one sub-folder per class (torchvision's ``ImageFolder`` layout). The walk here:

* never leaves ``data.root``: a symbolic link whose target lies outside it (a link to ``/``, to a home folder)
  is refused, and so is a link that leads back into a folder already walked (two links to ``..`` in a class
  folder would otherwise make the walk list millions of paths). Both are :class:`~recipe.data.DataError`\\ s
  naming every such link, raised in milliseconds, before any file is decoded. Links that stay inside the
  root and reach a folder not yet walked are followed.
* counts what it skips: hidden files and folders (``.ipynb_checkpoints``, ``.DS_Store``, ``__MACOSX``) are
  not data, but they are named, with how many files and images they hold, so that "no files skipped" is
  never said while files were skipped.
* records the layout facts the inspect stage judges (:mod:`recipe.checks.data`): class folders named like
  splits (``train``, ``val``, ``test``, ``unlabeled``: data.root one level too high, or an unlabelled split
  next to the classes), class folders whose images sit in sub-folders (nested classes), and class names that
  collide once case and whitespace are ignored (``Shoes``, ``shoes``, ``shoes ``).

Rules from practice: torchvision's ``ImageFolder`` (class = first-level folder), the split-folder layouts of
Kaggle and Hugging Face ``imagefolder`` datasets (``train/<class>/``), and issue reports of each fault (#18, #22).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, inline, listing

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Folder names that mean a split of a dataset, not a class (compared after normalise_label).
SPLIT_NAMES = frozenset(
    {"train", "training", "val", "valid", "validation", "dev", "test", "testing", "unlabeled", "unlabelled"}
)
UNLABELLED_NAMES = frozenset({"unlabeled", "unlabelled"})
MAX_HIDDEN_COUNTED = 10_000  # entries counted inside one hidden folder before the count says "at least"


def hidden(name: str) -> bool:
    """A name the walk skips: dot-files and dot-folders, and ``__MACOSX`` (resource forks in zip files)."""
    return name.startswith(".") or name == "__MACOSX"


def is_image_name(name: str) -> bool:
    """The file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def normalise_label(label: str) -> str:
    """The form two labels that mean the same class share: Unicode NFKC, case-folded, inner runs of whitespace,
    ``_`` and ``-`` made one space, ends stripped (``'Shoes'``, ``'shoes '``, ``'SHOES'`` -> ``'shoes'``)."""
    text = unicodedata.normalize("NFKC", str(label)).casefold()
    return re.sub(r"[\s_\-]+", " ", text).strip()


def similar_labels(labels: list[str] | Counter) -> dict[str, list[str]]:
    """Groups of two or more distinct labels that are equal after :func:`normalise_label`: normalised form ->
    the variants, most frequent first (``labels`` may be a Counter of label -> count, or a list of labels)."""
    counts = labels if isinstance(labels, Counter) else Counter(labels)
    groups: dict[str, list[str]] = {}
    for lab in sorted(counts, key=lambda v: (-counts[v], v)):
        groups.setdefault(normalise_label(lab), []).append(lab)
    return {k: v for k, v in groups.items() if len(v) > 1}


def merge_map(groups: dict[str, list[str]]) -> dict[str, str]:
    """variant -> the label it merges into: the most frequent variant of its group, with outer whitespace
    stripped (what a person most often typed)."""
    return {v: g[0].strip() for g in groups.values() for v in g}


@dataclass(frozen=True)
class HiddenEntry:
    """A hidden file or folder the walk skipped (path relative to data.root), with what a folder holds."""

    path: str
    is_dir: bool
    n_files: int = 0
    n_images: int = 0
    capped: bool = False  # the count stopped at MAX_HIDDEN_COUNTED

    def describe(self) -> str:
        """``'cat/.ipynb_checkpoints/ (4 files, 4 images)'`` or ``'.DS_Store'``."""
        if not self.is_dir:
            return self.path
        more = "at least " if self.capped else ""
        return f"{self.path}/ ({more}{self.n_files} files, {self.n_images} images)"


@dataclass
class FolderScan:
    """What the walk of ``data.root`` found: the images with their class, and the layout facts inspect judges.

    ``files``: (class folder, path relative to the root) of every image file, in sorted walk order;
    ``empty``: class folders without images; ``ignored``: non-image files (relative paths; top-level files
    belong to no class); ``hidden``: skipped hidden entries; ``split_named``: class folders whose name is a
    split's; ``nested``: class folder -> its sub-folders that hold images (relative paths); ``sub_classes``:
    split-named folder -> the sub-folders it holds (what the classes probably are).
    """

    root: Path
    files: list[tuple[str, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    hidden: list[HiddenEntry] = field(default_factory=list)
    split_named: list[str] = field(default_factory=list)
    nested: dict[str, list[str]] = field(default_factory=dict)
    sub_classes: dict[str, list[str]] = field(default_factory=dict)


class _Walk:
    """One walk of the root: the real paths it stays under and the folders (device, inode) already walked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        st = os.stat(root)
        self.seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
        self.escapes: list[str] = []
        self.loops: list[str] = []

    def rel(self, path: str) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def admit_link(self, entry: os.DirEntry) -> bool:
        """Whether a symbolic link may be followed; records it as an escape or a loop when not."""
        real = os.path.realpath(entry.path)
        if not self.inside(real):
            self.escapes.append(f"{self.rel(entry.path)} -> {os.readlink(entry.path)} (resolves to {real})")
            return False
        return True

    def enter(self, path: str, link: bool) -> bool:
        """Mark a folder walked; False (and a loop recorded, for a link) when it was walked already."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            if link:
                self.loops.append(f"{self.rel(path)} -> {os.readlink(path)} (a folder already walked)")
            return False
        self.seen.add(key)
        return True


def scan_folder(root: Path) -> FolderScan:
    """Walk ``root`` (one sub-folder per class) as the module docstring says.

    Raises :class:`DataError` when the root is missing or a file, holds no class folders, or any symbolic link
    under it leaves it or loops (every such link is named, with the fix)."""
    if not root.exists():
        raise DataError(f"data.root {root} does not exist; point data.root at a folder with one sub-folder per class")
    if not root.is_dir():
        raise DataError(f"data.root {root} is a file; imagefolder needs a folder with one sub-folder per class")
    walk, scan = _Walk(root), FolderScan(root)
    class_dirs = []
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        if hidden(e.name):
            scan.hidden.append(_hidden_entry(e, walk))
        elif e.is_symlink() and not walk.admit_link(e):
            continue
        elif e.is_dir():
            if walk.enter(e.path, e.is_symlink()):
                class_dirs.append(e)
        else:
            scan.ignored.append(e.name)  # files at the top are in no class
    for d in class_dirs:
        n = len(scan.files)
        _walk_class(d, walk, scan)
        if len(scan.files) == n:
            scan.empty.append(d.name)
    _refuse_links(root, walk)
    if not class_dirs:
        raise DataError(
            f"data.root {root} has no class sub-folders; put each class's images in a folder named after the "
            f"class, e.g. {root}/cat/001.png and {root}/dog/001.png"
        )
    scan.split_named = [d.name for d in class_dirs if normalise_label(d.name) in SPLIT_NAMES]
    for name in scan.split_named:
        scan.sub_classes[name] = sorted(
            e.name for e in os.scandir(root / name) if e.is_dir() and not hidden(e.name) and not e.is_symlink()
        )
    return scan


def _walk_class(d: os.DirEntry, walk: _Walk, scan: FolderScan) -> None:
    """Every file under one class folder, depth first in sorted order; sub-folders holding images are recorded."""
    stack = [d.path]
    while stack:
        path = stack.pop()
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        rel_dir = walk.rel(path)
        images = 0
        subdirs = []
        for e in entries:
            if hidden(e.name):
                scan.hidden.append(_hidden_entry(e, walk))
                continue
            if e.is_symlink() and not walk.admit_link(e):
                continue
            if e.is_dir():
                if walk.enter(e.path, e.is_symlink()):
                    subdirs.append(e.path)
            elif is_image_name(e.name):
                scan.files.append((d.name, f"{rel_dir}/{e.name}"))
                images += 1
            else:
                scan.ignored.append(f"{rel_dir}/{e.name}")
        if images and path != d.path:
            scan.nested.setdefault(d.name, []).append(rel_dir)
        stack.extend(reversed(subdirs))
    if d.name in scan.nested:
        scan.nested[d.name].sort()


def _hidden_entry(e: os.DirEntry, walk: _Walk) -> HiddenEntry:
    """A hidden entry, with a bounded count of the files in it (links not followed)."""
    rel = walk.rel(e.path)
    if not e.is_dir(follow_symlinks=False):
        return HiddenEntry(rel, False)
    n_files = n_images = 0
    for _, dirnames, filenames in os.walk(e.path):  # followlinks=False: a link inside cannot loop or escape
        n_files += len(filenames)
        n_images += sum(is_image_name(f) for f in filenames)
        if n_files + len(dirnames) >= MAX_HIDDEN_COUNTED:
            return HiddenEntry(rel, True, n_files, n_images, capped=True)
    return HiddenEntry(rel, True, n_files, n_images)


def _refuse_links(root: Path, walk: _Walk) -> None:
    """One DataError naming every link that leaves the root or loops back into it, with the fix."""
    parts = []
    if walk.escapes:
        parts.append(
            f"{len(walk.escapes)} symbolic link(s) lead out of data.root (they are not followed: a link to / would "
            f"read the whole machine):\n{listing(walk.escapes)}"
        )
    if walk.loops:
        parts.append(
            f"{len(walk.loops)} symbolic link(s) lead back into folders already walked (a loop, or a second path "
            f"to the same images):\n{listing(walk.loops)}"
        )
    if parts:
        raise DataError(
            f"data.root {root}: " + "\n".join(parts) + "\nremove the links, or copy the files they point at into "
            "data.root (or point data.root at the folder that really holds the class folders)"
        )


def describe_hidden(entries: list[HiddenEntry], cap: int) -> str:
    """``2 hidden entries skipped: a/.ipynb_checkpoints/ (4 files, 4 images), .DS_Store``."""
    return f"{len(entries)} hidden entr{'y' if len(entries) == 1 else 'ies'} skipped: " + inline(
        (h.describe() for h in entries), cap
    )
