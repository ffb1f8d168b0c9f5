"""The digits and imagefolder sources: materialisation, decoding, tolerant manifests and strict loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from recipe.config import RecipeConfig
from recipe.data import DataError, build_manifest, data_dir, load_data
from recipe.data.errors import listing
from recipe.data.sources import materialise_digits


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("RECIPE_DATA_DIR")
    assert data_dir() == Path("data")


def test_digits_are_materialised_as_a_png_folder_that_round_trips_exactly(data_home):
    m = build_manifest(RecipeConfig())  # the default config: source=digits, no root
    root = data_home / "digits"
    assert (m.source, m.root, m.image_mode, m.task) == ("digits", root, "L", "classification")
    assert sorted(p.name for p in root.iterdir()) == [str(c) for c in range(10)]
    pngs = sorted(root.glob("*/*.png"))
    assert len(pngs) == len(m.df) == 1797
    digits = load_digits()
    for png in pngs:
        i = int(png.stem)
        with Image.open(png) as img:
            assert img.mode == "L"
            pixels = np.asarray(img).astype(np.float64)
        assert int(png.parent.name) == digits.target[i]
        np.testing.assert_array_equal(pixels, np.rint(digits.images[i] * 255 / 16))
        np.testing.assert_array_equal(np.rint(pixels * 16 / 255), digits.images[i])
    assert m.classes == [str(c) for c in range(10)]
    assert m.df["readable"].all() and set(m.df["height"]) == {8} and set(m.df["channels"]) == {1}
    assert not list(data_home.glob(".digits.tmp-*"))


def test_digits_written_into_a_data_root_that_did_not_exist_say_so(tmp_path, data_home):
    # a new user's typo'd folder without --preset imagefolder: the run must not pass silently on digits
    root = tmp_path / "my_photos"
    m = build_manifest(RecipeConfig(data={"root": str(root)}))
    assert m.notes[0].startswith(f"data.root {root} did not exist: scikit-learn's digits")
    assert "--preset imagefolder" in m.notes[0] and (root / "3").is_dir()
    assert not any("did not exist" in n for n in build_manifest(RecipeConfig(data={"root": str(root)})).notes)


def test_interrupted_digits_materialisation_leaves_nothing_behind(tmp_path, monkeypatch):
    real_save, calls = Image.Image.save, []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 50:
            raise OSError("No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    root = tmp_path / "digits"
    with pytest.raises(OSError, match="No space left"):
        materialise_digits(root)
    assert list(tmp_path.iterdir()) == []  # neither a half folder nor the temp folder
    monkeypatch.setattr(Image.Image, "save", real_save)
    materialise_digits(root)
    assert len(list(root.glob("*/*.png"))) == 1797


def test_data_root_overrides_where_digits_live(make_cfg, tmp_path):
    m = build_manifest(make_cfg(source="digits", root=tmp_path / "my_digits"))
    assert m.root == tmp_path / "my_digits" and len(list(m.root.glob("*/*.png"))) == 1797


def test_imagefolder_manifest_describes_every_file(make_folder, make_cfg):
    root = make_folder({"cat": 4, "dog": 5}, rgb={"dog"}, size=(6, 7))
    m = build_manifest(make_cfg(source="imagefolder", root=root))
    df = m.df
    assert m.classes == ["cat", "dog"] and m.image_mode == "RGB"  # one colour class makes everything RGB
    assert list(df.columns[:6]) == ["id", "path", "row", "label", "label_idx", "split"]
    assert df["id"].tolist()[:2] == ["cat/000.png", "cat/001.png"]
    assert df.groupby("label")["channels"].first().to_dict() == {"cat": 1, "dog": 3}  # as stored
    assert set(df["height"]) == {6} and set(df["width"]) == {7}
    assert df["readable"].all() and (df["error"] == "").all()
    assert df["mean"].between(0, 1).all() and (df["std"] > 0).all()
    assert df["hash"].str.len().eq(16).all() and df["hash"].is_unique
    assert load_data(make_cfg(source="imagefolder", root=root)).in_shape == (3, 6, 7)


@pytest.mark.parametrize(
    ("grayscale", "rgb", "mode", "channels"),
    [
        (None, set(), "L", 1),
        (True, {"a", "b"}, "L", 1),
        (False, set(), "RGB", 3),
    ],
)
def test_colour_mode_follows_the_files_unless_forced(make_folder, make_cfg, grayscale, rgb, mode, channels):
    root = make_folder({"a": 3, "b": 3}, rgb=rgb)
    bundle = load_data(make_cfg(source="imagefolder", root=root, grayscale=grayscale, split={"val": 0.3, "test": 0.3}))
    assert bundle.manifest.image_mode == mode and bundle.in_shape == (channels, 6, 6)
    assert bundle.tensors("train")[0].shape[1] == channels


def test_hidden_and_non_image_files(make_folder, make_cfg):
    root = make_folder({"a": 3, "b": 3})
    (root / ".DS_Store").write_text("x")
    (root / "a" / ".hidden.png").write_bytes(b"junk")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"junk")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("loose file")
    (root / "b" / "UPPER.PNG").write_bytes((root / "b" / "000.png").read_bytes())  # extensions ignore case
    m = build_manifest(make_cfg(source="imagefolder", root=root))
    assert len(m.df) == 7 and m.df["readable"].all()
    assert m.ignored_files == ["README.md", "a/notes.txt"]
    assert any("2 files without an image extension were ignored" in n for n in m.notes)


def test_nested_folders_belong_to_their_top_level_class(make_folder, make_cfg):
    root = make_folder({"a": 3, "b": 3})
    (root / "a" / "more").mkdir()
    (root / "a" / "000.png").rename(root / "a" / "more" / "000.png")
    df = build_manifest(make_cfg(source="imagefolder", root=root)).df
    assert df.set_index("id").loc["a/more/000.png", "label"] == "a"


def test_re_encoded_duplicates_share_a_hash(make_folder, make_cfg):
    root = make_folder({"a": 3, "b": 3})
    with Image.open(root / "a" / "000.png") as img:
        img.save(root / "b" / "copy.bmp")
    df = build_manifest(make_cfg(source="imagefolder", root=root)).df.set_index("id")
    assert df.loc["a/000.png", "hash"] == df.loc["b/copy.bmp", "hash"]


def test_corrupt_files_are_rows_in_the_manifest_and_errors_in_load_data(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4})
    (root / "a" / "bad.png").write_bytes(b"this is not a png")
    cfg = make_cfg(source="imagefolder", root=root)
    m = build_manifest(cfg)
    bad = m.df.set_index("id").loc["a/bad.png"]
    assert not bad["readable"] and "cannot identify image file" in bad["error"] and bad["hash"] == ""
    assert m.df["readable"].sum() == 8 and isinstance(bad["split"], str)
    with pytest.raises(DataError, match=r"1 unreadable files \(fix or remove them\):\n.*a/bad\.png: Unidentified"):
        load_data(cfg)


def test_load_data_lists_every_corrupt_file_at_once(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4})
    (root / "a" / "bad.png").write_bytes(b"")
    good = (root / "b" / "000.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="2 unreadable files") as info:
        load_data(make_cfg(source="imagefolder", root=root))
    assert str(root / "a" / "bad.png") in str(info.value) and str(root / "b" / "truncated.png") in str(info.value)


def test_long_listings_are_capped_with_a_count():
    text = listing(range(60))
    assert text.count("\n") == 50 and text.endswith("... and 10 more")


def test_empty_class_folder(make_folder, make_cfg):
    root = make_folder({"a": 3, "b": 3})
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    cfg = make_cfg(source="imagefolder", root=root)
    m = build_manifest(cfg)
    assert m.empty_classes == ["empty"] and m.classes == ["a", "b"]
    with pytest.raises(DataError, match=r"1 empty class folder\(s\) \(add images or delete the folder\):\n.*empty"):
        load_data(cfg)


def test_single_class_is_refused(make_folder, make_cfg):
    root = make_folder({"only": 6})
    cfg = make_cfg(source="imagefolder", root=root)
    assert build_manifest(cfg).classes == ["only"]  # tolerant: inspect can still look at it
    with pytest.raises(DataError, match="only one class \\('only'\\): a classifier needs at least two"):
        load_data(cfg)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "data.root .*missing does not exist; point data.root at a folder"),
        (lambda root: root.mkdir(), "has no class sub-folders; put each class's images in a folder"),
        (lambda root: (root / "a").mkdir(parents=True), "no image files under .*class folders: a"),
        (lambda root: root.write_text("x"), "is a file; imagefolder needs a folder"),
    ],
)
def test_folders_without_a_manifest_raise(tmp_path, make_cfg, setup, message):
    root = tmp_path / "missing"
    setup(root)
    with pytest.raises(DataError, match=message):
        build_manifest(make_cfg(source="imagefolder", root=root))


def test_different_sizes_need_image_size(make_folder, make_cfg, tmp_path):
    root = make_folder({"a": 3, "b": 3}, size=(6, 6))
    make_folder({"a": 2}, size=(9, 5), name="images", seed=1)  # overwrites a/000 and a/001 with 9x5 images
    with pytest.raises(DataError, match=r"images come in 2 sizes; set data.image_size=N.*\n.*6x6: 4 images"):
        load_data(make_cfg(source="imagefolder", root=root))
    bundle = load_data(make_cfg(source="imagefolder", root=root, image_size=5))
    assert bundle.in_shape == (1, 5, 5) and bundle.tensors("train")[0].shape[1:] == (1, 5, 5)
    assert set(bundle.manifest.df["height"]) == {6, 9}  # the manifest keeps the sizes as stored


def test_regression_on_class_folders_is_refused(make_folder, make_cfg):
    with pytest.raises(DataError, match="data.task=regression needs a numeric target"):
        build_manifest(make_cfg(source="imagefolder", root=make_folder({"a": 3}), task="regression"))


def test_a_decoded_folder_is_read_back_from_the_disk_cache_by_the_next_process(make_folder, make_cfg, monkeypatch):
    from recipe.data import clear_cache, sources

    root = make_folder({"a": 6, "b": 5}, size=(7, 7))
    cfg = make_cfg(source="imagefolder", root=root)
    first = load_data(cfg)
    x1, y1 = first.tensors("train")
    assert len(list(sources.disk_cache_dir().glob("decoded-*.npz"))) == 1
    clear_cache()  # as a new process: nothing decoded in memory

    def no_decoding(path, image_size):
        raise AssertionError(f"decoded {path} again")

    with monkeypatch.context() as mp:
        mp.setattr(sources, "_decode", no_decoding)
        second = load_data(cfg)
        x2, y2 = second.tensors("train")
    assert second.fingerprint == first.fingerprint and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert second.manifest.df.equals(first.manifest.df)

    # an edited file gives another key: decoded afresh, and the fingerprint follows the new content
    victim = next(root.glob("a/*.png"))
    Image.fromarray(np.full((7, 7), 200, dtype=np.uint8)).save(victim)
    clear_cache()
    third = load_data(cfg)
    assert third.fingerprint != first.fingerprint
    assert len(list(sources.disk_cache_dir().glob("decoded-*.npz"))) == 2
