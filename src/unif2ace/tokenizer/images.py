"""Image batches from parquet shards, with an exactly resumable read position.

The stream visits every image of a split once per epoch in a seeded order: a permutation of
the shards, then a permutation of the rows inside each shard (one shard is in memory at a
time). Its position ``(epoch, shard_pos, row_pos)`` is plain JSON, so a resumed run reads
exactly the images the uninterrupted run would have read.

Shape legend: B batch, C channels (3), H/W pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from ..data.shards import decode_image, labels_of
from ..errors import UserError


def png_to_tensor(png: bytes, resolution: int) -> torch.Tensor:
    """PNG/JPEG bytes -> ``(3, R, R)`` float32 in ``[-1, 1]`` (bicubic resize if needed)."""
    img = decode_image(png)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def tensor_to_uint8(images_BCHW: torch.Tensor) -> np.ndarray:
    """Images in ``[-1, 1]`` -> uint8 array ``(B, H, W, C)``."""
    x = ((images_BCHW.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def save_grid(rows: Sequence[torch.Tensor], path: str | Path) -> None:
    """Write rows of image batches ``(B, 3, H, W)`` as one PNG grid (one batch per row)."""
    arrs = [tensor_to_uint8(r) for r in rows]
    b, h, w, _ = arrs[0].shape
    grid = np.full((len(arrs) * (h + 2), b * (w + 2), 3), 255, dtype=np.uint8)
    for i, a in enumerate(arrs):
        for j in range(a.shape[0]):
            grid[i * (h + 2) : i * (h + 2) + h, j * (w + 2) : j * (w + 2) + w] = a[j]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid).save(tmp)
    tmp.replace(path)


def _permutation(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g).tolist()


class ImageStream:
    """Endless, seeded, resumable stream of image batches from shard files.

    Args:
        shards: parquet files with an ``image`` column (PNG bytes).
        resolution: output side in pixels (images are resized if needed).
        batch_size: images per batch.
        seed: order seed; epoch ``e`` uses seeds derived from ``(seed, e)``.
        shuffle: visit shards and rows in a seeded random order (else file order).
        landmarks: also read each record's labels, hidden attributes and identity, so that
            :meth:`next_batch_landmarks` can give the face landmarks of every image
            (:mod:`unif2ace.tokenizer.regions`) and :meth:`next_batch_labelled` its labels
            too; the image order is the same either way.
    """

    def __init__(
        self,
        shards: Sequence[str | Path],
        resolution: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        landmarks: bool = False,
    ) -> None:
        if not shards:
            raise UserError(
                "no shard files found; check --data (expects DIR/<split>/shard-*.parquet)"
            )
        self.shards = [Path(p) for p in shards]
        self.resolution = resolution
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.landmarks = landmarks
        self.epoch = 0
        self.shard_pos = 0
        self.row_pos = 0
        self._cache: tuple[tuple[int, int], list[bytes], list[int], list] | None = None

    # --- position ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "shard_pos": self.shard_pos, "row_pos": self.row_pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.shard_pos, self.row_pos = (
            int(state["epoch"]),
            int(state["shard_pos"]),
            int(state["row_pos"]),
        )
        self._cache = None

    # --- reading -------------------------------------------------------------------------------
    def _shard_order(self) -> list[int]:
        n = len(self.shards)
        return (
            _permutation(n, self.seed * 1_000_003 + self.epoch) if self.shuffle else list(range(n))
        )

    def _rows(self) -> tuple[list[bytes], list[int], list]:
        """Image bytes, row order and per-row ``(attributes, identity, hidden)`` (or ``None``)
        of the current shard (cached)."""
        key = (self.epoch, self.shard_pos)
        if self._cache is None or self._cache[0] != key:
            idx = self._shard_order()[self.shard_pos]
            path = self.shards[idx]
            table = pq.read_table(path, columns=["image"])
            images = table.column("image").to_pylist()
            meta: list = [None] * len(images)
            if self.landmarks:
                names = pq.read_schema(path).names
                if "identity" in names and "attributes" in names:
                    cols = ["attributes", "identity"] + (["hidden"] if "hidden" in names else [])
                    t = pq.read_table(path, columns=cols).to_pydict()
                    hidden = t.get("hidden") or [None] * len(images)
                    meta = list(zip(t["attributes"], t["identity"], hidden, strict=True))
            seed = (self.seed * 1_000_003 + self.epoch) * 100_003 + idx
            order = _permutation(len(images), seed) if self.shuffle else list(range(len(images)))
            self._cache = (key, images, order, meta)
        return self._cache[1], self._cache[2], self._cache[3]

    def next_batch(self) -> torch.Tensor:
        """The next ``(B, 3, R, R)`` batch in ``[-1, 1]``; advances the position."""
        return self._next()[0]

    def next_batch_landmarks(self) -> tuple[torch.Tensor, list]:
        """The next batch and each image's landmarks in its pixels (``None`` where the record
        has none; ``landmarks=True`` streams only)."""
        return self.next_batch_labelled()[:2]

    def next_batch_labelled(self) -> tuple[torch.Tensor, list, list]:
        """The next batch, each image's landmarks (as :meth:`next_batch_landmarks`) and its
        ``(attribute values, hidden attribute names)`` (``None`` where it has no landmarks)."""
        if not self.landmarks:
            raise ValueError("this ImageStream was made without landmarks=True")
        return self._next()

    def _next(self) -> tuple[torch.Tensor, list, list]:
        from .regions import record_landmarks

        out: list[torch.Tensor] = []
        marks: list = []
        labels: list = []
        empty_shards = 0
        while len(out) < self.batch_size:
            images, order, meta = self._rows()
            if self.row_pos >= len(order):
                empty_shards = empty_shards + 1 if not order else 0
                if empty_shards > len(self.shards):
                    raise UserError("all shard files are empty; rebuild the data set")
                self.row_pos = 0
                self.shard_pos += 1
                if self.shard_pos >= len(self.shards):
                    self.shard_pos, self.epoch = 0, self.epoch + 1
                continue
            row = order[self.row_pos]
            out.append(png_to_tensor(images[row], self.resolution))
            if self.landmarks:
                attrs, ident, hidden = meta[row] or (None, None, None)
                lm = record_landmarks(attrs, ident, size=self.resolution) if meta[row] else None
                marks.append(lm)
                labels.append(
                    None if lm is None else (labels_of({"attributes": attrs}), set(hidden or []))
                )
            self.row_pos += 1
        return torch.stack(out), marks, labels

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.next_batch()


def iter_split_batches(
    shards: Sequence[str | Path], resolution: int, batch_size: int
) -> Iterator[torch.Tensor]:
    """One pass over the shards in file order, in batches (the last one may be short)."""
    buf: list[torch.Tensor] = []
    for path in shards:
        for png in pq.read_table(path, columns=["image"]).column("image").to_pylist():
            buf.append(png_to_tensor(png, resolution))
            if len(buf) == batch_size:
                yield torch.stack(buf)
                buf = []
    if buf:
        yield torch.stack(buf)
