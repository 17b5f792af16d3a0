"""``unif2ace recipe PRESET --out DIR``: the whole path from nothing to an evaluated model.

Stages (each one is exactly a documented ``unif2ace`` command, run in-process, so the
report lists commands a user can rerun by hand)::

    data           unif2ace data build            FaceForge shards
    image-tokenizer unif2ace train tokenizer      LFQ autoencoder
    text-tokenizer unif2ace train text-tokenizer  byte-level BPE
    tokenizer-eval unif2ace eval-tokenizer        PSNR / SSIM / codebook use / grid
    pretokenize    unif2ace data pretokenize      codes cached next to the shards
    encoders       unif2ace train encoders        semantic + identity CNN encoders
    model          unif2ace train model           the UniF²ace model
    eval           unif2ace eval                  (when the eval command is installed)

Resumable: every command resumes by itself, and ``DIR/recipe_state.json`` records the
stages that finished (with wall times), so rerunning the recipe skips them. The report
``DIR/REPORT.md`` is rewritten after every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

STATE_FILE, REPORT_FILE = "recipe_state.json", "REPORT.md"


@dataclass(frozen=True)
class RecipePreset:
    """Sizes of one recipe (the ``small`` one made the bundled model)."""

    data_preset: str
    num_faces: int
    tokenizer_preset: str
    tokenizer_args: tuple[str, ...]
    text_vocab: int
    encoder_args: tuple[str, ...]
    model_preset: str
    model_args: tuple[str, ...]
    eval_images: int


RECIPES: dict[str, RecipePreset] = {
    "tiny": RecipePreset(
        data_preset="tiny",
        num_faces=48,
        tokenizer_preset="tiny",
        tokenizer_args=("--steps", "6", "--batch-size", "4", "--sample-every", "0"),
        text_vocab=400,
        encoder_args=(
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--size",
            "32",
            "--feature-dim",
            "32",
            "--width",
            "8",
        ),
        model_preset="tiny",
        model_args=("train.steps=4", "train.sample_every=0", "train.ckpt_every=2"),
        eval_images=8,
    ),
    "small": RecipePreset(
        data_preset="small",
        num_faces=20000,
        tokenizer_preset="small",
        tokenizer_args=(
            "--steps",
            "6000",
            "--batch-size",
            "16",
            "--lr",
            "4e-4",
            "--warmup",
            "300",
            "--sample-every",
            "500",
            "--ckpt-every",
            "200",
            "--set",
            "entropy_weight=0.02",
        ),
        text_vocab=4096,
        encoder_args=("--steps", "2500"),
        model_preset="small",
        model_args=(),
        eval_images=500,
    ),
}


def stages(p: RecipePreset, out: Path) -> list[tuple[str, list[str]]]:
    """(name, unif2ace argv) of every stage of recipe ``p`` writing under ``out``."""
    data, itok, ttok, enc = (
        out / "data",
        out / "image-tokenizer",
        out / "text-tokenizer",
        out / "encoders",
    )
    tok_dir = itok / "tokenizer"
    s = [
        (
            "data",
            [
                "data",
                "build",
                "--preset",
                p.data_preset,
                "--num",
                str(p.num_faces),
                "--seed",
                "0",
                "--out",
                str(data),
            ],
        ),
        (
            "image-tokenizer",
            [
                "train",
                "tokenizer",
                "--preset",
                p.tokenizer_preset,
                "--data",
                str(data),
                "--out",
                str(itok),
                *p.tokenizer_args,
            ],
        ),
        (
            "text-tokenizer",
            [
                "train",
                "text-tokenizer",
                "--data",
                str(data),
                "--out",
                str(ttok),
                "--vocab-size",
                str(p.text_vocab),
            ],
        ),
        (
            "tokenizer-eval",
            [
                "eval-tokenizer",
                "--tokenizer",
                str(tok_dir),
                "--data",
                str(data),
                "--split",
                "test",
                "--max-images",
                str(p.eval_images),
                "--json",
                str(out / "tokenizer_eval.json"),
                "--grid",
                str(out / "tokenizer_grid.png"),
            ],
        ),
        ("pretokenize", ["data", "pretokenize", "--tokenizer", str(tok_dir), "--data", str(data)]),
        (
            "encoders",
            ["train", "encoders", "--data", str(data), "--out", str(enc), *p.encoder_args],
        ),
        (
            "model",
            [
                "train",
                "model",
                "--preset",
                p.model_preset,
                "--data",
                str(data),
                "--tokenizer",
                str(tok_dir),
                "--text-tokenizer",
                str(ttok),
                "--semantic-encoder",
                str(enc / "semantic"),
                "--face-encoder",
                str(enc / "identity"),
                "--out",
                str(out / "model"),
                *p.model_args,
            ],
        ),
    ]
    from .cli import build_parser

    if "eval" in _top_commands(build_parser()):
        s.append(
            (
                "eval",
                [
                    "eval",
                    "--checkpoint",
                    str(out / "model"),
                    "--data",
                    str(data),
                    "--json",
                    str(out / "eval.json"),
                    "--report",
                    str(out / "report"),
                ],
            )
        )
    return s


def _top_commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _read_state(out: Path) -> dict:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"done": {}}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_recipe(name: str, out: str | Path, log=print) -> dict:
    """Run (or resume) recipe ``name`` into ``out``; returns the state (done stages)."""
    from .cli import main

    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _read_state(out)
    state["recipe"] = name
    for stage, argv in stages(RECIPES[name], out):
        if stage in state["done"]:
            log(f"[recipe] {stage}: done before, skipped")
            continue
        log(f"[recipe] {stage}: unif2ace {' '.join(argv)}")
        t0 = time.time()
        rc = main(argv)
        if rc != 0:
            raise UserError(
                f"recipe stage {stage!r} failed (exit {rc}); fix the cause and rerun the "
                f"recipe: finished stages are skipped and this one resumes"
            )
        state["done"][stage] = {"argv": argv, "wall_s": round(time.time() - t0, 1)}
        _write_atomic(out / STATE_FILE, json.dumps(state, indent=2))
        _write_atomic(out / REPORT_FILE, report(out, state))
    return state


def report(out: Path, state: dict) -> str:
    """Markdown report: each stage's command and wall time, then the measured numbers."""
    lines = [
        f"# unif2ace recipe `{state['recipe']}`",
        "",
        "| stage | wall | command |",
        "|---|---|---|",
    ]
    for stage, d in state["done"].items():
        lines.append(f"| {stage} | {d['wall_s']:.0f} s | `unif2ace {' '.join(d['argv'])}` |")
    for title, path in (
        ("Image tokenizer (test split)", out / "tokenizer_eval.json"),
        ("Model evaluation", out / "eval.json"),
    ):
        if path.is_file():
            metrics = json.loads(path.read_text())
            lines += [
                "",
                f"## {title}",
                "",
                "```json",
                json.dumps(_scalars(metrics), indent=2),
                "```",
            ]
    if (out / "tokenizer_grid.png").is_file():
        lines += ["", "![originals over reconstructions](tokenizer_grid.png)"]
    return "\n".join(lines) + "\n"


def _scalars(d: dict) -> dict:
    """The top-level numbers and strings of a metrics dict (nested tables stay in the JSON)."""
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str))}


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser(
        "recipe",
        help="run the whole path: data -> tokenizers -> model -> evaluation -> report",
        description="Build FaceForge data, train the image and text tokenizers, pretokenise, "
        "train the encoders and the model, evaluate, and write OUT/REPORT.md. Rerun the same "
        "command to resume after an interruption.",
    )
    p.add_argument("preset", choices=sorted(RECIPES), help="tiny (minutes) or small (hours)")
    p.add_argument("--out", required=True, help="folder for every stage's output")
    p.set_defaults(func=lambda a: (run_recipe(a.preset, a.out), 0)[1])
