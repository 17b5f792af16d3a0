"""Image-sampler settings against generation quality, on one split's prompts.

Each setting (a JSON object of :class:`unif2ace.diffusion.samplers.SamplerConfig` fields
that replace the model's defaults) generates the first ``--num`` prompts of ``--split`` and is
scored as ``unif2ace eval`` scores generation (attribute fidelity, VQAScore, FID and KID against
``--fid-real`` real faces); the full evaluation JSON of each lands in ``--out``, so any two
compare paired with ``unif2ace eval-compare``. Choose settings on ``val``, report on ``test``.

    python benchmarks/sampler_sweep.py --data data/ff --out runs/sweep \
        '{}' '{"temperature": 0.7}' '{"guidance_scale": 2.0}'
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from _model_args import load_pipeline, model_data_parser
from unif2ace.atomic import write_json_atomic
from unif2ace.eval.eval_cli import bundled_judge_dir
from unif2ace.eval.evaluate import EvalConfig, evaluate_model
from unif2ace.eval.judge import load_judge


def main() -> None:
    ap = model_data_parser(__doc__, num=48)
    ap.add_argument("--out", required=True, help="folder for one eval JSON per setting")
    ap.add_argument("--fid-real", type=int, default=300)
    ap.add_argument("settings", nargs="+", help="JSON objects of sampler fields ('{}': defaults)")
    args = ap.parse_args()
    settings = [json.loads(s) for s in args.settings]
    pipe = load_pipeline(args)
    judge = load_judge(bundled_judge_dir())
    base = pipe.sampling.sampler
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in settings:
        pipe.sampling.sampler = dataclasses.replace(base, **s)
        cfg = EvalConfig(splits=(args.split,), num=args.num, fid_real=args.fid_real,
                         diversity_prompts=0, understanding=False)  # fmt: skip
        t0 = time.time()
        m = evaluate_model(pipe, judge, args.data, cfg, log=lambda *_: None)["metrics"]
        name = "_".join(f"{k}{v}" for k, v in s.items()) or "defaults"
        write_json_atomic(out / f"{name}.json", m)
        g = m["splits"][args.split]["generation"]
        row = {"setting": s, "fidelity": g["fidelity"]["accuracy"],
               "vqa_score": g["vqa_score"]["score"], "fid": g["fid"], "kid": g["kid"],
               "seconds": round(time.time() - t0, 1)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        write_json_atomic(args.json, rows, sort_keys=False)


if __name__ == "__main__":
    main()
