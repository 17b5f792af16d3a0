"""Which prompt words the generator listens to: the information one phrase gives about a face.

For each attribute below, the first ``--num`` faces of ``--split`` whose first prompt states it
(a list item such as "sunglasses", or an adjective such as "smiling") are scored twice through
the training forward (:func:`unif2ace.eval.evaluate.masked_code_nll`, ``--ratio`` of the
face's tokenizer codes masked, the same positions for every face): conditioned on the prompt,
and on the prompt with that phrase deleted ("a smiling lady with long hair" → "a lady with
long hair"). The difference is what the phrase tells the model about the real face, in nats
per image (summed over the masked codes): 0 for a word the model ignores, positive for one it
uses, negative for one that misleads it. A 95 % bootstrap interval over the faces goes with
each mean.

    python benchmarks/prompt_word_gap.py --data data/ff [--checkpoint MODEL] [--json A.json]
    python benchmarks/prompt_word_gap.py --compare A.json B.json   # B − A, paired over the faces

The JSON keeps each face's gap and id, so ``--compare`` can pair two models scored with the
same ``--split/--num/--ratio/--seed`` (it refuses files whose faces or masks differ).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.data.shards import decode_image, iter_records
from unif2ace.eval.evaluate import masked_code_nll
from unif2ace.eval.metrics.stats import bootstrap_ci

# attribute -> (kind, pattern): "adj" deletes a whole-word adjective before the noun,
# "item" deletes one list item (after "with", or in a comma list) that matches in full.
PHRASES: dict[str, tuple[str, str]] = {
    "smile": ("adj", "smiling"),
    "laugh": ("adj", "laughing"),
    "frown": ("adj", "frowning"),
    "glare": ("adj", "glaring"),
    "mouth_open": ("item", r"mouth open|parted lips|open mouth"),
    "eyes_closed": ("item", r"eyes closed|closed eyes"),
    "glasses": ("item", r"sunglasses|eyeglasses"),
    "hat": ("item", r"a (hat|cap)"),
    "beard": ("item", r"a [\w -]*beard"),
    "earrings": ("item", r"(small )?earrings"),
    "necklace": ("item", r"a necklace"),
    "lipstick": ("item", r"lipstick"),
    "freckles": ("item", r"freckles"),
    "moles": ("item", r"a (mole|beauty mark)"),
    "eye_color": ("item", r"(?!closed|narrow)[\w-]+( [\w-]+)? eyes"),
    "skin_tone": ("item", r"[\w-]+ skin"),
}


def _fix_articles(s: str) -> str:
    s = re.sub(r"\ban (?=[^aeiouAEIOU\W])", "a ", s)
    return re.sub(r"\ba (?=[aeiouAEIOU])", "an ", s)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def strip_phrase(prompt: str, kind: str, pattern: str) -> str | None:
    """``prompt`` without the phrase, or None when the prompt does not state it."""
    if kind == "adj":
        out = re.sub(rf"\b{pattern} ", "", prompt, count=1)
        return None if out == prompt else _fix_articles(out)
    head, sep, tail = prompt.partition(" with ")
    if not sep:  # "surprised man, long hair, ..." form: the items follow the first comma
        head, sep, tail = prompt.partition(", ")
        if not sep:
            return None
        items = tail.split(", ")
        keep = [x for x in items if not re.fullmatch(pattern, x)]
        if len(keep) == len(items):
            return None
        return head + (", " + ", ".join(keep) if keep else "")
    last, _, final = tail.rpartition(" and ")
    items = (last.split(", ") if last else []) + [final]
    keep = [x for x in items if not re.fullmatch(pattern, x)]
    if len(keep) == len(items):
        return None
    return head + (" with " + _join(keep) if keep else "")


def compare(before_path: str, after_path: str) -> dict:
    """Paired differences (after − before) of two runs' per-face gaps, per attribute."""
    try:
        a, b = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    except (OSError, ValueError) as e:
        raise SystemExit(f"--compare: cannot read a word-gap JSON: {e}") from None
    if "seed" not in a or "seed" not in b:
        raise SystemExit("--compare: a file has no per-face gaps (written before 2026-12-07)")
    same = ("split", "ratio", "seed", "masked_codes")
    if any(a.get(k) != b.get(k) for k in same):
        raise SystemExit(f"--compare: the two files differ in {same}; score both the same way")
    out = {}
    for attr in a["gap"].keys() & b["gap"].keys():
        ga, gb = a["gap"][attr], b["gap"][attr]
        if "per_face" not in ga or "per_face" not in gb:
            raise SystemExit("--compare: a file has no per-face gaps (written before 2026-12-07)")
        if ga["ids"] != gb["ids"]:
            raise SystemExit(f"--compare: {attr}: the two files scored different faces")
        d = np.asarray(gb["per_face"]) - np.asarray(ga["per_face"])
        ci = bootstrap_ci(lambda idx, d=d: d[idx].mean(1), len(d))
        out[attr] = {"before": ga["nats_per_image"], "after": gb["nats_per_image"],
                     "diff": float(d.mean()), "ci95": ci}  # fmt: skip
    for attr in PHRASES:
        if attr in out:
            r = out[attr]
            lo, hi = r["ci95"]
            print(f"{attr:12s} {r['before']:+7.2f} -> {r['after']:+7.2f}  "
                  f"diff {r['diff']:+6.2f} [{lo:+.2f}, {hi:+.2f}]")  # fmt: skip
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return
    ap = model_data_parser(__doc__, num=48)
    ap.add_argument("--scan", type=int, default=3000, help="records searched for each phrase")
    ap.add_argument("--ratio", type=float, default=0.9, help="share of the codes masked")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    pipe = load_pipeline(args)
    found: dict[str, list[tuple[str, str, bytes, str]]] = {a: [] for a in PHRASES}
    for i, r in enumerate(iter_records(args.data, args.split, ["id", "image", "prompts"])):
        if i >= args.scan or all(len(v) >= args.num for v in found.values()):
            break
        p = r["prompts"][0]
        for attr, (kind, pat) in PHRASES.items():
            q = strip_phrase(p, kind, pat)
            if q is not None and len(found[attr]) < args.num:
                found[attr].append((p, q, r["image"], r["id"]))
    gen = torch.Generator().manual_seed(args.seed)
    mask = torch.rand(pipe.num_image_tokens, generator=gen) < args.ratio
    cut = pipe.sampling.max_text_len - 3
    out = {"split": args.split, "ratio": args.ratio, "seed": args.seed,
           "masked_codes": int(mask.sum()), "gap": {}}  # fmt: skip
    for attr, rows in found.items():
        if len(rows) < 2:
            print(json.dumps({"attribute": attr, "faces": len(rows), "skipped": True}))
            continue
        gaps = []
        for s in range(0, len(rows), args.batch_size):
            chunk = rows[s : s + args.batch_size]
            with torch.no_grad():
                codes, _ = pipe.encode_images([decode_image(row[2]) for row in chunk])
                ids = {k: [t[:cut] for t in pipe.text_tokenizer.encode_batch(
                    [row[k] for row in chunk])] for k in (0, 1)}  # fmt: skip
                full = masked_code_nll(pipe, codes, ids[0], mask)
                stripped = masked_code_nll(pipe, codes, ids[1], mask)
            gaps += (stripped - full).tolist()
        g = np.asarray(gaps)
        ci = bootstrap_ci(lambda idx, g=g: g[idx].mean(1), len(g))
        res = {"faces": len(g), "nats_per_image": float(g.mean()), "ci95": ci,
               "example": [rows[0][0], rows[0][1]], "ids": [row[3] for row in rows],
               "per_face": [round(x, 4) for x in gaps]}  # fmt: skip
        out["gap"][attr] = res
        lo, hi = res["ci95"]
        line = f"{attr:12s} {len(g):3d} faces  gap {g.mean():+7.2f} nats/image"
        print(f"{line}  [{lo:+.2f}, {hi:+.2f}]", flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        write_json_atomic(args.json, out, sort_keys=False)


if __name__ == "__main__":
    main()
