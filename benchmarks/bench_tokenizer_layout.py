"""Tokenizer training step: contiguous (NCHW) vs channels_last memory format, A/B in one run.

Alternates the two layouts on the same model, optimizer and batch (the small preset, batch 16
at 128 px, bf16 autocast, L1 + entropy loss) so both see the same machine conditions; prints
JSON with per-round seconds per step and the ratio of the best times.

    python benchmarks/bench_tokenizer_layout.py [--threads 1] [--rounds 4] [--preset small]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unif2ace.tokenizer.autoencoder import LFQAutoencoder, preset_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = preset_config(args.preset)
    model = LFQAutoencoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch_size, 3, cfg.resolution, cfg.resolution) * 2 - 1

    def step(fmt: torch.memory_format) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x.contiguous(memory_format=fmt))
        loss = (out.recon_BCHW.float() - x).abs().mean() + 0.02 * out.lfq.entropy_loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    times: dict[str, list[float]] = {k: [] for k in layouts}
    for _ in range(args.rounds):
        for name, fmt in layouts.items():
            model.to(memory_format=fmt)
            step(fmt)  # warm-up after the layout change
            t0 = time.perf_counter()
            step(fmt)
            step(fmt)
            times[name].append(round((time.perf_counter() - t0) / 2, 4))
    best = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "preset": args.preset,
                "batch": args.batch_size,
                "threads": args.threads,
                "seconds_per_step": times,
                "contiguous_over_channels_last": round(
                    best["contiguous"] / best["channels_last"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
