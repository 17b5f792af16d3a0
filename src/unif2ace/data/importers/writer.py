"""Turn scanned :class:`~.common.Item` lists into unif2ace shards, resumably.

Items are split (by the source's partition or a seeded hash), then cut into shards of
``shard_size`` *items* in source order, so which items land in which shard depends only on the
source and the settings, never on which images happen to be readable. A bad item is skipped
and reported; its shard is just shorter. After each shard, a small progress file records the
shard's checksum and skips; a rerun skips every shard whose file still matches, so an
interrupted import resumes and a finished one is a no-op with identical checksums.

Outputs in ``out``: ``<split>/shard-NNNNN.parquet``, ``manifest.json``, ``import_report.json``,
``import_params.json`` and ``.import_progress/`` (resume bookkeeping).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

from ...atomic import write_json_atomic
from ...errors import UserError
from .. import ontology as onto
from ..shards import (
    MANIFEST,
    encode_png,
    file_sha256,
    shard_path,
    write_shard,
)
from .common import Item, SkipItem, face_crop, hash_split, open_image, resolve_conflicts
from .settings import ImportSettings

REPORT = "import_report.json"
PARAMS = "import_params.json"
PROGRESS_DIR = ".import_progress"
REPORT_CAP = 1000  # per-file entries kept in the report (counts are always complete)
IMPORT_SPLITS = ("train", "val", "test")


def assign_splits(items: list[Item], s: ImportSettings) -> dict[str, list[Item]]:
    """Items per split, in source order; ids made unique (``id~2`` for the second copy)."""
    seen: Counter = Counter()
    out: dict[str, list[Item]] = {k: [] for k in IMPORT_SPLITS}
    for it in items:
        seen[it.id] += 1
        if seen[it.id] > 1:
            it.id = f"{it.id}~{seen[it.id]}"
        split = it.split or hash_split(it.id, s.seed, s.val_frac, s.test_frac)
        it.split = split
        out[split].append(it)
    return out


def fingerprint(splits: dict[str, list[Item]]) -> str:
    """Hash of the scanned item list (ids, files, splits, labels, text): a rerun resumes only
    when the source still scans to the same items."""
    h = hashlib.sha256()
    for split, items in splits.items():
        for it in items:
            row = [split, it.id, it.file, it.labels, it.caption, it.vqa, it.bbox, it.skip]
            h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _check_resumable(out: Path, params: dict) -> None:
    path = out / PARAMS
    if path.is_file():
        old = json.loads(path.read_text())
        if old != params:
            changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise UserError(
                f"{out} holds an import with other settings or source data (differs in "
                f"{', '.join(changed)}); use another --out folder or delete this one"
            )
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not an import folder; use an empty --out folder")
    write_json_atomic(path, params)


def build_record(it: Item, source: str, size: int) -> tuple[dict, list[str]]:
    """Load, crop and encode one item; returns the record and the label fixes applied.

    Raises SkipItem with the reason when the item cannot be imported.
    """
    if it.skip:
        raise SkipItem(it.skip)
    try:
        src = it.image() if callable(it.image) else it.image
    except (OSError, ValueError) as err:  # e.g. an unreadable parquet row group
        raise SkipItem(f"unreadable source ({type(err).__name__}: {err})") from None
    if src is None:
        raise SkipItem("no image given")
    img = face_crop(open_image(src), size, it.bbox)
    labels, fixes = resolve_conflicts(it.labels)
    return {
        "id": it.id,
        "split": it.split,
        "source": source,
        "image": encode_png(img),
        "width": size,
        "height": size,
        "attributes": labels,
        "hidden": sorted(onto.hidden_attributes(labels)),
        "identity": {},
        "caption": it.caption,
        "prompts": [],
        "vqa": it.vqa,
        "seed": -1,
    }, fixes


def _write_one(
    out: Path, split: str, index: int, chunk: list[Item], source: str, size: int
) -> dict:
    """Write one shard (skipping bad items) and its progress file; returns the progress."""
    records, skipped, notes = [], [], Counter()
    for it in chunk:
        try:
            rec, fixes = build_record(it, source, size)
            records.append(rec)
            notes.update(fixes)
        except SkipItem as err:
            skipped.append({"id": it.id, "file": it.file, "reason": str(err)})
    digest = write_shard(shard_path(out, split, index), records)
    prog = {
        "sha256": digest,
        "rows": len(records),
        "skipped": skipped,
        "label_fixes": dict(sorted(notes.items())),
    }
    write_json_atomic(out / PROGRESS_DIR / f"{split}-{index:05d}.json", prog)
    return prog


def _done(out: Path, split: str, index: int) -> dict | None:
    """The progress of a finished shard whose file is intact, else None."""
    prog_path = out / PROGRESS_DIR / f"{split}-{index:05d}.json"
    path = shard_path(out, split, index)
    if not (prog_path.is_file() and path.is_file()):
        return None
    try:
        prog = json.loads(prog_path.read_text())
    except json.JSONDecodeError:
        return None
    return prog if prog.get("sha256") == file_sha256(path) else None


def write_import(
    items: list[Item],
    out: str | Path,
    source: str,
    source_root: str | Path,
    settings: ImportSettings,
    scan_notes: dict | None = None,
    progress: bool = True,
) -> dict:
    """Write (or resume writing) the shards, report and manifest; returns the manifest."""
    settings.check()
    out = Path(out)
    splits = assign_splits(items, settings)
    params = {
        "importer": source,
        "settings": settings.__dict__.copy(),
        "items_fingerprint": fingerprint(splits),
        "ontology_hash": onto.ontology_hash(),
    }
    _check_resumable(out, params)
    progs: dict[str, list[dict]] = {}
    t0, n_total = time.time(), sum(len(v) for v in splits.values())
    n_done = 0
    for split, its in splits.items():
        progs[split] = []
        for index in range(0, (len(its) + settings.shard_size - 1) // settings.shard_size):
            chunk = its[index * settings.shard_size : (index + 1) * settings.shard_size]
            prog = _done(out, split, index) or _write_one(
                out, split, index, chunk, source, settings.size
            )
            progs[split].append(prog)
            n_done += len(chunk)
            if progress:
                rate = n_done / max(time.time() - t0, 1e-6)
                print(
                    f"[import {source}] {split} shard {index}: {prog['rows']} records, "
                    f"{n_done}/{n_total} items ({rate:.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
    report = _report(source, source_root, splits, progs, scan_notes or {})
    write_json_atomic(out / REPORT, report)
    # The source may move between runs (resume compares items, not paths).
    return _manifest(out, {**params, "source_root": str(Path(source_root).resolve())}, progs)


def _report(source: str, root, splits: dict, progs: dict, scan_notes: dict) -> dict:
    skipped = [s for split in progs.values() for p in split for s in p["skipped"]]
    fixes: Counter = Counter()
    for split in progs.values():
        for p in split:
            fixes.update(p.get("label_fixes", {}))
    by_kind = Counter(_reason_kind(s["reason"]) for s in skipped)
    return {
        "importer": source,
        "source_root": str(Path(root).resolve()),
        "items": sum(len(v) for v in splits.values()),
        "written": sum(p["rows"] for split in progs.values() for p in split),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_kind.items())),
        "written_per_split": {k: sum(p["rows"] for p in v) for k, v in progs.items()},
        "label_fixes": dict(sorted(fixes.items())),
        "scan": scan_notes,
        "skipped_files": skipped[:REPORT_CAP],
        "skipped_files_truncated": max(0, len(skipped) - REPORT_CAP),
    }


def _reason_kind(reason: str) -> str:
    """A coarse reason class for counting ("missing file", "corrupt image", ...)."""
    for kind in ("missing file", "corrupt image", "image too large", "video", "no image"):
        if reason.startswith(kind):
            return kind
    return reason.split(":")[0][:60]


def _manifest(out: Path, params: dict, progs: dict[str, list[dict]]) -> dict:
    manifest = {
        **params,
        "format": "unif2ace-shards/1",
        "ontology": onto.ontology_dict(),
        "ontology_version": onto.ONTOLOGY_VERSION,
        "counts": {k: sum(p["rows"] for p in v) for k, v in progs.items()},
        "shards": {
            k: {shard_path(out, k, i).name: p["sha256"] for i, p in enumerate(v)}
            for k, v in progs.items()
        },
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
