"""UniF²ace-130K-style records: image + caption + QA list, in JSON, JSONL or parquet.

The public card of UniF²ace-130K / UniF²aceD-1M (huggingface.co/datasets/tulvgengenr/
UniF2aceD-1M) could not be read from here, so the reader accepts the field spellings common
to face-caption and VQA releases (LLaVA-style ``conversations``, plain ``qa`` lists, Hugging
Face ``Image`` structs), case-insensitively:

- image: ``image`` | ``image_path`` | ``img`` | ``img_path`` | ``file_name`` | ``file`` |
  ``filename`` | ``path`` — a path relative to the records file's folder (or ``--root``), an
  absolute path, raw bytes, a ``data:image/...;base64,`` URI, or ``{"bytes":…, "path":…}``.
- caption: ``caption`` | ``text`` | ``description`` | ``detailed_caption`` |
  ``long_caption`` | ``face_caption`` (a list: the first non-empty string).
- QA: ``qa`` | ``qas`` | ``vqa`` | ``qa_pairs`` | ``questions`` | ``conversations`` |
  ``messages``: a list of ``{"question"|"q", "answer"|"a", "category"|"type"}``, a
  ``{question: answer}`` dict, or turns ``{"from": "human"|"gpt", "value"}`` /
  ``{"role": "user"|"assistant", "content"}`` paired in order (``<image>`` tags removed).
- id: ``id`` | ``image_id`` | ``uid`` | ``key`` (else the image file's stem or row number);
  split: ``split`` (train / val / validation / test); attributes: an optional dict of
  ontology attributes (unknown names and values are ignored).

A JSON file is a list of records, ``{"data"|"records"|"annotations"|"items": [...]}``, or
``{id: record}``. ``--root`` may be one file or a folder (every top-level .json/.jsonl/
.parquet, sorted; the importer's own outputs are never inside ``--root``).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from ...errors import UserError
from .. import ontology as onto
from .common import SPLIT_ALIASES, Item, SkipItem, decode_data_uri

IMAGE_KEYS = (
    "image",
    "image_path",
    "img",
    "img_path",
    "file_name",
    "file",
    "filename",
    "path",
    "image_file",
)
CAPTION_KEYS = (
    "caption",
    "text",
    "description",
    "detailed_caption",
    "long_caption",
    "face_caption",
)
QA_KEYS = ("qa", "qas", "vqa", "qa_pairs", "questions", "conversations", "messages")
ID_KEYS = ("id", "image_id", "uid", "key")
LIST_KEYS = ("data", "records", "annotations", "items")
RECORD_EXTS = (".json", ".jsonl", ".parquet")
ASK_ROLES = ("human", "user", "question")


def _get(rec: dict, keys: tuple[str, ...]):
    low = {str(k).lower(): v for k, v in rec.items()}
    return next((low[k] for k in keys if low.get(k) not in (None, "", [], {})), None)


def _text(v) -> str:
    if isinstance(v, list):
        v = next((x for x in v if isinstance(x, str) and x.strip()), "")
    return v.strip() if isinstance(v, str) else ""


def _clean(text) -> str:
    return re.sub(r"\s*<image>\s*", " ", str(text)).strip()


def parse_qa(v) -> list[dict]:
    """Any accepted QA spelling → ``[{"question", "answer", "category", "kind", "attribute"}]``."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            return []
    if isinstance(v, dict):
        v = [{"question": q, "answer": a} for q, a in v.items()]
    if not isinstance(v, list):
        return []
    pairs: list[dict] = []
    pending: str | None = None
    for turn in v:
        if not isinstance(turn, dict):
            continue
        t = {str(k).lower(): x for k, x in turn.items()}
        q, a = t.get("question", t.get("q")), t.get("answer", t.get("a"))
        if q is not None and a is not None:
            pairs.append(
                {
                    "question": _clean(q),
                    "answer": _clean(a),
                    "category": str(t.get("category", t.get("type", "")) or ""),
                    "kind": str(t.get("kind", "") or ""),
                    "attribute": str(t.get("attribute", "") or ""),
                }
            )
            continue
        role = str(t.get("from", t.get("role", ""))).lower()
        value = t.get("value", t.get("content"))
        if value is None:
            continue
        if role in ASK_ROLES:
            pending = _clean(value)
        elif pending is not None:
            pairs.append(
                {
                    "question": pending,
                    "answer": _clean(value),
                    "category": "",
                    "kind": "",
                    "attribute": "",
                }
            )
            pending = None
    return pairs


def _attributes(v) -> dict:
    if not isinstance(v, dict):
        return {}
    out = {}
    for k, x in v.items():
        if k in onto.BY_NAME and x is not None:
            try:
                out[k] = x if isinstance(x, bool) else onto.parse_value(k, str(x))
            except UserError:
                continue
    return out


def _image_source(v, base: Path) -> tuple[Path | bytes | None, str]:
    """(source, description) of a record's image field."""
    if isinstance(v, dict):
        low = {str(k).lower(): x for k, x in v.items()}
        if low.get("bytes"):
            return bytes(low["bytes"]), str(low.get("path") or "embedded bytes")
        v = low.get("path")
    if isinstance(v, bytes | bytearray):
        return bytes(v), "embedded bytes"
    if isinstance(v, str) and v:
        data = decode_data_uri(v)
        if data is not None:
            return data, "data URI"
        p = Path(v)
        return (p if p.is_absolute() else base / p), v
    return None, "no image field"


def record_item(rec: dict, base: Path, fallback_id: str) -> Item:
    """One raw record → Item (an item without an image is kept and reported as skipped)."""
    src, desc = _image_source(_get(rec, IMAGE_KEYS), base)
    rid = _get(rec, ID_KEYS)
    if rid is None:
        rid = Path(desc).stem if isinstance(src, Path) else fallback_id
    split = SPLIT_ALIASES.get(str(_get(rec, ("split",)) or "").lower())
    return Item(
        id=str(rid),
        file=desc,
        image=src,
        labels=_attributes(_get(rec, ("attributes",))),
        caption=_text(_get(rec, CAPTION_KEYS)),
        vqa=parse_qa(_get(rec, QA_KEYS)),
        split=split,
        skip=None if src is not None else "no image field in record",
    )


def _json_records(path: Path) -> list[dict]:
    try:
        if path.suffix == ".jsonl":
            lines = path.read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); fix or remove the file") from None
    if isinstance(data, dict):
        inner = next((data[k] for k in LIST_KEYS if isinstance(data.get(k), list)), None)
        if inner is None:
            inner = [{"id": k, **v} for k, v in data.items() if isinstance(v, dict)]
        data = inner
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of records; see docs/data.md")
    return [r for r in data if isinstance(r, dict)]


def _parquet_items(path: Path, base: Path) -> list[Item]:
    """Parquet rows → Items; embedded image bytes are read lazily, one row group at a time."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    img_col = next((n for n in names if n.lower() in IMAGE_KEYS), None)
    reader = _ParquetImages(pf, img_col, base) if img_col else None
    other = [n for n in names if n != img_col]
    items, row = [], 0
    for g in range(pf.num_row_groups):
        for i, rec in enumerate(pf.read_row_group(g, columns=other).to_pylist()):
            it = record_item(rec, base, f"{path.stem}-{row}")
            if reader is not None:
                it.image, it.skip = partial(reader.get, g, i), None
                it.file = f"{path.name} row {row}"
            items.append(it)
            row += 1
    return items


class _ParquetImages:
    """The image column of one parquet file, read one row group at a time (last one cached),
    so items written in file order decode each group once."""

    def __init__(self, pf: pq.ParquetFile, col: str, base: Path):
        self.pf, self.col, self.base = pf, col, base
        self.group, self.cells = -1, []

    def get(self, group: int, index: int) -> Path | bytes:
        if group != self.group:
            self.cells = self.pf.read_row_group(group, columns=[self.col]).column(0).to_pylist()
            self.group = group
        src, _ = _image_source(self.cells[index], self.base)
        if src is None:
            raise SkipItem("no image in parquet cell")
        return src


def scan_records(root: str | Path) -> tuple[list[Item], dict]:
    """Items of a UniF²ace-style records file or folder of record files."""
    root = Path(root)
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.iterdir() if p.suffix.lower() in RECORD_EXTS and p.is_file())
    )
    if not files:
        raise UserError(
            f"no .json, .jsonl or .parquet records in {root}; pass the records "
            "file (or its folder) as --root"
        )
    items: list[Item] = []
    for f in files:
        base = f.parent
        if f.suffix.lower() == ".parquet":
            items += _parquet_items(f, base)
        else:
            recs = _json_records(f)
            items += [record_item(r, base, f"{f.stem}-{i}") for i, r in enumerate(recs)]
    notes = {
        "files": [str(f.name) for f in files],
        "records": len(items),
        "with_caption": sum(bool(i.caption) for i in items),
        "qa_pairs": sum(len(i.vqa) for i in items),
    }
    return items, notes
