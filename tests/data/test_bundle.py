"""load_data on the embedded default: shapes, train-split statistics, cached tensors, rows in tensor order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipe.data import DataBundle, load_data


@pytest.fixture(scope="module")
def digits(digits_root, tmp_path_factory) -> DataBundle:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECIPE_DATA_DIR", str(tmp_path_factory.mktemp("digits_home")))
        from recipe.config import RecipeConfig

        return load_data(RecipeConfig(data={"root": str(digits_root)}))


def test_digits_bundle_shapes(digits):
    assert (digits.task, digits.num_classes, digits.in_shape) == ("classification", 10, (1, 8, 8))
    assert digits.split_sizes == {"train": 1257, "val": 270, "test": 270}
    assert sum(digits.class_counts) == 1257 and min(digits.class_counts) > 110
    assert digits.fingerprint == digits.manifest.fingerprint and len(digits.fingerprint) == 12
    assert digits.target_mean is None and digits.in_memory


def test_inputs_are_standardised_with_train_statistics(digits):
    x, y = digits.tensors("train")
    assert x.shape == (1257, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.mean().item() == pytest.approx(0, abs=1e-5) and x.std().item() == pytest.approx(1, abs=1e-3)
    raw = x * digits.std[0] + digits.mean[0]  # undoing it gives the 0..1 pixels back
    assert raw.min().item() == pytest.approx(0, abs=1e-5) and raw.max().item() == pytest.approx(1, abs=1e-5)
    xv, _ = digits.tensors("val")
    assert xv.mean().item() != pytest.approx(0, abs=1e-5)  # val is scaled with train's numbers, not its own


def test_tensors_are_cached_and_rows_follow_their_order(digits):
    x, y = digits.tensors("test")
    assert digits.tensors("test")[0] is x
    rows = digits.rows("test")
    assert len(rows) == 270 and (rows["split"] == "test").all()
    assert y.tolist() == rows["label_idx"].tolist()
    assert [digits.classes[i] for i in y[:5]] == rows["label"].iloc[:5].tolist()


def test_normalize_false_gives_pixels_in_0_1(digits_root, make_cfg):
    bundle = load_data(make_cfg(root=digits_root, normalize=False))
    x, _ = bundle.tensors("train")
    assert (bundle.mean, bundle.std) == ((0.0,), (1.0,))
    assert x.min().item() == 0 and x.max().item() == 1
    assert np.allclose(np.unique(x.numpy() * 255), np.rint(np.arange(17) * 255 / 16))  # the 17 digit levels
