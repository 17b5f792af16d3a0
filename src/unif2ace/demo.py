"""``unif2ace demo``: the main job on bundled defaults, no downloads.

Today it builds a small FaceForge set and draws its labelled contact sheet; once a bundled
model exists it will also generate faces from prompts and caption test faces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser("demo", help="run the main job on bundled defaults")
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--num", type=int, default=64, help="faces to build (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .data.faceforge.build import build_dataset
    from .data.show import show_dataset

    out = Path(args.out)
    t0 = time.time()
    data = out / f"faceforge-{args.num}-seed{args.seed}"
    manifest = build_dataset(data, preset="small", num=args.num, seed=args.seed, progress=False)
    sheet = show_dataset(data, out / "faceforge_contact_sheet.png", split="train", num=64)
    print(
        json.dumps(
            {
                "data": str(data),
                "counts": manifest["counts"],
                "contact_sheet": str(sheet),
                "seconds": round(time.time() - t0, 1),
            }
        )
    )
    return 0
