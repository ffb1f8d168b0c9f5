"""The torchvision source, on tiny fake MNIST files in the raw idx format (no downloads)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from recipe.data import DataError, build_manifest, load_data


def write_fake_mnist(root: Path, n_train: int = 40, n_test: int = 10, side: int = 6, folder: str = "MNIST") -> None:
    """The four idx files torchvision's MNIST reads from ``root/MNIST/raw`` (big-endian header, then bytes)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, n, side, side) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, n) + labels.tobytes())


def test_fake_mnist_from_disk(tmp_path, make_cfg):
    write_fake_mnist(tmp_path)
    cfg = make_cfg(source="torchvision", name="MNIST", root=tmp_path, split={"val": 0.25})
    bundle = load_data(cfg)
    df = bundle.manifest.df
    assert len(df) == 50 and bundle.num_classes == 10 and bundle.manifest.classes[3] == "3 - three"
    assert df["id"].iloc[0] == "train:0" and df["id"].iloc[40] == "test:0" and df["row"].iloc[40] == 0
    assert df["path"].isna().all() and df["readable"].all()
    assert (df.loc[df["subset"] == "test", "split"] == "test").all()  # the dataset's own test set
    assert bundle.split_sizes == {"train": 30, "val": 10, "test": 10}
    assert bundle.in_shape == (1, 6, 6)
    x, y = bundle.tensors("test")
    assert x.shape == (10, 1, 6, 6) and y.tolist() == list(range(10))


def test_name_is_case_insensitive_and_resizing_works(tmp_path, make_cfg):
    write_fake_mnist(tmp_path, folder="FashionMNIST")
    bundle = load_data(
        make_cfg(
            source="torchvision",
            name="fashion_mnist",
            root=tmp_path,
            image_size=4,
            grayscale=False,
            split={"val": 0.25},
        )
    )
    assert bundle.in_shape == (3, 4, 4) and bundle.tensors("val")[0].shape == (10, 3, 4, 4)


def test_missing_files_without_download_say_where_and_what_to_do(tmp_path, make_cfg):
    where = re.escape(f"under {tmp_path} (looked in {tmp_path / 'MNIST' / 'raw'}); pass --set data.download=true")
    with pytest.raises(DataError, match=f"MNIST not found \\(or incomplete\\) {where}"):
        build_manifest(make_cfg(source="torchvision", name="mnist", root=tmp_path))


def test_default_root_is_under_the_data_dir(make_cfg, data_home):
    with pytest.raises(DataError, match=re.escape(f"under {data_home / 'torchvision'} (looked in")):
        build_manifest(make_cfg(source="torchvision", name="CIFAR10"))


def test_unknown_dataset_name(make_cfg):
    with pytest.raises(DataError, match="unknown torchvision dataset 'SVHN'; known: MNIST, FashionMNIST, CIFAR10"):
        build_manifest(make_cfg(source="torchvision", name="SVHN"))
