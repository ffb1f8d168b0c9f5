"""InMemoryBatcher and the DataLoader path: coverage, per-epoch determinism, and agreement between the two."""

from __future__ import annotations

import pytest
import torch

from recipe.data import DataError, InMemoryBatcher, LoaderBatcher, load_data


def _data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(n, dtype=torch.float32).view(n, 1) * 10, torch.arange(n)


def _epoch(batcher, epoch: int) -> list[int]:
    batcher.set_epoch(epoch)
    return [int(v) for _, yb in batcher for v in yb]


def test_every_sample_once_per_epoch_and_x_stays_paired_with_y():
    x, y = _data(10)
    b = InMemoryBatcher(x, y, batch_size=3, shuffle=True, seed=5)
    assert len(b) == 4
    batches = list(b)
    assert [len(yb) for _, yb in batches] == [3, 3, 3, 1]
    assert sorted(int(v) for _, yb in batches for v in yb) == list(range(10))
    assert all(torch.equal(xb[:, 0], yb.float() * 10) for xb, yb in batches)


def test_order_depends_only_on_seed_and_epoch():
    x, y = _data(50)
    a, b = InMemoryBatcher(x, y, 8, shuffle=True, seed=1), InMemoryBatcher(x, y, 8, shuffle=True, seed=1)
    assert _epoch(a, 3) == _epoch(b, 3)  # another instance (a resumed run) replays the same epoch
    assert _epoch(a, 3) == _epoch(a, 3)
    assert _epoch(a, 3) != _epoch(a, 4)
    assert _epoch(a, 3) != _epoch(InMemoryBatcher(x, y, 8, shuffle=True, seed=2), 3)
    assert _epoch(InMemoryBatcher(x, y, 8), 7) == list(range(50))  # no shuffle: stored order


def test_shuffling_leaves_the_global_rng_alone():
    x, y = _data(100)
    state = torch.get_rng_state()
    b = InMemoryBatcher(x, y, 16, shuffle=True)
    for epoch in range(3):
        b.set_epoch(epoch)
        list(b)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "expected"),
    [(10, 3, True, 3), (10, 3, False, 4), (9, 3, True, 3), (2, 5, True, 0), (2, 5, False, 1)],
)
def test_len_and_drop_last(n, bs, drop_last, expected):
    b = InMemoryBatcher(*_data(n), bs, shuffle=True, drop_last=drop_last)
    assert len(b) == expected == len(list(b))
    assert all(len(yb) == bs for _, yb in b) if drop_last else True


def test_transform_is_applied_to_whole_batches():
    seen = []
    b = InMemoryBatcher(*_data(10), 4, transform=lambda xb: seen.append(xb.shape) or -xb)
    first, _ = next(iter(b))
    assert seen == [torch.Size([4, 1])] and first[:, 0].tolist() == [0, -10, -20, -30]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="x has 3 samples but y has 2"):
        InMemoryBatcher(torch.zeros(3, 1), torch.zeros(2), 2)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_dataloader_path_yields_the_same_batches_as_memory(make_folder, make_cfg, num_workers):
    root = make_folder({"a": 9, "b": 8}, rgb={"b"}, size=(5, 4))
    mem = load_data(make_cfg(source="imagefolder", root=root, in_memory="always"))
    disk = load_data(make_cfg(source="imagefolder", root=root, in_memory="never", num_workers=num_workers))
    assert mem.in_memory and not disk.in_memory
    for shuffle in (False, True):
        bm = mem.batches("train", batch_size=4, shuffle=shuffle, seed=3)
        bd = disk.batches("train", batch_size=4, shuffle=shuffle, seed=3)
        assert isinstance(bm, InMemoryBatcher) and isinstance(bd, LoaderBatcher) and len(bm) == len(bd) == 3
        for epoch in (0, 1):
            bm.set_epoch(epoch)
            bd.set_epoch(epoch)
            for (xm, ym), (xd, yd) in zip(bm, bd, strict=True):
                assert torch.equal(ym, yd) and torch.allclose(xm, xd)


def test_auto_goes_to_disk_when_the_data_does_not_fit(make_folder, make_cfg):
    root = make_folder({"a": 6, "b": 6})
    big = load_data(make_cfg(source="imagefolder", root=root, image_size=256, max_memory_mb=1))
    assert big.nbytes > 2**20 and not big.in_memory
    assert isinstance(big.batches("val"), LoaderBatcher)
    assert load_data(make_cfg(source="imagefolder", root=root)).in_memory


def test_batch_size_defaults_and_device(make_folder, make_cfg):
    root = make_folder({"a": 20, "b": 20})
    bundle = load_data(make_cfg(source="imagefolder", root=root, batch_size=5, eval_batch_size=50))
    assert len(bundle.batches("train")) == 6 and len(bundle.batches("val")) == 1  # 28 train, 6 val
    xb, yb = next(iter(bundle.batches("train", device="cpu")))
    assert xb.device.type == yb.device.type == "cpu" and xb.shape == (5, 1, 6, 6)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        bundle.tensors("dev")
    with pytest.raises(DataError, match="unknown augmentation"):
        bundle.batches("train", augment=["mixup"])
