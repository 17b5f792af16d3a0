"""Questions answered per second when several questions are asked about one face (the VQA
evaluation asks 8 per face): each question with its own copy of the image (every row encodes
the image and runs the whole ``<|mmu|> <|soi|> image <|eoi|> bos question`` prefix) against
the same image object (the tokenizer and the image prefix run once per face; its cache is
copied to the questions, ``generate_text(image_index=...)``). Same model, same faces, same
questions, one run; the answers are checked equal.

    OMP_NUM_THREADS=2 python benchmarks/bench_vqa.py --faces 8 --data DIR   # bundled model
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from unif2ace.data.shards import decode_image, iter_records
from unif2ace.pipeline import FacePipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="model folder (default: bundled)")
    ap.add_argument("--data", required=True, help="FaceForge data set folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    pipe = FacePipeline.from_pretrained(args.checkpoint)
    recs = []
    for r in iter_records(args.data, args.split, ["image", "vqa"]):
        recs.append(r)
        if len(recs) == args.faces:
            break
    faces = [decode_image(r["image"]) for r in recs]
    questions = [q["question"] for r in recs for q in r["vqa"]]
    shared = [f for f, r in zip(faces, recs, strict=True) for _ in r["vqa"]]
    copies = [copy.copy(f) for f in shared]  # distinct objects: no sharing
    out = {"faces": len(faces), "questions": len(questions), "threads": torch.get_num_threads()}
    answers = {}
    for name, images in (("per_question", copies), ("shared_prefix", shared)):
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            answers[name] = pipe.ask(images, questions, batch_size=args.batch_size)
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_answers_per_s"] = round(len(questions) / best, 2)
    rates = out["shared_prefix_answers_per_s"], out["per_question_answers_per_s"]
    out["speedup"] = round(rates[0] / rates[1], 2)
    out["same_answers"] = answers["per_question"] == answers["shared_prefix"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
