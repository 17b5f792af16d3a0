"""``unif2ace generate``, ``describe`` and ``ask``: the pipeline on the command line.

Without ``--checkpoint`` the bundled model is used. Heavy imports happen in the handlers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .atomic import write_text_atomic
from .errors import UserError

MIN_CELL = 128  # grid cells are at least this many pixels (small images are upscaled)


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    top = groups["top"]
    p = top.add_parser(
        "generate",
        help="draw faces from text prompts",
        description="Draw faces from text prompts (or attributes) with a trained model.",
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="text prompt(s)")
    p.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="attribute of one extra prompt worded from the ontology, e.g. --attr hair_color=red "
        "--attr smile=yes (repeatable)",
    )
    p.add_argument("--n", type=int, default=4, help="faces per prompt (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's, 16)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (0 = off)")
    p.add_argument("--sampler", choices=("maskgit", "ancestral"), help="default: the model's")
    p.add_argument("--temperature", type=float, help="code sampling temperature")
    p.add_argument("--batch-size", type=int, default=8, help="faces per sampler run")
    p.add_argument("-o", "--out", default="faces.png", help="grid PNG (default faces.png)")
    p.add_argument("--out-dir", help="write one PNG per face into this folder instead of a grid")
    _common(p)
    p.set_defaults(func=run_generate)

    p = top.add_parser("describe", help="caption face images", description="Caption faces.")
    p.add_argument("images", nargs="+", metavar="IMG", help="image file(s)")
    p.add_argument("--max-new-tokens", type=int, help="caption length limit")
    _text_opts(p)
    _common(p)
    p.set_defaults(func=run_describe)

    p = top.add_parser(
        "ask", help="answer questions about a face", description="Answer questions about a face."
    )
    p.add_argument("image", metavar="IMG", help="image file")
    p.add_argument("questions", nargs="+", metavar="QUESTION")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit")
    _text_opts(p)
    _common(p)
    p.set_defaults(func=run_ask)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model folder (default: the bundled model)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--fp32", action="store_true", help="fp32 weights instead of bf16")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _text_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument(
        "--no-repeat-ngram",
        type=int,
        help="never repeat an n-gram of this many tokens (default 4; 0 = off)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)


def _load(args: argparse.Namespace):
    import torch

    from .pipeline import FacePipeline

    dtype = torch.float32 if args.fp32 else torch.bfloat16
    return FacePipeline.from_pretrained(args.checkpoint, device=args.device, dtype=dtype)


def _attributes(pairs: list[str]) -> dict:
    from .data.ontology import parse_value

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--attr expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = parse_value(name.strip(), value)
    return out


def run_generate(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    prompts: list = list(args.prompts) + ([_attributes(args.attr)] if args.attr else [])
    if not prompts:
        raise UserError('give a prompt, e.g. unif2ace generate "a smiling woman with red hair"')
    pipe = _load(args)
    texts = pipe.prompt_texts(prompts, args.seed)
    t0 = time.perf_counter()
    images = pipe.generate(
        [t for t in texts for _ in range(args.n)],
        num_steps=args.steps,
        guidance_scale=args.guidance,
        sampler=args.sampler,
        temperature=args.temperature,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - t0
    rows = [images[i * args.n : (i + 1) * args.n] for i in range(len(texts))]
    files = _write_files(rows, texts, Path(args.out_dir)) if args.out_dir else None
    out = None if files else str(save_labelled_grid(rows, texts, Path(args.out)))
    summary = {
        "prompts": texts,
        "out": out,
        "files": files,
        "images": len(images),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(images) / seconds, 3),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        where = out or f"{len(files)} files in {args.out_dir}"
        print(f"{len(images)} faces in {seconds:.1f}s -> {where}")
    return 0


def _write_files(rows, texts: list[str], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files, index = [], []
    for i, (row, text) in enumerate(zip(rows, texts, strict=True)):
        for j, img in enumerate(row):
            path = folder / f"{i:03d}_{j:02d}.png"
            img.save(path)
            files.append(str(path))
            index.append({"file": path.name, "prompt": text, "prompt_index": i, "sample": j})
    write_text_atomic(folder / "prompts.json", json.dumps(index, indent=2))
    return files


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def save_labelled_grid(rows, labels: list[str], path: Path, pad: int = 6) -> Path:
    """One row of images per label, the label (wrapped) above its row; written atomically."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(rows[0][0].size[0], MIN_CELL)
    cols = max(len(r) for r in rows)
    width = max(cols * (size + pad) + pad, 2 * MIN_CELL)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 3
    wrapped = [_wrap(probe, t, font, width - 2 * pad) for t in labels]
    height = sum(len(w) * line_h + size + 3 * pad for w in wrapped) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = pad
    for row, lines in zip(rows, wrapped, strict=True):
        for k, line in enumerate(lines):
            draw.text((pad, y + k * line_h), line, fill="black", font=font)
        y += len(lines) * line_h + pad
        for j, img in enumerate(row):
            cell = img if img.size[0] == size else img.resize((size, size), Image.NEAREST)
            canvas.paste(cell, (pad + j * (size + pad), y))
        y += size + 2 * pad
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    canvas.save(tmp)
    tmp.replace(path)
    return path


def _text_kwargs(args: argparse.Namespace) -> dict:
    kw = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    if args.no_repeat_ngram is not None:
        kw["no_repeat_ngram"] = args.no_repeat_ngram
    return kw


def run_describe(args: argparse.Namespace) -> int:
    pipe = _load(args)
    captions = pipe.describe(args.images, **_text_kwargs(args))
    if args.json:
        pairs = zip(args.images, captions, strict=True)
        print(json.dumps([{"image": i, "caption": c} for i, c in pairs]))
    else:
        for img, cap in zip(args.images, captions, strict=True):
            print(f"{img}: {cap}" if len(args.images) > 1 else cap)
    return 0


def run_ask(args: argparse.Namespace) -> int:
    pipe = _load(args)
    answers = pipe.ask([args.image], args.questions, **_text_kwargs(args))
    if args.json:
        pairs = zip(args.questions, answers, strict=True)
        print(json.dumps([{"image": args.image, "question": q, "answer": a} for q, a in pairs]))
    else:
        for q, a in zip(args.questions, answers, strict=True):
            print(f"Q: {q}\nA: {a}" if len(args.questions) > 1 else a)
    return 0
