"""Command-line flags shared by training commands (``unif2ace train ...``).

``add_train_args(parser)`` adds --out, --resume, --steps, --batch-size, --micro-batch-size,
--seed and positional ``key.sub=value`` overrides; ``overrides_from_args(args)`` turns the
flags into dotted overrides for ``config.apply_overrides`` (flags first, so an explicit
``train.steps=...`` positional wins).
"""

from __future__ import annotations

import argparse

# flag attribute -> field of TrainConfig
_FLAG_FIELDS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "micro_batch_size": "micro_batch_size",
    "seed": "seed",
}


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics, samples)")
    parser.add_argument(
        "--resume",
        default="auto",
        help="auto: continue the latest checkpoint in --out if any (default); never: refuse a "
        "folder with checkpoints; or the path of a checkpoint folder",
    )
    parser.add_argument("--steps", type=int, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, help="global samples per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, help="samples per forward per process")
    parser.add_argument("--seed", type=int, help="seed of data order and randomness")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.optim.lr=1e-3",
    )
    return parser


def overrides_from_args(args: argparse.Namespace, section: str = "train") -> list[str]:
    """Dotted overrides for the run config: ``section.<field>=value`` for each flag given."""
    out = [
        f"{section}.{name}={getattr(args, attr)}"
        for attr, name in _FLAG_FIELDS.items()
        if getattr(args, attr, None) is not None
    ]
    return out + list(getattr(args, "overrides", []) or [])
