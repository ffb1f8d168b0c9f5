"""Fixed splits (stratified, seeded, saved, reused) and the data fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recipe.data import build_manifest


@pytest.fixture
def table(make_csv):
    """200 rows in classes of 100 / 60 / 40, as a CSV path."""
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], [100, 60, 40])
    return make_csv(pd.DataFrame({"x": rng.normal(size=200), "y": rng.permutation(labels)}))


def _splits(m) -> pd.Series:
    return m.df.set_index("id")["split"]


def test_splits_are_stratified_with_the_configured_fractions(table, make_cfg):
    m = build_manifest(make_cfg(source="csv", root=table, target="y", split={"val": 0.2, "test": 0.1, "seed": 3}))
    counts = pd.crosstab(m.df["label"], m.df["split"])
    assert counts.sum().to_dict() == {"test": 20, "train": 140, "val": 40}
    assert counts["val"].to_dict() == {"a": 20, "b": 12, "c": 8}  # the class mix of the whole set
    assert counts["test"].to_dict() == {"a": 10, "b": 6, "c": 4}


def test_splits_are_saved_and_reused(table, make_cfg, data_home):
    cfg = make_cfg(source="csv", root=table, target="y")
    first = build_manifest(cfg)
    assert first.split_file.parent == data_home / ".splits" and first.split_file.is_file()
    saved = pd.read_csv(first.split_file)
    assert list(saved.columns) == ["id", "split"] and len(saved) == 200
    saved.loc[saved["id"] == "row:0", "split"] = "test" if first.df["split"].iloc[0] != "test" else "val"
    saved.to_csv(first.split_file, index=False)  # if the file is really read back, the edit shows
    second = build_manifest(cfg)
    assert second.split_file == first.split_file
    assert (_splits(second) != _splits(first)).tolist().count(True) == 1
    assert any("splits read from" in n for n in second.notes)


def test_same_seed_same_split_other_seed_other_split(table, make_cfg, data_home):
    a = build_manifest(make_cfg(source="csv", root=table, target="y", split={"seed": 1}))
    (data_home / ".splits").rename(data_home / ".old")  # recomputed from scratch, still identical
    b = build_manifest(make_cfg(source="csv", root=table, target="y", split={"seed": 1}))
    c = build_manifest(make_cfg(source="csv", root=table, target="y", split={"seed": 2}))
    assert _splits(a).equals(_splits(b)) and not _splits(a).equals(_splits(c))
    assert c.split_file != b.split_file


def test_classes_too_small_to_stratify_stay_in_train(make_folder, make_cfg):
    root = make_folder({"big": 12, "small": 12, "rare": 2})
    m = build_manifest(make_cfg(source="imagefolder", root=root, split={"val": 0.25, "test": 0.25}))
    assert set(m.df.loc[m.df["label"] == "rare", "split"]) == {"train"}
    assert any("fewer than 3 samples are kept in train" in n and "'rare' (2)" in n for n in m.notes)
    assert m.split_sizes() == {"train": 14, "val": 6, "test": 6}


def test_unstratifiable_split_falls_back_to_random(make_folder, make_cfg):
    root = make_folder({c: 3 for c in "abcdef"})  # 18 samples: 3 held out cannot cover 6 classes
    m = build_manifest(make_cfg(source="imagefolder", root=root, split={"val": 0.15, "test": 0.15}))
    assert m.split_sizes() == {"train": 12, "val": 3, "test": 3}
    assert any("could not be stratified" in n and "drawn at random" in n for n in m.notes)


def test_regression_splits_without_strata(make_csv, make_cfg):
    frame = pd.DataFrame({"x": np.arange(100.0), "y": np.linspace(0, 1, 100)})
    m = build_manifest(make_cfg(source="csv", root=make_csv(frame), target="y", split={"test": 0.0}))
    assert m.split_sizes() == {"train": 85, "val": 15, "test": 0}


def test_fingerprint_is_stable_and_follows_labels_content_and_splits(make_csv, make_cfg, data_home):
    frame = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40) % 2})
    path = make_csv(frame)
    cfg = make_cfg(source="csv", root=path, target="y")
    base = build_manifest(cfg).fingerprint
    assert len(base) == 12 and int(base, 16) >= 0
    assert build_manifest(cfg).fingerprint == base
    frame.loc[5, "y"] = 1 - frame.loc[5, "y"]  # one label fixed
    make_csv(frame)
    relabelled = build_manifest(cfg)
    assert relabelled.fingerprint != base
    assert relabelled.split_file == build_manifest(cfg).split_file  # the split key ignores labels
    frame.loc[5, "x"] = 1000.0  # one value changed
    make_csv(frame)
    assert build_manifest(cfg).fingerprint not in {base, relabelled.fingerprint}
    assert build_manifest(make_cfg(source="csv", root=path, target="y", split={"seed": 9})).fingerprint != base


def test_fingerprint_follows_image_content(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4})
    cfg = make_cfg(source="imagefolder", root=root)
    before = build_manifest(cfg).fingerprint
    make_folder({"a": 1}, seed=7)  # rewrites a/000.png with other pixels
    assert build_manifest(cfg).fingerprint != before


def test_an_unreadable_saved_split_is_drawn_again(table, make_cfg):
    cfg = make_cfg(source="csv", root=table, target="y")
    first = build_manifest(cfg)
    first.split_file.write_text("")
    again = build_manifest(cfg)
    assert _splits(again).equals(_splits(first)) and len(pd.read_csv(again.split_file)) == 200
