"""Fixtures for the data tests: a private RECIPE_DATA_DIR per test, and tiny generated datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recipe.config import RecipeConfig
from recipe.data.sources import materialise_digits


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test materialises and saves splits under its own tmp folder, never in the repository's data/."""
    home = tmp_path / "data_home"
    monkeypatch.setenv("RECIPE_DATA_DIR", str(home))
    return home


@pytest.fixture
def make_cfg():
    """``make_cfg(source="csv", root=...)`` -> a RecipeConfig with those data settings."""

    def make(split: dict | None = None, **data) -> RecipeConfig:
        return RecipeConfig(data={**data, **({"split": split} if split else {})})

    return make


@pytest.fixture
def make_folder(tmp_path: Path):
    """``make_folder({"a": 4, "b": 4}, rgb={"b"}, size=(6, 6))`` -> root of an ImageFolder of random PNGs."""

    def make(spec: dict[str, int], *, rgb=(), size=(6, 6), name="images", seed=0) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / name
        for cls, n in spec.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (*size, 3) if cls in rgb else size
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i:03d}.png")
        return root

    return make


@pytest.fixture
def make_csv(tmp_path: Path):
    """``make_csv(frame)`` -> path of the frame written as a CSV."""

    def make(frame: pd.DataFrame, name: str = "table.csv") -> Path:
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    return make


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits PNG folder, written once per session (tests point data.root at it)."""
    root = tmp_path_factory.mktemp("shared") / "digits"
    materialise_digits(root)
    return root
