"""Operator count and time of one KV-cached caption-decoding step and one cached MaskGIT
step (bf16 weights, untrained, seed 0), for a model preset.

At batch 1 a decoding step is a few thousand tiny operators: its time is dispatch overhead
more than arithmetic, so the operator count per step is the figure to drive down (it does not
depend on machine load, unlike the time, which is printed beside it).

    OMP_NUM_THREADS=1 python benchmarks/bench_decode_ops.py --preset small
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from unif2ace.bench import _layout_and_model, _prompts, bench_config
from unif2ace.diffusion.samplers import maskgit_sample
from unif2ace.model import generate_text, make_image_denoiser


def top_level_ops(fn) -> int:
    """ATen operators called by ``fn`` directly (not counting their internal sub-operators)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    n = 0
    for ev in prof.events():
        if ev.name.startswith("aten::"):
            par = ev.cpu_parent
            if par is None or not par.name.startswith("aten::"):
                n += 1
    return n


def per_step(fn_n, a: int, b: int) -> tuple[float, float]:
    """(ops, seconds) per extra step: fn_n(b) minus fn_n(a), divided by b - a."""
    ops = (top_level_ops(lambda: fn_n(b)) - top_level_ops(lambda: fn_n(a))) / (b - a)
    fn_n(a)
    t0 = time.perf_counter()
    fn_n(a)
    ta = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn_n(b)
    tb = time.perf_counter() - t0
    return ops, (tb - ta) / (b - a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    bc = bench_config(args.preset)
    layout, model = _layout_and_model(bc)
    with torch.no_grad():
        model.lm_head.bias[layout.eos_id] = -1e4  # untrained: never stop early
    model = model.to(torch.bfloat16).eval()
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, layout.codebook_size, (args.batch, bc.image_tokens), generator=g)
    questions = _prompts(layout, args.batch, bc.question_len, seed=3)

    def caption(n: int) -> None:
        generate_text(model, layout, codes, questions, max_new_tokens=n, use_cache=True)

    prompts = _prompts(layout, args.batch, 62, seed=4)

    K = layout.codebook_size

    def image(n: int) -> None:
        den = make_image_denoiser(model, layout, prompts, True, with_uncond=True)
        init = torch.full((args.batch, bc.image_tokens), K, dtype=torch.long)
        maskgit_sample(
            den, init, mask_token=K, codebook_size=K, num_steps=n, guidance_scale=2.0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    caption(2)
    image(1)
    dec_ops, dec_s = per_step(caption, 4, 12)
    gen_ops, gen_s = per_step(image, 2, 4)
    res = {
        "preset": args.preset,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "decode_ops_per_token": dec_ops,
        "decode_ms_per_token": round(dec_s * 1e3, 2),
        "maskgit_ops_per_step": gen_ops,
        "maskgit_ms_per_step": round(gen_s * 1e3, 1),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
