"""How much each loss term pulls on the shared weights: gradient norms and cosines per term.

One forward/backward per term on the same mixed micro-batches (same corruption: the batch's
noise seed), from a trained checkpoint, bf16 autocast as in training: the D3Diff mask term,
its score term (alpha x score, the difference of the full D3Diff loss and the mask term),
the caption and the VQA text losses. Under one AdamW on the sum, a term whose gradient is
much smaller than the others' moves the shared weights little (clipping scales the sum).

    python benchmarks/task_gradients.py --data data/ff --batches 4 [--checkpoint RUN] [overrides]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from unif2ace import bundled
from unif2ace.train.task import MixedTaskData, unified_loss
from unif2ace.train.unified import build_initial_model, load_run_config, prepare


def _grad_vector(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.detach().float().flatten() if p.grad is not None
                      else torch.zeros(p.numel()) for p in model.parameters()])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default="bundled", help="init.checkpoint (default: bundled)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("overrides", nargs="*", help="run-config overrides (data ratios ...)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = [f"{k}=bundled" for k in bundled.CONFIG_PARTS if k != "init.checkpoint"]
    over = [f"data.data={args.data}", *parts, f"init.checkpoint={args.checkpoint}", *args.overrides]
    cfg = load_run_config("small", over)
    layout, tok, _, codes = prepare(cfg)
    model = build_initial_model(cfg, layout).train()
    data = MixedTaskData(cfg.data, layout, tok, codes, args.micro, cfg.train.seed)
    base = dataclasses.replace(cfg.loss, balance=0.0)
    mask_only = dataclasses.replace(base.d3diff, mode="mask_only")
    terms = {
        "t2i_mask": dataclasses.replace(base, w_mmu=0.0, d3diff=mask_only),
        "t2i_d3diff": dataclasses.replace(base, w_mmu=0.0),
        "caption": dataclasses.replace(base, w_t2i=0.0, w_vqa=0.0),
        "vqa": dataclasses.replace(base, w_t2i=0.0, w_caption=0.0),
    }
    sums: dict[str, torch.Tensor] = {}
    t0 = time.time()
    for i, batch in enumerate(data(0, 0)):
        if i == args.batches:
            break
        for name, lc in terms.items():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = unified_loss(model, batch, layout, lc).loss
            g = _grad_vector(model, loss)
            sums[name] = sums.get(name, 0) + g
    g = {k: v / args.batches for k, v in sums.items()}
    g["t2i_score"] = g["t2i_d3diff"] - g["t2i_mask"]
    names = ["t2i_mask", "t2i_score", "t2i_d3diff", "caption", "vqa"]
    norms = {k: float(g[k].norm()) for k in names}
    cos = {f"{a}|{b}": float(torch.nn.functional.cosine_similarity(g[a], g[b], dim=0))
           for i, a in enumerate(names) for b in names[i + 1:]}  # fmt: skip
    out = {"batches": args.batches, "micro_batch": args.micro, "grad_norm": norms,
           "cosine": cos, "seconds": round(time.time() - t0, 1)}  # fmt: skip
    print(json.dumps(out, indent=2))
    if args.json:
        from unif2ace.atomic import write_json_atomic

        write_json_atomic(args.json, out, sort_keys=False)


if __name__ == "__main__":
    main()
