"""Labelled contact sheets of a data set (``unif2ace data show``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import UserError
from .shards import decode_image, iter_records


def contact_sheet(
    images: list[Image.Image],
    captions: list[str],
    cols: int = 8,
    cell: int = 128,
    text_lines: int = 4,
) -> Image.Image:
    """A grid of ``cell``-px images, each with up to ``text_lines`` lines of caption below."""
    font = ImageFont.load_default()
    line_h, chars = 11, max(10, cell // 6)
    rows = (len(images) + cols - 1) // cols
    cell_h = cell + line_h * text_lines + 6
    sheet = Image.new("RGB", (cols * (cell + 4) + 4, rows * cell_h + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        x, y = 4 + (i % cols) * (cell + 4), 4 + (i // cols) * cell_h
        sheet.paste(img.resize((cell, cell), Image.Resampling.LANCZOS), (x, y))
        for j, line in enumerate(textwrap.wrap(cap, chars)[:text_lines]):
            draw.text((x, y + cell + 2 + j * line_h), line, fill=(20, 20, 20), font=font)
    return sheet


def show_dataset(
    root: str | Path,
    out: str | Path,
    split: str = "train",
    num: int = 64,
    cols: int = 8,
    cell: int = 128,
) -> Path:
    """Write a contact sheet of the first ``num`` records of ``split``, labelled by prompt."""
    images, captions = [], []
    for rec in iter_records(root, split, columns=["image", "prompts", "caption"]):
        images.append(decode_image(rec["image"]))
        captions.append((rec["prompts"] or [rec["caption"]])[0] or "(no caption)")
        if len(images) >= num:
            break
    if not images:
        raise UserError(f"split {split!r} of {str(root)!r} is empty")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, captions, cols=min(cols, len(images)), cell=cell).save(out)
    return out
