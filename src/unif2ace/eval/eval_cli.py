"""``unif2ace eval``: measure a model (the bundled one by default) on FaceForge.

Heavy imports happen inside the handler, so ``unif2ace --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import write_text_atomic


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

    c = groups["top"].add_parser(
        "eval-compare",
        help="paired differences between two evaluations of the same faces",
        description="after − before for every headline number of two `unif2ace eval` JSON "
        "files of the same faces (same data, splits and --num; e.g. two models), each with a "
        "paired 95 % bootstrap interval over the faces: a difference whose interval excludes "
        "0 is beyond what the choice of faces explains. That interval does not cover the "
        "training run's own randomness: give --control evaluations of the reference recipe "
        "trained with other seeds, and a difference counts as beyond seed noise only when "
        "`after` differs from the reference and from every control the same way, each "
        "interval excluding 0. Markdown on stdout.",
    )
    c.add_argument("before", help="eval JSON of the reference model")
    c.add_argument("after", help="eval JSON of the model compared with it")
    c.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="JSON",
        help="eval JSON of the reference recipe trained with another seed (repeatable)",
    )
    c.add_argument("--json", dest="json_out", help="also write the differences here")
    c.set_defaults(func=_compare)


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
        write_text_atomic(Path(args.json_out), text)
    if args.report:
        write_report(res, args.report, args.checkpoint or "bundled model")
    print(json.dumps(res["metrics"]["summary"], indent=2, default=_nan_safe))
    return 0


def _flat(d: dict, prefix: str = "") -> dict:
    """``{"text": {"top_p": 1}}`` -> ``{"text.top_p": 1}``."""
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _load_eval(path: str) -> tuple[dict, dict, bool]:
    """(per-split units, decoding setup, whether the decoding was recorded) of an eval JSON."""
    from ..errors import UserError

    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read eval JSON {path!r}: {err}") from None
    splits = {k: v["units"] for k, v in (m.get("splits") or {}).items() if "units" in v}
    if not splits:
        raise UserError(
            f"{path} has no per-face units; evaluate again with this version of `unif2ace eval`"
        )
    return (
        splits,
        {"model": m.get("model"), **_flat(m.get("decoding") or {})},
        bool(m.get("decoding")),
    )


def _compare(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .intervals import beyond_seed_noise, paired_differences
    from .report import with_interval

    runs, setups, unrecorded = [], [], []
    for path in (args.before, args.after):
        splits, setup, recorded = _load_eval(path)
        runs.append(splits)
        setups.append(setup)
        if not recorded:  # older than the record: say so once, not a line per key
            unrecorded.append(str(path))
    controls = [_load_eval(p)[0] for p in args.control]
    common = [s for s in runs[0] if s in runs[1] and all(s in c for c in controls)]
    if not common:
        raise UserError(
            f"no split in every file ({', '.join(runs[0])} vs {', '.join(runs[1])}"
            + "".join(f" vs {', '.join(c)}" for c in controls)
            + ")"
        )
    out = {s: paired_differences(runs[0][s], runs[1][s]) for s in common}
    for s in common:
        vs = [paired_differences(c[s], runs[1][s]) for c in controls]
        for k, d in out[s].items():
            if controls and all(k in v for v in vs):
                d["vs_controls"] = [v[k] for v in vs]
                d["beyond_seed_noise"] = beyond_seed_noise(d, d["vs_controls"])
    lines = [f"before: {args.before}", f"after: {args.after}"]
    lines += [f"control {i + 1}: {p}" for i, p in enumerate(args.control)]
    keys = ["model"] if unrecorded else sorted(setups[0].keys() | setups[1].keys())
    differ = [k for k in keys if setups[0].get(k) != setups[1].get(k)]
    lines += [f"differs: {k} {setups[0].get(k)} -> {setups[1].get(k)}" for k in differ]
    lines += [f"decoding: not recorded in {p} (an older evaluation)" for p in unrecorded] + [""]
    ctl = [f"after − control {i + 1} [95 %]" for i in range(len(controls))]
    beyond = "beyond seed noise" if controls else "interval excludes 0"
    for split, rows in out.items():
        lines += [f"## {split} ({len(runs[1][split]['ids'])} faces, paired)", "",
                  "| " + " | ".join(["metric", "before", "after", "after − before [95 %]",
                                     *ctl, beyond]) + " |",
                  "|---" * (5 + len(ctl)) + "|"]  # fmt: skip
        for k, d in rows.items():
            cells = [k, f"{d['before']:.3f}", f"{d['after']:.3f}",
                     with_interval(f"{d['diff']:+.3f}", d["ci95"])]  # fmt: skip
            cells += [
                with_interval(f"{c['diff']:+.3f}", c["ci95"]) for c in d.get("vs_controls", [])
            ]
            cells += ["—"] * (len(ctl) - len(d.get("vs_controls", [])))
            flag = d.get("beyond_seed_noise", False) if controls else d["beyond_noise"]
            lines.append("| " + " | ".join([*cells, "yes" if flag else ""]) + " |")
        lines.append("")
    if controls:
        lines.append("Beyond seed noise: after differs from before and from every control in "
                     "the same direction, each interval excluding 0.")  # fmt: skip
    else:
        lines.append("The intervals resample the faces; they do not cover the training run's "
                     "own randomness (a second seed of one recipe can differ by more): pass "
                     "--control with evaluations of the reference recipe trained with other "
                     "seeds.")  # fmt: skip
    print("\n".join(lines))
    if args.json_out:
        write_text_atomic(Path(args.json_out), json.dumps(out, indent=2))
    return 0


def bundled_judge_dir() -> Path:
    """The judge shipped with the package (``unif2ace/assets/judge``)."""
    from .. import bundled

    return bundled.path("judge")


def _nan_safe(x):
    return str(x)
