"""Data faults from public reports (issue #18 items 3-4, issue #24 item 5), each rebuilt as a small generated
input: the check that catches it, its verdict and the cause in its *observed* text; and the same input without
the fault raises no WARN from these checks.

Decoding and colour: 16-bit gray PNGs, files that decode to one value, a subset stored BGR, alpha and palettes.
Folders and labels: data.root one level too high, an unlabelled split among the classes, nested class folders,
a hidden .ipynb_checkpoints folder, class names that differ only in case or whitespace (folders and CSV targets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recipe.checks.data import inspect_manifest
from recipe.config import RecipeConfig
from recipe.data import build_manifest, load_data
from recipe.report import Verdict

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL
NEW_CHECKS = ("image_decoding", "channel_order", "folder_layout", "label_names_distinct", "ignored_files")


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))


def _checks(root: Path, **data) -> dict:
    cfg = RecipeConfig(data={"source": "imagefolder", "root": str(root), **data})
    return {c.name: c for c in inspect_manifest(build_manifest(cfg), cfg).checks}


def _clean(checks: dict) -> None:
    """No WARN or FAIL from the checks this issue added."""
    loud = {n: checks[n].observed for n in NEW_CHECKS if n in checks and checks[n].verdict is not PASS}
    assert not loud, loud


def _digits_like(rng, n: int, cls: int, side: int = 12) -> list[np.ndarray]:
    """Gray glyph-ish images in 0..1: a class-dependent bar plus noise."""
    out = []
    for _ in range(n):
        a = rng.uniform(0.0, 0.2, (side, side))
        a[:, (cls * 3) % side : (cls * 3) % side + 3] += 0.7
        out.append(np.clip(a, 0, 1))
    return out


def _write_gray(root: Path, counts: dict[str, int], depth: int = 8, seed: int = 0, lo=28_000, hi=32_000) -> Path:
    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(_digits_like(rng, n, c)):
            if depth == 16:  # detector-style: every value between lo and hi, far above 255
                Image.fromarray((lo + a * (hi - lo)).astype(np.uint16)).save(root / name / f"{i:03d}.png")
            else:
                Image.fromarray((a * 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


# --- decoding: bit depth ------------------------------------------------------------------------------------


def test_16_bit_gray_pngs_are_scaled_by_their_bit_depth_not_clipped_to_white(tmp_path):
    root = _write_gray(tmp_path / "xray", {"normal": 30, "opacity": 30}, depth=16)
    assert Image.open(next(root.glob("normal/*.png"))).mode == "I;16"
    checks = _checks(root)
    dec = checks["image_decoding"]
    assert dec.verdict is PASS
    assert (
        "60 files scaled to 8 bits from a deeper bit depth (e.g. " in dec.observed
        and "16-bit gray (I;16, values 28," in dec.observed
    )
    assert checks["duplicates_within_split"].verdict is PASS  # not "600 identical files"
    assert checks["no_leakage_across_splits"].verdict is PASS
    x, _ = load_data(RecipeConfig(data={"source": "imagefolder", "root": str(root)})).tensors("train")
    assert x.std() > 0.5  # standardised pixels that vary, not a constant white
    m = build_manifest(RecipeConfig(data={"source": "imagefolder", "root": str(root)}))
    pixels = m.reader.read(0)
    assert 100 <= pixels.min() and pixels.max() <= 130  # 28,000..32,000 of 65,535 -> 109..124 of 255
    _clean(checks)


def test_32_bit_and_float_pixels_without_a_known_range_are_refused_with_their_range(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"a": 6, "b": 6})
    Image.fromarray(np.full((8, 8), 70_000, np.int32), "I").save(root / "a" / "wide.tif")
    Image.fromarray(np.full((8, 8), -3.5, np.float32), "F").save(root / "b" / "signed.tif")
    readable = _checks(root)["files_readable"]
    assert readable.verdict is FAIL
    assert "a/wide.tif (mode I pixels span 70,000..70,000: no bit depth says how to scale them" in readable.observed
    assert "b/signed.tif (mode F pixels span -3.5..-3.5" in readable.observed


def test_files_that_decode_to_one_value_are_a_decoding_finding_not_duplicates(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"a": 20, "b": 20})
    for i in range(4):  # blank exports: every pixel 255
        Image.fromarray(np.full((12, 12), 255, np.uint8)).save(root / "a" / f"blank{i}.png")
    checks = _checks(root)
    dec = checks["image_decoding"]
    assert dec.verdict is WARN
    assert dec.observed.startswith("4 of 44 images decode to a single value")
    assert "a/blank0.png (all 255, stored as L)" in dec.observed
    for name in ("duplicates_within_split", "no_leakage_across_splits", "duplicate_labels_agree"):
        assert checks[name].verdict is PASS, checks[name].observed
    assert "delete all but one copy" not in " ".join(c.advice for c in checks.values())


def test_a_folder_that_mostly_decodes_to_one_value_fails(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / c / f"{i}.png")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(root / "a" / "real.png")
    checks = _checks(root)
    assert checks["image_decoding"].verdict is FAIL
    assert checks["image_decoding"].observed.startswith("12 of 13 images decode to a single value")
    assert checks["duplicates_within_split"].verdict is PASS


# --- decoding: colour ---------------------------------------------------------------------------------------

COLOURS = {"apple": (0.75, 0.35, 0.15), "leaf": (0.35, 0.65, 0.20), "sea": (0.15, 0.40, 0.70)}


def _write_colour(root: Path, n: int = 16, bgr: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Class-coloured RGB photos-ish (per-image tint jitter, pixel noise); ``bgr``: files per class saved BGR."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            tint = np.clip(np.asarray(rgb) + rng.normal(0, 0.04, 3), 0, 1)
            a = np.clip(tint + rng.normal(0, 0.08, (16, 16, 3)), 0, 1)
            a = (a * 255).astype(np.uint8)
            if bgr and i < bgr.get(name, 0):
                a = a[..., ::-1]  # what cv2.imwrite does to an RGB array
            Image.fromarray(np.ascontiguousarray(a)).save(root / name / f"{i:03d}.png")
    return root


def test_a_subset_saved_in_bgr_order_is_named(tmp_path):
    root = _write_colour(tmp_path / "fruit", bgr={"apple": 4, "sea": 3})
    f = _checks(root)["channel_order"]
    assert f.verdict is WARN
    assert "7 files of 48 whose channel statistics fit their class only with the channels reordered" in f.observed
    assert "apple/000.png (fits 'apple' as B, G, R)" in f.observed and "sea/002.png" in f.observed
    assert "leaf/" not in f.observed  # a class of nearly equal R and B: nothing to swap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_colour_folders_raise_nothing(tmp_path, seed):
    _clean(_checks(_write_colour(tmp_path / "fruit", seed=seed)))


def _scene_crops(root: Path, seed: int, swapped: int = 0) -> Path:
    """Classes of many looks: 32x32 crops of scikit-learn's two bundled photos (sky, roofs, petals, leaves);
    the first ``swapped`` flower crops saved with red and blue swapped."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    for name, im in zip(("china", "flower"), load_sample_images().images):
        (root / name).mkdir(parents=True)
        for i in range(60):
            y, x = rng.integers(0, im.shape[0] - 32), rng.integers(0, im.shape[1] - 32)
            crop = im[y : y + 32, x : x + 32]
            crop = crop[..., ::-1] if name == "flower" and i < swapped else crop
            Image.fromarray(np.ascontiguousarray(crop)).save(root / name / f"{i:02d}.png")
    return root


def test_bgr_crops_of_natural_scenes_are_named_and_clean_crops_are_not(tmp_path):
    for seed in (0, 1):
        _clean(_checks(_scene_crops(tmp_path / f"clean{seed}", seed)))
    f = _checks(_scene_crops(tmp_path / "bgr", 2, swapped=6))["channel_order"]
    assert f.verdict is WARN
    named = [i["id"] for i in _items(tmp_path / "bgr", "channel_order")]
    assert named and all(i in {f"flower/{j:02d}.png" for j in range(6)} for i in named)  # only swapped files


def _items(root: Path, name: str) -> list[dict]:
    cfg = RecipeConfig(data={"source": "imagefolder", "root": str(root)})
    return inspect_manifest(build_manifest(cfg), cfg)[name].items


def _rgba_folder(root: Path) -> Path:
    """Cut-out objects: a grey square on a transparent background whose hidden colour is black or streaks."""
    rng = np.random.default_rng(0)
    for c in ("cup", "mug"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            a = np.zeros((10, 10, 4), np.uint8)
            a[..., :3] = rng.integers(0, 256, (10, 10, 3)) if i % 2 else 0  # what sits under the transparency
            a[3:7, 3:7] = (90, 90, 90, 255) if c == "cup" else (160, 60, 60, 255)
            Image.fromarray(a, "RGBA").save(root / c / f"{i}.png")
    return root


def test_transparency_is_composited_on_the_stated_background_and_said(tmp_path):
    root = _rgba_folder(tmp_path / "cutouts")
    checks = _checks(root)
    dec = checks["image_decoding"]
    assert dec.verdict is PASS
    assert "12 files with transparency composited on data.background" in dec.observed
    assert "84% of pixels transparent, composited on #ffffff" in dec.observed
    m = build_manifest(RecipeConfig(data={"source": "imagefolder", "root": str(root)}))
    streaky = m.reader.read(int(np.flatnonzero(m.df["id"] == "cup/1.png")[0]))
    assert (streaky[0, 0] == 255).all() and (streaky[5, 5] == 90).all()  # white around, the object kept
    black = build_manifest(RecipeConfig(data={"source": "imagefolder", "root": str(root), "background": "black"}))
    assert (black.reader.read(1)[0, 0] == 0).all()


def test_palette_files_are_expanded_and_a_gray_palette_stays_one_channel(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"a": 8, "b": 8})
    for p in list(root.glob("a/*.png"))[:3]:
        Image.open(p).convert("P").save(p)  # a gray palette
    checks = _checks(root)
    assert "3 files expanded from a palette" in checks["image_decoding"].observed
    m = build_manifest(RecipeConfig(data={"source": "imagefolder", "root": str(root)}))
    assert m.image_mode == "L"  # three palette files of grays did not make the whole set RGB
    _clean(checks)


# --- folders and labels ------------------------------------------------------------------------------------


def test_data_root_one_level_too_high_fails_naming_the_split_folders(tmp_path):
    root = tmp_path / "dataset"
    _write_gray(root / "train", {"cat": 12, "dog": 12})
    _write_gray(root / "val", {"cat": 4, "dog": 4}, seed=1)
    f = _checks(root)["folder_layout"]
    assert f.verdict is FAIL
    assert "every class folder is named like a split (train, val)" in f.observed
    assert "hold sub-folders cat, dog: data.root is probably one level too high" in f.observed
    assert f"data.root={root / 'train'}" in f.advice
    _clean(_checks(root / "train"))


def test_an_unlabelled_split_among_the_class_folders_fails(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"cat": 12, "dog": 12, "unlabeled": 9})
    f = _checks(root)["folder_layout"]
    assert f.verdict is FAIL
    assert "1 folder named like a split among the class folders: 'unlabeled' (9 images)" in f.observed


def test_nested_class_folders_warn(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"cat": 12, "dog": 12})
    _write_gray(root / "cat", {"tabby": 5, "siamese": 5}, seed=2)
    f = _checks(root)["folder_layout"]
    assert f.verdict is WARN
    assert (
        "1 class folder keep images in sub-folders, all labelled with the class folder: cat (cat/siamese, cat/tabby)"
        in (f.observed)
    )


def test_a_hidden_checkpoint_folder_is_counted_under_ignored_files(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"cat": 10, "dog": 10})
    ckpt = root / "cat" / ".ipynb_checkpoints"
    ckpt.mkdir()
    for p in list((root / "cat").glob("*.png"))[:4]:
        (ckpt / p.name.replace(".png", "-checkpoint.png")).write_bytes(p.read_bytes())
    f = _checks(root)["ignored_files"]
    assert f.verdict is WARN
    assert f.observed == "1 hidden entry skipped: cat/.ipynb_checkpoints/ (4 files, 4 images)"
    assert "no files skipped" not in f.observed


def test_hidden_non_image_files_are_named_without_a_warning(tmp_path):
    root = _write_gray(tmp_path / "imgs", {"cat": 10, "dog": 10})
    (root / ".DS_Store").write_bytes(b"\0")
    f = _checks(root)["ignored_files"]
    assert f.verdict is PASS and f.observed == "1 hidden entry skipped: .DS_Store"


def test_class_folders_that_differ_only_in_case_or_whitespace_fail_as_such(tmp_path):
    root = _write_gray(tmp_path / "shop", {"Shoes": 20, "shoes": 18, "shoes ": 3, "boots": 20})
    checks = _checks(root)
    f = checks["label_names_distinct"]
    assert f.verdict is FAIL
    assert (
        "1 class written several ways, differing only in case or whitespace: 'Shoes' (20) = 'shoes' (18) = 'shoes ' (3)"
        in (f.observed)
    )
    assert checks["class_balance"].verdict is PASS  # 'shoes ' is a stray spelling, not a small class
    merged = _checks(root, merge_similar_labels=True)
    assert merged["label_names_distinct"].verdict is PASS
    assert "merged (data.merge_similar_labels=true): 'Shoes' (20) = 'shoes' (18) = 'shoes ' (3) -> 'Shoes'" in (
        merged["label_names_distinct"].observed
    )
    m = build_manifest(RecipeConfig(data={"source": "imagefolder", "root": str(root), "merge_similar_labels": True}))
    assert m.classes == ["Shoes", "boots"] and (m.df["label"] == "Shoes").sum() == 41


def test_csv_target_strings_that_differ_only_in_case_or_whitespace_fail_and_can_merge(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["Shoes"] * 30 + ["shoes"] * 25 + ["shoes "] * 5 + ["boots"] * 40
    frame = pd.DataFrame({"size": rng.normal(40, 3, 100), "weight": rng.normal(1, 0.2, 100), "kind": labels})
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    cfg = RecipeConfig(data={"source": "csv", "root": str(path), "target": "kind"})
    checks = {c.name: c for c in inspect_manifest(build_manifest(cfg), cfg).checks}
    f = checks["label_names_distinct"]
    assert f.verdict is FAIL and "'Shoes' (30) = 'shoes' (25) = 'shoes ' (5)" in f.observed
    cfg = RecipeConfig(data={"source": "csv", "root": str(path), "target": "kind", "merge_similar_labels": True})
    m = build_manifest(cfg)
    assert m.classes == ["Shoes", "boots"] and (m.df["label"] == "Shoes").sum() == 60
    clean = RecipeConfig(data={"source": "csv", "root": str(path), "target": "size"})
    assert "label_names_distinct" not in {c.name for c in inspect_manifest(build_manifest(clean), clean).checks}
