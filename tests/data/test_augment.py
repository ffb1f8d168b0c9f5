"""Augmentations: shapes kept, randomness per sample, seeded batches reproducible, names checked, tables limited
to noise."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from recipe.data import AUGMENTATIONS, DataError, build_augment, load_data
from recipe.data.batching import InMemoryBatcher


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 10)])
def test_every_augmentation_keeps_the_shape(name, shape):
    xb = torch.randn(6, *shape)
    out = build_augment([name], shape)(xb)
    assert out.shape == xb.shape and out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_samples_of_a_batch_get_their_own_random_parameters(name):
    torch.manual_seed(0)
    xb = torch.arange(144.0).view(1, 1, 12, 12).repeat(32, 1, 1, 1)  # 32 copies of one image
    out = build_augment([name], (1, 12, 12))(xb)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    # noise: every copy differs; rotate and affine resample nearest-neighbour (as transforms.v2 did), so nearby
    # angles and shifts can give the same pixels; crop has 25 offsets (padding 2); erase and hflip act on about
    # half the copies (the untouched ones are one outcome), and a flip has a single outcome of its own
    least = {"rotate": 10, "affine": 10, "noise": 32, "crop": 8, "erase": 6, "hflip": 2}[name]
    assert len(distinct) >= least


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    xb = torch.randn(16, 3, 10, 10)
    aug = build_augment(["crop", "rotate", "affine", "noise", "erase", "hflip"], (3, 10, 10))
    state = torch.random.get_rng_state()
    a = aug(xb, generator=torch.Generator().manual_seed(1))
    b = aug(xb, generator=torch.Generator().manual_seed(1))
    c = aug(xb, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(state, torch.random.get_rng_state())  # a seeded call leaves the global RNG alone
    assert a.shape == xb.shape and a.dtype == xb.dtype and not torch.equal(a, xb)


def test_batchers_augment_as_a_function_of_seed_and_epoch():
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 4
    aug = build_augment(["crop", "noise"], (1, 8, 8))

    def epoch(seed, e):
        b = InMemoryBatcher(x, y, 16, shuffle=True, seed=seed, transform=aug)
        b.set_epoch(e)
        return [(xb.clone(), yb) for xb, yb in b]

    first = epoch(0, 3)
    torch.manual_seed(123)  # the global RNG plays no part
    again = epoch(0, 3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[0][0], epoch(0, 4)[0][0][: len(first[0][0])])
    assert not torch.allclose(first[0][0], epoch(1, 3)[0][0])


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
