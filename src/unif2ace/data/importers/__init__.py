"""Importers: real face data sets → unif2ace shards (the FaceForge format, see shards.py).

Formats: ``unif2ace`` (UniF²ace-130K-style records), ``celeba`` (CelebA / CelebA-HQ),
``celebv-hq`` and ``folder``. Each scans its labels into :class:`~.common.Item` lists; the
shared :func:`~.writer.write_import` crops, resizes, skips and reports bad images, and writes
resumable shards plus ``manifest.json`` and ``import_report.json``. Mapping tables:
:mod:`.celeba`, :mod:`.celebvhq`; user docs: docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .settings import ImportSettings

FORMATS: tuple[str, ...] = ("unif2ace", "celeba", "celebv-hq", "folder")


def import_dataset(
    fmt: str,
    root: str | Path,
    out: str | Path,
    settings: ImportSettings | None = None,
    use_bbox: bool = False,
    progress: bool = True,
) -> dict:
    """Import the data set at ``root`` (format ``fmt``) into shards under ``out``.

    Resumes an interrupted import into the same ``out``; returns the manifest. Raises
    UserError for an unknown format, a missing root or a missing label file.
    """
    from .celeba import scan_celeba
    from .celebvhq import scan_celebvhq
    from .folder import scan_folder
    from .records import scan_records
    from .writer import write_import

    if fmt not in FORMATS:
        raise UserError(f"unknown import format {fmt!r}; valid: {', '.join(FORMATS)}")
    settings = settings or ImportSettings()
    settings.check()
    root = Path(root)
    if not root.exists():
        raise UserError(f"--root {str(root)!r} does not exist; pass the data set's folder")
    out = Path(out)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise UserError("--out must not be inside --root; choose a separate output folder")
    if fmt == "celeba":
        items, notes = scan_celeba(root)
    elif fmt == "celebv-hq":
        items, notes = scan_celebvhq(root, use_bbox=use_bbox)
    elif fmt == "folder":
        items, notes = scan_folder(root)
    else:
        items, notes = scan_records(root)
    if not items:
        raise UserError(f"{root} holds no {fmt} records to import")
    return write_import(items, out, fmt, root, settings, notes, progress)


__all__ = ["FORMATS", "ImportSettings", "import_dataset"]
