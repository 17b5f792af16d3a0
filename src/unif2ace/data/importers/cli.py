"""``unif2ace data import``: real face data sets into unif2ace shards."""

from __future__ import annotations

import argparse
import json

FORMAT_HELP = (
    "unif2ace: UniF²ace-130K-style records (JSON/JSONL/parquet: image, caption, QA); "
    "celeba: CelebA / CelebA-HQ (list_attr_celeba.txt + images); "
    "celebv-hq: celebvhq_info.json + one frame (or clip) per clip; "
    "folder: images + optional captions.jsonl"
)


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``data import`` to the command groups (see ``unif2ace.cli``)."""
    from . import FORMATS

    p = groups["data"].add_parser(
        "import",
        help="convert a real face data set (UniF²ace, CelebA, CelebV-HQ, folder) into shards",
        description="Convert a real face data set into unif2ace shards. "
        + FORMAT_HELP
        + ". Bad images are skipped and listed in OUT/import_report.json; rerunning resumes.",
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="source format")
    p.add_argument("--root", required=True, help="source folder (or records file)")
    p.add_argument("--out", required=True, help="output folder (rerun to resume)")
    p.add_argument("--size", type=int, default=128, help="output image side in px (128)")
    p.add_argument("--shard-size", type=int, default=1000, help="items per shard (1000)")
    p.add_argument(
        "--val-frac",
        type=float,
        default=0.05,
        help="validation fraction when the source has no split (0.05)",
    )
    p.add_argument(
        "--test-frac",
        type=float,
        default=0.05,
        help="test fraction when the source has no split (0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash (0)")
    p.add_argument(
        "--use-bbox",
        action="store_true",
        help="celebv-hq: crop frames with the json's face bbox (frames from the raw "
        "videos; the processed clips are already cropped)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from . import import_dataset
    from .settings import ImportSettings
    from .writer import REPORT

    settings = ImportSettings(
        size=args.size,
        shard_size=args.shard_size,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        seed=args.seed,
    )
    m = import_dataset(
        args.format, args.root, args.out, settings, use_bbox=args.use_bbox, progress=not args.quiet
    )
    with open(f"{args.out}/{REPORT}") as f:
        report = json.load(f)
    print(
        json.dumps(
            {
                "out": args.out,
                "counts": m["counts"],
                "skipped": report["skipped"],
                "skipped_by_reason": report["skipped_by_reason"],
                "report": f"{args.out}/{REPORT}",
            }
        )
    )
    return 0
