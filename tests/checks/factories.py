"""Hand-made manifests: rows of exactly the shape ``build_manifest`` produces, with one thing wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recipe.data import Manifest
from recipe.data.manifest import fingerprint

ROOT = Path("/data/images")


def image_rows(counts: dict[str, dict[str, int]] | dict[str, int], **overrides: Any) -> list[dict[str, Any]]:
    """Rows for ``{"a": 10, "b": 6}`` (split 70/15/15-ish by position) or ``{"a": {"train": 8, "val": 2}}``.

    Pixel statistics vary a little (so MAD > 0) and every hash is unique; ``overrides`` apply to all rows.
    """
    rows = []
    for label, spec in counts.items():
        if isinstance(spec, int):
            n_val = n_test = max(1, spec * 15 // 100) if spec >= 3 else 0
            spec = {"train": spec - n_val - n_test, "val": n_val, "test": n_test}
        i = 0
        for split, n in spec.items():
            for _ in range(n):
                k = len(rows)
                rows.append(
                    {
                        "id": f"{label}/{i:03d}.png",
                        "label": label,
                        "split": split,
                        "mean": 0.30 + 0.01 * (k % 7),
                        "std": 0.25 + 0.01 * (k % 5),
                        "hash": f"h{k:05d}",
                        **overrides,
                    }
                )
                i += 1
    return rows


def make(
    rows: list[dict[str, Any]],
    *,
    classes: list[str] | None = None,
    task: str = "classification",
    source: str = "imagefolder",
    image_mode: str | None = "L",
    image_size: int | None = None,
    features: pd.DataFrame | None = None,
    **kw: Any,
) -> Manifest:
    """A Manifest from row dicts; missing columns get the values of a clean 8x8 gray PNG."""
    image = image_mode is not None
    labels = [r.get("label") for r in rows]
    if classes is None and task == "classification":
        classes = sorted({str(v) for v in labels if v is not None})
    classes = classes or []
    defaults = {
        "path": None,
        "row": None,
        "height": 8,
        "width": 8,
        "channels": 1,
        "mode": "L",
        "mean": 0.3,
        "std": 0.25,
        "readable": True,
        "error": "",
    }
    table = []
    for i, r in enumerate(rows):
        r = {**defaults, **r}
        r.setdefault("id", f"row:{i}")
        r.setdefault("hash", f"h{i:05d}")
        if image and source in ("digits", "imagefolder") and r["path"] is None:
            r["path"] = str(ROOT / (r["id"] or f"unnamed-{i}.png"))
        if "label_idx" not in r:
            r["label_idx"] = classes.index(str(r["label"])) if str(r["label"]) in classes else None
        table.append(r)
    df = pd.DataFrame(table)
    columns = ["id", "path", "row", "label", "label_idx", "split"]
    columns += ["height", "width", "channels", "mode", "mean", "std"] if image else ["mean", "std"]
    df = df[columns + ["hash", "readable", "error"]]
    df["label_idx"] = pd.array(df["label_idx"], dtype="Int64")
    df["row"] = pd.array(df["row"], dtype="Int64")
    if image:
        for c in ("height", "width", "channels"):
            df[c] = pd.array(df[c], dtype="Int64")
    chan = None
    if image:
        mean, std = df["mean"].to_numpy(float), df["std"].to_numpy(float)
        chan = np.stack([mean, std**2 + mean**2], axis=1)[:, :, None]
    return Manifest(
        df=df,
        task=task,
        classes=classes,
        source=source,
        root=kw.pop("root", ROOT if image else Path("/data/t.csv")),
        fingerprint=fingerprint(df),
        image_mode=image_mode,
        image_size=image_size,
        features=features,
        feature_columns=[] if features is None else list(features.columns),
        chan_stats=chan,
        **kw,
    )


def table(
    features: dict[str, list[float]],
    labels: list[Any],
    splits: list[str] | None = None,
    task: str = "classification",
    **kw: Any,
) -> Manifest:
    """A CSV manifest: encoded ``features`` (column -> values), one label per row, splits by position
    (default: 60% train, then val, then test)."""
    f = pd.DataFrame(features, dtype=np.float64)
    n = len(f)
    if splits is None:
        n_train, n_val = int(n * 0.6), int(n * 0.2)
        splits = ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)
    values = f.to_numpy()
    rows = [
        {
            "id": f"row:{i}",
            "row": i,
            "label": labels[i],
            "split": splits[i],
            "readable": bool(np.isfinite(values[i]).all()) and labels[i] is not None,
            "hash": f"t{i:05d}",
        }
        for i in range(n)
    ]
    return make(rows, task=task, source="csv", image_mode=None, features=f, **kw)
