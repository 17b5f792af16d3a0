"""The one owner of what ships inside the package (``unif2ace/assets``).

The package carries the parts a FaceForge model is built from, so that nobody has to spend
the CPU hours on them again: the small image tokenizer (``image_tokenizer/``, bf16 storage),
the text BPE (``text_tokenizer/tokenizer.json``), the two frozen CNN encoders of the
sequence-level experts (``encoders/semantic``, ``encoders/identity``), the attribute judge
(``judge/``) and the trained small model (``model/``, with its card).

Anywhere a command takes one of these folders, the word ``bundled`` names the shipped one:
``unif2ace train model --tokenizer bundled`` (or ``--bundled`` for all four training parts),
``unif2ace data pretokenize --tokenizer bundled``, ``init.checkpoint=bundled`` (fine-tune
the shipped model). :func:`resolve` turns the word into the
path, with one clear error when this install lacks the part.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import UserError

BUNDLED = "bundled"
_CONTENT = ("config.json", "model.safetensors", "tokenizer.json")  # what digest() covers

#: part name -> path inside ``unif2ace/assets`` (the file or folder a command is given)
PARTS = {
    "image_tokenizer": "image_tokenizer",
    "text_tokenizer": "text_tokenizer/tokenizer.json",
    "semantic_encoder": "encoders/semantic",
    "face_encoder": "encoders/identity",
    "judge": "judge",
    "model": "model",
}

#: the parts ``train model --bundled`` takes: run-config key -> part
TRAINING_PARTS = {
    "data.image_tokenizer": "image_tokenizer",
    "data.text_tokenizer": "text_tokenizer",
    "init.semantic_encoder": "semantic_encoder",
    "init.face_encoder": "face_encoder",
}

#: every run-config key that takes the word ``bundled``: the training parts and the warm
#: start (``init.checkpoint=bundled`` fine-tunes the shipped model)
CONFIG_PARTS = {**TRAINING_PARTS, "init.checkpoint": "model"}


def assets_dir() -> Path:
    """``unif2ace/assets`` of this install."""
    return Path(__file__).resolve().parent / "assets"


def path(part: str) -> Path:
    """Where ``part`` lives in this install (it may be absent: see :func:`available`)."""
    if part not in PARTS:
        raise UserError(f"unknown bundled part {part!r}; valid: {', '.join(PARTS)}")
    return assets_dir() / PARTS[part]


def available(part: str) -> bool:
    """Whether this install ships ``part`` (a folder needs its ``config.json``)."""
    p = path(part)
    return (p / "config.json").is_file() if not p.suffix else p.is_file()


def resolve(value: str | Path | None, part: str) -> str | Path | None:
    """``value``, or the bundled ``part``'s path when ``value`` is the word ``bundled``."""
    if value is None or str(value) != BUNDLED:
        return value
    if not available(part):
        raise UserError(
            f"this install has no bundled {part.replace('_', ' ')} ({path(part)}); "
            "pass a folder you trained instead (docs/training.md)"
        )
    return path(part)


def digest(part: str) -> str:
    """Content hash of the bundled ``part``'s config and weights (sha256 of those files'
    names and bytes, 16 hex; cards and READMEs left out): a model folder that shares the
    part records it, and refuses an install whose part differs."""
    return content_digest(resolve(BUNDLED, part))


def content_digest(p: str | Path) -> str:
    """:func:`digest` of any part folder (its config and weights) or single file."""
    p = Path(p)
    files = sorted(f for f in p.iterdir() if f.name in _CONTENT) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(p if p.is_dir() else p.parent).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
