"""``unif2ace train model``: train the UniF²ace model from a preset plus overrides.

Heavy imports happen inside the handler, so ``unif2ace --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# flag attribute -> dotted config key
_DATA_FLAGS = {
    "data": "data.data",
    "tokenizer": "data.image_tokenizer",
    "text_tokenizer": "data.text_tokenizer",
    "semantic_encoder": "init.semantic_encoder",
    "face_encoder": "init.face_encoder",
}


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``train model`` to the ``train`` group (see ``unif2ace.cli``)."""
    from .args import add_train_args

    p = groups["train"].add_parser(
        "model",
        help="train the UniF²ace model (generation + captioning + VQA; resumes automatically)",
        description="Train the UniF²ace model on pretokenised shards. The run config is "
        "configs/<preset>.yaml with KEY=VALUE overrides (e.g. train.optim.lr=1e-3 "
        "loss.w_mmu=0.5). Rerunning with the same --out resumes exactly.",
    )
    p.add_argument("--preset", default="small", help="tiny | small | paper, or a .yaml path")
    p.add_argument("--data", help="data set folder (pretokenised with --tokenizer)")
    p.add_argument("--tokenizer", help="image tokenizer folder (LFQ autoencoder)")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or tokenizer.json")
    p.add_argument(
        "--semantic-encoder",
        help="trained semantic encoder folder (`unif2ace train encoders`), frozen in the model",
    )
    p.add_argument(
        "--face-encoder",
        help="trained identity encoder folder (`unif2ace train encoders`), frozen in the model",
    )
    p.add_argument(
        "--bundled",
        action="store_true",
        help="take the image tokenizer, text tokenizer and both encoders shipped with the "
        "package for those not given (the data must be pretokenised with the bundled "
        "tokenizer: `unif2ace data pretokenize --tokenizer bundled`)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved run config as JSON and exit (no training)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="CPU training: launch this many ranks on this machine (torchrun, gloo), each with "
        "--threads threads; on 2 cores, 2 ranks x 1 thread train ~1.3x faster than 1 x 2",
    )
    p.add_argument(
        "--threads", type=int, help="threads per rank with --nproc (default: cores / nproc)"
    )
    add_train_args(p)
    p.set_defaults(func=_run)


def launch_argv(args: argparse.Namespace) -> list[str]:
    """The ``torch.distributed.run`` command line that runs these arguments on ``--nproc``
    local ranks (the same command without --nproc/--threads, once per rank)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv += ["--nproc-per-node", str(args.nproc), "-m", "unif2ace.cli", "train", "model"]
    argv += ["--preset", args.preset, "--out", str(args.out), "--resume", str(args.resume)]
    if getattr(args, "bundled", False):
        argv.append("--bundled")
    for attr in (*_DATA_FLAGS, "steps", "batch_size", "micro_batch_size", "seed"):
        if getattr(args, attr, None) is not None:
            argv += [f"--{attr.replace('_', '-')}", str(getattr(args, attr))]
    return argv + list(args.overrides or [])


def _launch(args: argparse.Namespace) -> int:
    """Run this command on ``--nproc`` local ranks; returns their exit status."""
    from ..errors import UserError

    if args.nproc < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--nproc and --threads must be >= 1")
    cfg = resolve_config(args)  # config errors now, once, not once per rank
    cfg.train.grad_accum(args.nproc)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"launching {args.nproc} ranks x {threads} thread(s): torchrun --standalone ...")
    return subprocess.run(launch_argv(args), env=env).returncode


def resolve_config(args: argparse.Namespace):
    """The RunConfig of parsed ``train model`` arguments (preset, flags, then overrides)."""
    from .args import overrides_from_args
    from .unified import load_run_config

    flags = [f"{key}={getattr(args, a)}" for a, key in _DATA_FLAGS.items() if getattr(args, a)]
    if getattr(args, "bundled", False):
        given = {f.split("=")[0] for f in flags}
        flags += [
            f"{key}=bundled"
            for key in _DATA_FLAGS.values()
            if key != "data.data" and key not in given
        ]
    return load_run_config(args.preset, flags + overrides_from_args(args))


def _run(args: argparse.Namespace) -> int:
    from ..config import to_dict
    from .distributed import cleanup
    from .unified import train_model

    if args.nproc != 1 and "RANK" not in os.environ and not args.print_config:
        return _launch(args)
    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    try:
        res = train_model(cfg, args.out, resume=args.resume)
    except BaseException:
        cleanup()
        raise
    cleanup(sync=True)
    print(json.dumps({"step": res.state.step, "checkpoint": str(res.checkpoint)}))
    return 0
