"""Hostile image folders (issue #22, caps): decompression bombs and symbolic links that loop or leave data.root
are refused in well under a second, before anything large is decoded, with a message naming the file or link;
`flows train` answers them with exit 2."""

from __future__ import annotations

import os
import resource
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.hostile_inputs import write_png_bomb
from flows.cli import app
from recipe.data import DataError, build_manifest
from recipe.data.decoding import DEFAULT_MAX_PIXELS


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(("side", "why"), [(20_000, "exceeds limit"), (7_000, "above data.max_image_pixels")])
def test_a_decompression_bomb_is_refused_from_its_header_naming_the_file(make_folder, make_cfg, side, why):
    root = make_folder({"a": 4, "b": 4})
    bomb = write_png_bomb(root / "a" / "bomb.png", side, side)
    assert bomb.stat().st_size < 2**20 and side * side > DEFAULT_MAX_PIXELS
    peak, start = _peak_mb(), time.perf_counter()
    with pytest.raises(DataError, match="a/bomb.png: decompression bomb refused") as e:
        build_manifest(make_cfg(source="imagefolder", root=root))
    assert time.perf_counter() - start < 2 and _peak_mb() - peak < 100  # decoded, it would take side² bytes
    assert why in str(e.value) and "raise data.max_image_pixels" in str(e.value)


def test_a_cap_raised_on_purpose_decodes_what_pil_alone_would_call_a_bomb(make_folder, make_cfg, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # the source raises it to the cap
    root = make_folder({"a": 4, "b": 4})
    write_png_bomb(root / "a" / "big.png", 10_000, 10_000)  # 100 MP: PIL's default limit (89 MP) only warns
    with pytest.raises(DataError, match="a/big.png: decompression bomb refused"):
        build_manifest(make_cfg(source="imagefolder", root=root))
    m = build_manifest(make_cfg(source="imagefolder", root=root, max_image_pixels=100_000_000))
    assert m.df.set_index("id").loc["a/big.png", "readable"]  # a cap raised on purpose decodes it


def test_the_pixel_cap_is_a_setting(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4}, size=(20, 20))
    with pytest.raises(DataError, match=r"20 x 20 = 400 pixels, above data.max_image_pixels=399"):
        build_manifest(make_cfg(source="imagefolder", root=root, max_image_pixels=399))
    assert len(build_manifest(make_cfg(source="imagefolder", root=root, max_image_pixels=400)).df) == 8


def test_two_links_to_the_parent_are_a_loop_refused_at_once(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4})
    os.symlink("..", root / "a" / "up1")
    os.symlink("..", root / "a" / "up2")
    start = time.perf_counter()
    with pytest.raises(DataError, match="2 symbolic link") as e:
        build_manifest(make_cfg(source="imagefolder", root=root))
    assert time.perf_counter() - start < 1
    assert "a/up1 -> .." in str(e.value) and "a/up2 -> .." in str(e.value) and "loop" in str(e.value)


def test_a_link_to_the_filesystem_root_does_not_escape(make_folder, make_cfg):
    root = make_folder({"a": 4, "b": 4})
    os.symlink("/", root / "a" / "everything")
    os.symlink("/etc/hostname", root / "b" / "host.png")
    with pytest.raises(DataError, match="2 symbolic link.*lead out of data.root") as e:
        build_manifest(make_cfg(source="imagefolder", root=root))
    assert "a/everything -> /" in str(e.value) and "b/host.png -> /etc/hostname" in str(e.value)


def test_links_that_stay_inside_the_root_are_followed_once(make_folder, make_cfg, tmp_path):
    root = make_folder({"a": 4, "b": 4})
    (root / "a" / "more").mkdir()
    Image.fromarray(np.full((6, 6), 9, np.uint8)).save(root / "a" / "more" / "x.png")
    os.symlink("../a/more", root / "b" / "linked")  # inside the root, but a second path to a/more: refused
    with pytest.raises(DataError, match="b/linked -> ../a/more"):
        build_manifest(make_cfg(source="imagefolder", root=root))
    os.unlink(root / "b" / "linked")
    shared = root / "shared"
    shared.mkdir()
    os.symlink("shared", root / "c")  # a class folder that is a link to a sibling: walked once, as class c
    ids = build_manifest(make_cfg(source="imagefolder", root=root)).df["id"].tolist()
    assert len(ids) == 9 and "a/more/x.png" in ids


def test_flows_train_answers_a_symlink_loop_with_exit_2(make_folder):
    root = make_folder({"a": 4, "b": 4})
    os.symlink("..", root / "a" / "up")
    result = CliRunner().invoke(app, ["train", "--preset", "imagefolder", "--set", f"data.root={root}"])
    assert result.exit_code == 2, result.output
    assert "symbolic link" in result.output and "Traceback" not in result.output
