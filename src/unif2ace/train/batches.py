"""Data factories for ``train``: deterministic per-epoch micro-batch streams with a start.

``train`` asks ``data_factory(epoch, start)`` for this rank's micro-batches of ``epoch`` from
micro-batch ``start`` on. For a ``FaceShardDataset`` (seeded block shuffle per epoch, rows split
over ranks × workers) ``shard_batches`` builds that factory from a collate function.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset


def fast_forward(batches: Iterable[Any], start: int) -> Iterator[Any]:
    """Skip the first ``start`` items (the generic, read-and-discard way to reposition)."""
    return itertools.islice(iter(batches), start, None)


def epoch_batches(
    dataset: IterableDataset,
    epoch: int,
    start: int,
    micro_batch_size: int,
    collate: Callable[[list], Any],
    num_workers: int = 0,
) -> Iterator[Any]:
    """Micro-batches of ``epoch`` (``dataset.set_epoch``), whole batches only, from ``start``.

    The dataset must shard itself over ranks and workers (``FaceShardDataset`` does).
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=micro_batch_size,
        collate_fn=collate,
        num_workers=num_workers,
        drop_last=True,
    )
    return fast_forward(loader, start)


def shard_batches(
    dataset: IterableDataset,
    micro_batch_size: int,
    collate: Callable[[list], Any],
    num_workers: int = 0,
) -> Callable[[int, int], Iterator[Any]]:
    """A ``data_factory`` for ``train`` over a self-sharding iterable dataset."""

    def factory(epoch: int, start: int) -> Iterator[Any]:
        return epoch_batches(dataset, epoch, start, micro_batch_size, collate, num_workers)

    return factory
