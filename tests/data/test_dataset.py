from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from ecgproto.data.dataset import (
    ArchiveDataset,
    Augmentation,
    make_loader,
    set_loader_epoch,
    split_indices,
)


def _archive(tmp_path, n=23, t=50):
    rng = np.random.default_rng(0)
    path = tmp_path / "signals.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 12, t))
    mm[:] = rng.normal(size=(n, 12, t)).astype(np.float32)
    mm.flush()
    signals = np.memmap(path, dtype=np.float32, mode="r", shape=(n, 12, t))
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    index = pd.DataFrame({"ecg_id": np.arange(100, 100 + n), "split": split})
    labels = (rng.random((n, 71)) < 0.2).astype(np.uint8)
    return SimpleNamespace(signals=signals, index=index, labels=labels, fs=100)


def test_items_match_archive_rows(tmp_path):
    arc = _archive(tmp_path)
    ds = ArchiveDataset(arc, "val")
    assert np.array_equal(ds.rows, np.arange(1, 23, 3))
    loader = make_loader(ds, batch_size=3, shuffle=True, seed=1)
    seen = []
    for x, y, rows in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (12, 50)
        np.testing.assert_array_equal(x.numpy(), arc.signals[rows.numpy()])
        np.testing.assert_array_equal(y.numpy(), arc.labels[rows.numpy()])
        seen.extend(rows.tolist())
    assert sorted(seen) == ds.rows.tolist()


def test_shuffle_is_seeded_per_epoch(tmp_path):
    ds = ArchiveDataset(_archive(tmp_path), "train")

    def order(seed, epoch):
        loader = make_loader(ds, batch_size=4, shuffle=True, seed=seed)
        set_loader_epoch(loader, epoch)
        return [r for _, _, rows in loader for r in rows.tolist()]

    assert order(3, 0) == order(3, 0)
    assert order(3, 0) != order(3, 1)
    assert order(3, 1) == order(3, 1)
    assert order(3, 0) != order(4, 0)
    unshuffled = make_loader(ds, batch_size=4, shuffle=False)
    assert [r for _, _, rows in unshuffled for r in rows.tolist()] == ds.rows.tolist()


def test_augmentation_off_by_default_and_seeded(tmp_path):
    arc = _archive(tmp_path)
    plain = ArchiveDataset(arc, "train")
    assert not plain.augmentation.active
    aug = Augmentation(scale=0.1, noise_mv=0.01, shift_samples=3)
    a = ArchiveDataset(arc, "train", augmentation=aug, seed=5)
    b = ArchiveDataset(arc, "train", augmentation=aug, seed=5)
    xa, xb, x0 = a[0][0], b[0][0], plain[0][0]
    assert torch.equal(xa, xb)
    assert not torch.equal(xa, x0)
    a.set_epoch(1)
    assert not torch.equal(a[0][0], xa)


def test_bad_split_and_empty_split(tmp_path):
    arc = _archive(tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        split_indices(arc, "training")
    arc.index["split"] = "train"
    with pytest.raises(ValueError, match="val split .* is empty"):
        ArchiveDataset(arc, "val")
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ArchiveDataset(arc, "train"), batch_size=0, shuffle=False)
