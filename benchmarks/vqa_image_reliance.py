"""Which image input the answers rest on: the image codes or the encoder features.

The model sees an image twice in an understanding sequence: as its tokenizer codes (the
image positions) and as the sequence-level experts' encoder features (the resampler's keys
and values). For the first ``--num`` faces of ``--split`` and each face's own VQA pairs, this
scores the log-probability of the reference answer (teacher-forced, as VQAScore) with

* both inputs from the face;
* the codes of another face (the next one), the face's own encoder features;
* the face's own codes, the encoder features of another face;
* both from another face (what the question alone gives with a face's worth of context);
* the face's own codes, and another face's, with the features of a uniform grey image (what
  ``data.encoder_dropout`` trains with): how much the codes alone carry.

An input the model reads costs log-probability when it is swapped; one it ignores costs none.

    python benchmarks/vqa_image_reliance.py --data data/ff [--checkpoint MODEL] [--num 64]
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.sequences import encode_answer
from unif2ace.data.shards import decode_image
from unif2ace.eval.evaluate import load_records
from unif2ace.model.text_decode import answer_logprob


def main() -> None:
    ap = model_data_parser(__doc__, num=64)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    t0 = time.time()
    pipe = load_pipeline(args)
    recs = load_records(args.data, args.split, args.num, ["id", "image", "vqa"])
    if len(recs) < 2:
        raise SystemExit("need at least 2 faces (another face's inputs are swapped in)")
    rows = [(i, qa) for i, r in enumerate(recs) for qa in r["vqa"]]
    tok = pipe.text_tokenizer
    q_ids = tok.encode_batch([qa["question"] for _, qa in rows])
    ans = [encode_answer(tok, qa["answer"]) for _, qa in rows]
    face = [i for i, _ in rows]
    with torch.no_grad():
        codes, feats = pipe.encode_images([decode_image(r["image"]) for r in recs])
    other = torch.roll(torch.arange(len(recs)), -1)  # face i gets face i+1's input

    def logp(c, f) -> np.ndarray:
        out: list[float] = []
        for s in range(0, len(rows), args.batch_size):
            e = slice(s, s + args.batch_size)
            lp = answer_logprob(pipe.model, pipe.layout, c, q_ids[e], ans[e], encoder_feats=f,
                                image_index=face[e])  # fmt: skip
            out += lp.tolist()
        return np.asarray(out)

    swapped = None if feats is None else {k: v[other] for k, v in feats.items()}
    variants = {
        "own codes, own features": (codes, feats),
        "other codes, own features": (codes[other], feats),
        "own codes, other features": (codes, swapped),
        "other codes, other features": (codes[other], swapped),
    }
    if feats is not None:
        r = pipe.sampling.encoder_resolution
        with torch.no_grad():
            grey = pipe.model.encode_images(torch.full((len(recs), 3, r, r), 0.5, dtype=pipe.dtype))
        variants["own codes, grey-image features"] = (codes, grey)
        variants["other codes, grey-image features"] = (codes[other], grey)
    kinds = np.array([qa["kind"] for _, qa in rows])
    out = {"split": args.split, "faces": len(recs), "pairs": len(rows),
           "encoders": sorted(feats) if feats else [], "mean_logp": {}}  # fmt: skip
    for name, (c, f) in variants.items():
        lp = logp(c, f)
        row = {"all": float(lp.mean())}
        row |= {k: float(lp[kinds == k].mean()) for k in sorted(set(kinds))}
        out["mean_logp"][name] = row
        print(json.dumps({"inputs": name, **{k: round(v, 3) for k, v in row.items()}}), flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        write_json_atomic(args.json, out, sort_keys=False)


if __name__ == "__main__":
    main()
