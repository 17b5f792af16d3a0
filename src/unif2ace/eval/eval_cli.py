"""``unif2ace eval``: measure a model (the bundled one by default) on FaceForge.

Heavy imports happen inside the handler, so ``unif2ace --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    from .llm import add_backend_args

    p = groups["top"].add_parser(
        "eval",
        help="evaluate generation and understanding with the attribute judge",
        description="Generate faces from FaceForge test prompts and judge them (attribute "
        "fidelity, VQAScore, FID, diversity); caption and question the test faces (caption "
        "attribute P/R/F1, BLEU-4, CIDEr-D, VQA accuracy). Writes JSON and a report folder.",
    )
    p.add_argument("--checkpoint", help="model folder or training run (default: bundled model)")
    p.add_argument("--data", required=True, help="FaceForge data set folder")
    p.add_argument("--judge", help="attribute judge folder (default: the bundled judge)")
    p.add_argument("--json", dest="json_out", help="write the metrics here")
    p.add_argument("--report", help="write REPORT.md, charts and grids into this folder")
    p.add_argument("--num", type=int, default=200, help="records per split (default 200)")
    p.add_argument("--splits", default="test,test_heldout", help="comma-separated splits")
    p.add_argument("--fid-real", type=int, default=1000, help="real faces for FID statistics")
    p.add_argument("--diversity-prompts", type=int, default=16)
    p.add_argument("--diversity-samples", type=int, default=4)
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-understanding", action="store_true", help="generation metrics only")
    p.add_argument(
        "--llm-faces",
        type=int,
        default=None,
        help="with --llm-url: faces per split the LLM judge scores (Desc/Conv; default all)",
    )
    add_backend_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..pipeline import FacePipeline
    from .evaluate import EvalConfig, evaluate_model
    from .judge import load_judge
    from .llm import backend_from_args
    from .report import write_report

    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    splits = tuple(s for s in args.splits.split(",") if s)
    cfg = EvalConfig(
        splits=splits,
        num=args.num,
        fid_real=args.fid_real,
        diversity_prompts=args.diversity_prompts,
        diversity_samples=args.diversity_samples,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        batch_size=args.batch_size,
        understanding=not args.no_understanding,
        llm_faces=args.llm_faces,
    )
    if args.llm_faces is not None and args.llm_faces < 1:
        raise UserError(f"--llm-faces must be at least 1, got {args.llm_faces}")
    llm = backend_from_args(args)
    if llm is not None and args.no_understanding:
        raise UserError("--llm-url scores captions and answers; drop --no-understanding")
    pipe = FacePipeline.from_pretrained(args.checkpoint)
    judge = load_judge(args.judge or bundled_judge_dir())
    res = evaluate_model(pipe, judge, args.data, cfg, log=lambda s: print(s, flush=True), llm=llm)
    res["metrics"]["model"] = args.checkpoint or "bundled"
    res["metrics"]["judge"] = args.judge or "bundled"
    text = json.dumps(res["metrics"], indent=2, default=_nan_safe)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text)
    if args.report:
        write_report(res, args.report, args.checkpoint or "bundled model")
    print(json.dumps(res["metrics"]["summary"], indent=2, default=_nan_safe))
    return 0


def bundled_judge_dir() -> Path:
    """The judge shipped with the package (``unif2ace/assets/judge``)."""
    from .. import bundled

    return bundled.path("judge")


def _nan_safe(x):
    return str(x)
