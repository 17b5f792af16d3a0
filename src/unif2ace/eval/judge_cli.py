"""``unif2ace train judge``: train the attribute judge (:mod:`unif2ace.eval.judge`).

Writes ``OUT/model.safetensors`` + ``OUT/config.json`` (load with
:func:`~unif2ace.eval.judge.load_judge`), ``OUT/metrics.json`` (per-attribute accuracy on the
test and held-out-combinations splits) and ``OUT/MODEL_CARD.md``. Rerunning with the same
``--out`` and options resumes from ``OUT/ckpt``. Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
import json


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``train judge`` to the ``train`` group (see ``unif2ace.cli``)."""
    p = groups["train"].add_parser(
        "judge",
        help="train the attribute judge (46 attributes + head pose) used by evaluation",
        description="Train the face-attribute judge, a residual CNN separate from the model "
        "under test, on a FaceForge data set. Rerunning with the same --out resumes.",
    )
    p.add_argument("--data", required=True, help="shard data set folder (FaceForge)")
    p.add_argument("--out", required=True, help="output folder for the judge")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=128, help="input pixels")
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--blocks", default="1,1,2,1", help="residual blocks per stage")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=500, help="validation loss (0: never)")
    p.add_argument("--limit", type=int, default=None, help="use at most N faces per split")
    p.add_argument("--no-bf16", action="store_true", help="fp32 instead of bf16 autocast")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON at the end")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .judge_train import JudgeTrainConfig, train_judge

    if args.steps < 1 or args.batch_size < 1 or args.size < 32 or args.width < 1:
        raise UserError("--steps, --batch-size and --width must be >= 1 and --size >= 32")
    try:
        blocks = [int(b) for b in args.blocks.split(",")]
    except ValueError:
        blocks = []
    if len(blocks) != 4 or min(blocks) < 1:
        raise UserError(f"--blocks takes 4 positive integers like 1,1,2,1, not {args.blocks!r}")
    cfg = JudgeTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        size=args.size,
        width=args.width,
        blocks=",".join(map(str, blocks)),
        lr=args.lr,
        seed=args.seed,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every,
        eval_every=args.eval_every,
        bf16=not args.no_bf16,
    )
    m = train_judge(args.data, args.out, cfg, limit=args.limit)
    for split in ("test", "test_heldout"):
        if split in m:
            r = m[split]
            worst = ", ".join(f"{k} {v:.3f}" for k, v in r["worst5"].items())
            print(
                f"[judge] {split}: mean accuracy {r['mean_accuracy']:.4f} (majority "
                f"{r['majority_baseline_mean']:.4f}), end-to-end {r['end_to_end_accuracy']:.4f};"
                f" worst 5: {worst}",
                flush=True,
            )
    print(f"[judge] wrote {args.out}/model.safetensors, metrics.json, MODEL_CARD.md")
    if args.json:
        print(json.dumps(m, indent=2, sort_keys=True))
    return 0
