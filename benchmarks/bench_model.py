"""Model speed and memory in one run: matmul peak, training tok/s and MFU (bf16 vs fp32),
text->face images/s (prompt cache on/off), caption tok/s (KV cache on/off), peak memory.

Thin wrapper around ``unif2ace bench`` (same code, same options; see docs/benchmarks.md):

    python benchmarks/bench_model.py --json out.json          # small preset, ~2-4 min
    python benchmarks/bench_model.py --threads 1 --quick      # seconds (tiny preset)
"""

from __future__ import annotations

import sys

from unif2ace.bench import main

if __name__ == "__main__":
    sys.exit(main())
