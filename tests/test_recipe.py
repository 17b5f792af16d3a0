"""``unif2ace recipe tiny``: every stage runs, the report names them, a rerun skips them."""

import json

import pytest

from unif2ace.errors import UserError
from unif2ace.pipeline import FacePipeline
from unif2ace.recipe import STATE_FILE, run_recipe


def test_tiny_recipe_runs_every_stage_and_resumes(tiny_recipe):
    out = tiny_recipe
    state = json.loads((out / STATE_FILE).read_text())
    want = [
        "data",
        "image-tokenizer",
        "text-tokenizer",
        "tokenizer-eval",
        "pretokenize",
        "encoders",
        "model",
        "judge",
        "eval",
    ]
    assert list(state["done"])[: len(want)] == want
    report = (out / "REPORT.md").read_text()
    assert all(f"| {s} |" in report for s in want)
    assert "psnr" in report and "generation_fidelity" in report
    pipe = FacePipeline.from_pretrained(out / "model")  # the run folder is a usable model
    assert len(pipe.generate(["a smiling woman"], seed=0, num_steps=2)) == 1
    seen = []
    run_recipe("tiny", out, log=seen.append)
    assert all("skipped" in line for line in seen) and len(seen) == len(state["done"])


def test_unknown_recipe_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="valid: tiny, small"):
        run_recipe("huge", tmp_path)


def test_bundled_small_recipe_trains_only_the_model_with_the_shipped_parts(tmp_path):
    from unif2ace.cli import build_parser
    from unif2ace.recipe import RECIPES, stages

    got = stages(RECIPES["small"], tmp_path, bundled=True)
    assert [s for s, _ in got] == ["data", "tokenizer-eval", "pretokenize", "model", "eval"]
    parser = build_parser()
    args = {s: parser.parse_args(argv) for s, argv in got}  # every stage is a valid command
    assert args["model"].bundled and args["model"].nproc == 2
    assert args["pretokenize"].tokenizer == "bundled" and args["eval"].judge is None
    with pytest.raises(UserError, match="small recipe only"):
        run_recipe("tiny", tmp_path, bundled=True)
    (tmp_path / STATE_FILE).write_text(json.dumps({"done": {}, "bundled": False}))
    with pytest.raises(UserError, match="without --bundled"):
        run_recipe("small", tmp_path, bundled=True)
    old = {"done": {"data": {"argv": [], "wall_s": 1.0}}}  # written before --bundled existed
    (tmp_path / STATE_FILE).write_text(json.dumps(old))
    with pytest.raises(UserError, match="without --bundled"):
        run_recipe("small", tmp_path, bundled=True)
