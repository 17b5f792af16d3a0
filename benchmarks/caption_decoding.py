"""Caption decoding rule vs caption scores: ``no_repeat_ngram`` n on one split's faces.

Captions the first ``--num`` faces of ``--split`` greedily with each n and scores them as
``unif2ace eval`` does (caption attribute precision / recall / F1 against the reference
captions, CIDEr-D). Choose n on ``val``; confirm on ``test`` with ``unif2ace eval`` and
``unif2ace eval-compare``.

    python benchmarks/caption_decoding.py --data data/ff --split val --num 96 --json out.json
"""

from __future__ import annotations

import json
import time

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.ontology import visible_labels
from unif2ace.data.shards import decode_image
from unif2ace.eval.evaluate import load_records
from unif2ace.eval.metrics import caption_attribute_scores, cider_d


def main() -> None:
    ap = model_data_parser(__doc__, num=96)
    ap.add_argument("--ngrams", default="0,3,4,5,7", help="comma-separated n (0 = no rule)")
    args = ap.parse_args()
    pipe = load_pipeline(args)
    recs = load_records(args.data, args.split, args.num, ["id", "image", "attributes", "caption"])
    faces = [decode_image(r["image"]) for r in recs]
    refs = [r["caption"] for r in recs]
    labels = [visible_labels(r["labels"]) for r in recs]
    out = {"split": args.split, "faces": len(recs), "by_n": {}}
    for n in (int(x) for x in args.ngrams.split(",")):
        t0 = time.time()
        caps = pipe.describe(faces, batch_size=16, no_repeat_ngram=n)
        s = caption_attribute_scores(caps, labels, refs).to_dict()
        row = {k: s[k] for k in ("precision", "recall", "f1")}
        row |= {"cider_d": cider_d(caps, [[r] for r in refs]).score}
        row |= {"seconds": round(time.time() - t0, 1), "first_caption": caps[0]}
        out["by_n"][n] = row
        nums = {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}
        print(json.dumps({"no_repeat_ngram": n, **nums}), flush=True)
    if args.json:
        write_json_atomic(args.json, out, sort_keys=False)


if __name__ == "__main__":
    main()
