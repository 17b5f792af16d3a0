"""``unif2ace bench``: speed and memory of the model on this machine, in one run, JSON out.

Measured in one process, so every ratio compares numbers taken under the same conditions
(TARGETS.md: "always report ratios measured in one run"):

* ``matmul_peak``: best bf16 and fp32 square-matmul TFLOP/s (n = 512..2048) — the roofline
  every utilisation figure below is relative to.
* ``train``: tokens/s of forward + backward + AdamW step (D3Diff loss + balance loss) on pure
  text-to-image batches (8 x 323 tokens for ``small``), bf16 autocast vs fp32, and the
  model-FLOP utilisation (MFU) against the same-run bf16 peak.
* ``generate``: text->face images/s (MaskGIT sampler, guidance on) with and without the
  prompt cache, and the fraction of the FLOP limit of the image positions.
* ``caption``: tokens/s of caption decoding with and without the KV cache, batch 1 and batched.
* per-section peak resident memory (VmHWM, reset at each section start).

Weights are untrained (speed does not depend on their values; eos is suppressed so every
caption row decodes exactly ``new_tokens`` tokens). Seeds are fixed; warm-up runs are not
timed; each timed figure is the median of ``repeats`` runs.

Shape legend: B batch, T sequence length, N image positions, K codebook size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from .bench_env import (  # noqa: F401  (re-exported for callers of unif2ace.bench)
    MALLOC_ENV,
    PeakRSS,
    cpu_info,
    environment,
    matmul_peak,
    timed,
)

DESCRIPTION = (
    "Measure the model's speed and memory on this machine in one run: matmul peak, training "
    "tok/s and MFU (bf16 vs fp32), images/s with/without the prompt cache, caption tok/s "
    "with/without the KV cache, peak memory. JSON on stdout; see docs/benchmarks.md."
)
FLOPS_COUNTS = (
    "scale.training_flops_per_token: 6 x (attention projections + shared and top-K routed "
    "experts + router + output head over the computed vocabulary columns) + 12 x L x D x T "
    "for the full T x T attention scores; embeddings, norms, biases, the sequence-level "
    "resamplers and the loss are not counted"
)


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run (``bench_config`` gives the full and the quick one)."""

    preset: str = "base"
    text_vocab_size: int = 4096  # the text BPE's default size
    codebook_size: int = 4096  # the small image tokenizer: 12 LFQ bits
    image_tokens: int = 256  # 16 x 16 code grid
    text_len: int = 65  # <|t2i|> bos prompt(62) eos: 65 + <|soi|> + 256 + <|eoi|> = 323
    train_batch: int = 8
    train_warmup: int = 2
    train_repeats: int = 6
    fp32_repeats: int = 3
    gen_batch: int = 4
    gen_steps: int = 16
    guidance_scale: float = 2.0
    gen_repeats: int = 3
    question_len: int = 16  # mmu soi image(256) eoi bos question(16) = 276-token prefix
    new_tokens: int = 32
    caption_batch: int = 16
    caption_repeats: int = 3
    caption_uncached_repeats: int = 2  # batch 16 without the cache is the slowest case
    matmul_sizes: tuple[int, ...] = (512, 1024, 1536, 2048)
    matmul_repeats: int = 5
    matmul_flops: float = 2e10  # work per timed matmul run


def bench_config(preset: str = "base", quick: bool = False) -> BenchConfig:
    """Full settings for ``preset`` (TARGETS.md's), or ``quick``: tiny model, tiny sizes."""
    from .errors import UserError
    from .model import model_preset

    model_preset(preset)  # a wrong name fails now, with the list of presets
    if preset not in ("tiny", "small", "base"):
        raise UserError(
            f"preset {preset!r} is too large to benchmark on a CPU; use base, small or tiny"
        )
    if not quick:
        return BenchConfig(preset=preset)
    return BenchConfig(
        preset="tiny",
        text_vocab_size=128,
        codebook_size=64,
        image_tokens=16,
        text_len=10,
        train_batch=2,
        train_warmup=1,
        train_repeats=2,
        fp32_repeats=2,
        gen_batch=2,
        gen_steps=4,
        gen_repeats=2,
        question_len=4,
        new_tokens=4,
        caption_batch=3,
        caption_repeats=2,
        caption_uncached_repeats=2,
        matmul_sizes=(128, 256),
        matmul_repeats=2,
        matmul_flops=2e8,
    )


# --- sections ----------------------------------------------------------------------------
def _layout_and_model(bc: BenchConfig):
    import torch

    from .model import build_model, model_preset
    from .vocab import VocabLayout

    layout = VocabLayout(bc.text_vocab_size, bc.codebook_size)
    torch.manual_seed(0)
    return layout, build_model(model_preset(bc.preset), layout)


def _t2i_batch(bc: BenchConfig, layout, g):
    """B full-length generation sequences (no padding) and their clean codes_BN."""
    import torch

    from .data.sequences import build_t2i, collate

    B, n_prompt = bc.train_batch, bc.text_len - 3
    prompts = torch.randint(0, layout.text_vocab_size, (B, n_prompt), generator=g)
    codes_BN = torch.randint(0, layout.codebook_size, (B, bc.image_tokens), generator=g)
    seqs = [
        build_t2i(layout, p.tolist(), c, text_len=bc.text_len)
        for p, c in zip(prompts, codes_BN, strict=True)
    ]
    return collate(seqs, layout), codes_BN


def _train_step_fn(model, opt, batch, codes_BN, layout, g, autocast: bool):
    """One optimiser step: corrupt -> forward (image-code logits) -> D3Diff + balance ->
    backward -> AdamW."""
    import torch

    from .diffusion.corruption import corrupt
    from .diffusion.losses import d3diff_loss

    K, N = layout.codebook_size, codes_BN.shape[1]
    first = int(batch.image_mask_BT[0].nonzero()[0])  # same image columns in every row
    vs = (layout.image_offset, layout.image_offset + K)

    def step() -> float:
        cor = corrupt(codes_BN, mask_token=K, generator=g)
        img_ids = torch.where(cor.mask_BN, layout.mask_id, layout.codes_to_ids(codes_BN))
        ids = batch.input_ids_BT.clone()
        ids[:, first : first + N] = img_ids
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(ids, batch.modality_BT, batch.task_B, cor.noise_level_B, vocab_slice=vs)
            logits_BNK = out.logits_BTV[:, first : first + N]
            loss = d3diff_loss(
                logits_BNK, codes_BN, cor.mask_BN, cor.mask_ratio_B, cor.mask_ratio_rate_B
            ).loss
            loss = loss + 0.01 * (out.balance_loss + out.seq_balance_loss)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _train_variant(bc: BenchConfig, autocast: bool, repeats: int, bf16_peak: float) -> dict:
    """Time optimiser steps of a fresh, identically seeded model (bf16 autocast or fp32)."""
    import torch

    from .model import training_flops_per_token

    with PeakRSS() as mem:
        layout, model = _layout_and_model(bc)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        g = torch.Generator().manual_seed(0)
        batch, codes_BN = _t2i_batch(bc, layout, g)
        step = _train_step_fn(model, opt, batch, codes_BN, layout, g, autocast)
        t = timed(step, warmup=bc.train_warmup, repeats=repeats)
    B, T = batch.input_ids_BT.shape
    flops = training_flops_per_token(model.cfg, layout.codebook_size, T)
    tok_s = B * T / t["median_s"]
    return {
        "seq_len": T,
        "tokens_per_step": B * T,
        "flops_per_token": flops,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_s": round(tok_s, 1),
        "step_s": round(t["median_s"], 4),
        "repeats": t["repeats"],
        "warmup": bc.train_warmup,
        "mfu": round(tok_s * flops / (bf16_peak * 1e12), 4),
        **mem.record(),
    }


def bench_training(bc: BenchConfig, bf16_peak_tflops: float) -> dict:
    """Training tokens/s and MFU, bf16 autocast and fp32 (a fresh identical model each)."""
    res: dict = {"batch": bc.train_batch, "batch_kind": "pure T2I (generation sequences)"}
    res["bf16"] = _train_variant(bc, True, bc.train_repeats, bf16_peak_tflops)
    gc.collect()
    res["fp32"] = _train_variant(bc, False, bc.fp32_repeats, bf16_peak_tflops)
    for key in ("seq_len", "tokens_per_step", "flops_per_token", "params"):
        res[key] = res["bf16"].pop(key)
        res["fp32"].pop(key)
    res["bf16_over_fp32"] = round(res["bf16"]["tokens_per_s"] / res["fp32"]["tokens_per_s"], 3)
    res["flops_per_token_counts"] = FLOPS_COUNTS + "; head columns = the K image codes"
    return res


def _prompts(layout, n: int, length: int, seed: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, layout.text_vocab_size, (n, length), generator=g).tolist()


def _gen_case(model, layout, prompts, use_cache: bool, bc: BenchConfig) -> dict:
    """Time one batch of guided MaskGIT sampling (warm-up: the same batch with 2 steps)."""
    import torch

    from .diffusion.samplers import maskgit_sample
    from .model import make_image_denoiser

    K, B = layout.codebook_size, len(prompts)
    calls: list[int] = []

    def run(steps: int = bc.gen_steps) -> None:
        den = make_image_denoiser(model, layout, prompts, use_cache, with_uncond=True)
        init = torch.full((B, bc.image_tokens), K, dtype=torch.long)
        out = maskgit_sample(
            den, init, mask_token=K, codebook_size=K, num_steps=steps,
            guidance_scale=bc.guidance_scale, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        calls.append(out.num_network_calls)

    run(2)
    t = timed(run, warmup=0, repeats=bc.gen_repeats)
    return {
        "images_per_s": round(B / t["median_s"], 3),
        "run_s": round(t["median_s"], 4),
        "repeats": t["repeats"],
        "network_calls": calls[-1],
    }


def bench_generation(bc: BenchConfig, bf16_peak_tflops: float) -> dict:
    """Images/s of MaskGIT sampling with guidance, bf16 weights, prompt cache on and off."""
    import torch

    from .model import training_flops_per_token

    res: dict = {"batch": bc.gen_batch, "steps": bc.gen_steps, "guidance_scale": bc.guidance_scale}
    with PeakRSS() as mem:
        layout, model = _layout_and_model(bc)
        model = model.to(torch.bfloat16).eval()
        prompts = _prompts(layout, bc.gen_batch, bc.text_len - 3, seed=1)
        res["cached"] = _gen_case(model, layout, prompts, True, bc)
        res["uncached"] = _gen_case(model, layout, prompts, False, bc)
    # FLOP limit of the image positions: per call, 2 rows per image (guidance) x N positions,
    # each a forward over S = prompt + image keys (1/3 of the fwd+bwd count), head over K.
    K, N = layout.codebook_size, bc.image_tokens
    per_pos = training_flops_per_token(model.cfg, K, bc.text_len + 1 + N) / 3.0
    flops_image = res["cached"]["network_calls"] * 2 * N * per_pos
    limit = bf16_peak_tflops * 1e12 / flops_image
    res.update(flops_per_image=flops_image, flop_limit_images_per_s=round(limit, 3))
    for key in ("cached", "uncached"):
        res[key]["flop_limit_fraction"] = round(res[key]["images_per_s"] / limit, 4)
    res["prompt_cache_speedup"] = round(res["uncached"]["run_s"] / res["cached"]["run_s"], 3)
    res.update(mem.record())
    return res


def _caption_case(model, layout, codes_BN, questions, use_cache: bool, bc: BenchConfig) -> dict:
    """Time greedy decoding of ``new_tokens`` tokens for one batch (warm-up: 2 tokens)."""
    from .model import generate_text

    made: list[int] = []

    def run(n: int = bc.new_tokens) -> None:
        kw = dict(max_new_tokens=n, use_cache=use_cache)
        out = generate_text(model, layout, codes_BN, questions, **kw)
        made.append(sum(len(t) for t in out.tokens))

    run(2)  # warm-up with the real shapes (prefill + one step), not timed
    reps = bc.caption_repeats if use_cache else bc.caption_uncached_repeats
    t = timed(run, warmup=0, repeats=reps)
    return {
        "batch": codes_BN.shape[0],
        "tokens_per_s": round(made[-1] / t["median_s"], 1),
        "tokens": made[-1],
        "run_s": round(t["median_s"], 4),
        "repeats": t["repeats"],
    }


def bench_captions(bc: BenchConfig) -> dict:
    """Caption tokens/s (greedy, bf16 weights), KV cache on and off, batch 1 and batched."""
    import torch

    res: dict = {"new_tokens": bc.new_tokens, "question_len": bc.question_len}
    res["prefix_len"] = 4 + bc.image_tokens + bc.question_len
    with PeakRSS() as mem:
        layout, model = _layout_and_model(bc)
        with torch.no_grad():  # untrained weights: keep eos from ending rows early
            model.lm_head.bias[layout.eos_id] = -1e4
        model = model.to(torch.bfloat16).eval()
        g = torch.Generator().manual_seed(2)
        for label, B in (("b1", 1), ("batched", bc.caption_batch)):
            codes = torch.randint(0, layout.codebook_size, (B, bc.image_tokens), generator=g)
            questions = _prompts(layout, B, bc.question_len, seed=3)
            for use_cache in (True, False):
                key = f"{label}_{'cached' if use_cache else 'uncached'}"
                res[key] = _caption_case(model, layout, codes, questions, use_cache, bc)
    for label in ("b1", "batched"):
        speed = res[f"{label}_uncached"]["run_s"] / res[f"{label}_cached"]["run_s"]
        res[f"kv_cache_speedup_{label}"] = round(speed, 3)
    res.update(mem.record())
    return res


# --- the run -----------------------------------------------------------------------------
def run_bench(bc: BenchConfig, threads: int | None = None, log=None) -> dict:
    """All sections in one process; returns the JSON-ready result."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    res: dict = {"benchmark": "unif2ace_model", "config": asdict(bc), "env": environment()}
    res["weights"] = "untrained (random init, seed 0); speed does not depend on the values"
    log("matmul peak ...")
    res["matmul_peak"] = matmul_peak(bc.matmul_sizes, bc.matmul_repeats, bc.matmul_flops)
    peak = res["matmul_peak"]["bf16_tflops"]
    log("training (bf16 autocast, fp32) ...")
    res["train"] = bench_training(bc, peak)
    log("text->face generation (prompt cache on/off) ...")
    res["generate"] = bench_generation(bc, peak)
    log("caption decoding (KV cache on/off) ...")
    res["caption"] = bench_captions(bc)
    res["env"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    sections = (res["train"]["bf16"], res["train"]["fp32"], res["generate"], res["caption"])
    res["peak_rss_mb"] = max(sec["peak_rss_mb"] for sec in sections)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["summary"] = summary(res)
    return res


def summary(res: dict) -> dict:
    """The headline numbers, flat."""
    tr, ge, ca, mm = res["train"], res["generate"], res["caption"], res["matmul_peak"]
    return {
        "matmul_bf16_tflops": mm["bf16_tflops"],
        "matmul_fp32_tflops": mm["fp32_tflops"],
        "train_bf16_tokens_per_s": tr["bf16"]["tokens_per_s"],
        "train_fp32_tokens_per_s": tr["fp32"]["tokens_per_s"],
        "train_bf16_mfu": tr["bf16"]["mfu"],
        "train_fp32_mfu": tr["fp32"]["mfu"],
        "train_bf16_over_fp32": tr["bf16_over_fp32"],
        "generate_images_per_s": ge["cached"]["images_per_s"],
        "generate_images_per_s_uncached": ge["uncached"]["images_per_s"],
        "generate_flop_limit_fraction": ge["cached"]["flop_limit_fraction"],
        "prompt_cache_speedup": ge["prompt_cache_speedup"],
        "caption_b1_tokens_per_s": ca["b1_cached"]["tokens_per_s"],
        "caption_b1_tokens_per_s_uncached": ca["b1_uncached"]["tokens_per_s"],
        "caption_batched_tokens_per_s": ca["batched_cached"]["tokens_per_s"],
        "caption_batched_tokens_per_s_uncached": ca["batched_uncached"]["tokens_per_s"],
        "kv_cache_speedup_b1": ca["kv_cache_speedup_b1"],
        "kv_cache_speedup_batched": ca["kv_cache_speedup_batched"],
        "train_peak_rss_mb": max(tr["bf16"]["peak_rss_mb"], tr["fp32"]["peak_rss_mb"]),
        "peak_rss_mb": res["peak_rss_mb"],
    }


def format_table(res: dict) -> str:
    """A short human-readable table of the summary."""
    env = res["env"]
    head = (
        f"unif2ace bench: preset {res['config']['preset']}, torch {env['torch']}, "
        f"{env['torch_threads']} thread(s), {env['cpu_model']}, load avg "
        f"{env['load_avg_start'][0]} -> {env['load_avg_end'][0]}, {res['wall_s']} s"
    )
    rows = [f"  {k:<40} {v}" for k, v in res["summary"].items()]
    return "\n".join([head, *rows])


# --- command line ------------------------------------------------------------------------
def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="base",
        help="model preset (default base: TARGETS.md's d512 x 8-layer reference size)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny model, few iterations (tests)")
    p.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="OUT",
        help="also write the JSON object to OUT (the JSON always goes to stdout)",
    )  # fmt: skip
    p.add_argument("--json-only", action="store_true", help="no table and no progress on stderr")
    p.add_argument(
        "--no-malloc-env", action="store_true",
        help="run in this process as is, without re-running with the glibc malloc settings",
    )  # fmt: skip


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser(
        "bench", help="measure model speed and memory on this machine (JSON)",
        description=DESCRIPTION,
    )  # fmt: skip
    add_bench_args(p)
    p.set_defaults(func=run_command)


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--preset", args.preset, "--no-malloc-env"]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    for flag in ("quick", "json_only"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    if args.json:
        argv += ["--json", args.json]
    return argv


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``unif2ace bench``."""
    from .errors import UserError

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    bc = bench_config(args.preset, args.quick)
    if not args.no_malloc_env and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        env = {**os.environ, **MALLOC_ENV}
        cmd = [sys.executable, "-m", "unif2ace.bench", *_child_argv(args)]
        return subprocess.run(cmd, env=env).returncode
    log = None if args.json_only else (lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    res = run_bench(bc, args.threads, log)
    text = json.dumps(res, indent=2)
    print(text, flush=True)
    if args.json and args.json != "-":
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if not args.json_only:
        print(format_table(res), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m unif2ace.bench`` (the child process of ``unif2ace bench``)."""
    from .errors import UserError

    p = argparse.ArgumentParser(prog="unif2ace bench", description=DESCRIPTION)
    add_bench_args(p)
    args = p.parse_args(argv)
    try:
        return run_command(args)
    except UserError as err:
        print(f"unif2ace: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
