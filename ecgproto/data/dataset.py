"""Torch dataset and loaders over one split of a cached archive.

Signals are read batch by batch from the archive's memory map (one fancy-index
read per batch), never copied as a whole. Shuffling uses a generator seeded from
``seed + epoch`` so that an epoch's order is reproducible and independent of
how many epochs ran before (needed for resume). Augmentation is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Augmentation:
    """Light, label-preserving signal augmentation (all off when every value is 0).

    ``scale``: amplitude scaled by ``1 + U(-scale, scale)`` per record;
    ``noise_mv``: Gaussian noise SD in mV; ``shift_samples``: circular time shift up to ± this many samples.
    """

    scale: float = 0.0
    noise_mv: float = 0.0
    shift_samples: int = 0

    @property
    def active(self) -> bool:
        return self.scale > 0 or self.noise_mv > 0 or self.shift_samples > 0


def split_indices(archive: Any, split: Split) -> np.ndarray:
    """Row indices (into ``archive.signals``) of one split, ascending, int64."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
    mask = np.asarray(archive.index["split"] == split)
    return np.flatnonzero(mask).astype(np.int64)


class ArchiveDataset(Dataset):
    """Items ``(signal (12, T) float32 mV, labels (71,) float32, row int64)`` of one split.

    ``row`` is the row in the archive (``archive.index.iloc[row]`` gives ``ecg_id``).
    Batched access (``__getitems__``) reads all rows of a batch in one sorted memmap read.
    """

    def __init__(
        self,
        archive: Any,
        split: Split,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.archive = archive
        self.split = split
        self.rows = split_indices(archive, split)
        if len(self.rows) == 0:
            raise ValueError(
                f"the {split} split of the cached archive is empty; check data.train_folds/"
                "val_folds/test_folds in the config"
            )
        self.augmentation = augmentation or Augmentation()
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch number mixed into the augmentation seed (so resumed runs augment identically)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        """(N_split, 71) uint8 labels of the split, in dataset order."""
        return np.asarray(self.archive.labels[self.rows])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        batch = self.__getitems__([i])
        return batch[0]

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        items = np.asarray(items, dtype=np.int64)
        rows = self.rows[items]
        order = np.argsort(rows, kind="stable")
        signals = np.empty((len(rows),) + tuple(self.archive.signals.shape[1:]), dtype=np.float32)
        signals[order] = self.archive.signals[rows[order]]
        labels = np.asarray(self.archive.labels[rows], dtype=np.float32)
        if self.augmentation.active:
            signals = self._augment(signals, rows)
        sig_t = torch.from_numpy(signals)
        lab_t = torch.from_numpy(labels)
        return [(sig_t[k], lab_t[k], int(rows[k])) for k in range(len(rows))]

    def _augment(self, signals: np.ndarray, rows: np.ndarray) -> np.ndarray:
        aug = self.augmentation
        out = np.empty_like(signals)
        for k, row in enumerate(rows):  # per record: tiny, seeded by (seed, epoch, row)
            rng = np.random.default_rng((self.seed, self.epoch, int(row)))
            x = signals[k]
            if aug.scale > 0:
                x = x * np.float32(1.0 + rng.uniform(-aug.scale, aug.scale))
            if aug.shift_samples > 0:
                x = np.roll(x, int(rng.integers(-aug.shift_samples, aug.shift_samples + 1)), axis=-1)
            if aug.noise_mv > 0:
                x = x + rng.normal(0.0, aug.noise_mv, size=x.shape).astype(np.float32)
            out[k] = x
        return out


def collate(batch: list[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack items into ``(signals (B,12,T), labels (B,71), rows (B,) int64)``."""
    signals = torch.stack([b[0] for b in batch])
    labels = torch.stack([b[1] for b in batch])
    rows = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return signals, labels, rows


def make_loader(
    dataset: ArchiveDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    world_size: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader with a deterministic order; call ``set_loader_epoch(loader, e)`` before each epoch.

    Shuffled loaders use a ``DistributedSampler`` (permutation from a generator seeded with
    ``seed + epoch``) for every ``world_size``, so a 1-process run and each rank of a torchrun
    run draw their order the same way; ``world_size > 1`` gives each rank its shard.
    Unshuffled single-process loaders keep dataset order. ``num_workers`` processes read the
    memmap (the order and the augmentation do not depend on them); ``pin_memory`` for copies to a GPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler: Sampler[int] | None = None
    if shuffle or world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate,
        drop_last=drop_last,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of the loader's sampler and dataset (shuffle order and augmentation)."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
