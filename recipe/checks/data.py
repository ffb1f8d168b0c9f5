"""Stage 1's checks on a manifest: is every sample usable, labelled, consistent, unique and in its own split?

"One time I discovered that the data contained duplicate examples. Another time I found corrupted images /
labels. I look for data imbalances and biases." Each function below looks for one of those things in the
tolerant manifest (bad samples are rows there, not exceptions) and reports *all* offenders at once, by
file name, so one run shows everything to fix. :func:`inspect_manifest` runs every check that applies.

Verdicts: data a model cannot be trained on, or whose scores would lie (corrupt files, unknown labels,
empty classes, samples shared between splits, split folders taken for classes, one class under several
spellings, most files decoding to one value), FAILs; data that trains but deserves a look (imbalance,
duplicates inside a split, outliers, skipped files, nested class folders, a subset in another channel order,
a few blank files) WARNs. What decoding converted (bit depth, alpha, palette) is said in a PASS.

"Recipe §1" in a docstring cites the source of a check's rule: seed 004, Karpathy's "A Recipe for Training
Neural Networks" (2019), step 1 "Become one with the data". The fixed advice texts sit in ``ADVICE``; the
ones with names or numbers in them are formatted there from the check's own values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recipe.data.folders import describe_hidden, normalise_label
from recipe.report import Verdict
from recipe.tasks import task_for

from .base import Bounds, CheckBuilder, DataReport, Finding, finding, fmt, json_value, names, plural, robust_bounds

if TYPE_CHECKING:
    from recipe.config import RecipeConfig
    from recipe.data import Manifest

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
SPLITS = ("train", "val", "test")
PIXEL_PROPERTIES = ("mean", "std")  # per-sample pixel statistics on the 0..1 scale
SIZE_PROPERTIES = ("pixels", "aspect")  # height x width and width / height, when source sizes vary

# What to do when a check does not pass, by check name (and outcome, after the dot).
ADVICE = {
    "files_readable": (
        "fix, re-export or delete the listed files (all of them, with errors, are in inspect/problems.json); "
        "truncated downloads and non-images renamed to .png/.jpg are the usual causes"
    ),
    "no_nulls": "fill in or drop the listed rows ({hint} cannot be trained or scored on)",
    "labels_in_class_set": (
        "relabel or drop the listed samples; an index that does not match its label is a bug in the data layer"
    ),
    "no_empty_classes": (
        "add images to the listed folders or delete them (an empty folder is a class the model can never learn, "
        "and it is left out of the class list, which shifts every class index after it)"
    ),
    "at_least_two_classes.files": "add a sub-folder per class under {root}",
    "at_least_two_classes.table": (
        "check data.target (a column with one value is no target), or use data.task=regression"
    ),
    "ignored_files": (
        "move the listed files out of data.root, or give images one of the usual extensions (.png, .jpg, ...); "
        "files at the top level belong to no class"
    ),
    "ignored_files.hidden": (
        "hidden folders (names starting with '.', e.g. .ipynb_checkpoints left by Jupyter) are never read: delete "
        "them, or move their images into a class folder if they are data"
    ),
    "image_decoding": (
        "open the listed files in an image viewer: blank scans or placeholders can be removed; if a file shows a "
        "picture there, it is decoded wrongly here (its stored mode is in inspect/manifest.csv, column mode): "
        "re-export it as 8-bit PNG, and tell us its mode"
    ),
    "channel_order": (
        "look at the listed files next to others of their class: files written by OpenCV (cv2.imwrite of an RGB "
        "array, or cv2.imread without cvtColor) have red and blue swapped; re-save them in RGB order"
    ),
    "folder_layout.split": (
        "point data.root at the folder that holds the class folders, e.g. data.root={example}: the recipe "
        "draws its own val and test splits from that one folder (data.split), so the other split folders are "
        "then not read"
    ),
    "folder_layout.among": (
        "move the listed folders out of data.root: unlabelled images have no class to learn, and a held-out split "
        "among the class folders is trained as a class of its own"
    ),
    "folder_layout.nested": (
        "if the sub-folders are the real classes, point data.root at the class folder that holds them (or move "
        "them up one level); if they are parts of one class (e.g. sources or dates), nothing to do"
    ),
    "label_names_distinct": (
        "rename the listed labels to one spelling (folders or target cells), or set data.merge_similar_labels=true "
        "to merge each group into its most frequent spelling"
    ),
    "consistent_shapes.sizes": "set data.image_size=N to resize every image to N x N",
    "consistent_shapes.channels": (
        "mixed gray and colour files often mean two sources were merged: set data.grayscale=true to "
        "read every file as one gray channel (now: {mode}), or false for RGB"
    ),
    "consistent_shapes.files": "or fix the odd files listed in inspect/problems.json",
    "split_sizes": (
        "add data (a class needs at least 3 samples to appear in train, val and test) or change data.split; "
        "an empty split cannot be trained or scored on"
    ),
    "class_balance": (
        "accuracy hides small classes: watch per-class metrics, collect more of the small classes, or weight "
        "the loss / resample; also set the output bias from the class priors (model.init_bias)"
    ),
    "pixel_stats_outliers": (
        "look at the listed images (plots/outliers_*.png): blank, inverted, wrongly scaled, cropped or "
        "mislabelled files show up here; fix or remove them, or raise stages.inspect.outlier_mad if they are genuine"
    ),
    "duplicates_within_split": (
        "remove the extra copies (plots/duplicates.png shows them): duplicates over-weight those samples in "
        "training and in the metrics"
    ),
    "no_leakage_across_splits": (
        "delete all but one copy of each listed group (then the splits are redrawn for the new file set): a "
        "held-out sample the model trained on inflates val/test scores"
    ),
    "duplicate_labels_agree": "at least one label in each listed group is wrong: relabel or drop them",
    "no_leakage_across_splits.table": (
        "identical rows in two splits: a held-out row the model trained on is scored on a copy; a few, in a "
        "table, are often two alike cases (drop the copies if they are one record entered twice)"
    ),
    "duplicate_labels_agree.table": (
        "identical feature rows with different outcomes: in a table these are often two alike cases whose "
        "outcomes differ for reasons the columns do not hold, not a wrong label; they cap the accuracy any model "
        "can reach (the observed ceiling); check them only if the count is large"
    ),
}


# --- helpers ------------------------------------------------------------------------------------------------


def is_image(m: Manifest) -> bool:
    """The samples are images (the manifest has an image mode: ``"L"`` or ``"RGB"``), not table rows."""
    return m.image_mode is not None


def has_files(m: Manifest) -> bool:
    """Samples are files on disk (digits, imagefolder), not rows of an array (torchvision, csv)."""
    return m.source in ("digits", "imagefolder")


def short_error(error: str, path: str | None) -> str:
    """The decoder's message without the file's full path, which the listing already names."""
    if path:
        error = error.replace(f" '{path}'", "").replace(f" {path}", "")
    return error


def usable(m: Manifest) -> pd.DataFrame:
    """The manifest's rows (all its columns) whose sample could be read."""
    return m.df[m.df["readable"].astype(bool)]


def sizes_vary(m: Manifest) -> bool:
    """Images whose readable files come in more than one height x width (False for tables)."""
    ok = usable(m)
    return is_image(m) and len(ok) > 0 and len(ok.groupby(["height", "width"]).size()) > 1


def property_values(m: Manifest) -> pd.DataFrame:
    """id, path, split, label and the per-sample properties outliers are looked for along (readable images).

    Properties: ``mean`` and ``std`` of the pixels (0..1), plus ``pixels`` (height x width) and ``aspect``
    (width / height) of the file as stored when sizes vary.
    """
    ok = usable(m)
    out = ok[["id", "path", "split", "label"]].copy()
    for p in PIXEL_PROPERTIES:
        out[p] = ok[p].astype(np.float64)
    if sizes_vary(m):
        h, w = ok["height"].astype(np.float64), ok["width"].astype(np.float64)
        out["pixels"], out["aspect"] = h * w, w / h
    return out


def property_bounds(m: Manifest, k: float) -> dict[str, Bounds]:
    """Robust bounds (median ± k · 1.4826 · MAD) of every outlier property, computed from the data."""
    values = property_values(m)
    props = [p for p in (*PIXEL_PROPERTIES, *SIZE_PROPERTIES) if p in values]
    bounds = {p: robust_bounds(values[p], k) for p in props}
    return {p: b for p, b in bounds.items() if b is not None}


def constant_images(m: Manifest) -> np.ndarray:
    """Boolean mask over the manifest's rows: readable images that decode to one value in every channel (every
    pixel alike). Identical by construction, they are a decoding or blank-file problem (``image_decoding``),
    not duplicates; all False for tables. From the per-channel moments: variance <= 1e-12 on the 0..1 scale."""
    readable = m.df["readable"].astype(bool).to_numpy()
    if not is_image(m):
        return np.zeros(len(m.df), dtype=bool)
    if m.chan_stats is not None:
        var = m.chan_stats[:, 1] - m.chan_stats[:, 0] ** 2
        with np.errstate(invalid="ignore"):
            flat = np.nan_to_num(var, nan=1.0).max(axis=1) <= 1e-12
    else:
        flat = m.df["std"].astype(np.float64).fillna(1.0).to_numpy() <= 1e-6
    return readable & flat


def duplicate_groups(m: Manifest) -> pd.DataFrame:
    """Readable rows whose content hash another readable row shares, with a ``group`` number (0, 1, ...)
    ordered by first appearance. Hashes are of the decoded values, so re-encoded copies are found too.
    Images that decode to a single value (:func:`constant_images`) are left out: ``image_decoding`` names them."""
    ok = usable(m)
    ok = ok[(ok["hash"].astype(str) != "") & ~constant_images(m)[m.df["readable"].astype(bool).to_numpy()]]
    dup = ok[ok.duplicated("hash", keep=False)].copy()
    dup["group"] = pd.factorize(dup["hash"])[0]
    return dup.sort_values(["group", "split", "id"], kind="stable")


def class_counts(m: Manifest) -> pd.DataFrame:
    """Readable samples per class (rows, in class order) and split (columns train/val/test/total)."""
    ok = usable(m)
    table = pd.crosstab(ok["label"].astype(str), ok["split"]).reindex(index=m.classes, columns=SPLITS, fill_value=0)
    table = table.fillna(0).astype(int)
    table["total"] = table[list(SPLITS)].sum(axis=1)
    return table


def _by_count(rows: pd.DataFrame, columns: str | list[str]) -> pd.Series:
    """Rows per distinct value of ``columns``, most frequent first (ties in the values' order)."""
    return rows.groupby(columns).size().sort_values(ascending=False, kind="stable")


# --- checks -------------------------------------------------------------------------------------------------


def files_readable(m: Manifest, cap: int = 10) -> Finding:
    """FAIL naming every file that cannot be decoded, with the decoder's error (items: id, path, error).

    Rule: Recipe §1, "another time I found corrupted images"."""
    df = m.df
    bad = df[~df["readable"].astype(bool)]
    what = "files" if has_files(m) else "samples"
    items = [{"id": i, "path": json_value(p), "error": e} for i, p, e in zip(bad["id"], bad["path"], bad["error"])]
    if len(bad):
        observed = f"{len(bad)} of {len(df)} {what} cannot be read: " + names(
            (f"{i} ({short_error(e, p)})" if e else str(i) for i, p, e in zip(bad["id"], bad["path"], bad["error"])),
            cap,
        )
    else:
        observed = f"all {len(df)} {what} decode"
    return finding(
        "files_readable",
        f"every {what[:-1]} decodes to an image",
        observed,
        f"0 unreadable {what}",
        FAIL if len(bad) else PASS,
        ADVICE["files_readable"],
        items,
        {"data/n_unreadable": len(bad)},
    )


def no_nulls(m: Manifest, cap: int = 10) -> Finding:
    """FAIL when id, label or split (or path, for files) is missing on any row (items: column, id).

    Rule: Recipe §1, "corrupted ... labels": a sample without a label cannot be trained or scored on."""
    df = m.df
    columns = ["id", "label", "split"] + (["path"] if has_files(m) else [])
    items, parts = [], []
    for col in columns:
        missing = df[df[col].isna()]
        if len(missing):
            where = [str(i) if pd.notna(i) else f"row {r}" for i, r in zip(missing["id"], missing.index)]
            items += [{"column": col, "id": w} for w in where]
            parts.append(f"{col}: {len(missing)} missing ({names(where, cap)})")
    hint = "a missing target value" if m.source == "csv" else "a sample without a label"
    return finding(
        "no_nulls",
        f"no sample lacks its {', '.join(columns[:-1])} or {columns[-1]}",
        "; ".join(parts) or f"no nulls in {len(df)} rows",
        "no nulls",
        FAIL if items else PASS,
        ADVICE["no_nulls"].format(hint=hint),
        items,
    )


def labels_in_class_set(m: Manifest, cap: int = 10) -> Finding:
    """FAIL when a label is not one of the classes, or its class index does not point back at it (items: id,
    label, label_idx). Rule: Recipe §1, "corrupted ... labels"."""
    df = m.df[m.df["label"].notna()]
    idx = df["label_idx"].astype("Float64").to_numpy(np.float64, na_value=np.nan)
    classes = np.asarray(m.classes, dtype=object)
    in_range = np.isfinite(idx) & (idx >= 0) & (idx < len(classes))
    named = np.zeros(len(df), dtype=bool)
    named[in_range] = classes[idx[in_range].astype(np.int64)] == df["label"].astype(str).to_numpy()[in_range]
    bad = df[~df["label"].astype(str).isin(m.classes) | ~named]
    items = [
        {"id": i, "label": json_value(lab), "label_idx": json_value(li)}
        for i, lab, li in zip(bad["id"], bad["label"], bad["label_idx"])
    ]
    observed = (
        f"{len(bad)} labels outside the class set: "
        + names((f"{i} ({lab!r})" for i, lab in zip(bad["id"], bad["label"])), cap)
        if len(bad)
        else f"all {len(df)} labels are among the {plural(len(m.classes), 'class', 'classes')}"
    )
    return finding(
        "labels_in_class_set",
        "every label is one of the classes, and its index names it",
        observed,
        f"labels in {{{names(m.classes, cap)}}}",
        FAIL if len(bad) else PASS,
        ADVICE["labels_in_class_set"],
        items,
    )


def no_empty_classes(m: Manifest, cap: int = 10) -> Finding:
    """FAIL naming every class folder that holds no image files (items: folder).

    Rule: a class without samples can never be learned (Recipe §1, "data imbalances", at its extreme)."""
    folders = [str(m.root / c) for c in m.empty_classes]
    return finding(
        "no_empty_classes",
        "every class folder holds images",
        f"{plural(len(folders), 'empty class folder')}: {names(folders, cap)}" if folders else "no empty class folders",
        "0 empty class folders",
        FAIL if folders else PASS,
        ADVICE["no_empty_classes"],
        [{"folder": f} for f in folders],
        {"data/n_empty_classes": len(folders)},
    )


def at_least_two_classes(m: Manifest) -> Finding:
    """FAIL when a classification manifest has fewer than two classes: nothing to tell apart."""
    n = len(m.classes)
    advice = ADVICE["at_least_two_classes.files" if has_files(m) else "at_least_two_classes.table"]
    return finding(
        "at_least_two_classes",
        "a classifier needs at least two classes",
        f"{plural(n, 'class', 'classes')}" + (f": {names(m.classes, 10)}" if n else ""),
        ">= 2 classes",
        FAIL if n < 2 else PASS,
        advice.format(root=m.root),
    )


def ignored_files(m: Manifest, cap: int = 10) -> Finding:
    """Files the folder scan skipped: non-image files and files outside any class folder WARN; hidden entries
    (``.ipynb_checkpoints``, ``.DS_Store``, ``__MACOSX``) are counted and named, and WARN when they hold images
    (items: file, and for hidden entries hidden/n_files/n_images). Rule: Recipe §1, scan every example: a
    skipped file is data nobody looked at."""
    files = list(m.ignored_files)
    hidden = list(m.layout.hidden) if m.layout is not None else []
    parts = [f"{plural(len(files), 'file')} skipped: {names(files, cap)}"] if files else []
    if hidden:
        parts.append(describe_hidden(hidden, cap))
    hidden_images = sum(h.n_images for h in hidden)
    items: list[dict[str, Any]] = [{"file": f} for f in files]
    items += [
        {"file": h.path, "hidden": True, "folder": h.is_dir, "n_files": h.n_files, "n_images": h.n_images}
        for h in hidden
    ]
    advice = [ADVICE["ignored_files"]] if files else []
    if hidden:
        advice.append(ADVICE["ignored_files.hidden"])
    return finding(
        "ignored_files",
        "every file under data.root is an image in a class folder",
        "; ".join(parts) or "no files skipped",
        "0 files skipped",
        WARN if files or hidden_images else PASS,
        "; ".join(advice) or ADVICE["ignored_files"],
        items,
        {
            "data/n_ignored_files": len(files),
            "data/n_hidden_skipped": len(hidden),
            "data/n_hidden_images": hidden_images,
        },
    )


def folder_layout(m: Manifest, cap: int = 10) -> Finding:
    """The class folders look like classes (items: folder, problem).

    FAIL: class folders named like splits (``train``, ``val``, ``valid``, ``validation``, ``test``,
    ``unlabeled``, ...). When every class folder is one, ``data.root`` is probably one level too high
    (``train/<class>/``: the "classes" would be the splits); when some are, an unlabelled or held-out split
    sits among the classes and would be trained as a class. WARN: class folders whose images sit in
    sub-folders (nested classes), all labelled with the top folder. Rule: torchvision's ``ImageFolder`` layout
    (class = first-level folder) against the split-folder layouts datasets are shipped in (Kaggle, Hugging Face
    ``imagefolder``: ``train/<class>/``); Recipe §1, "become one with the data"."""
    layout = m.layout
    if layout is None:
        return finding("folder_layout", "class folders are classes", "no folder layout", "-", PASS)
    split_named = [s for s in layout.split_named if s not in m.empty_classes]
    classes = sorted(set(m.df["id"].astype(str).str.split("/").str[0]))
    nested = {c: v for c, v in layout.nested.items() if c not in layout.split_named}
    parts, items, verdict, advice = [], [], PASS, []
    if split_named and set(split_named) >= set(classes):
        subs = sorted({s for n in split_named for s in layout.sub_classes.get(n, [])})
        parts.append(
            f"every class folder is named like a split ({names(split_named, cap)}), and they hold sub-folders "
            f"{names(subs, cap)}: data.root is probably one level too high, so the model would learn which split a "
            "file is in, not its class"
        )
        verdict = FAIL
        advice.append(ADVICE["folder_layout.split"].format(example=m.root / split_named[0]))
    elif split_named:
        counts = m.df["id"].astype(str).str.split("/").str[0].value_counts()
        listing = [f"{s!r} ({counts.get(s, 0)} images)" for s in split_named]
        parts.append(
            f"{plural(len(split_named), 'folder')} named like a split among the class folders: {names(listing, cap)}; "
            "each is trained as a class of its own"
        )
        verdict = FAIL
        advice.append(ADVICE["folder_layout.among"])
    items += [{"folder": s, "problem": "named like a split"} for s in split_named]
    if nested:
        listing = [f"{c} ({names(v, 3)})" for c, v in nested.items()]
        parts.append(
            f"{plural(len(nested), 'class folder')} keep images in sub-folders, all labelled with the class folder: "
            + names(listing, cap)
        )
        verdict = Verdict.worst([verdict, WARN])
        advice.append(ADVICE["folder_layout.nested"])
        items += [{"folder": c, "sub_folders": v, "problem": "nested"} for c, v in nested.items()]
    return finding(
        "folder_layout",
        "each first-level folder under data.root is a class, holding that class's images",
        "; ".join(parts) or f"{plural(len(classes), 'class folder')}, none named like a split, none nested",
        "class folders that are classes",
        verdict,
        "; ".join(advice),
        items,
        {"data/n_split_named_folders": len(split_named), "data/n_nested_class_folders": len(nested)},
    )


def label_names_distinct(m: Manifest, cap: int = 10) -> Finding:
    """FAIL naming labels that are equal once case, whitespace, ``_`` and ``-`` are ignored (``Shoes``,
    ``shoes``, ``shoes ``): one class split under several names, which no model can tell apart and which
    class-balance figures would misreport as small classes. PASS, saying what was merged, with
    ``data.merge_similar_labels``. Items: the normalised label and its variants with their counts. Rule:
    Recipe §1, "corrupted labels"; issue reports of class folders and CSV targets typed two ways."""
    groups = m.label_variants
    shown = [" = ".join(f"{v!r} ({n})" for v, n in g.items()) for g in groups.values()]
    items = [{"normalised": k, "variants": [{"label": v, "count": n} for v, n in g.items()]} for k, g in groups.items()]
    metrics = {"data/n_similar_label_groups": len(groups)}
    if groups and m.merged_labels:
        merged_into = [
            f"{s} -> {m.merged_labels.get(next(iter(g)), next(iter(g)))!r}" for s, g in zip(shown, groups.values())
        ]
        observed, verdict = f"merged (data.merge_similar_labels=true): {names(merged_into, cap)}", PASS
    elif groups:
        observed = (
            f"{plural(len(groups), 'class', 'classes')} written several ways, differing only in case or "
            f"whitespace: {names(shown, cap)}; each spelling is trained as its own class"
        )
        verdict = FAIL
    else:
        observed, verdict = "no two labels differ only in case or whitespace", PASS
    return finding(
        "label_names_distinct",
        "no two labels differ only in case, whitespace, _ or -",
        observed,
        "one spelling per class",
        verdict,
        ADVICE["label_names_distinct"] if groups else "",
        items,
        metrics,
    )


def image_decoding(m: Manifest, cap: int = 10) -> Finding:
    """What decoding did to reach 8-bit pixels, and files that decode to a single value.

    Conversions (16-bit or float depth scaled by the file's bit depth, transparency composited on
    ``data.background``, palettes expanded, CMYK / YCbCr converted; see :mod:`recipe.data.decoding`) are named
    per kind with example files, and PASS. Files whose every pixel decodes to one value WARN: a blank file, or a
    decoding that lost the picture (16-bit values clipped to 255 made whole datasets white before bit depths were
    read); more than half of them FAIL, since then the decoder rather than the data is suspect. Such files are
    not reported as duplicates. Items: id, problem (constant / the conversion), value or note. Rule: Recipe §1,
    "bugs in data quality or preprocessing"; issues #18 and #24 (16-bit detector PNGs, alpha channels)."""
    ok = usable(m)
    notes = ok["decoding"].astype(str) if "decoding" in ok else pd.Series("", index=ok.index)
    parts, items = [], []
    for kind, test in CONVERSIONS.items():
        rows = ok[notes.map(test)]
        if len(rows):
            example = notes[rows.index[0]]
            parts.append(f"{plural(len(rows), 'file')} {kind} (e.g. {rows['id'].iloc[0]}: {example})")
            items += [{"id": i, "problem": kind, "note": notes[j]} for j, i in zip(rows.index, rows["id"])]
    flat = constant_images(m)
    constant = m.df[flat]
    if len(constant):
        value = (constant["mean"].astype(np.float64) * 255).round().astype(int)
        listing = [f"{i} (all {v}, stored as {md})" for i, v, md in zip(constant["id"], value, constant["mode"])]
        parts.insert(
            0,
            f"{len(constant)} of {len(ok)} images decode to a single value, every pixel alike (blank files, or a "
            f"decoding that lost the picture; they are not counted as duplicates): {names(listing, cap)}",
        )
        items = [
            {"id": i, "problem": "constant", "value": int(v), "mode": json_value(md)}
            for i, v, md in zip(constant["id"], value, constant["mode"])
        ] + items
    verdict = (FAIL if 2 * len(constant) > len(ok) else WARN) if len(constant) else PASS
    return finding(
        "image_decoding",
        "every image decodes to 8-bit pixels that carry a picture (bit depth, alpha and palette handled)",
        "; ".join(parts) or f"all {len(ok)} images stored as 8-bit gray or RGB, decoded as stored",
        "no image decodes to a single value",
        verdict,
        ADVICE["image_decoding"] if len(constant) else "",
        items,
        {"data/n_constant_images": len(constant), "data/n_converted_images": int((notes != "").sum())},
    )


CONVERSIONS = {  # image_decoding's kinds of conversion, from recipe.data.decoding's notes
    "scaled to 8 bits from a deeper bit depth": lambda n: n.startswith(
        ("16-bit", "32-bit", "float", "mode I", "mode F")
    ),
    "with transparency composited on data.background": lambda n: "alpha:" in n,
    "expanded from a palette": lambda n: n.startswith("palette expanded"),
    "converted from another colour space": lambda n: "converted to" in n,
}
PERMUTATIONS = {
    "B, G, R": [2, 1, 0],
    "R, B, G": [0, 2, 1],
    "G, R, B": [1, 0, 2],
    "G, B, R": [1, 2, 0],
    "B, R, G": [2, 0, 1],
}


def channel_order(m: Manifest, k: float = 4.0, min_class: int = 8, cap: int = 10) -> Finding:
    """WARN naming colour files whose channel statistics fit their class far better with the channels reordered
    (R and B swapped: BGR files written by OpenCV; or another order) than as stored.

    Per class (at least ``min_class`` colour files), each file is described by its per-channel mean and RMS
    (0..1) and judged two ways; either names it. *Centre*: the class's per-channel median of the means; the file
    is named when, in some reordering, its distance to the centre falls below half its distance as stored and
    the gain exceeds ``k`` spreads (the median distance) and 0.05. *Neighbours* (classes of many looks, such as
    crops of scenes): the distance to the class's k-th nearest file (k = a fifth of the class, at least 3); the
    file is named when stored it lies more than twice the class's typical distance from its neighbours and
    reordered within half of that. Genuine colour variation (a blue flower among red ones) rarely fits *that*
    well once reordered; nothing is named in a class where most files would be. Items: id, label, order,
    distances. Rule: Recipe §1, "biases" and preprocessing bugs; issue #18 (images whose channel order differs
    from the rest of the set)."""
    if m.image_mode != "RGB" or m.chan_stats is None:
        return finding("channel_order", "colour files share one channel order", "not colour images", "-", PASS)
    ok = m.df["readable"].astype(bool).to_numpy() & (m.df["channels"].fillna(0).astype(int).to_numpy() >= 3)
    features = np.concatenate([m.chan_stats[:, 0, :], np.sqrt(np.maximum(m.chan_stats[:, 1, :], 0))], axis=1)
    labels = m.df["label"].astype(str).to_numpy()
    flagged, checked = [], 0
    for label in pd.unique(labels[ok]):
        rows = np.flatnonzero(ok & (labels == label))
        if len(rows) < min_class:
            continue
        checked += len(rows)
        hit, order, own, best = _reordered_fits(features[rows], k)
        if hit.sum() * 2 < len(rows):  # a majority reordered would be the class's own colours
            flagged += [(rows[j], label, order[j], own[j], best[j]) for j in np.flatnonzero(hit)]
    ids = m.df["id"].to_numpy()
    items = [
        {"id": ids[i], "label": lab, "order": order, "distance": float(a), "distance_reordered": float(b)}
        for i, lab, order, a, b in flagged
    ]
    if flagged:
        listing = [f"{ids[i]} (fits {lab!r} as {order})" for i, lab, order, _, _ in flagged]
        observed = (
            f"{plural(len(flagged), 'file')} of {checked} whose channel statistics fit their class only with the "
            f"channels reordered (stored in another channel order, e.g. BGR): {names(listing, cap)}"
        )
    else:
        observed = f"no file's channel statistics fit its class better reordered ({checked} colour files checked)"
    return finding(
        "channel_order",
        "colour files share one channel order (no subset stored as BGR)",
        observed,
        "0 files",
        WARN if flagged else PASS,
        ADVICE["channel_order"] if flagged else "",
        items,
        {"data/n_channel_order_suspects": len(flagged)},
    )


def _reordered_fits(x: np.ndarray, k: float, max_ref: int = 500) -> tuple[np.ndarray, ...]:
    """channel_order's two tests on one class's (n, 6) features (means then RMS of R, G, B): which files fit
    better reordered, in which order, and their distances as stored and reordered (by the centre test)."""
    n = len(x)

    def reorder(perm: list[int]) -> np.ndarray:
        return np.concatenate([x[:, :3][:, perm], x[:, 3:][:, perm]], axis=1)

    centre = np.median(x[:, :3], axis=0)
    own = np.linalg.norm(x[:, :3] - centre, axis=1)
    spread = max(float(np.median(own)), 1e-3)
    ref = x[np.random.default_rng(0).choice(n, max_ref, replace=False)] if n > max_ref else x  # bounded memory
    nn = max(3, len(ref) // 5)

    def kth(y: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(y[:, None, :] - ref[None, :, :], axis=2)
        d[d == 0] = np.inf  # the file itself (or an exact copy) is no neighbour
        return np.sort(d, axis=1)[:, min(nn, d.shape[1]) - 1]

    own_nn = kth(x)
    typical = float(np.median(own_nn[np.isfinite(own_nn)])) if np.isfinite(own_nn).any() else 0.0
    best, best_nn = own.copy(), own_nn.copy()
    order = np.array([""] * n, dtype=object)
    hit = np.zeros(n, dtype=bool)
    for name, perm in PERMUTATIONS.items():
        y = reorder(perm)
        d = np.linalg.norm(y[:, :3] - centre, axis=1)
        d_nn = kth(y)
        by_centre = (d < own / 2) & (own - d > max(k * spread, 0.05))
        by_neighbours = (d_nn < own_nn / 2) & (own_nn > 2 * typical) & (d_nn < typical)
        new = (by_centre | by_neighbours) & ~hit
        order[new], best[new], best_nn[new] = name, d[new], d_nn[new]
        hit |= new
    return hit, order, own, best


SHAPES = CheckBuilder("consistent_shapes", "all images share one shape (or data.image_size resizes them to one)")


def consistent_shapes(m: Manifest, cap: int = 10) -> Finding:
    """One height x width (pixels) and one channel count, unless ``data.image_size`` resizes them all (then
    the source sizes are only reported). Mixed sizes without a resize FAIL; mixed channel counts WARN (items:
    id and the odd size or channel count). Rule: a batch is one (N, C, H, W) tensor; mixed gray and colour
    files are often two merged sources (Recipe §1, "biases")."""
    ok = usable(m)
    if not len(ok):
        return SHAPES(PASS, "no readable images", "one shape", hypothesis="all images share one shape")
    sizes, chans = _by_count(ok, ["height", "width"]), _by_count(ok, "channels")
    size_text, size_items = _size_report(m, ok, sizes, cap)
    chan_text, chan_items = _channel_report(m, ok, chans, cap)
    expected = (
        f"any size (resized to {m.image_size}x{m.image_size}), one channel count"
        if m.image_size
        else "one height x width and one channel count"
    )
    return SHAPES(
        Verdict.worst([FAIL if size_items else PASS, WARN if chan_items else PASS]),
        f"{size_text}; {chan_text}",
        expected,
        _shape_advice(m, len(sizes), len(chans)),
        items=size_items + chan_items,
        metrics={"data/n_sizes": len(sizes), "data/n_channel_counts": len(chans)},
    )


def _size_report(m: Manifest, ok: pd.DataFrame, sizes: pd.Series, cap: int) -> tuple[str, list[dict[str, Any]]]:
    """consistent_shapes' text on height x width, and its offenders (only when sizes vary without a resize)."""
    h0, w0 = sizes.index[0]
    if len(sizes) == 1:
        resized = f", resized to {m.image_size}x{m.image_size}" if m.image_size and m.image_size != h0 else ""
        return f"all {len(ok)} images are {h0}x{w0}{resized}", []
    size_text = ", ".join(f"{h}x{w} ({n})" for (h, w), n in list(sizes.items())[:cap])
    if m.image_size:
        return f"{len(sizes)} source sizes ({size_text}), all resized to {m.image_size}x{m.image_size}", []
    odd = ok[(ok["height"] != h0) | (ok["width"] != w0)]
    odd_sizes = list(zip(odd["id"], odd["height"], odd["width"]))
    items = [{"id": i, "height": int(h), "width": int(w), "problem": "size"} for i, h, w in odd_sizes]
    listing = names((f"{i} ({h}x{w})" for i, h, w in odd_sizes), cap)
    return f"{len(sizes)} sizes (height x width: {size_text}); not {h0}x{w0}: {listing}", items


def _channel_report(m: Manifest, ok: pd.DataFrame, chans: pd.Series, cap: int) -> tuple[str, list[dict[str, Any]]]:
    """consistent_shapes' text on channel counts, and the samples that differ from the most common one."""
    c0 = chans.index[0]
    if len(chans) == 1:
        return plural(int(c0), "channel"), []
    odd = ok[ok["channels"] != c0]
    items = [
        {"id": i, "channels": int(c), "mode": md, "problem": "channels"}
        for i, c, md in zip(odd["id"], odd["channels"], odd["mode"])
    ]
    counts = ", ".join(f"{c}: {n}" for c, n in chans.items())
    listing = names((f"{i} ({md})" for i, md in zip(odd["id"], odd["mode"])), cap)
    return f"channels vary ({counts}), all converted to {m.image_mode}; not {c0}-channel: {listing}", items


def _shape_advice(m: Manifest, n_sizes: int, n_channel_counts: int) -> str:
    advice = [ADVICE["consistent_shapes.sizes"]] if n_sizes > 1 and not m.image_size else []
    if n_channel_counts > 1:
        advice.append(ADVICE["consistent_shapes.channels"].format(mode=m.image_mode))
    return "; ".join([*advice, ADVICE["consistent_shapes.files"]])


def split_sizes(m: Manifest, need_test: bool = True, cap: int = 10) -> Finding:
    """FAIL when a split the recipe needs has no usable sample; WARN when a class is missing from val or
    test (then that class's accuracy is never measured). Items: split (and class), problem. Rule: every
    stage trains on train, decides on val and reports on test (Recipe §2 onwards)."""
    ok = usable(m)
    counts = {s: int((ok["split"] == s).sum()) for s in SPLITS}
    needed = SPLITS if need_test else ("train", "val")
    empty = [s for s in needed if counts[s] == 0]
    items: list[dict[str, Any]] = [{"split": s, "problem": "empty"} for s in empty]
    parts = ["usable samples: " + ", ".join(f"{s} {counts[s]}" for s in SPLITS)]  # joined by "; "
    verdict = FAIL if empty else PASS
    if task_for(m).classifier and m.classes:
        table = class_counts(m)
        for s in needed[1:]:
            absent = [c for c in m.classes if table.loc[c, s] == 0 and table.loc[c, "total"] > 0]
            if absent and counts[s]:
                verdict = Verdict.worst([verdict, WARN])
                items += [{"split": s, "class": c, "problem": "class absent"} for c in absent]
                parts.append(f"classes absent from {s}: {names(absent, cap)}")
    full = {s: int(n) for s, n in m.split_sizes().items()}
    every_class = " of every class" if task_for(m).classifier else ""
    return finding(
        "split_sizes",
        "train, val" + (" and test" if need_test else "") + f" each hold samples{every_class}",
        "; ".join(parts),
        "no empty split, every class in every split",
        verdict,
        ADVICE["split_sizes"],
        items,
        {"data/n_train": full["train"], "data/n_val": full["val"], "data/n_test": full["test"]},
    )


def class_balance(m: Manifest, warn_ratio: float = 5.0, cap: int = 10) -> Finding:
    """WARN when the largest class outnumbers the smallest by more than ``warn_ratio`` (a ratio of sample
    counts), naming the classes below largest / warn_ratio (items: class and its counts per split).
    Labels that differ only in case or whitespace count as one class here (``label_names_distinct`` names them):
    a stray spelling is not a small class. Rule: Recipe §1, "I look for data imbalances and biases"."""
    table = class_counts(m)
    if m.label_variants and not m.merged_labels:
        first = {normalise_label(c): c for c in table.index[::-1]}  # each group under its first spelling
        table = table.groupby([first[normalise_label(c)] for c in table.index], sort=False).sum()
    total = table["total"]
    if not len(total) or total.max() == 0:
        return finding("class_balance", "classes are roughly balanced", "no labelled samples", "-", PASS)
    big, small = total.idxmax(), total.idxmin()
    ratio = float(total.max() / total.min()) if total.min() > 0 else float("inf")
    minor = table[total * warn_ratio < total.max()]
    items = [{"class": c, **{k: int(v) for k, v in row.items()}} for c, row in minor.iterrows()]
    observed = f"largest / smallest = {fmt(ratio)}: {big!r} ({total[big]}) vs {small!r} ({total[small]})"
    if len(minor) > 1:
        observed += f"; below 1/{fmt(warn_ratio)} of the largest: " + names(
            (f"{c!r} ({n})" for c, n in minor["total"].items()), cap
        )
    metrics = {"data/n_classes": len(m.classes)}
    if np.isfinite(ratio):
        metrics["data/imbalance_ratio"] = ratio
    return finding(
        "class_balance",
        f"no class outnumbers another by more than {fmt(warn_ratio)}x",
        observed,
        f"<= {fmt(warn_ratio)}",
        WARN if ratio > warn_ratio else PASS,
        ADVICE["class_balance"],
        items,
        metrics,
    )


def pixel_stats_outliers(m: Manifest, k: float = 6.0, cap: int = 20) -> Finding:
    """WARN listing every image whose pixel mean or std (0..1 scale; or size in pixels and aspect, when sizes
    vary) lies beyond the robust bounds median ± k · 1.4826 · MAD, most extreme first (items: one per sample
    and property, with its value, robust z and bounds). Rule: Recipe §1, "visualize ... the outliers along
    any axis. The outliers especially almost always uncover some bugs in data quality or preprocessing"."""
    values, bounds = property_values(m), property_bounds(m, k)
    rows = _outlier_rows(values, bounds)
    expected = "; ".join(f"{p} in [{fmt(b.lo)}, {fmt(b.hi)}]" for p, b in bounds.items()) or "-"
    metrics: dict[str, float] = {"data/n_outliers": len({r["id"] for r in rows}), **pixel_summary(m)}
    return finding(
        "pixel_stats_outliers",
        f"no image's pixel statistics lie beyond {fmt(k)} robust SDs of the median",
        _outliers_observed(rows, bounds, len(values), k, cap),
        expected,
        WARN if rows else PASS,
        ADVICE["pixel_stats_outliers"],
        rows,
        metrics,
    )


def _outlier_rows(values: pd.DataFrame, bounds: dict[str, Bounds]) -> list[dict[str, Any]]:
    """One JSON-able row per (sample, property) outside that property's bounds, largest |z| first."""
    rows = []
    for p, b in bounds.items():
        out = values[b.outside(values[p])]
        for (_, r), z in zip(out.iterrows(), b.z(out[p])):
            rows.append(
                {
                    "id": r["id"],
                    "path": json_value(r["path"]),
                    "split": r["split"],
                    "label": json_value(r["label"]),
                    "property": p,
                    "value": float(r[p]),
                    "z": json_value(z),
                    "lo": b.lo,
                    "hi": b.hi,
                }
            )
    rows.sort(key=lambda r: -abs(r["z"]) if isinstance(r["z"], float) else -np.inf)
    return rows


def _outliers_observed(rows: list[dict[str, Any]], bounds: dict[str, Bounds], n_images: int, k: float, cap: int) -> str:
    """pixel_stats_outliers' observed text: each sample once, with all its odd properties, most extreme first."""
    if rows:
        by_sample: dict[str, list[str]] = {}
        for r in rows:
            by_sample.setdefault(r["id"], []).append(f"{r['property']} {fmt(r['value'])}")
        listing = names((f"{i} ({', '.join(props)})" for i, props in by_sample.items()), cap)
        return f"{plural(len(by_sample), 'sample')} beyond median ± {fmt(k)} robust SD: {listing}"
    if bounds:
        medians = ", ".join(f"{p} median {fmt(b.median)}" for p, b in bounds.items())
        return f"no outliers among {n_images} images ({medians})"
    return "no readable images to compare"


def pixel_summary(m: Manifest) -> dict[str, float]:
    """Train-split pixel mean and std on the 0..1 scale, averaged over channels (what normalisation uses);
    empty without per-channel statistics or readable train samples."""
    train = (m.df["split"] == "train").to_numpy() & m.df["readable"].astype(bool).to_numpy()
    if m.chan_stats is None or not train.any():
        return {}
    cs = m.chan_stats[train]
    mean = cs[:, 0].mean(0)
    std = np.sqrt(np.maximum(cs[:, 1].mean(0) - mean**2, 0))
    return {"data/pixel_mean": float(mean.mean()), "data/pixel_std": float(std.mean())}


def duplicates(m: Manifest, cap: int = 10) -> list[Finding]:
    """Exact duplicates (same content hash): inside one split WARN (they over-weight a sample); across
    splits FAIL (a val/test sample the model trained on inflates its score) -- for a table only when the copies
    are enough to move a held-out metric beyond its sampling noise (:func:`leak_bound`), else WARN; for
    classification, identical samples with different labels WARN (images: at least one label is wrong; tables:
    often two alike cases) with the train accuracy they leave reachable (``data/train_accuracy_ceiling``).
    Items: one per group, with its hash and members (id, split, label). Rule: Recipe §1, "One time I
    discovered that the data contained duplicate examples"."""
    what = "files" if has_files(m) else "samples"
    groups = [g for _, g in duplicate_groups(m).groupby("group", sort=True)]
    n_held = int((usable(m)["split"] != "train").sum())
    found = [_within_split(groups, what, cap), _across_splits(groups, what, cap, None if is_image(m) else n_held)]
    if task_for(m).classifier:
        n_train = int((usable(m)["split"] == "train").sum())
        found.append(_label_conflicts(groups, what, cap, n_train, table=not is_image(m)))
    return found


def leak_bound(n_held: int) -> int:
    """How many held-out rows of a table may be copies of rows in another split before they can move a held-out
    metric beyond its sampling noise: k copies shift an accuracy by at most k / n, and its standard error is up to
    0.5 / sqrt(n), so ``floor(0.5 * sqrt(n))``. ``n_held``: the val + test rows."""
    return int(0.5 * math.sqrt(max(n_held, 0)))


def train_accuracy_ceiling(groups: list[pd.DataFrame], n_train: int) -> float:
    """The train accuracy any model can reach when identical train samples carry different labels: each group
    of them counts only its most common label as reachable (1.0 without conflicts)."""
    lost = 0
    for g in groups:
        train = g[g["split"] == "train"]["label"].astype(str)
        if train.nunique() > 1:
            lost += len(train) - int(train.value_counts().iloc[0])
    return 1.0 - lost / n_train if n_train else 1.0


def _members(g: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"id": i, "split": s, "label": json_value(lab)} for i, s, lab in zip(g["id"], g["split"], g["label"])]


def _group_items(groups: list[pd.DataFrame]) -> list[dict[str, Any]]:
    return [{"hash": g["hash"].iloc[0], "members": _members(g)} for g in groups]


def _within_split(groups: list[pd.DataFrame], what: str, cap: int) -> Finding:
    """``duplicates_within_split``: copies of one content inside one split."""
    within, listing, n_extra = [], [], 0
    for g in groups:
        for s, gs in g.groupby("split", sort=False):
            if len(gs) > 1:
                within.append({"hash": gs["hash"].iloc[0], "split": s, "members": _members(gs)})
                listing.append(f"{s}: " + " = ".join(gs["id"]))
                n_extra += len(gs) - 1
    observed = (
        f"{plural(n_extra + len(within), what[:-1], what)} in {plural(len(within), 'group')} of identical "
        f"{what} within a split ({plural(n_extra, 'extra copy', 'extra copies')}): " + names(listing, cap)
        if within
        else "no duplicates within a split"
    )
    return finding(
        "duplicates_within_split",
        f"no two {what} of a split are identical",
        observed,
        "0 duplicates",
        WARN if within else PASS,
        ADVICE["duplicates_within_split"],
        within,
        {"data/n_duplicates_within": n_extra},
    )


def _across_splits(groups: list[pd.DataFrame], what: str, cap: int, n_held: int | None = None) -> Finding:
    """``no_leakage_across_splits``: one content in more than one split (``n_held``: a table's val + test rows,
    judged by :func:`leak_bound`; None: images, where any copy FAILs)."""
    across = [g for g in groups if g["split"].nunique() > 1]
    n_shared = sum(len(g) for g in across)
    listing = [" = ".join(f"{i} ({s})" for i, s in zip(*_first_per(g, "split"))) for g in across]
    observed = (
        f"{plural(n_shared, what[:-1], what)} in {plural(len(across), 'group')} shared across splits: "
        + names(listing, cap)
        if across
        else "no sample appears in two splits"
    )
    expected, verdict, advice = "0 shared samples", FAIL if across else PASS, ADVICE["no_leakage_across_splits"]
    if n_held is not None:
        held = sum(int((g["split"] != "train").sum()) for g in across)
        bound = leak_bound(n_held)
        expected = f"at most {bound} of {n_held} held-out rows copied (0.5 x sqrt(n): within a metric's noise)"
        if across:
            observed += f"; {held} held-out {'row' if held == 1 else 'rows'} with a copy in another split"
            verdict = FAIL if held > bound else WARN
            advice = ADVICE["no_leakage_across_splits" if held > bound else "no_leakage_across_splits.table"]
    return finding(
        "no_leakage_across_splits",
        "no val/test sample is identical to a sample of another split",
        observed,
        expected,
        verdict,
        advice,
        _group_items(across),
        {"data/n_duplicates_across": n_shared},
    )


def _label_conflicts(groups: list[pd.DataFrame], what: str, cap: int, n_train: int = 0, table: bool = False) -> Finding:
    """``duplicate_labels_agree``: one content under more than one label, and the train accuracy that leaves."""
    conflicts = [g for g in groups if g["label"].astype(str).nunique() > 1]
    listing = [" vs ".join(f"{i} ({lab!r})" for i, lab in zip(*_first_per(g, "label"))) for g in conflicts]
    ceiling = train_accuracy_ceiling(conflicts, n_train)
    observed = (
        f"{plural(len(conflicts), 'group')} of identical {what} with different labels: {names(listing, cap)}"
        if conflicts
        else "identical samples agree on their labels"
    )
    if conflicts and n_train:
        observed += f"; train accuracy ceiling {ceiling:.4f}"
    return finding(
        "duplicate_labels_agree",
        "identical samples carry the same label",
        observed,
        "0 conflicts",
        WARN if conflicts else PASS,
        ADVICE["duplicate_labels_agree.table" if table else "duplicate_labels_agree"],
        _group_items(conflicts),
        {"data/n_label_conflicts": len(conflicts), "data/train_accuracy_ceiling": ceiling},
    )


def _first_per(g: pd.DataFrame, column: str) -> tuple[list[str], list[Any]]:
    """ids and values of the first row of ``g`` for each distinct value of ``column``."""
    first = g.drop_duplicates(column)
    return first["id"].tolist(), first[column].tolist()


# --- all of them --------------------------------------------------------------------------------------------


def inspect_manifest(m: Manifest, cfg: RecipeConfig) -> DataReport:
    """Every check that applies to this manifest's kind of data, plus summary metrics (``data/...``)."""
    from . import tables

    ic = cfg.stages.inspect
    cap = ic.max_listed
    classification = task_for(m).classifier
    need_test = cfg.data.split.test > 0 or m.source == "torchvision"
    found: list[Finding] = []
    if is_image(m):
        found.append(files_readable(m, cap))
    found.append(no_nulls(m, cap))
    if classification:
        found += [labels_in_class_set(m, cap), at_least_two_classes(m)]
    if classification:
        found.append(label_names_distinct(m, cap))
    if has_files(m):
        found += [no_empty_classes(m, cap), ignored_files(m, cap), folder_layout(m, cap)]
    if is_image(m):
        found += [image_decoding(m, cap), channel_order(m, cap=cap), consistent_shapes(m, cap)]
    found.append(split_sizes(m, need_test, cap))
    if classification:
        found.append(class_balance(m, ic.imbalance_warn_ratio, cap))
    if is_image(m):
        found.append(pixel_stats_outliers(m, ic.outlier_mad, ic.max_outliers_listed))
    found += duplicates(m, cap)
    if m.features is not None:
        found += tables.table_checks(m, ic)
    metrics: dict[str, float] = {
        "data/n_samples": len(m.df),
        "data/n_unreadable": int((~m.df["readable"].astype(bool)).sum()),
        "data/n_classes": len(m.classes),
    }
    for f in found:
        metrics.update(f.metrics)
    return DataReport(found, metrics)
