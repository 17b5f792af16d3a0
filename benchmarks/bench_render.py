"""FaceForge render throughput: images per second on one core at 64, 128 and 256 px.

Usage: python benchmarks/bench_render.py [--num N] [--sizes 64,128]

Labels and identities are sampled up front (timed separately), then ``render_face`` runs in
this single process, so the numbers are per core. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from unif2ace.data.faceforge.labels import sample_labels
from unif2ace.data.faceforge.render import render_face, sample_identity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=200, help="images per size")
    ap.add_argument("--sizes", default="64,128", help="comma-separated sizes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    items = [(sample_labels(rng), sample_identity(rng)) for _ in range(args.num)]
    sample_s = time.perf_counter() - t0
    out = {
        "num": args.num,
        "sample_labels_per_s": round(args.num / sample_s, 1),
        "images_per_s_per_core": {},
        "ms_per_image": {},
    }
    for size in (int(s) for s in args.sizes.split(",")):
        render_face(*items[0], size=size, seed=0)  # warm-up (imports, caches)
        t0 = time.perf_counter()
        for i, (labels, idn) in enumerate(items):
            render_face(labels, idn, size=size, seed=i)
        dt = time.perf_counter() - t0
        out["images_per_s_per_core"][str(size)] = round(args.num / dt, 1)
        out["ms_per_image"][str(size)] = round(1000 * dt / args.num, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
