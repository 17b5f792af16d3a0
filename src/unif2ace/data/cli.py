"""Data commands (``data build``, ``data show``, ``data verify``)."""

from __future__ import annotations

import argparse
import json


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the data commands to the command groups (see ``unif2ace.cli``)."""
    p = groups["data"].add_parser(
        "build", help="build a FaceForge data set (procedural faces with exact labels)"
    )
    p.add_argument("--preset", default="small", help="tiny | small | large (default: small)")
    p.add_argument("--num", type=int, default=None, help="number of faces (default: preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None, help="image size: 64, 128 or 256")
    p.add_argument("--out", required=True, help="output folder (resumes an interrupted build)")
    p.add_argument("--shard-size", type=int, default=None, help="records per shard")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.set_defaults(func=_build)

    p = groups["data"].add_parser("show", help="draw a labelled contact sheet of a data set")
    p.add_argument("data", help="data set folder")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--cols", type=int, default=8)
    p.set_defaults(func=_show)

    p = groups["data"].add_parser("verify", help="check shard checksums against the manifest")
    p.add_argument("data", help="data set folder")
    p.set_defaults(func=_verify)


def _build(args: argparse.Namespace) -> int:
    from .faceforge.build import build_dataset

    m = build_dataset(
        args.out,
        preset=args.preset,
        num=args.num,
        seed=args.seed,
        workers=args.workers,
        size=args.size,
    )
    print(json.dumps({"out": args.out, "counts": m["counts"]}))
    return 0


def _show(args: argparse.Namespace) -> int:
    from .show import show_dataset

    print(show_dataset(args.data, args.out, split=args.split, num=args.num, cols=args.cols))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .faceforge.build import verify_dataset

    bad = verify_dataset(args.data)
    print(json.dumps({"data": args.data, "corrupt_or_missing": bad}))
    return 1 if bad else 0
