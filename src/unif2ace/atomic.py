"""Atomic file writes — the one owner.

Every file the package writes for a user or for a resumed job (JSON reports, manifests, model
cards, weights, ``latest`` pointers) goes through here: the bytes land in a unique temporary
sibling (same folder, so the same file system) that is then renamed over the destination with
``os.replace`` — atomic on POSIX. A reader, or a job resumed after a kill, sees the old file or
the new one, never a torn one; two writers of the same path never share a temporary file; a
failed write leaves no temporary file behind.

``fsync=True`` also flushes the file and its folder to disk before and after the rename (the
training checkpoints' ``latest`` pointer: a power cut must not leave it naming a checkpoint
whose bytes never reached the disk).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"  # every temporary sibling starts so: crash clean-ups can find them
FILE_MODE = 0o644  # mkstemp and safetensors create 0600; what we write is meant to be shared


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's metadata and bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent folder is created. Use for writers that want a file name (``save_file``,
    ``pq.write_table``); text and JSON have :func:`write_text_atomic` / :func:`write_json_atomic`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(
    path: str | Path, obj, *, sort_keys: bool = True, fsync: bool = False, **dumps_kw
) -> None:
    """Write ``obj`` as indented JSON with a final newline to ``path`` atomically."""
    dumps_kw.setdefault("indent", 2)
    text = json.dumps(obj, sort_keys=sort_keys, **dumps_kw) + "\n"
    write_text_atomic(path, text, fsync=fsync)
