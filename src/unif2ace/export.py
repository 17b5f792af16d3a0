"""``unif2ace export``: a training checkpoint -> a small model folder with its model card.

The folder is :class:`~unif2ace.pipeline.FacePipeline`'s layout (what ``--checkpoint`` and
the bundled model use) plus::

    MODEL_CARD.md        data, steps, tokens, wall time, hardware, metrics, loss curves
    loss_curves.png      training losses and accuracies against steps (from metrics.jsonl)
    training.json        the numbers of the card, machine-readable

The transformer is written in bf16 (the pipeline runs it in bf16 anyway); the EMA weights are
exported when the checkpoint has them. ``--tokenizer-dtype bf16`` also halves the image
tokenizer (its codes then differ from fp32 pretokenisation on a few positions: measure with
``unif2ace eval-tokenizer``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch

from .atomic import write_text_atomic
from .errors import UserError

CARD_FILE, CURVES_FILE, SUMMARY_FILE = "MODEL_CARD.md", "loss_curves.png", "training.json"
CURVES = (("loss", "total"), ("t2i", "D3Diff"), ("mask", "mask CE"), ("mmu", "text CE"))
ACCURACIES = (("mask_acc", "masked-code accuracy"), ("text_acc", "answer-token accuracy"))


def read_metrics(run_dir: Path) -> list[dict]:
    """Training log rows (``metrics.jsonl``) with a loss, in step order, last write wins
    (a resumed run rewrites the steps after its checkpoint)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if "loss" in r and "step" in r:
                rows[int(r["step"])] = r
    return [rows[s] for s in sorted(rows)]


def _smooth(values: list[float], beta: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out


def plot_curves(rows: list[dict], path: Path, title: str) -> Path:
    """Losses (log scale) and accuracies against steps, raw (faint) and smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    steps = [r["step"] for r in rows]
    for ax, keys in ((ax_l, CURVES), (ax_a, ACCURACIES)):
        for key, label in keys:
            ys = [r.get(key, math.nan) for r in rows]
            if all(math.isnan(y) for y in ys):
                continue
            (line,) = ax.plot(steps, _smooth(ys), label=label)
            ax.plot(steps, ys, color=line.get_color(), alpha=0.2, linewidth=0.8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_l.set_yscale("log")
    ax_l.set_title("losses")
    ax_a.set_title("accuracies")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_summary(ckpt: Path, run_cfg: dict, rows: list[dict]) -> dict:
    """Steps, samples, tokens and wall time of a checkpoint (its trainer state)."""
    state_file = ckpt / "trainer_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    prog = state.get("state", state)
    last = rows[-1] if rows else {}
    return {
        "step": prog.get("step", last.get("step")),
        "samples_seen": prog.get("samples_seen"),
        "tokens_seen": prog.get("tokens_seen"),
        "train_wall_s": round(prog.get("elapsed_s", last.get("elapsed_s", 0.0)), 1),
        "peak_mem_gb": max((r.get("peak_mem_gb", 0.0) for r in rows), default=None),
        "final": {k: last[k] for k, _ in CURVES + ACCURACIES if k in last},
        "train": run_cfg.get("train", {}),
        "data": run_cfg.get("data", {}),
    }


def lineage(run_cfg: dict, limit: int = 32) -> list[dict]:
    """The warm starts behind a run, newest first: each ``init.checkpoint`` with the weights
    taken from it and its own steps, tokens and wall time, followed back through its config.

    A run folder stands for its newest checkpoint (what a warm start from it loaded, unless
    that run went on afterwards). An exported model folder (e.g. the bundled model) counts
    what its ``training.json`` recorded at export, its own lineage included, and ends the
    walk; its entry carries the folder's content digest (config and weights, the rule of
    :func:`unif2ace.bundled.digest`), which names the model wherever the folder was. The walk
    stops at a source that is no longer on disk (its entry then has ``found: False`` and no
    counts) or after ``limit`` entries."""
    from .bundled import content_digest
    from .pipeline import _resolve_folder

    out: list[dict] = []
    cfg = run_cfg
    while len(out) < limit:
        init = cfg.get("init") or {}
        src = init.get("checkpoint") or ""
        if not src:
            break
        entry = {"source": src, "weights": init.get("checkpoint_weights", "ema"), "found": False}
        out.append(entry)
        ck = _resolve_folder(Path(src))
        if (ck / SUMMARY_FILE).is_file() and not (ck / "trainer_state.json").is_file():
            s = json.loads((ck / SUMMARY_FILE).read_text())
            fmt = s.get("weights_format", "bf16")
            entry |= {"found": True, "step": s.get("step"), "tokens_seen": s.get("tokens_seen"),
                      "train_wall_s": s.get("train_wall_s"), "digest": content_digest(ck),
                      "weights": f"exported {s.get('weights', 'model')}, {fmt}"}  # fmt: skip
            out += list(s.get("lineage") or [])[: limit - len(out)]
            break
        if not ((ck / "config.json").is_file() and (ck / "trainer_state.json").is_file()):
            break
        state = json.loads((ck / "trainer_state.json").read_text())
        prog = state.get("state", state)
        entry |= {
            "found": True,
            "step": prog.get("step"),
            "tokens_seen": prog.get("tokens_seen"),
            "train_wall_s": round(prog.get("elapsed_s", 0.0), 1),
        }
        cfg = json.loads((ck / "config.json").read_text())
    return out


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    weights: str = "ema",
    tokenizer_dtype: str = "fp32",
    metrics: list[str] | None = None,
    hardware: str | None = None,
    image_tokenizer: str | Path | None = None,
    notes: str | Path | None = None,
    attach: list[str] | None = None,
    sampler: dict | None = None,
    weights_format: str = "bf16",
    share_bundled: bool = False,
) -> Path:
    """Write the model folder + card of ``checkpoint`` (a checkpoint or a run folder).

    ``image_tokenizer``: ship this tokenizer instead of the run's own, e.g. its stage-2
    decoder (``unif2ace train tokenizer-decoder``); it must produce the same codes (equal
    :func:`~unif2ace.tokenizer.pretokenize.tokenizer_hash`), or the model would be given
    images it never learnt to read.

    ``notes``: a Markdown file appended to the card (e.g. an honest reading of the metrics);
    ``attach``: files copied into the folder (images the notes show); ``sampler``: new
    default image-sampler settings (e.g. ``{"guidance_scale": 3.0}`` chosen by a sweep);
    ``weights_format``: "bf16", or "q8" for 8-bit weight blocks (:mod:`unif2ace.quant`);
    ``share_bundled``: the run used the bundled tokenizers, so the folder points at them
    instead of holding copies (checked; see ``FacePipeline.save_pretrained``)."""
    from .pipeline import FacePipeline, _resolve_folder
    from .train.checkpoint import EMA_FILE, MODEL_FILE, load_model_weights

    for f in [*(metrics or []), *(attach or []), *([notes] if notes is not None else [])]:
        if not Path(f).is_file():
            raise UserError(f"{str(f)!r} (--metrics/--notes/--attach) is not a file")
    src = Path(checkpoint)
    ckpt = _resolve_folder(src)
    if not (ckpt / MODEL_FILE).is_file():
        raise UserError(f"no checkpoint in {str(src)!r}; pass a run folder or a checkpoint")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    pipe = FacePipeline.from_pretrained(ckpt, dtype=torch.bfloat16)
    used = "model"
    if weights == "ema" and (ckpt / EMA_FILE).is_file():
        load_model_weights(ckpt, pipe.model, file=EMA_FILE)
        used = "ema"
    elif weights == "ema-debiased":
        from .train.unified import debiased_ema

        # the pipeline holds the live weights (frozen ones included); the averages replace
        # the trainable ones
        unexpected = pipe.model.load_state_dict(debiased_ema(ckpt), strict=False).unexpected_keys
        if unexpected:
            raise UserError(f"de-biased EMA does not match the model: {unexpected[:5]}")
        used = "ema, de-biased (the fixed-decay average without its random start)"
    if image_tokenizer is not None:
        pipe.image_tokenizer = _same_codes_tokenizer(ckpt, Path(image_tokenizer))
    if sampler:
        for k in ("guidance_scale", "num_steps"):
            v = sampler.get(k)
            if v is not None and (v < 0 or (k == "num_steps" and v < 1)):
                raise UserError(f"{k} must be {'>= 1' if k == 'num_steps' else '>= 0'}, got {v}")
        pipe.sampling.sampler = pipe.sampler_config(**sampler)
    if tokenizer_dtype == "bf16":
        pipe.image_tokenizer.to(torch.bfloat16)
    out = Path(out)
    if weights_format not in ("bf16", "q8"):
        raise UserError(f"weights format must be bf16 or q8, got {weights_format!r}")
    pipe.save_pretrained(out, q8=weights_format == "q8", share_bundled=share_bundled)
    pipe.image_tokenizer.float()
    rows = read_metrics(run_dir)
    run_cfg = json.loads((ckpt / "config.json").read_text())
    summary = training_summary(ckpt, run_cfg, rows)
    summary["lineage"] = lineage(run_cfg)
    summary |= {"weights": used, "tokenizer_dtype": tokenizer_dtype, "source": str(ckpt)}
    summary["weights_format"] = weights_format
    summary["image_tokenizer"] = str(image_tokenizer or ckpt / "image_tokenizer")
    summary["hardware"] = hardware or _hardware()
    summary["parameters"] = sum(p.numel() for p in pipe.model.parameters())
    sc = pipe.sampling.sampler
    summary["sampler"] = {k: getattr(sc, k) for k in ("name", "num_steps", "guidance_scale")}
    summary["metrics"] = {Path(m).stem: json.loads(Path(m).read_text()) for m in metrics or []}
    for f in attach or []:
        shutil.copyfile(f, out / Path(f).name)
    if notes is not None:
        summary["notes"] = Path(notes).read_text()
    if rows:
        plot_curves(rows, out / CURVES_FILE, f"unif2ace {run_cfg.get('preset', '')} training")
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))
    write_text_atomic(out / CARD_FILE, model_card(summary, run_cfg, out))
    return out


def _same_codes_tokenizer(ckpt: Path, path: Path):
    """The tokenizer at ``path`` if it makes the same codes as the checkpoint's own."""
    from .pipeline import IMAGE_TOKENIZER_DIR
    from .tokenizer.autoencoder import LFQAutoencoder
    from .tokenizer.pretokenize import tokenizer_hash

    tok = LFQAutoencoder.from_pretrained(path)  # one clear error if it is not a tokenizer
    own = ckpt / IMAGE_TOKENIZER_DIR
    if tokenizer_hash(path) != tokenizer_hash(own):
        raise UserError(
            f"{path} encodes images differently from the tokenizer the model was trained with "
            f"({own}); only a fine-tuned decoder of that same tokenizer can replace it "
            "(`unif2ace train tokenizer-decoder`)"
        )
    return tok


def export_judge(judge_dir: str | Path, out: str | Path, dtype: str = "bf16") -> Path:
    """Copy an attribute judge (``unif2ace train judge``) to ``out`` with its weights stored
    in ``dtype``; it still computes in fp32 (bf16 storage halves the file).

    Measured on the small judge, 300 FaceForge test faces: accuracy 0.8825 (fp32) vs 0.8826
    (bf16 storage), 99.9 % of predictions identical."""
    from .eval.judge import CONFIG, load_judge, save_judge

    src = Path(judge_dir)
    judge = load_judge(src)  # one clear error if it is not a judge
    meta = json.loads((src / CONFIG).read_text())
    meta = {k: v for k, v in meta.items() if k not in ("format", "judge", "outputs", "pose")}
    if dtype == "bf16":
        judge.to(torch.bfloat16)
    save_judge(judge, out, {**meta, "stored_dtype": dtype})
    for name in (CARD_FILE, "metrics.json"):
        if (src / name).is_file():
            text = (src / name).read_text()
            if name == CARD_FILE:
                text += f"\nWeights stored in {dtype} (`unif2ace export-judge`); compute is fp32.\n"
            write_text_atomic(Path(out) / name, text)
    return Path(out)


def _hardware() -> str:
    from .bench_env import environment

    env = environment()
    return f"{env['cpu_count']}-core {env['cpu_model']} ({', '.join(env['cpu_flags'])}), CPU only"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


_WEIGHT_FORMATS = {
    "bf16": "bf16",
    "q8": "8-bit blocks (Q8_0: int8 + one fp32 scale per 64 values; dequantised to bf16 on load)",
}


def _sampler_line(sc: dict | None) -> str:
    if not sc:
        return "?"
    return f"{sc['name']}, {sc['num_steps']} steps, guidance scale {sc['guidance_scale']}"


def _metrics_table(metrics: dict) -> list[str]:
    """Markdown rows: an ``unif2ace eval`` JSON as metric × split (its ``summary``), any
    other JSON as its top-level scalars."""
    from .eval.report import fmt_metric, with_interval

    summ = metrics.get("summary")
    if isinstance(summ, dict) and summ and all(isinstance(v, dict) for v in summ.values()):
        splits = list(summ)
        keys = list(dict.fromkeys(k for v in summ.values() for k in v))
        ci = metrics.get("ci95") or {}
        rows = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        rows += [
            f"| {k} | "
            + " | ".join(
                with_interval(fmt_metric(summ[sp].get(k, "")), ci.get(sp, {}).get(k))
                for sp in splits
            )
            + " |"
            for k in keys
        ]
        div = metrics.get("diversity", {})
        rows += [f"| diversity: {k} | {_fmt(v)} |" for k, v in div.items() if isinstance(v, float)]
        if ci:
            rows += ["", "Brackets: 95 % bootstrap intervals over the evaluated faces."]
        return rows
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    return ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]


def _lineage_rows(s: dict, hours: float) -> list[str]:
    """Card rows naming the warm starts behind the run and the totals over all of them."""
    chain = s.get("lineage") or []
    if not chain:
        return []
    parts = []
    for e in chain:
        if not e.get("found"):
            parts.append(f"`{e['source']}` ({e['weights']} weights; not on disk, not counted)")
            continue
        ident = f", digest {e['digest']}" if e.get("digest") else ""
        parts.append(
            f"`{e['source']}` ({e['weights']} weights{ident}): {_fmt(e['step'])} steps, "
            f"{_fmt(e['tokens_seen'])} tokens, {(e['train_wall_s'] or 0) / 3600:.2f} h"
        )
    rows = ["| warm start | from " + "; which started from ".join(parts) + " |"]
    found = [e for e in chain if e.get("found")]
    if found:
        steps = (s["step"] or 0) + sum(e["step"] or 0 for e in found)
        tokens = (s["tokens_seen"] or 0) + sum(e["tokens_seen"] or 0 for e in found)
        h = hours + sum((e["train_wall_s"] or 0) / 3600 for e in found)
        partial = "" if len(found) == len(chain) else " (the runs found on disk)"
        rows.append(f"| in all | {_fmt(steps)} steps, {_fmt(tokens)} tokens, {h:.2f} h{partial} |")
    return rows


def model_card(s: dict, run_cfg: dict, out: Path) -> str:
    """Markdown model card from :func:`training_summary` plus the metric files."""
    m = run_cfg.get("model", {})
    hours = (s["train_wall_s"] or 0) / 3600
    lines = [
        f"# unif2ace `{run_cfg.get('preset', '?')}` model",
        "",
        "UniF²ace (arXiv 2503.08120) re-implemented: one transformer that draws faces from text "
        "(masked discrete diffusion over LFQ image codes, D3Diff loss) and describes them "
        "(captions, VQA), with grouped token- and sequence-level mixture of experts.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {s['parameters']:,} (d_model {m.get('d_model')}, {m.get('n_layers')} "
        f"layers, {m.get('n_routed_experts')} routed experts top-{m.get('top_k')} per group) |",
        f"| weights | {s['weights']} weights, transformer "
        f"{_WEIGHT_FORMATS[s.get('weights_format', 'bf16')]}, image tokenizer "
        f"{s['tokenizer_dtype']} |",
        f"| data | FaceForge (procedural faces) `{s['data'].get('data', '')}` split "
        f"`{s['data'].get('split', 'train')}`; task mix t2i/caption/vqa = "
        f"{s['data'].get('t2i')}/{s['data'].get('caption')}/{s['data'].get('vqa')}"
        + (
            f", VQA answers balanced (data.vqa_balance={s['data']['vqa_balance']})"
            if s["data"].get("vqa_balance")
            else ""
        )
        + (
            f", up to {s['data']['vqa_turns']} VQA pairs per example as one conversation "
            "(data.vqa_turns)"
            if s["data"].get("vqa_turns", 1) > 1
            else ""
        )
        + " |",
        f"| training | {_fmt(s['step'])} steps of {s['train'].get('batch_size')} sequences "
        f"({_fmt(s['samples_seen'])} samples, {_fmt(s['tokens_seen'])} tokens), AdamW lr "
        f"{s['train'].get('optim', {}).get('lr')}, bf16 autocast |",
        f"| wall time | {hours:.2f} h of training |",
        *_lineage_rows(s, hours),
        f"| hardware | {s['hardware']} |",
        f"| peak memory | {_fmt(s['peak_mem_gb'])} GB |",
        f"| image sampling default | {_sampler_line(s.get('sampler'))} |",
        "",
        "## Final training losses (last logged step)",
        "",
        "| " + " | ".join(s["final"]) + " |",
        "|" + "---|" * len(s["final"]),
        "| " + " | ".join(_fmt(v) for v in s["final"].values()) + " |",
    ]
    if (out / CURVES_FILE).is_file():
        lines += ["", f"![loss curves]({CURVES_FILE})"]
    for name, metrics in s["metrics"].items():
        lines += ["", f"## {name}", ""] + _metrics_table(metrics)
    if s.get("notes"):
        lines += ["", s["notes"].strip()]
    lines += [
        "",
        "## Use",
        "",
        "```",
        "unif2ace generate 'a smiling woman with red curly hair' --out-dir faces/",
        "unif2ace describe face.png",
        "unif2ace ask face.png 'Is she wearing earrings?'",
        "```",
    ]
    return "\n".join(lines) + "\n"


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser(
        "export",
        help="export a training checkpoint as a small model folder with a model card",
        description="Write a checkpoint (or a run's newest one) as a FacePipeline folder: "
        "bf16 transformer (EMA weights when present), tokenizers, MODEL_CARD.md and "
        "loss_curves.png.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or training run folder")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument(
        "--weights",
        choices=["ema", "model", "ema-debiased"],
        default="ema",
        help="ema (default; the live weights when the run kept none), model (the live "
        "weights), ema-debiased (a run made with a fixed EMA decay, optim.ema_warmup=false: "
        "its average without the random initialisation it still holds)",
    )
    p.add_argument("--tokenizer-dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument(
        "--weights-format",
        choices=["bf16", "q8"],
        default="bf16",
        help="transformer weights: bf16, or q8 (8-bit blocks, ~0.53x the file)",
    )
    p.add_argument(
        "--metrics", action="append", help="JSON metrics file to add to the card (repeatable)"
    )
    p.add_argument("--hardware", help="hardware line for the card (default: this machine)")
    p.add_argument(
        "--image-tokenizer",
        help="ship this image tokenizer instead (same codes: e.g. a stage-2 decoder)",
    )
    p.add_argument(
        "--share-bundled-tokenizers",
        action="store_true",
        help="the run used the bundled tokenizers: record them instead of copying them "
        "(how the bundled model is packaged)",
    )
    p.add_argument("--guidance", type=float, help="default guidance scale of the folder")
    p.add_argument("--sampler-steps", type=int, help="default image sampler steps of the folder")
    p.add_argument("--notes", help="Markdown file appended to the model card")
    p.add_argument(
        "--attach", action="append", help="file copied into the model folder (repeatable)"
    )
    p.set_defaults(func=_run)
    p = groups["top"].add_parser(
        "export-judge",
        help="copy an attribute judge with its weights stored in bf16 (e.g. to bundle it)",
        description="Write a judge folder (unif2ace train judge) with bf16 weights: half the "
        "file, fp32 compute, the same predictions up to rounding.",
    )
    p.add_argument("--judge", required=True, help="judge folder to copy")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.set_defaults(func=lambda a: print(export_judge(a.judge, a.out, a.dtype)) or 0)


def _run(a: argparse.Namespace) -> int:
    out = export_model(
        a.checkpoint,
        a.out,
        a.weights,
        a.tokenizer_dtype,
        a.metrics,
        a.hardware,
        image_tokenizer=a.image_tokenizer,
        notes=a.notes,
        attach=a.attach,
        sampler={"guidance_scale": a.guidance, "num_steps": a.sampler_steps},
        weights_format=a.weights_format,
        share_bundled=a.share_bundled_tokenizers,
    )
    print(out)
    return 0
