"""Augmentations: shapes kept, randomness per sample, names checked, tables limited to noise."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from recipe.data import AUGMENTATIONS, DataError, build_augment, load_data


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 10)])
def test_every_augmentation_keeps_the_shape(name, shape):
    xb = torch.randn(6, *shape)
    out = build_augment([name], shape)(xb)
    assert out.shape == xb.shape and out.dtype == torch.float32


def test_samples_of_a_batch_get_their_own_random_parameters():
    torch.manual_seed(0)
    xb = torch.arange(64.0).view(1, 1, 8, 8).repeat(16, 1, 1, 1)  # 16 copies of one image
    out = build_augment(["crop"], (1, 8, 8))(xb)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1


def test_no_names_is_the_identity():
    xb = torch.randn(4, 1, 8, 8)
    assert build_augment([], (1, 8, 8))(xb) is xb


def test_unknown_names_list_the_known_ones():
    message = r"unknown augmentation\(s\) 'mixup', 'cutout' in data.augment; known:\n    crop: random crop"
    with pytest.raises(DataError, match=message):
        build_augment(["crop", "mixup", "cutout"], (1, 8, 8))


def test_tables_can_only_take_noise():
    with pytest.raises(DataError, match=r"'crop', 'rotate' need images; tabular data \(in_shape \(5,\)\) can only use"):
        build_augment(["crop", "noise", "rotate"], (5,))
    xb = torch.zeros(32, 5)
    out = build_augment(["noise"], (5,))(xb)
    assert out.shape == xb.shape and 0.05 < out.std().item() < 0.2


def test_batches_apply_the_configured_augmentations_only_when_asked(make_folder, make_cfg):
    root = make_folder({"a": 10, "b": 10})
    bundle = load_data(make_cfg(source="imagefolder", root=root, augment=["noise"]))
    x, _ = bundle.tensors("train")
    plain, _ = next(iter(bundle.batches("train", batch_size=len(x))))
    noisy, _ = next(iter(bundle.batches("train", batch_size=len(x), augment=True)))
    assert torch.equal(plain, x) and not torch.allclose(noisy, x)
    assert torch.equal(x, bundle.tensors("train")[0])  # the cached tensors are never modified in place


def test_load_data_checks_the_configured_names_up_front(make_csv, make_cfg):
    path = make_csv(pd.DataFrame({"x": range(30), "y": [0, 1, 2] * 10}))
    with pytest.raises(DataError, match="'crop' need images; tabular data"):
        load_data(make_cfg(source="csv", root=path, target="y", augment=["crop"]))
