"""Parquet shards: the one on-disk format for every face data set (FaceForge and real sets).

Layout of a data set folder::

    DIR/manifest.json                     ontology, counts, seeds, per-shard checksums
    DIR/<split>/shard-00000.parquet       rows of RECORD_SCHEMA, ``SHARD_SIZE`` rows each

Readable by pandas (``pd.read_parquet(DIR/"train")``) and by Hugging Face
``datasets.load_dataset("parquet", data_files=...)``. Files are written atomically (temp file +
rename), so a killed build never leaves a half-written shard behind.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import UserError

SPLITS: tuple[str, ...] = ("train", "val", "test", "test_heldout")
MANIFEST = "manifest.json"

VQA_TYPE = pa.struct(
    [
        ("question", pa.string()),
        ("answer", pa.string()),
        ("category", pa.string()),
        ("kind", pa.string()),
        ("attribute", pa.string()),
    ]
)
RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),  # faceforge | unif2ace | celeba | celebv-hq | folder
        ("image", pa.binary()),  # PNG (or the source's JPEG) bytes
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("attributes", pa.string()),  # JSON: attribute -> value (null: n/a or unknown)
        ("hidden", pa.list_(pa.string())),  # attributes present but not visible
        ("identity", pa.string()),  # JSON: identity/scene parameters ({} for real photos)
        ("caption", pa.string()),
        ("prompts", pa.list_(pa.string())),
        ("vqa", pa.list_(VQA_TYPE)),
        ("seed", pa.int64()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(RECORD_SCHEMA.names)


def shard_path(root: str | Path, split: str, index: int) -> Path:
    return Path(root) / split / f"shard-{index:05d}.parquet"


def list_shards(root: str | Path, split: str) -> list[Path]:
    """The shard files of one split, in order. Raises UserError when the folder is missing."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"data folder {str(root)!r} does not exist; build one with "
            "`unif2ace data build --out DIR` or import one with `unif2ace data import`"
        )
    return sorted((root / split).glob("shard-*.parquet"))


def normalize_record(rec: dict) -> dict:
    """Fill defaults and JSON-encode dict fields so ``rec`` matches RECORD_SCHEMA."""
    out = {
        "id": str(rec["id"]),
        "split": rec.get("split", "train"),
        "source": rec.get("source", "faceforge"),
        "image": rec["image"],
        "width": int(rec.get("width", 0)),
        "height": int(rec.get("height", 0)),
        "attributes": rec.get("attributes", {}),
        "hidden": sorted(rec.get("hidden", [])),
        "identity": rec.get("identity", {}),
        "caption": rec.get("caption", ""),
        "prompts": list(rec.get("prompts", [])),
        "vqa": [
            {k: str(q.get(k, "")) for k in ("question", "answer", "category", "kind", "attribute")}
            for q in rec.get("vqa", [])
        ],
        "seed": int(rec.get("seed", -1)),
    }
    for k in ("attributes", "identity"):
        if not isinstance(out[k], str):
            out[k] = json.dumps(out[k], sort_keys=True)
    return out


def write_shard(path: str | Path, records: Iterable[dict]) -> str:
    """Write records to one parquet file atomically; returns the file's sha256."""
    table = pa.Table.from_pylist([normalize_record(r) for r in records], schema=RECORD_SCHEMA)
    return write_table_atomic(path, table)


def write_table_atomic(path: str | Path, table: pa.Table) -> str:
    """Write a table to one parquet file (temp file + rename); returns the file's sha256.

    Fixed writer settings: the same rows give byte-identical files.
    """
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=False,
            write_statistics=False,
            store_schema=True,
        )
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise UserError(
            f"{str(root)!r} is not a unif2ace data set (no {MANIFEST}); build one "
            "with `unif2ace data build` or `unif2ace data import`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is corrupt ({err}); rebuild the data set") from None


def read_shard(path: str | Path, columns: list[str] | None = None) -> list[dict]:
    """All rows of one shard as dicts (``attributes``/``identity`` stay JSON strings)."""
    return pq.read_table(path, columns=columns).to_pylist()


def iter_records(root: str | Path, split: str, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a split in shard order."""
    for path in list_shards(root, split):
        yield from read_shard(path, columns)


def count_records(root: str | Path, split: str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in list_shards(root, split))


def decode_image(data: bytes) -> Image.Image:
    """PNG/JPEG bytes -> RGB PIL image. Raises UserError on corrupt bytes."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"corrupt image bytes ({err})") from None
    return img.convert("RGB")


def encode_png(img: Image.Image) -> bytes:
    """Deterministic PNG bytes (no timestamps or text chunks)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def labels_of(record: dict) -> dict:
    """The attribute dict of a row (decodes the JSON column)."""
    attrs = record.get("attributes", "{}")
    return json.loads(attrs) if isinstance(attrs, str) else dict(attrs)
