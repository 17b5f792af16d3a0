"""Image-tokenizer speed: encode / decode images per second and training step time,
fp32 vs bf16 autocast, plus the machine's matmul peak measured in the same run.

    python benchmarks/bench_tokenizer.py --preset small --batch-size 16 --json out.json
    python benchmarks/bench_tokenizer.py --preset small --train-steps 20   # step-time plan

Uses random images (speed does not depend on content); an untrained or trained tokenizer
(``--tokenizer DIR``) gives the same timings for the same shape.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from unif2ace.tokenizer.autoencoder import LFQAutoencoder, build_tokenizer
from unif2ace.tokenizer.train_image import TrainConfig, make_optimizer, tokenizer_loss


def matmul_tflops(dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def _timed(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


@torch.no_grad()
def bench_codec(model: LFQAutoencoder, batch: int, iters: int, warmup: int, bf16: bool) -> dict:
    r = model.config.resolution
    x = torch.rand(batch, 3, r, r) * 2 - 1
    codes = model.encode(x)

    def enc():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.encode(x)

    def dec():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.decode(codes)

    return {
        "encode_img_per_s": batch / _timed(enc, iters, warmup),
        "decode_img_per_s": batch / _timed(dec, iters, warmup),
    }


def bench_train(model: LFQAutoencoder, batch: int, steps: int, bf16: bool) -> dict:
    cfg = TrainConfig(batch_size=batch, bf16=bf16)
    opt = make_optimizer(model, cfg)
    r = model.config.resolution
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, r, r, generator=g) * 2 - 1
    times = []
    model.train()
    for _ in range(steps):
        t = time.perf_counter()
        loss, _ = tokenizer_loss(model, x, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    steady = sorted(times[2:] or times)
    med = steady[len(steady) // 2]
    return {"step_s_median": med, "step_s_first": times[0], "train_img_per_s": batch / med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--tokenizer", default=None, help="trained tokenizer folder (optional)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--train-steps", type=int, default=0, help="also time N training steps")
    ap.add_argument("--json", default=None, help="write results to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = (
        LFQAutoencoder.from_pretrained(args.tokenizer)
        if args.tokenizer
        else build_tokenizer(args.preset)
    ).eval()
    cfg = model.config
    result = {
        "preset": args.preset if not args.tokenizer else args.tokenizer,
        "config": cfg.to_dict(),
        "tokens_per_image": cfg.grid**2,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "matmul_tflops": {
            "fp32": matmul_tflops(torch.float32),
            "bf16": matmul_tflops(torch.bfloat16),
        },
    }
    for name, bf16 in (("fp32", False), ("bf16", True)):
        result[name] = bench_codec(model, args.batch_size, args.iters, args.warmup, bf16)
        if args.train_steps:
            result[name].update(bench_train(model, args.batch_size, args.train_steps, bf16))
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
