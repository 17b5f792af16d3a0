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
    judge          unif2ace train judge           the attribute judge (separate network)
    eval           unif2ace eval                  generation + understanding metrics

Resumable: every command resumes by itself, and ``DIR/recipe_state.json`` records the
stages that finished (with wall times), so rerunning the recipe skips them. The report
``DIR/REPORT.md`` is rewritten after every stage.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomic
from .errors import UserError

STATE_FILE, REPORT_FILE = "recipe_state.json", "REPORT.md"


@dataclass(frozen=True)
class RecipePreset:
    """Sizes of one recipe (the ``small`` one made the bundled model); ``*_args`` are extra
    command-line arguments of the stage's command, as one string."""

    data_preset: str
    num_faces: int
    tokenizer_preset: str
    tokenizer_args: str
    text_vocab: int
    encoder_args: str
    model_preset: str
    model_args: str
    eval_images: int
    judge_args: str
    eval_args: str


RECIPES: dict[str, RecipePreset] = {
    "tiny": RecipePreset(
        data_preset="tiny",
        num_faces=48,
        tokenizer_preset="tiny",
        tokenizer_args="--steps 6 --batch-size 4 --sample-every 0",
        text_vocab=400,
        encoder_args="--steps 4 --batch-size 8 --size 32 --feature-dim 32 --width 8",
        model_preset="tiny",
        model_args="train.steps=4 train.sample_every=0 train.ckpt_every=2",
        eval_images=8,
        judge_args="--steps 2 --batch-size 8 --size 32 --width 8",
        eval_args="--num 2 --fid-real 2 --diversity-prompts 2 --diversity-samples 2 --steps 2",
    ),
    "small": RecipePreset(
        data_preset="small",
        num_faces=20000,
        tokenizer_preset="small",
        tokenizer_args="--steps 12000 --batch-size 16 --lr 4e-4 --warmup 300 --detail-weight 2 "
        "--sample-every 500 --ckpt-every 200",
        text_vocab=4096,
        encoder_args="--steps 2500",
        model_preset="small",
        model_args="--nproc 2",  # 2 gloo ranks x 1 thread: 1.3x one 2-thread process
        eval_images=500,
        judge_args="",
        eval_args="--num 200",
    ),
}


def stages(p: RecipePreset, out: Path, bundled: bool = False) -> list[tuple[str, list[str]]]:
    """(name, unif2ace argv) of every stage of recipe ``p`` writing under ``out``.

    ``bundled``: take the image and text tokenizers, the encoders and the judge shipped with
    the package (``unif2ace.bundled``) instead of training them: data, tokenizer check,
    pretokenise, model, eval."""
    if bundled:
        return _bundled_stages(p, out)
    data, enc, ttok = str(out / "data"), out / "encoders", str(out / "text-tokenizer")
    itok = out / "image-tokenizer"
    tok = str(itok / "tokenizer")
    build = f"data build --preset {p.data_preset} --num {p.num_faces} --seed 0 --out {data}"
    tok_eval = (
        f"eval-tokenizer --tokenizer {tok} --data {data} --split test --max-images "
        f"{p.eval_images} --json {out / 'tokenizer_eval.json'} --grid {out / 'tokenizer_grid.png'}"
    )
    model = (
        f"train model --preset {p.model_preset} --data {data} --tokenizer {tok} "
        f"--text-tokenizer {ttok} --semantic-encoder {enc / 'semantic'} "
        f"--face-encoder {enc / 'identity'} --out {out / 'model'}"
    )
    evaluate = (
        f"eval --checkpoint {out / 'model'} --data {data} --judge {out / 'judge'} "
        f"--json {out / 'eval.json'} --report {out / 'report'}"
    )
    return [
        ("data", build.split()),
        (
            "image-tokenizer",
            [
                *_argv(f"train tokenizer --preset {p.tokenizer_preset} --data {data} --out {itok}"),
                *p.tokenizer_args.split(),
            ],
        ),
        (
            "text-tokenizer",
            _argv(f"train text-tokenizer --data {data} --out {ttok} --vocab-size {p.text_vocab}"),
        ),
        ("tokenizer-eval", _argv(tok_eval)),
        ("pretokenize", _argv(f"data pretokenize --tokenizer {tok} --data {data}")),
        (
            "encoders",
            [*_argv(f"train encoders --data {data} --out {enc}"), *p.encoder_args.split()],
        ),
        ("model", [*_argv(model), *p.model_args.split()]),
        (
            "judge",
            [*_argv(f"train judge --data {data} --out {out / 'judge'}"), *p.judge_args.split()],
        ),
        ("eval", [*_argv(evaluate), *p.eval_args.split()]),
    ]


def _bundled_stages(p: RecipePreset, out: Path) -> list[tuple[str, list[str]]]:
    data = str(out / "data")
    build = f"data build --preset {p.data_preset} --num {p.num_faces} --seed 0 --out {data}"
    tok_eval = (
        f"eval-tokenizer --tokenizer bundled --data {data} --split test --max-images "
        f"{p.eval_images} --json {out / 'tokenizer_eval.json'} --grid {out / 'tokenizer_grid.png'}"
    )
    model = f"train model --preset {p.model_preset} --bundled --data {data} --out {out / 'model'}"
    evaluate = (
        f"eval --checkpoint {out / 'model'} --data {data} "
        f"--json {out / 'eval.json'} --report {out / 'report'}"
    )
    return [
        ("data", build.split()),
        ("tokenizer-eval", _argv(tok_eval)),
        ("pretokenize", _argv(f"data pretokenize --tokenizer bundled --data {data}")),
        ("model", [*_argv(model), *p.model_args.split()]),
        ("eval", [*_argv(evaluate), *p.eval_args.split()]),
    ]


def _argv(command: str) -> list[str]:
    """Split a command line of this module's own making (paths must not contain spaces)."""
    return command.split()


def _read_state(out: Path) -> dict:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"done": {}}


def run_recipe(name: str, out: str | Path, log=print, bundled: bool = False) -> dict:
    """Run (or resume) recipe ``name`` into ``out``; returns the state (done stages).
    ``bundled``: use the parts shipped with the package (see :func:`stages`)."""
    from .cli import main

    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
    if bundled and name != "small":
        raise UserError("--bundled fits the small recipe only (the bundled parts are small's)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _read_state(out)
    # a state file from before --bundled existed, with stages done, was an unbundled run
    if state.get("bundled", False if state["done"] else bundled) != bundled:
        raise UserError(
            f"{out} holds a recipe run {'with' if not bundled else 'without'} "
            "--bundled; rerun it the same way or use another --out"
        )
    state["recipe"], state["bundled"] = name, bundled
    for stage, argv in stages(RECIPES[name], out, bundled):
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
        write_text_atomic(out / STATE_FILE, json.dumps(state, indent=2))
        write_text_atomic(out / REPORT_FILE, report(out, state))
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
    tok_eval, model_eval = out / "tokenizer_eval.json", out / "eval.json"
    if tok_eval.is_file():
        metrics = _scalars(json.loads(tok_eval.read_text()))
        lines += ["", "## Image tokenizer (test split)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    if model_eval.is_file():
        summary = json.loads(model_eval.read_text())["summary"]
        splits = list(summary)
        lines += ["", "## Model evaluation (`report/REPORT.md` has the details)", ""]
        lines += ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        for k in summary[splits[0]]:
            lines.append(f"| {k} | " + " | ".join(f"{summary[s][k]:.3f}" for s in splits) + " |")
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
    p.add_argument(
        "--bundled",
        action="store_true",
        help="small only: use the tokenizers, encoders and judge shipped with the package "
        "instead of training them (data -> pretokenise -> model -> eval)",
    )
    p.set_defaults(func=lambda a: (run_recipe(a.preset, a.out, bundled=a.bundled), 0)[1])
