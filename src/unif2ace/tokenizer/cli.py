"""Tokenizer commands: ``train tokenizer``, ``train text-tokenizer``, ``data pretokenize``
and the top-level ``eval-tokenizer``. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_text_atomic

if TYPE_CHECKING:
    import torch


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the tokenizer commands to the command groups (see ``unif2ace.cli``)."""
    _add_train_tokenizer(groups["train"])
    _add_train_decoder(groups["train"])
    _add_train_text(groups["train"])
    _add_pretokenize(groups["data"])
    _add_eval(groups["top"])


def _add_train_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenizer",
        help="train the LFQ image tokenizer (resumes automatically)",
        description="Train the LFQ image tokenizer. Rerunning with the same --out resumes "
        "exactly from the last checkpoint.",
    )
    p.add_argument("--preset", default="small", help="tiny | small | paper (default: small)")
    _add_run_args(p, steps=20_000, lr=2e-4, warmup=500, detail=0.0, sample=500, ckpt=250)
    p.add_argument(
        "--init",
        default=None,
        metavar="TOKENIZER",
        help="start from this tokenizer's weights (a folder, or 'bundled') instead of random "
        "ones: fine-tuning; its shape replaces --preset",
    )
    p.add_argument(
        "--grow-bits",
        type=int,
        default=0,
        metavar="N",
        help="with --init: add N code bits to its codebook (2^D -> 2^(D+N) codes) before "
        "fine-tuning, keeping what it learned: the old bits stay the high bits of each code "
        "and the decoder starts by ignoring the new ones",
    )
    p.add_argument(
        "--attr-weight",
        type=float,
        default=0.0,
        help="train linear heads on the code bits around the eyes, ear lobes, mouth, cheeks "
        "and mole to predict the fine attributes of FaceForge faces, and add their "
        "cross-entropy with this weight: asks the codes to carry those attributes "
        "(unif2ace.tokenizer.code_heads); 0 = off",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tokenizer config field, e.g. --set base_channels=64",
    )
    p.set_defaults(func=_run_train_tokenizer)


def _add_run_args(
    p: argparse.ArgumentParser,
    steps: int,
    lr: float,
    warmup: int,
    detail: float,
    sample: int,
    ckpt: int,
) -> None:
    """Options shared by the two image-tokenizer trainers (stage 1 and stage 2)."""
    p.add_argument("--data", required=True, help="data set folder (DIR/<split>/shard-*.parquet)")
    p.add_argument("--out", required=True, help="run folder (checkpoint/, tokenizer/, samples/)")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--detail-weight",
        type=float,
        default=detail,
        help="weight pixel losses up near edges (eyes, mouth, accessories); 0 = plain L1 + L2",
    )
    p.add_argument(
        "--region-weight",
        type=float,
        default=0.0,
        help="weight pixel losses up around the eyes, ear lobes, mouth, cheeks and mole of "
        "FaceForge faces (their landmarks; 1 = the regions weigh as much as the rest); 0 = off",
    )
    p.add_argument(
        "--no-bf16", action="store_true", help="train in fp32 (bf16 autocast is default)"
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--sample-every", type=int, default=sample)
    p.add_argument("--ckpt-every", type=int, default=ckpt)


def _run_settings(args: argparse.Namespace, resolution: int) -> tuple[list, torch.Tensor, dict]:
    """(training shards, fixed held-out sample images, common TrainConfig fields)."""
    from ..data.shards import list_shards
    from .images import ImageStream
    from .train_image import check_data

    shards = list_shards(args.data, args.split)
    check_data(shards, Path(args.data), args.split)
    held_out = list_shards(args.data, "val") or list_shards(args.data, "test") or shards
    samples = ImageStream(held_out, resolution, 8, shuffle=False).next_batch()
    fields = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        detail_weight=args.detail_weight,
        region_weight=args.region_weight,
        bf16=not args.no_bf16,
        seed=args.seed,
        log_every=args.log_every,
        sample_every=args.sample_every,
        ckpt_every=args.ckpt_every,
    )
    return shards, samples, fields


def _parse_overrides(items: list[str]) -> dict:
    from ..errors import UserError

    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _run_train_tokenizer(args: argparse.Namespace) -> int:
    from .. import bundled
    from ..errors import UserError
    from .autoencoder import TokenizerConfig, preset_config
    from .train_image import TrainConfig, train_tokenizer

    cfg = preset_config(args.preset)
    overrides = _parse_overrides(args.set)
    init = bundled.resolve(args.init, "image_tokenizer")
    if args.grow_bits < 0:
        raise UserError(f"--grow-bits must be >= 0, got {args.grow_bits}")
    if init is not None:
        if overrides:
            raise UserError("--set changes the shape; it cannot be combined with --init")
        if not (Path(init) / "config.json").is_file():
            raise UserError(f"--init: {init} is not an image tokenizer folder (no config.json)")
        cfg = TokenizerConfig.from_dict(json.loads((Path(init) / "config.json").read_text()))
        if args.grow_bits:
            cfg = TokenizerConfig.from_dict(
                {**cfg.to_dict(), "codebook_bits": cfg.codebook_bits + args.grow_bits}
            )
    elif args.grow_bits:
        raise UserError("--grow-bits needs --init: it grows a trained tokenizer's codebook")
    elif overrides:
        cfg = TokenizerConfig.from_dict({**cfg.to_dict(), **overrides})
    shards, samples, fields = _run_settings(args, cfg.resolution)
    print(
        f"training {'' if init else args.preset + ' '}tokenizer: {cfg.resolution}px, "
        f"f={cfg.downsample}, {cfg.grid}x{cfg.grid} tokens, {cfg.codebook_size} codes; "
        f"{len(shards)} shards"
    )
    train_tokenizer(
        cfg,
        TrainConfig(**fields, attr_weight=args.attr_weight),
        shards,
        args.out,
        sample_images_BCHW=samples,
        init=init,
        grow_bits=args.grow_bits,
    )
    print(f"tokenizer saved to {Path(args.out) / 'tokenizer'}")
    return 0


def _add_train_decoder(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenizer-decoder",
        help="stage 2: fine-tune a trained tokenizer's decoder adversarially (codes unchanged)",
        description="Fine-tune the decoder of a trained image tokenizer against a PatchGAN "
        "discriminator with feature matching; the encoder and quantiser are frozen, so the "
        "codes (and pre-tokenised data, and models trained on them) stay valid. Rerunning with "
        "the same --out resumes exactly.",
    )
    p.add_argument("--tokenizer", required=True, help="stage-1 tokenizer folder")
    _add_run_args(p, steps=3000, lr=1e-4, warmup=100, detail=2.0, sample=250, ckpt=100)
    p.add_argument("--adv-weight", type=float, default=0.1, help="weight of the hinge GAN loss")
    p.add_argument(
        "--fm-weight", type=float, default=1.0, help="weight of discriminator feature matching"
    )
    p.add_argument(
        "--disc-start",
        type=int,
        default=500,
        help="steps the discriminator trains alone before the decoder sees its losses",
    )
    p.add_argument("--disc-channels", type=int, default=32)
    p.set_defaults(func=_run_train_decoder)


def _run_train_decoder(args: argparse.Namespace) -> int:
    from .autoencoder import LFQAutoencoder
    from .train_decoder import DecoderTrainConfig, train_decoder

    base = LFQAutoencoder.from_pretrained(args.tokenizer)  # clear error if not a tokenizer
    shards, samples, fields = _run_settings(args, base.config.resolution)
    cfg = DecoderTrainConfig(
        **fields,
        adv_weight=args.adv_weight,
        fm_weight=args.fm_weight,
        disc_start=args.disc_start,
        disc_channels=args.disc_channels,
    )
    print(f"fine-tuning the decoder of {args.tokenizer}: {len(shards)} shards")
    train_decoder(args.tokenizer, cfg, shards, args.out, sample_images_BCHW=samples)
    print(f"tokenizer saved to {Path(args.out) / 'tokenizer'} (same codes as {args.tokenizer})")
    return 0


def _add_train_text(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "text-tokenizer",
        help="train the byte-level BPE text tokenizer",
        description="Train a byte-level BPE on captions, prompts and VQA text.",
    )
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--out", required=True, help="output folder (tokenizer.json)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument(
        "--split", action="append", default=None, help="split(s) to read (default: train)"
    )
    p.set_defaults(func=_run_train_text)


def _run_train_text(args: argparse.Namespace) -> int:
    from .text import iter_corpus, train_text_tokenizer

    tok = train_text_tokenizer(
        iter_corpus(args.data, args.split or ["train"]), args.vocab_size, args.min_frequency
    )
    path = tok.save(args.out)
    print(json.dumps({"tokenizer": str(path), "vocab_size": tok.vocab_size}))
    return 0


def _add_pretokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretokenize",
        help="cache image codes next to the shards (resumable)",
        description="Encode every image once with an image tokenizer and "
        "store the codes in DATA/<split>/codes-<tokenizer hash>/.",
    )
    p.add_argument(
        "--tokenizer",
        default="bundled",
        help="image tokenizer folder (default: `bundled`, the one shipped with the package)",
    )
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--split", action="append", default=None, help="split(s) (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bf16", action="store_true", help="encode under bf16 autocast")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when available)")
    p.set_defaults(func=_run_pretokenize)


def _run_pretokenize(args: argparse.Namespace) -> int:
    from ..bundled import resolve
    from .pretokenize import pretokenize

    tok = resolve(args.tokenizer, "image_tokenizer")
    summary = pretokenize(
        tok, args.data, args.split, args.batch_size, args.bf16, device=args.device
    )
    print(json.dumps(summary))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-tokenizer",
        help="PSNR, SSIM, codebook usage of an image tokenizer",
        description="Evaluate an image tokenizer on a split; prints JSON.",
    )
    p.add_argument(
        "--tokenizer",
        default="bundled",
        help="image tokenizer folder (default: `bundled`, the one shipped with the package)",
    )
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--split", default="test")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--json", default=None, help="also write the metrics to this file")
    p.add_argument(
        "--grid", default=None, help="write a PNG of originals (top) over reconstructions (bottom)"
    )
    p.add_argument(
        "--judge",
        default=None,
        help="attribute judge folder (`bundled`: the shipped one): also measure which "
        "attributes survive reconstruction",
    )
    p.add_argument(
        "--probe",
        type=int,
        default=0,
        metavar="N",
        help="also fit linear probes for the fine attributes on N FaceForge faces of the train "
        "split (codes, original and reconstructed pixels around their landmarks) and score "
        "them on this split: where an attribute is lost, quantiser or decoder (0 = off)",
    )
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from ..bundled import resolve
    from ..data.shards import list_shards
    from .autoencoder import LFQAutoencoder
    from .evaluate import evaluate_tokenizer
    from .images import iter_split_batches, save_grid
    from .train_image import check_data

    model = LFQAutoencoder.from_pretrained(resolve(args.tokenizer, "image_tokenizer"))
    shards = list_shards(args.data, args.split)
    check_data(shards, Path(args.data), args.split)
    res = model.config.resolution
    result = evaluate_tokenizer(
        model, iter_split_batches(shards, res, args.batch_size), args.max_images, args.bf16
    ).to_dict()
    result.update(split=args.split, tokenizer=str(args.tokenizer))
    if args.judge:
        from ..eval.judge import load_judge
        from ..eval.survival import attribute_survival

        n = args.max_images or 500
        result["attribute_survival"] = attribute_survival(
            model,
            load_judge(resolve(args.judge, "judge")),
            args.data,
            args.split,
            n,
            args.batch_size,
        )
    if args.probe:
        from itertools import islice

        from ..data.shards import iter_records
        from .probe import attribute_probes

        cols = ["image", "attributes", "identity", "hidden"]
        n = args.max_images or 500
        result["attribute_probes"] = attribute_probes(
            model,
            list(islice(iter_records(args.data, "train", cols), args.probe)),
            list(islice(iter_records(args.data, args.split, cols), n)),
            batch_size=args.batch_size,
            bf16=args.bf16,
        )
    if args.grid:
        x = next(iter_split_batches(shards, res, 8))
        with torch.no_grad():
            save_grid([x, model.decode(model.encode(x))], args.grid)
    text = json.dumps(result, indent=2)
    if args.json:
        write_text_atomic(Path(args.json), text + "\n")
    print(text)
    return 0
