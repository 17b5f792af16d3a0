"""Pieces shared by every importer: the item an importer yields, face crop and resize,
deterministic split assignment, and label clean-up against the ontology's coherence rules.

An importer *scans* its source (label files only, no pixels) into a list of :class:`Item`;
:mod:`.writer` then loads, crops and writes the images shard by shard. Real data sets label
only some attributes: an attribute the source does not label is absent from ``labels``
(unknown), never ``False``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from .. import ontology as onto

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
VIDEO_EXTS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov")

# bbox: (top, bottom, left, right), each normalised to [0, 1] (CelebV-HQ's convention).
BBox = tuple[float, float, float, float]


class SkipItem(Exception):
    """An item that cannot be imported; ``str(err)`` is the reason written to the report."""


@dataclass
class Item:
    """One face to import, before its pixels are read.

    Args:
        id: unique record id within the import.
        file: where the pixels come from, for the report (relative path or "row N of F").
        image: a path, raw encoded bytes, or a zero-argument callable returning either.
        labels: ontology attribute -> value; unlabelled attributes are absent.
        caption, vqa: text supervision (empty when the source has none).
        split: ``train`` / ``val`` / ``test`` when the source fixes it, else None.
        bbox: face box (top, bottom, left, right) normalised to [0, 1], or None.
        skip: a reason known at scan time why the item cannot be imported (e.g. no decoder).
    """

    id: str
    file: str
    image: Path | bytes | Callable[[], Path | bytes] | None
    labels: dict = field(default_factory=dict)
    caption: str = ""
    vqa: list[dict] = field(default_factory=list)
    split: str | None = None
    bbox: BBox | None = None
    skip: str | None = None


# ---------------------------------------------------------------------------------------------
# Pixels
def open_image(source: Path | bytes) -> Image.Image:
    """Decode a path or encoded bytes into an RGB image (EXIF rotation applied).

    Raises SkipItem with the reason (missing file, corrupt or truncated image).
    """
    if isinstance(source, Path) and not source.is_file():
        raise SkipItem(f"missing file {source.name}")
    try:
        img = Image.open(source if isinstance(source, Path) else io.BytesIO(source))
        img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")
    except Image.DecompressionBombError as err:
        raise SkipItem(f"image too large ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        # UnidentifiedImageError and truncated files are OSErrors.
        raise SkipItem(f"corrupt image ({type(err).__name__}: {err})") from None


def square_box(
    width: int, height: int, bbox: BBox | None = None, margin: float = 0.1
) -> tuple[int, int, int, int]:
    """The square crop (left, upper, right, lower) in pixels that centres the face.

    With a bbox, the square is centred on the box with side ``max(box h, box w) * (1 + margin)``
    (so the whole face fits), shrunk to the image's short side and shifted inside the image.
    Without one, it is the centred square of side ``min(width, height)``.
    """
    if bbox is not None:
        top, bottom, left, right = bbox
        bh, bw = (bottom - top) * height, (right - left) * width
        cx, cy = (left + right) / 2 * width, (top + bottom) / 2 * height
        side = min(max(bh, bw) * (1 + margin), width, height)
    else:
        cx, cy, side = width / 2, height / 2, min(width, height)
    side = max(1, round(side))
    x0 = min(max(round(cx - side / 2), 0), width - side)
    y0 = min(max(round(cy - side / 2), 0), height - side)
    return x0, y0, x0 + side, y0 + side


def valid_bbox(bbox: BBox | None) -> BBox | None:
    """``bbox`` when it is a proper normalised box, else None (fall back to a centre crop)."""
    if bbox is None:
        return None
    top, bottom, left, right = bbox
    ok = 0 <= top < bottom <= 1 and 0 <= left < right <= 1
    return (float(top), float(bottom), float(left), float(right)) if ok else None


def face_crop(img: Image.Image, size: int, bbox: BBox | None = None) -> Image.Image:
    """Square face crop resized to ``size`` × ``size`` with LANCZOS (deterministic)."""
    box = square_box(img.width, img.height, valid_bbox(bbox))
    return img.crop(box).resize((size, size), Image.Resampling.LANCZOS)


def decode_data_uri(text: str) -> bytes | None:
    """Bytes of a ``data:image/...;base64,`` URI, or None when ``text`` is not one."""
    if not text.startswith("data:image/") or ";base64," not in text:
        return None
    try:
        return base64.b64decode(text.split(",", 1)[1], validate=False)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Splits
def hash_split(item_id: str, seed: int, val_frac: float, test_frac: float) -> str:
    """Deterministic split from a hash of ``(seed, id)``: stable when the source grows."""
    h = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


# ---------------------------------------------------------------------------------------------
# Labels
def resolve_conflicts(labels: dict) -> tuple[dict, list[str]]:
    """Make a partial label set satisfy the ontology's coherence rules.

    Real annotations (CelebA's 40 binary labels, CelebV-HQ's clip-level actions) sometimes
    contradict the ontology's hard rules; the fix keeps what is certain and drops (makes
    unknown) what is not. Returns the cleaned labels and one note per fix applied. The result
    passes ``ontology.validate(labels, partial=True)``.
    """
    lab = {k: v for k, v in labels.items() if k in onto.BY_NAME}
    notes: list[str] = []

    def drop(keys: tuple[str, ...], why: str) -> None:
        if any(k in lab for k in keys):
            for k in keys:
                lab.pop(k, None)
            notes.append(why)

    if lab.get("bald"):
        # A bald head has no applicable hair attributes (CelebA marks grey sides as Gray_Hair).
        for k in onto.HAIR_ATTRIBUTES:
            if lab.get(k) not in (None, False):
                notes.append(f"bald: {k} set to n/a")
                lab[k] = None if k != "bangs" else False
    if lab.get("beard") and lab.get("five_o_clock_shadow"):
        drop(("five_o_clock_shadow",), "beard: stubble dropped")
    if lab.get("laugh"):
        if lab.get("mouth_open") is False or lab.get("smile") is False or lab.get("frown"):
            drop(("laugh",), "laugh without open mouth/smile dropped")
        else:
            lab["mouth_open"], lab["smile"] = True, True
    if lab.get("smile") and lab.get("frown"):
        drop(("smile", "frown"), "smile and frown both set: dropped")
    if lab.get("eyes_closed") and (lab.get("glare") or lab.get("wink")):
        drop(("glare", "wink"), "closed eyes: glare/wink dropped")
    if lab.get("wink") and lab.get("glare"):
        drop(("wink", "glare"), "wink and glare both set: dropped")
    emo = lab.get("emotion")
    neg = ("sad", "angry", "fearful", "disgusted")
    if (
        (emo == "neutral" and any(lab.get(k) for k in ("smile", "frown", "laugh")))
        or (emo in neg and lab.get("smile"))
        or (emo == "happy" and lab.get("smile") is False)
    ):
        drop(("emotion",), f"emotion {emo} contradicts the expression: dropped")
    if lab.get("face_mask") and lab.get("glasses") == "sunglasses" and lab.get("hat"):
        drop(("hat",), "mask + sunglasses + hat: hat dropped")
    onto.validate(lab, partial=True)
    return lab, notes
