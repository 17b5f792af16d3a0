"""An image folder, with optional captions.

``ROOT/**/*.jpg|png|…`` (recursive, sorted) plus an optional ``ROOT/captions.jsonl`` with lines
``{"file": "sub/a.jpg", "caption": "..."}`` (``file_name``/``image``/``path`` and ``text`` are
accepted too; Hugging Face imagefolder's ``metadata.jsonl`` is read when there is no
``captions.jsonl``). A caption line naming a file that does not exist is imported as a skipped
item ("missing file"), so the report shows it. Record ids are the paths relative to ROOT
without extension.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import UserError
from .common import IMAGE_EXTS, Item

CAPTION_FILES = ("captions.jsonl", "metadata.jsonl")
FILE_KEYS = ("file", "file_name", "image", "path", "filename")
TEXT_KEYS = ("caption", "text", "description")


def read_captions(path: Path) -> tuple[dict[str, str], int]:
    """``captions.jsonl`` → (relative file → caption, number of unreadable lines)."""
    caps, bad = {}, 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            f = next(rec[k] for k in FILE_KEYS if isinstance(rec.get(k), str))
            caps[Path(f).as_posix()] = next(
                (rec[k] for k in TEXT_KEYS if isinstance(rec.get(k), str)), ""
            ).strip()
        except (json.JSONDecodeError, StopIteration, TypeError, AttributeError):
            bad += 1
    return caps, bad


def scan_folder(root: str | Path) -> tuple[list[Item], dict]:
    """Items of an image folder (one per image file, plus captioned files that are missing)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--root {str(root)!r} is not a folder of images")
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS
    )
    cap_file = next((root / n for n in CAPTION_FILES if (root / n).is_file()), None)
    caps, bad = read_captions(cap_file) if cap_file else ({}, 0)
    if not files and not caps:
        raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    names = sorted(set(files) | set(caps))
    items = [
        Item(id=str(Path(n).with_suffix("")), file=n, image=root / n, caption=caps.get(n, ""))
        for n in names
    ]
    notes = {
        "images": len(files),
        "caption_file": cap_file.name if cap_file else None,
        "captions": len(caps),
        "bad_caption_lines": bad,
        "uncaptioned": sum(n not in caps for n in files),
    }
    return items, notes
