"""``unif2ace train encoders``: train the in-project semantic / identity CNN encoders.

Writes ``OUT/semantic`` and/or ``OUT/identity`` (``model.safetensors`` + ``config.json`` +
``metrics.json``); load them with ``build_encoder("cnn-semantic", F, path=OUT/semantic)`` or
:func:`unif2ace.model.encoder_train.attach_trained_encoders`. Heavy imports happen inside the
handler, so ``unif2ace --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``train encoders`` to the ``train`` group (see ``unif2ace.cli``)."""
    p = groups["train"].add_parser(
        "encoders",
        help="train the semantic (attribute) and identity CNN encoders of the sequence MoE",
        description="Train the small CNN encoders feeding the sequence-level experts on a "
        "FaceForge data set: semantic = all 46 attributes (hidden ones masked), identity = "
        "regression of the 26 id_* parameters. Rerunning with the same --out resumes.",
    )
    p.add_argument("--data", required=True, help="FaceForge data set folder")
    p.add_argument("--out", required=True, help="output folder (gets semantic/ and identity/)")
    p.add_argument("--which", default="both", choices=["semantic", "identity", "both"])
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per encoder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=64, help="input pixels (data.encoder_resolution)")
    p.add_argument("--feature-dim", type=int, default=128, help="model *_feature_dim")
    p.add_argument("--width", type=int, default=32, help="model encoder_width")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="validation loss every N steps; keep the best weights (0: keep the last)",
    )
    p.add_argument("--no-bf16", action="store_true", help="fp32 instead of bf16 autocast")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON at the end")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..model.encoder_train import EncoderTrainConfig, train_encoder

    if args.steps < 1 or args.batch_size < 1 or args.size < 16:
        raise UserError("--steps and --batch-size must be >= 1 and --size >= 16")
    kinds = ["semantic", "identity"] if args.which == "both" else [args.which]
    results = {}
    for kind in kinds:
        cfg = EncoderTrainConfig(
            kind=kind,
            steps=args.steps,
            batch_size=args.batch_size,
            size=args.size,
            feature_dim=args.feature_dim,
            width=args.width,
            lr=args.lr,
            seed=args.seed,
            log_every=args.log_every,
            ckpt_every=args.ckpt_every,
            bf16=not args.no_bf16,
            eval_every=args.eval_every,
        )
        m = train_encoder(args.data, Path(args.out) / kind, cfg)
        results[kind] = m
        print(_summary(kind, m), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    return 0


def _summary(kind: str, m: dict) -> str:
    if kind == "semantic":
        worst = ", ".join(f"{k} {v:.3f}" for k, v in m["worst5"].items())
        return (
            f"[semantic] {m['split']} accuracy mean {m['mean_accuracy']:.4f} "
            f"(majority baseline {m['majority_baseline_mean']:.4f}); worst 5: {worst}"
        )
    return f"[identity] {m['split']} R2 mean {m['r2_mean']:.4f}, pooled {m['r2_pooled']:.4f}"
