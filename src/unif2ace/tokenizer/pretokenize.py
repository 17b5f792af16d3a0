"""Cache image codes next to the shards, so model training never re-encodes images.

Layout (one folder per tokenizer, keyed by a hash of its weights and config, so codes of a
different tokenizer are never reused)::

    DATA/<split>/shard-00000.parquet                 the records (not modified)
    DATA/<split>/codes-<hash>/shard-00000.parquet    id (string), codes (list<int32>, row-major)
    DATA/<split>/codes-<hash>/info.json              hash, grid, codebook size, tokenizer config

The codes folder sits inside the split folder, so ``list_shards`` (a flat ``shard-*.parquet``
glob) never mistakes it for data. Each codes file is written atomically (temp + rename) and
existing ones are skipped: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..atomic import write_text_atomic
from ..errors import UserError
from .autoencoder import LFQAutoencoder
from .images import png_to_tensor

HASH_CHARS = 16
ENCODING_SIDE = ("encoder.", "quantizer.")  # weight names that determine the codes


def tokenizer_hash(tokenizer_dir: str | Path) -> str:
    """Identity of the codes a tokenizer produces: sha256 (first 16 hex chars) of its
    ``config.json`` and its encoder and quantiser weights.

    The decoder is left out: fine-tuning it (``unif2ace train tokenizer-decoder``) leaves
    every code unchanged, so cached codes and models trained on them stay valid.
    """
    from safetensors import safe_open

    d = Path(tokenizer_dir)
    for name in ("config.json", "model.safetensors"):
        if not (d / name).is_file():
            raise UserError(f"{d} is not an image tokenizer folder (missing {name})")
    h = hashlib.sha256((d / "config.json").read_bytes())
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        for key in sorted(f.keys()):
            if key.startswith(ENCODING_SIDE):
                t = f.get_tensor(key).contiguous()
                h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:HASH_CHARS]


def codes_dir(data_root: str | Path, split: str, tok_hash: str) -> Path:
    return Path(data_root) / split / f"codes-{tok_hash}"


def _discover_splits(root: Path) -> list[str]:
    from ..data.shards import list_shards

    return sorted(p.name for p in root.iterdir() if p.is_dir() and list_shards(root, p.name))


def _write_codes(path: Path, ids: list[str], codes_NT: torch.Tensor) -> None:
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "codes": pa.array(codes_NT.to(torch.int32).numpy().tolist(), pa.list_(pa.int32())),
        }
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


@contextlib.contextmanager
def _no_tf32():
    """CUDA convolutions and matmuls in true fp32 (PyTorch lets cuDNN use TF32 by default,
    whose 10-bit mantissa would move many more latents across a sign than fp32 does)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@torch.no_grad()
def encode_shard(
    model: LFQAutoencoder, shard: Path, batch_size: int, bf16: bool
) -> tuple[list[str], torch.Tensor]:
    """Ids and codes ``(N, h·w)`` of every row of one shard, in row order."""
    table = pq.read_table(shard, columns=["id", "image"])
    ids = table.column("id").to_pylist()
    pngs = table.column("image").to_pylist()
    res = model.config.resolution
    dev = next(model.parameters()).device
    out = []
    with _no_tf32():
        for i in range(0, len(pngs), batch_size):
            x = torch.stack([png_to_tensor(p, res) for p in pngs[i : i + batch_size]]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(model.encode(x).flatten(1).cpu())
    grid = model.config.grid
    return ids, torch.cat(out) if out else torch.zeros(0, grid * grid, dtype=torch.long)


def pretokenize(
    tokenizer_dir: str | Path,
    data_root: str | Path,
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    bf16: bool = False,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> dict:
    """Encode every shard of ``splits`` (default: all) once; returns a summary dict.

    ``device`` ("cpu", "cuda" or "auto": CUDA when available) runs the encoder there; fp32
    codes agree across devices up to the rare latent that sits on a sign boundary."""
    from ..data.shards import list_shards

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise UserError(f"device {device!r} is not available here; use cpu, cuda or auto")
    root = Path(data_root)
    model = LFQAutoencoder.from_pretrained(tokenizer_dir, device=device)
    h = tokenizer_hash(tokenizer_dir)
    splits = list(splits) if splits else _discover_splits(root)
    todo = [(s, p) for s in splits for p in list_shards(root, s)]
    if not todo:
        raise UserError(f"no shards under {root} for splits {splits}; check --data / --split")
    info = {
        "tokenizer_hash": h,
        "grid": [model.config.grid] * 2,
        "codebook_size": model.codebook_size,
        "tokenizer_config": model.config.to_dict(),
        "tokenizer_dir": str(Path(tokenizer_dir).resolve()),
    }
    t0, done, skipped, images = time.time(), 0, 0, 0
    for k, (split, shard) in enumerate(todo):
        d = codes_dir(root, split, h)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "info.json").is_file():
            write_text_atomic(d / "info.json", json.dumps(info, indent=2))
        target = d / shard.name
        if target.is_file():
            skipped += 1
            continue
        ids, codes = encode_shard(model, shard, batch_size, bf16)
        _write_codes(target, ids, codes)
        done, images = done + 1, images + len(ids)
        rate = images / max(time.time() - t0, 1e-9)
        left = (len(todo) - k - 1) * (images / done) / max(rate, 1e-9)
        log(
            f"[{k + 1}/{len(todo)}] {split}/{shard.name}: {len(ids)} images "
            f"| {rate:.1f} img/s | ETA {left / 60:.1f} min"
        )
    return {
        "tokenizer_hash": h,
        "splits": splits,
        "shards_encoded": done,
        "shards_skipped": skipped,
        "images": images,
        "seconds": time.time() - t0,
    }


def load_codes(
    data_root: str | Path, split: str, tokenizer_dir_or_hash: str | Path
) -> dict[str, torch.Tensor]:
    """Cached codes of a split: record id -> codes ``(h, w)`` int64.

    ``tokenizer_dir_or_hash`` is the tokenizer folder (its hash is computed) or the hash.
    Raises UserError when a shard has no codes for this tokenizer.
    """
    from ..data.shards import list_shards

    key = str(tokenizer_dir_or_hash)
    h = tokenizer_hash(key) if Path(key).is_dir() else key
    d = codes_dir(data_root, split, h)
    if not (d / "info.json").is_file():
        raise UserError(
            f"no cached codes for tokenizer {h} in {d.parent}; run "
            "`unif2ace data pretokenize --tokenizer DIR --data DIR`"
        )
    gh, gw = json.loads((d / "info.json").read_text())["grid"]
    out: dict[str, torch.Tensor] = {}
    for shard in list_shards(data_root, split):
        path = d / shard.name
        if not path.is_file():
            raise UserError(
                f"{path} is missing (pretokenize was interrupted); rerun "
                "`unif2ace data pretokenize` to finish it"
            )
        t = pq.read_table(path)
        codes = torch.tensor(t.column("codes").to_pylist(), dtype=torch.long)
        for i, c in zip(t.column("id").to_pylist(), codes.view(-1, gh, gw), strict=True):
            out[i] = c
    return out
