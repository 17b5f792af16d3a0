"""FaceForge build throughput: records/s (render + captions + VQA + PNG + parquet), JSON out.

python benchmarks/bench_build.py --num 400 --size 128 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from unif2ace.data.faceforge.build import build_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rows = []
    for w in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            build_dataset(
                tmp,
                preset="small",
                num=args.num,
                size=args.size,
                workers=w,
                shard_size=25,
                progress=False,
            )
            dt = time.perf_counter() - t0
        rows.append(
            {
                "workers": w,
                "records": args.num,
                "seconds": round(dt, 2),
                "records_per_s": round(args.num / dt, 1),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "faceforge_build",
                "size": args.size,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
