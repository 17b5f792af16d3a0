"""Is what a yes/no question asks about in the transformer's state where the answer is read?

For the first ``--num`` faces of ``--split`` and each binary attribute of ``--attributes``,
builds the understanding prefix ``<|mmu|> <|soi|> codes <|eoi|> bos question`` with FaceForge's
own first wording ("Is she wearing a hat?") followed by the tokens " Yes" and " No" share
(the byte-level BPE writes both as a lone space and then the word), runs it with the face's
encoder features, and keeps every layer's output at the last position — the state "Yes" or
"No" is predicted from. A linear probe (logistic regression, class-balanced, L2; fit on 70 % of the
faces, scored on the other 30 %) per layer then says how well a straight line reads the
attribute there, as balanced accuracy (0.5 = nothing). A reference row probes the semantic
encoder's features, mean-pooled.

Read together with ``vqa_attribute_recall.py``: an attribute the last layer's state carries
(probe well above 0.5) but the answers do not follow is lost in the read-out, not in the
reading of the image.

    python benchmarks/answer_state_probe.py --data data/ff [--checkpoint MODEL] \\
        [--split train --num 1200] [--attributes hat,smile] [--json out.json]
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.faceforge.vqa import BINARY_Q
from unif2ace.data.ontology import visible_labels
from unif2ace.data.sequences import encode_answer
from unif2ace.data.shards import decode_image
from unif2ace.eval.evaluate import load_records
from unif2ace.model.text_decode import mmu_batch
from vqa_attribute_recall import question


def probe(X: torch.Tensor, y: torch.Tensor, seed: int = 0, l2: float = 1e-2) -> float:
    """Balanced accuracy on a held-out 30 % of a class-balanced linear probe of ``y`` on
    ``X`` (nan when a class is missing from either part)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[: int(0.7 * len(y))], perm[int(0.7 * len(y)) :]
    if not (0 < y[tr].sum() < len(tr)) or not (0 < y[te].sum() < len(te)):
        return float("nan")
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-5
    X = (X - mu) / sd
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    pos = y[tr].mean()
    wt = torch.where(y[tr] > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        ce = F.binary_cross_entropy_with_logits(X[tr] @ w + b, y[tr], reduction="none")
        loss = (wt * ce).mean() + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        said = (X[te] @ w + b) > 0
    t = y[te] > 0
    return float(0.5 * (said[t].float().mean() + (~said[~t]).float().mean()))


def main() -> None:
    ap = model_data_parser(__doc__, num=1000)
    ap.add_argument("--attributes", default="hat,earrings,smile,beard")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    t0 = time.time()
    attrs = args.attributes.split(",")
    unknown = [a for a in attrs if a not in BINARY_Q]
    if unknown:
        raise SystemExit(f"--attributes: not binary FaceForge attributes: {unknown}")
    pipe = load_pipeline(args)
    recs = load_records(args.data, args.split, args.num, ["id", "image", "attributes"])
    if "labels" not in recs[0]:
        raise SystemExit(f"{args.data}: records carry no attribute labels (FaceForge data only)")
    model, tok = pipe.model, pipe.text_tokenizer
    yes, no = encode_answer(tok, "Yes"), encode_answer(tok, "No")
    n = 0
    while n < min(len(yes), len(no)) and yes[n] == no[n]:
        n += 1
    shared = yes[:n]  # the tokens both answers start with
    last: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: last.__setitem__(k, o[0][:, -1].float()))
        for k, layer in enumerate(model.layers)
    ]
    states = {a: [[] for _ in model.layers] for a in attrs}
    pooled = []
    try:
        for s in range(0, len(recs), args.batch_size):
            rr = recs[s : s + args.batch_size]
            with torch.no_grad():
                codes, feats = pipe.encode_images([decode_image(r["image"]) for r in rr])
                if feats is not None and "semantic" in feats:
                    pooled.append(feats["semantic"].float().mean(1))
                for a in attrs:
                    female = [r["labels"].get("gender") == "female" for r in rr]
                    qs = [tok.encode(question(a, f)) + shared for f in female]
                    ids, mod, task = mmu_batch(model, pipe.layout, codes, qs)
                    model(ids, mod, task, encoder_feats=feats, last_only=True)
                    for k in range(len(model.layers)):
                        states[a][k].append(last[k])
    finally:
        for h in hooks:
            h.remove()
    out = {"split": args.split, "faces": len(recs), "checkpoint": args.checkpoint or "bundled",
           "attributes": {}}  # fmt: skip
    print(f"{'attribute':12s} {'has':>4s} {'encoder':>8s} " +
          " ".join(f"{'L' + str(k):>6s}" for k in range(len(model.layers))))  # fmt: skip
    for a in attrs:
        truth = [visible_labels(r["labels"]).get(a) for r in recs]
        keep = torch.tensor([t is not None for t in truth])
        y = torch.tensor([bool(t) for t in truth], dtype=torch.float32)[keep]
        row = {"faces": int(keep.sum()), "has": int(y.sum())}
        row["encoder_semantic_mean"] = probe(torch.cat(pooled)[keep], y) if pooled else None
        row["layers"] = [probe(torch.cat(states[a][k])[keep], y) for k in range(len(model.layers))]
        out["attributes"][a] = row
        enc = row["encoder_semantic_mean"]
        print(f"{a:12s} {row['has']:4d} {enc if enc is not None else float('nan'):8.3f} " +
              " ".join(f"{v:6.3f}" for v in row["layers"]))  # fmt: skip
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        write_json_atomic(args.json, out)


if __name__ == "__main__":
    main()
