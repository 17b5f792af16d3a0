"""Which sequence-level experts each layer picks, on real faces and prompts.

For the first ``--num`` faces of ``--split``: understanding rows (the face's codes, its first
question, its encoder features) and generation rows (its first prompt, its codes with a
``--mask-ratio`` share replaced by [MASK], as one denoising step sees them). Per layer and
group: the share of rows whose top-2 includes each expert, the mean combine weight, the mean
router probability, each gated expert's gate w (its output is ``w·h + (1−w)·S``), and the
resampler share ``Σ weight·(1−w)`` over the gated experts: how much of the layer's output
the encoder features (understanding) or the noise signal (generation) write.

A layer whose router picks Copy + Copy for a group has resampler share 0 for it; before
``loss.seq_balance`` such a route got no gradient and stayed (docs/training.md).

    python benchmarks/sequence_routing.py --data data/ff [--checkpoint MODEL] [--num 32]
"""

from __future__ import annotations

import json
import time

import torch

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.sequences import build_t2i, collate
from unif2ace.data.shards import decode_image
from unif2ace.eval.evaluate import load_records
from unif2ace.model.config import SEQ_EXPERTS_MMU, SEQ_EXPERTS_T2I
from unif2ace.model.moe_sequence import GROUP_NAMES, condition_mask
from unif2ace.model.text_decode import mmu_batch
from unif2ace.vocab import Modality


def _layer_probs(model, ids, mod, task, feats) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs_LBQ, weights_LBQ) of one forward: each layer's router on its own input."""
    probs: list[torch.Tensor] = []
    cond = condition_mask(mod, task)
    hooks = [
        layer.seq_moe_layernorm.register_forward_hook(
            lambda m, a, x, moe=layer.seq_moe: probs.append(moe.route_probs(x, cond, task))
        )
        for layer in model.layers
    ]
    try:
        with torch.no_grad():
            out = model(ids, mod, task, encoder_feats=feats, router_stats=False)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(probs), out.router.seq_weights_LBQ


@torch.no_grad()
def _summary(model, g: int, experts, probs_LBQ, weights_LBQ) -> list[dict]:
    rows = []
    for i, layer in enumerate(model.layers):
        gates = {
            q: float(layer.seq_moe.experts[f"{GROUP_NAMES[g]}_{k}"].w())
            for q, k in enumerate(experts)
            if k not in ("copy", "zero")
        }
        w = weights_LBQ[i].float()
        share = sum(float(w[:, q].mean()) * (1 - gw) for q, gw in gates.items())
        rows.append({
            "layer": i,
            "picked": [round(float((w[:, q] > 0).float().mean()), 3) for q in range(len(experts))],
            "weight": [round(float(w[:, q].mean()), 3) for q in range(len(experts))],
            "prob": [round(float(probs_LBQ[i, :, q].mean()), 3) for q in range(len(experts))],
            "gate_w": {experts[q]: round(v, 3) for q, v in gates.items()},
            "resampler_share": round(share, 3),
        })  # fmt: skip
    return rows


def main() -> None:
    ap = model_data_parser(__doc__, num=32, threads=2)
    ap.add_argument("--mask-ratio", type=float, default=0.5)
    args = ap.parse_args()
    t0 = time.time()
    pipe = load_pipeline(args)
    model, layout, tok = pipe.model, pipe.layout, pipe.text_tokenizer
    if model.layers[0].seq_moe is None:
        raise SystemExit("this model has no sequence-level MoE")
    recs = load_records(args.data, args.split, args.num, ["id", "image", "prompts", "vqa"])
    with torch.no_grad():
        codes, feats = pipe.encode_images([decode_image(r["image"]) for r in recs])
    questions = tok.encode_batch([r["vqa"][0]["question"] for r in recs])
    ids, mod, task = mmu_batch(model, layout, codes, questions)
    mmu = _layer_probs(model, ids, mod, task, feats)

    g = torch.Generator().manual_seed(0)
    masked = torch.rand(codes.shape, generator=g) < args.mask_ratio
    prompts = tok.encode_batch([r["prompts"][0] for r in recs])
    seqs = [build_t2i(layout, p, c) for p, c in zip(prompts, codes.cpu(), strict=True)]
    b = collate(seqs, layout)
    ids = b.input_ids_BT.clone()
    img = b.modality_BT == Modality.IMAGE
    ids[img] = torch.where(masked.flatten(), layout.mask_id, ids[img])
    dev = model.embed_tokens.weight.device
    t2i = _layer_probs(model, ids.to(dev), b.modality_BT.to(dev), b.task_B.to(dev), None)

    out = {"split": args.split, "faces": len(recs), "mask_ratio": args.mask_ratio,
           "groups": {}}  # fmt: skip
    for name, experts, (p, w) in (("mmu", SEQ_EXPERTS_MMU, mmu), ("t2i", SEQ_EXPERTS_T2I, t2i)):
        g_idx = GROUP_NAMES.index(name)
        rows = _summary(model, g_idx, experts, p, w)
        out["groups"][name] = {"experts": list(experts), "layers": rows}
        print(f"{name}: experts {', '.join(experts)}")
        for r in rows:
            print(json.dumps(r), flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        write_json_atomic(args.json, out, sort_keys=False)


if __name__ == "__main__":
    main()
