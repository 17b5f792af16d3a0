"""``unif2ace export-tokenizer``: an image tokenizer folder ready to ship, with a model card.

The copy can store its weights in bf16 (half the file; compute stays fp32). Storage rounding
moves a few codes (measured on the small tokenizer: 99.5 % of codes unchanged), so the
copy has its own :func:`~unif2ace.tokenizer.pretokenize.tokenizer_hash`: pretokenise and
train with the copy you ship, never with the fp32 original.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import UserError

CARD_FILE = "MODEL_CARD.md"
_PAUSE_S = 600.0  # a gap between two log rows longer than this is a stop, not training


def run_summary(run_dir: Path) -> dict:
    """Steps and training wall time of a tokenizer run folder (its ``metrics.jsonl``;
    pauses between a stop and a resume are left out)."""
    path = run_dir / "metrics.jsonl"
    rows: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:  # a line torn by a kill mid-write
                continue
            if "step" in r and "time" in r:
                rows[int(r["step"])] = r
    steps = sorted(rows)
    times = [rows[s]["time"] for s in steps]
    wall = sum(b - a for a, b in zip(times, times[1:], strict=False) if 0 < b - a < _PAUSE_S)
    last = rows[steps[-1]] if steps else {}
    out = {
        "steps": steps[-1] if steps else None,
        "train_wall_s": round(wall, 1),
        "final": {k: round(float(last[k]), 4) for k in ("loss", "l1", "l2") if k in last},
    }
    init = run_dir / "init.json"  # a fine-tune: where it started (train_image.record_init)
    if init.is_file():
        out["init"] = json.loads(init.read_text())
    return out


def export_tokenizer(
    tokenizer_dir: str | Path,
    out: str | Path,
    dtype: str = "bf16",
    metrics: str | Path | None = None,
    command: str | None = None,
    hardware: str | None = None,
    attach: list[str] | None = None,
) -> Path:
    """Write ``out``: the tokenizer of ``tokenizer_dir`` (weights in ``dtype``), a model card
    with its config, its training run (when ``tokenizer_dir`` is ``RUN/tokenizer``), the
    ``unif2ace eval-tokenizer --json`` results in ``metrics`` and the training ``command``,
    and the ``attach`` files (e.g. the reconstruction grid)."""
    import torch

    from .autoencoder import LFQAutoencoder

    if dtype not in ("fp32", "bf16"):
        raise UserError(f"dtype must be fp32 or bf16, got {dtype!r}")
    src, out = Path(tokenizer_dir), Path(out)
    model = LFQAutoencoder.from_pretrained(src)  # one clear error if it is not a tokenizer
    res = _read_metrics(metrics) if metrics else None
    for f in attach or []:
        if not Path(f).is_file():
            raise UserError(f"file to attach {f!r} not found")
    if dtype == "bf16":
        model.to(torch.bfloat16)
    model.save_pretrained(out)
    if res is not None:
        write_text_atomic(out / "metrics.json", json.dumps(res, indent=2) + "\n")
    for f in attach or []:
        shutil.copyfile(f, out / Path(f).name)
    run = run_summary(src.parent)
    card = tokenizer_card(model.config.to_dict(), run, res, dtype, command, hardware)
    write_text_atomic(out / CARD_FILE, card)
    return out


_NEEDED = ("psnr", "ssim", "codebook_used_fraction", "codebook_perplexity", "code_roundtrip_rate")


def _read_metrics(path: str | Path) -> dict:
    """An ``unif2ace eval-tokenizer --json`` file, checked (UserError otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"metrics file {str(p)!r} not found (`unif2ace eval-tokenizer --json`)")
    try:
        res = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{p} is not valid JSON ({err})") from None
    missing = [k for k in _NEEDED if not isinstance(res, dict) or k not in res]
    if missing:
        raise UserError(f"{p} is not `unif2ace eval-tokenizer --json` output (no {missing})")
    return res


def training_section(tokenizer_dir: Path) -> str | None:
    """The body of the ``## Training`` section of ``tokenizer_dir``'s model card, if any."""
    card = tokenizer_dir / CARD_FILE
    if not card.is_file():
        return None
    body, inside = [], False
    for line in card.read_text().splitlines():
        if line.startswith("## "):
            if inside:
                break
            inside = line.strip() == "## Training"
        elif inside:
            body.append(line)
    return "\n".join(body).strip() or None


def tokenizer_card(
    cfg: dict, run: dict, res: dict | None, dtype: str, command: str | None, hardware: str | None
) -> str:
    """The Markdown model card of an exported image tokenizer."""
    f = cfg["patch_size"] * 2 ** (len(cfg["channel_mult"]) - 1)
    grid = cfg["resolution"] // f
    lines = [
        "# Image tokenizer (LFQ autoencoder)",
        "",
        f"MAGVIT-v2-style lookup-free quantisation: {cfg['resolution']} px RGB -> "
        f"{grid}x{grid} codes of {cfg['codebook_bits']} bits ({2 ** cfg['codebook_bits']:,} "
        f"codes), downsampling {f}, base channels {cfg['base_channels']}, "
        f"channel multipliers {tuple(cfg['channel_mult'])}, norm `{cfg['norm']}`, "
        f"entropy weight {cfg['entropy_weight']}. Weights stored in {dtype}; compute is fp32.",
        "",
        "## Training",
        "",
        f"- steps: {run['steps']}; training wall time {run['train_wall_s'] / 3600:.2f} h"
        + (f" on {hardware}" if hardware else ""),
    ]
    init = run.get("init")
    stage1: list[str] = []
    if init and init.get("stage") == "decoder":
        src = init["init"] if " " in init["init"] else f"`{init['init']}`"
        lines.append(
            "- stage 2: the steps above fine-tune the decoder alone against a PatchGAN "
            "discriminator with feature matching (`unif2ace train tokenizer-decoder`); the "
            f"encoder and quantiser are those of {src} bit for bit, and so are its codes "
            "(same `tokenizer_hash`)"
        )
        if init.get("init_training"):
            stage1 = ["", "### Stage 1 (from its card)", "", init["init_training"]]
    elif init:
        before = (
            f"{init['steps']} steps, {init['train_wall_s'] / 3600:.2f} h"
            if init.get("steps")
            else "its own run"
        )
        lines.append(
            f"- fine-tuned: the steps above start from the weights of `{Path(init['init']).name}"
            f"` ({Path(init['init']).parent.name}: {before})"
        )
    if run["final"]:
        lines.append(f"- final losses: {run['final']}")
    if command:
        lines += ["", "```bash", command, "```"]
    lines += stage1
    if res:
        lines += ["", "## Measured", "", *_metric_lines(res)]
    return "\n".join(lines) + "\n"


def _metric_lines(res: dict) -> list[str]:
    n = res.get("images")
    lines = [
        f"On {n} `{res.get('split', 'test')}` images (`unif2ace eval-tokenizer`):",
        "",
        "| PSNR | SSIM | codes used | perplexity | encode(decode) round trip | colour drift |",
        "|---|---|---|---|---|---|",
        f"| {res['psnr']:.2f} dB | {res['ssim']:.3f} | {res['codebook_used_fraction']:.1%} "
        f"| {res['codebook_perplexity']:.0f} | {res['code_roundtrip_rate']:.1%} "
        f"| {res.get('colour_drift', float('nan')):.2f} / 255 |",
    ]
    surv = res.get("attribute_survival")
    if surv:
        lines += [
            "",
            f"Attribute survival (judge accuracy on reconstructions / on originals, "
            f"{surv['images']} images): overall {surv['ratio']:.3f}; fine attributes "
            "(target >= 0.97):",
            "",
            "| attribute | originals | reconstructions | ratio |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['original']:.3f} | {v['reconstructed']:.3f} | {v['ratio']:.2f} |"
            for k, v in surv["fine"].items()
        ]
        worst = sorted(surv["per_attribute"].items(), key=lambda kv: kv[1]["ratio"])[:6]
        lines += ["", "Weakest: " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in worst)]
    return lines


def register(groups: dict) -> None:
    """Add ``export-tokenizer`` to the top-level commands (see ``unif2ace.cli``)."""
    p = groups["top"].add_parser(
        "export-tokenizer",
        help="copy an image tokenizer with bf16 weights and a model card (e.g. to bundle it)",
        description="Write an image tokenizer folder with its weights stored in bf16 (half the "
        "file, fp32 compute) and a MODEL_CARD.md from its run and its eval-tokenizer JSON.",
    )
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (RUN/tokenizer)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--metrics", help="`unif2ace eval-tokenizer --json` output for the card")
    p.add_argument("--command", help="the training command line, quoted in the card")
    p.add_argument("--hardware", help="hardware line for the card")
    p.add_argument("--attach", action="append", help="file copied into the folder (repeatable)")
    p.set_defaults(
        func=lambda a: (
            print(
                export_tokenizer(
                    a.tokenizer, a.out, a.dtype, a.metrics, a.command, a.hardware, a.attach
                )
            )
            or 0
        )
    )
