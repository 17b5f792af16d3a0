"""Does the model's yes/no answer follow the face, one binary attribute at a time?

For each of the first ``--num`` faces of ``--split`` and each attribute of ``--attributes``
that the face shows or visibly lacks (occluded and not-applicable ones are skipped), asks
FaceForge's own first wording of the question with the face's pronouns ("Is she wearing a
hat?") and reads the answer as the model would give it: "Yes" when ``log P(" Yes")`` beats
``log P(" No")`` (teacher-forced, the same scoring as VQAScore). Per attribute:

* ``recall`` (yes on faces that have it), ``specificity`` (no on faces that lack it) and
  their mean, ``balanced`` accuracy (0.5 for a model that answers from the question alone,
  however skewed its answers), with a 95 % bootstrap interval over the faces;
* ``separation``: mean P(yes | has it) − mean P(yes | lacks it), P(yes) normalised over the
  two answers — how far the face moves the answer at all, before any threshold.

The JSON keeps each face's id and P(yes), so ``--compare`` pairs two models scored on the
same faces (paired bootstrap of the balanced-accuracy difference)::

    python benchmarks/vqa_attribute_recall.py --data data/ff [--checkpoint MODEL] \\
        [--split test --num 96] [--json out.json]
    python benchmarks/vqa_attribute_recall.py --compare A.json B.json   # B − A, paired
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.faceforge.vqa import BINARY_Q
from unif2ace.data.ontology import visible_labels
from unif2ace.data.sequences import encode_answer
from unif2ace.data.shards import decode_image
from unif2ace.eval.evaluate import load_records
from unif2ace.eval.metrics.stats import bootstrap_ci
from unif2ace.model.text_decode import answer_logprob

DEFAULT = ("hat", "earrings", "necklace", "smile", "beard", "freckles", "moles", "lipstick",
           "mouth_open")  # fmt: skip


def question(attr: str, female: bool) -> str:
    """FaceForge's first wording of the yes/no question about ``attr``."""
    q = BINARY_Q[attr][0].format(s="she" if female else "he", p="her" if female else "his")
    return q[0].upper() + q[1:]


def balanced(truth: np.ndarray, yes: np.ndarray) -> float:
    """Mean of recall and specificity (nan when one class is missing)."""
    if truth.all() or not truth.any():
        return float("nan")
    return float((yes[truth].mean() + (~yes[~truth]).mean()) / 2)


def balanced_ci(truth: np.ndarray, yes: np.ndarray) -> list[float]:
    def stat(idx):
        return np.array([balanced(truth[i], yes[i]) for i in idx])

    return bootstrap_ci(stat, len(truth))


def score(args) -> dict:
    pipe = load_pipeline(args)
    attrs = args.attributes.split(",")
    unknown = [a for a in attrs if a not in BINARY_Q]
    if unknown:
        raise SystemExit(f"--attributes: not binary FaceForge attributes: {unknown}; "
                         f"choose from {sorted(BINARY_Q)}")  # fmt: skip
    recs = load_records(args.data, args.split, args.num, ["id", "image", "attributes"])
    if "labels" not in recs[0]:
        raise SystemExit(f"{args.data}: records carry no attribute labels (FaceForge data only)")
    rows = []  # (face index, attribute, truth)
    for i, r in enumerate(recs):
        vis = visible_labels(r["labels"])
        rows += [(i, a, bool(vis[a])) for a in attrs if vis.get(a) is not None]
    tok = pipe.text_tokenizer
    qs = [tok.encode(question(a, recs[i]["labels"].get("gender") == "female")) for i, a, _ in rows]
    yes_no = [encode_answer(tok, "Yes"), encode_answer(tok, "No")]
    with torch.no_grad():
        codes, feats = pipe.encode_images([decode_image(r["image"]) for r in recs])
        lp = []
        for ans in yes_no:
            out = []
            for s in range(0, len(rows), args.batch_size):
                e = slice(s, s + args.batch_size)
                out += answer_logprob(pipe.model, pipe.layout, codes, qs[e], [ans] * len(qs[e]),
                                      encoder_feats=feats,
                                      image_index=[i for i, _, _ in rows[e]]).tolist()  # fmt: skip
            lp.append(np.asarray(out))
    p_yes = 1.0 / (1.0 + np.exp(lp[1] - lp[0]))
    result = {"split": args.split, "faces": len(recs), "checkpoint": args.checkpoint or "bundled",
              "attributes": {}}  # fmt: skip
    for a in attrs:
        sel = [k for k, (_, b, _) in enumerate(rows) if b == a]
        if not sel:
            continue
        truth = np.array([rows[k][2] for k in sel])
        p = p_yes[sel]
        yes = p > 0.5
        result["attributes"][a] = {
            "n": len(sel), "has": int(truth.sum()), "said_yes": int(yes.sum()),
            "recall": float(yes[truth].mean()) if truth.any() else float("nan"),
            "specificity": float((~yes[~truth]).mean()) if (~truth).any() else float("nan"),
            "balanced": balanced(truth, yes), "balanced_ci95": balanced_ci(truth, yes),
            "separation": float(p[truth].mean() - p[~truth].mean())
            if truth.any() and (~truth).any() else float("nan"),
            "ids": [recs[rows[k][0]]["id"] for k in sel], "truth": truth.tolist(),
            "p_yes": [round(float(x), 5) for x in p],
        }  # fmt: skip
    return result


def report(result: dict) -> None:
    print(f"{'attribute':12s} {'n':>4s} {'has':>4s} {'yes':>4s} {'recall':>7s} {'spec':>6s} "
          f"{'balanced [95 %]':>22s} {'separation':>10s}")  # fmt: skip
    for a, r in result["attributes"].items():
        lo, hi = r["balanced_ci95"]
        print(f"{a:12s} {r['n']:4d} {r['has']:4d} {r['said_yes']:4d} {r['recall']:7.2f} "
              f"{r['specificity']:6.2f} {r['balanced']:6.3f} [{lo:.3f}, {hi:.3f}] "
              f"{r['separation']:+10.3f}")  # fmt: skip


def compare(before_path: str, after_path: str) -> dict:
    """Paired differences (after − before) of balanced accuracy and separation per attribute."""
    try:
        a, b = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    except (OSError, ValueError) as e:
        raise SystemExit(f"--compare: cannot read an attribute-recall JSON: {e}") from None
    if not all(isinstance(x, dict) and "attributes" in x for x in (a, b)):
        raise SystemExit("--compare: a file is not an attribute-recall JSON (no 'attributes')")
    out = {}
    for attr in [x for x in a["attributes"] if x in b["attributes"]]:
        ra, rb = a["attributes"][attr], b["attributes"][attr]
        if ra["ids"] != rb["ids"]:
            raise SystemExit(f"--compare: {attr}: the two files scored different faces")
        t = np.asarray(ra["truth"], dtype=bool)
        pa, pb = np.asarray(ra["p_yes"]), np.asarray(rb["p_yes"])

        def stat(idx, t=t, pa=pa, pb=pb):
            return np.array([balanced(t[i], pb[i] > 0.5) - balanced(t[i], pa[i] > 0.5)
                             for i in idx])  # fmt: skip

        def sep(p, t):
            return p[t].mean() - p[~t].mean() if t.any() and (~t).any() else np.nan

        def sep_stat(idx, t=t, pa=pa, pb=pb):
            return np.array([sep(pb[i], t[i]) - sep(pa[i], t[i]) for i in idx])

        out[attr] = {"balanced": [ra["balanced"], rb["balanced"]],
                     "diff": rb["balanced"] - ra["balanced"], "ci95": bootstrap_ci(stat, len(t)),
                     "separation_diff": rb["separation"] - ra["separation"],
                     "separation_ci95": bootstrap_ci(sep_stat, len(t))}  # fmt: skip
        r = out[attr]
        print(f"{attr:12s} balanced {ra['balanced']:.3f} -> {rb['balanced']:.3f} "
              f"diff {r['diff']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]  "
              f"separation diff {r['separation_diff']:+.3f} "
              f"[{r['separation_ci95'][0]:+.3f}, {r['separation_ci95'][1]:+.3f}]")  # fmt: skip
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return
    ap = model_data_parser(__doc__, num=96)
    ap.add_argument("--attributes", default=",".join(DEFAULT),
                    help="comma-separated binary attributes")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    t0 = time.time()
    result = score(args)
    result["seconds"] = round(time.time() - t0, 1)
    report(result)
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
