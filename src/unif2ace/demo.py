"""``unif2ace demo``: the main job on bundled defaults, no downloads.

With the bundled model (or ``--checkpoint DIR``) it draws faces from FaceForge test prompts,
captions FaceForge test faces (records of the ``test`` split the model never trained on,
rebuilt exactly from their seed) and answers their VQA questions, and writes::

    OUT/index.html         a page with everything below, beside the references
    OUT/generated.png      prompts -> generated faces
    OUT/described.png      test faces -> the model's captions
    OUT/results.json       prompts, captions, questions, answers and references

An install without a bundled model (and no ``--checkpoint``) shows the data engine instead:
``OUT/faceforge_contact_sheet.png`` of the same test faces with their prompts, and a note on
how to train a model (:func:`data_only_demo`).
"""

from __future__ import annotations

import argparse
import html
import json
import time
from pathlib import Path

from .atomic import write_text_atomic


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser(
        "demo",
        help="run the main job on bundled defaults: generate, describe and answer",
        description="Generate faces from prompts, caption test faces and answer questions "
        "with the bundled model (or --checkpoint), and write OUT/index.html.",
    )
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--checkpoint", help="model folder or training run (default: bundled)")
    p.add_argument("--num", type=int, default=8, help="prompts and test faces (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.set_defaults(func=run_demo)


def test_records(num: int, data_seed: int = 0) -> list[dict]:
    """The first ``num`` records of FaceForge's ``test`` split (small preset, seed 0): a pure
    function of (seed, split, index), so these are exactly the held-out test faces."""
    from .data.faceforge.build import get_preset, make_record

    preset = get_preset("small")
    return [make_record(data_seed, "test", i, preset) for i in range(num)]


def run_demo(args: argparse.Namespace) -> int:
    from .data.shards import decode_image
    from .data.show import contact_sheet
    from .errors import UserError
    from .pipeline import FacePipeline, bundled_model_dir

    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    if args.checkpoint is None and not (bundled_model_dir() / "model.safetensors").is_file():
        return data_only_demo(args)
    t0 = time.time()
    pipe = FacePipeline.from_pretrained(args.checkpoint)
    out = Path(args.out)
    (out / "faces").mkdir(parents=True, exist_ok=True)
    recs = test_records(args.num)
    prompts = [r["prompts"][0] for r in recs]
    gen_kwargs = {"seed": args.seed} | ({"num_steps": args.steps} if args.steps else {})
    generated = pipe.generate(prompts, **gen_kwargs)
    t_gen = time.time() - t0
    faces = [decode_image(r["image"]) for r in recs]
    captions = pipe.describe(faces)
    qa = [r["vqa"][:2] for r in recs]
    answers = pipe.ask(
        [f for f, q in zip(faces, qa, strict=True) for _ in q],
        [x["question"] for q in qa for x in q],
    )
    for i, (g, f) in enumerate(zip(generated, faces, strict=True)):
        g.save(out / "faces" / f"generated-{i}.png")
        f.save(out / "faces" / f"test-{i}.png")
    cols = min(4, args.num)
    contact_sheet(generated, prompts, cols=cols, cell=192, text_lines=5).save(out / "generated.png")
    contact_sheet(faces, captions, cols=cols, cell=192, text_lines=9).save(out / "described.png")
    results = _results(recs, prompts, captions, qa, answers)
    results["seconds"] = {"generate": round(t_gen, 1), "total": round(time.time() - t0, 1)}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "index.html", _page(results))
    print(json.dumps({"page": str(out / "index.html"), **results["seconds"]}))
    return 0


def data_only_demo(args: argparse.Namespace) -> int:
    """No bundled model in this install (and no --checkpoint): show the data engine instead.

    Writes ``OUT/faceforge_contact_sheet.png`` (FaceForge test faces labelled with their
    prompts) and ``OUT/results.json``, and says how to get a model."""
    from .data.shards import decode_image
    from .data.show import contact_sheet

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recs = test_records(max(args.num, 8))
    faces = [decode_image(r["image"]) for r in recs]
    prompts = [r["prompts"][0] for r in recs]
    sheet = out / "faceforge_contact_sheet.png"
    contact_sheet(faces, prompts, cols=min(8, len(faces)), cell=128).save(sheet)
    res = {
        "model": None,
        "note": "this install has no bundled model yet: train one from the bundled parts with "
        "`unif2ace recipe small --bundled --out runs/recipe` (hours on 2 cores) and pass "
        "--checkpoint runs/recipe/model",
        "faces": [
            {"id": r["id"], "prompt": p, "caption": r["caption"]}
            for r, p in zip(recs, prompts, strict=True)
        ],
    }
    shown = {"contact_sheet": str(sheet)}
    from . import bundled

    if bundled.available("image_tokenizer"):
        res["tokenizer"] = bundled_tokenizer_demo(recs, out)
        shown["reconstructions"] = res["tokenizer"]["grid"]
    res["seconds"] = round(time.time() - t0, 1)
    write_text_atomic(out / "results.json", json.dumps(res, indent=2))
    print(json.dumps({**shown, "note": res["note"]}))
    return 0


def bundled_tokenizer_demo(recs: list[dict], out: Path) -> dict:
    """The bundled image tokenizer on the demo's test faces: ``OUT/reconstructions.png``
    (faces over their decoded codes) and the PSNR of each reconstruction."""
    import torch

    from . import bundled
    from .tokenizer.autoencoder import LFQAutoencoder
    from .tokenizer.evaluate import psnr
    from .tokenizer.images import png_to_tensor, save_grid

    tok = LFQAutoencoder.from_pretrained(bundled.path("image_tokenizer"))
    res = tok.config.resolution
    x = torch.stack([png_to_tensor(r["image"], res) for r in recs])
    with torch.no_grad():
        codes = tok.encode(x)
        y = tok.decode(codes)
    grid = out / "reconstructions.png"
    save_grid([x[:8], y[:8]], grid)
    g = tok.config.grid
    return {
        "grid": str(grid),
        "codes_per_face": f"{g}x{g} of {tok.codebook_size}",
        "psnr_db": [round(float(v), 2) for v in psnr((x + 1) / 2, (y + 1) / 2)],
    }


def _results(recs, prompts, captions, qa, answers) -> dict:
    it = iter(answers)
    faces = []
    for r, cap, q in zip(recs, captions, qa, strict=True):
        faces.append(
            {
                "id": r["id"],
                "caption": cap,
                "reference_caption": r["caption"],
                "qa": [
                    {"question": x["question"], "answer": next(it), "reference": x["answer"]}
                    for x in q
                ],
            }
        )
    return {"generated": [{"prompt": p} for p in prompts], "described": faces}


def _page(res: dict) -> str:
    e = html.escape
    gen = "".join(
        f'<figure><img src="faces/generated-{i}.png"><figcaption>{e(g["prompt"])}'
        "</figcaption></figure>"
        for i, g in enumerate(res["generated"])
    )
    rows = []
    for i, f in enumerate(res["described"]):
        qa = "".join(
            f"<li><b>{e(x['question'])}</b> {e(x['answer'])} "
            f"<span class=ref>(reference: {e(x['reference'])})</span></li>"
            for x in f["qa"]
        )
        rows.append(
            f'<tr><td><img src="faces/test-{i}.png"></td><td><p>{e(f["caption"])}</p>'
            f"<p class=ref>Reference: {e(f['reference_caption'])}</p><ul>{qa}</ul></td></tr>"
        )
    return (
        "<!doctype html><meta charset=utf-8><title>unif2ace demo</title><style>"
        "body{font:15px sans-serif;max-width:1100px;margin:auto}figure{display:inline-block;"
        "width:200px;vertical-align:top;margin:6px}img{width:192px;image-rendering:auto}"
        "figcaption{font-size:13px}.ref{color:#777}td{vertical-align:top;padding:6px}</style>"
        "<h1>unif2ace demo</h1><h2>Text → face</h2>" + gen + "<h2>Face → text (FaceForge test "
        "faces, never seen in training)</h2><table>" + "".join(rows) + "</table>"
    )
