"""A PyTorch dataset over shards that shards itself by rank and dataloader worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import UserError
from .shards import list_shards, read_shard


class FaceShardDataset(IterableDataset):
    """Rows of a split, for training.

    The epoch's order is a seeded block shuffle (shard order permuted, then rows within each
    shard), identical on every rank; position ``i`` of that order goes to reader
    ``i % readers`` with readers = world size × dataloader workers, so every record is read
    exactly once per epoch across all readers.

    Args:
        root: data set folder. split: split name. columns: columns to read (None: all).
        shuffle: block-shuffle each epoch (see ``set_epoch``). seed: shuffle seed.
        rank, world_size: override torch.distributed (tests, manual sharding).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        columns: list[str] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.paths = list_shards(root, split)
        if not self.paths:
            raise UserError(f"split {split!r} of {str(root)!r} has no shards")
        self.sizes = [pq.ParquetFile(p).metadata.num_rows for p in self.paths]
        self.columns, self.shuffle, self.seed, self.epoch = columns, shuffle, seed, 0
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return sum(self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _reader(self) -> tuple[int, int]:
        """(index, count) of this reader among all ranks × dataloader workers."""
        if self.rank is not None:
            rank, world = self.rank, self.world_size or 1
        elif dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        else:
            rank, world = 0, 1
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def __iter__(self) -> Iterator[dict]:
        me, readers = self._reader()
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.paths)) if self.shuffle else range(len(self.paths))
        pos = 0
        for f in order:
            n = self.sizes[f]
            rows = rng.permutation(n) if self.shuffle else np.arange(n)
            # Positions pos..pos+n-1 of the epoch order; this reader takes those ≡ me (mod readers).
            first = (me - pos) % readers
            if first < n:
                data = read_shard(self.paths[f], self.columns)
                for j in rows[first::readers]:
                    yield data[int(j)]
            pos += n
