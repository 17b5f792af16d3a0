"""``unif2ace ablate``: matched runs per variant and seed, tabulated with mean ± std."""

import json
import math

import pytest

from unif2ace.ablate import VARIANTS, mean_std, run_ablation, write_table
from unif2ace.cli import main
from unif2ace.errors import UserError


def _tiny_args(r):
    """(run overrides, eval arguments) of 2-step ablation runs on the tiny recipe."""
    common = [
        f"data.data={r / 'data'}",
        f"data.image_tokenizer={r / 'image-tokenizer' / 'tokenizer'}",
        f"data.text_tokenizer={r / 'text-tokenizer'}",
        "train.steps=2",
        "train.ckpt_every=2",
        "train.log_every=1",
    ]
    eval_args = ["--data", str(r / "data"), "--judge", str(r / "judge"), "--num", "2",
                 "--fid-real", "2", "--diversity-prompts", "0", "--steps", "2"]  # fmt: skip
    return common, eval_args


def test_mean_std_known_values():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    m, s = mean_std([0.5])
    assert m == 0.5 and math.isnan(s)
    assert all(math.isnan(x) for x in mean_std([float("nan")]))


def test_table_from_finished_runs(tmp_path):
    for variant, vals in (("none", (0.2, 0.4)), ("both", (0.6, 0.8))):
        for seed, v in enumerate(vals):
            f = tmp_path / variant / f"seed-{seed}" / "eval.json"
            f.parent.mkdir(parents=True)
            f.write_text(json.dumps({"summary": {"test": {"generation_fidelity": v, "fid": 1.0}}}))
    table = write_table("moe", tmp_path, "test")
    assert table["both"]["seeds"] == 2
    m, s = table["both"]["generation_fidelity"]
    assert m == pytest.approx(0.7) and s == pytest.approx(math.sqrt(0.02))
    md = (tmp_path / "ablation_moe.md").read_text()
    assert "| both | 2 | 0.700 ± 0.141 |" in md and "| none | 2 | 0.300 ± 0.141 |" in md
    # none against the full model: -0.4 with SE 0.141 on ~2 df -> t = -2.83, p = 0.106
    d = table["none"]["vs_both"]["generation_fidelity"]
    assert d["delta"] == pytest.approx(-0.4) and d["p"] == pytest.approx(0.1056, abs=1e-3)
    assert "| none | -0.400 (p 0.11) |" in md and "vs_both" not in table["both"]


def test_variants_are_the_papers():
    assert set(VARIANTS["loss"]) == {
        "mask-only",
        "score-only",
        "d3diff-a0.1",
        "d3diff-a0.01",
        "d3diff-a0.001",
    }
    assert set(VARIANTS["moe"]) == {"none", "token", "sequence", "both"}


def test_tiny_moe_ablation_trains_evaluates_and_resumes(tiny_recipe, tmp_path):
    common, eval_args = _tiny_args(tiny_recipe)
    table = run_ablation(
        "moe",
        tmp_path,
        common,
        eval_args,
        seeds=2,
        preset="tiny",
        only=["none", "both"],
        log=lambda s: None,
    )
    assert set(table) == {"none", "both"} and all(t["seeds"] == 2 for t in table.values())
    runs = {p.parent.parent.name for p in tmp_path.glob("*/seed-*/eval.json")}
    assert runs == {"none", "both"}
    cfg = json.loads((tmp_path / "none" / "seed-1" / "run" / "config.json").read_text())
    assert cfg["model"]["token_moe"] is False and cfg["train"]["seed"] == 1
    seen = []
    run_ablation(
        "moe",
        tmp_path,
        common,
        eval_args,
        seeds=2,
        preset="tiny",
        only=["none", "both"],
        log=seen.append,
    )
    assert seen == []  # everything finished: nothing reruns


def test_parallel_jobs_match_in_process_runs(tiny_recipe, tmp_path):
    """--jobs 2: child processes (one thread each) train and evaluate exactly what the
    in-process path does with one thread."""
    import torch

    common, eval_args = _tiny_args(tiny_recipe)
    kw = dict(seeds=1, preset="tiny", only=["none", "token"], log=lambda s: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_ablation("moe", tmp_path / "serial", common, eval_args, **kw)
    finally:
        torch.set_num_threads(threads)
    parallel = run_ablation("moe", tmp_path / "par", common, eval_args, jobs=2, threads=1, **kw)
    assert set(parallel) == set(serial) == {"none", "token"}
    for variant in ("none", "token"):
        a, b = (
            [json.loads(ln) for ln in (tmp_path / d / variant / "seed-0" / "run" / "metrics.jsonl")
             .read_text().splitlines()]
            for d in ("serial", "par")
        )  # fmt: skip
        assert [x["loss"] for x in a] == pytest.approx([x["loss"] for x in b], rel=1e-5)
        assert (tmp_path / "par" / variant / "seed-0" / "log.txt").is_file()
        for k in ("generation_fidelity", "fid"):
            assert serial[variant][k][0] == pytest.approx(parallel[variant][k][0], rel=1e-4)


def test_failed_parallel_job_names_its_log(tmp_path):
    with pytest.raises(UserError, match="log.txt"):
        run_ablation("moe", tmp_path, ["data.data=/nonexistent"], [], seeds=1, preset="tiny",
                     only=["none"], jobs=2, log=lambda s: None)  # fmt: skip


def test_unknown_variant_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="valid: none, token, sequence, both"):
        run_ablation("moe", tmp_path, [], [], only=["dense"])
    assert (
        main(
            [
                "ablate",
                "loss",
                "--data",
                "d",
                "--tokenizer",
                "t",
                "--text-tokenizer",
                "x",
                "--judge",
                "j",
                "--out",
                str(tmp_path),
                "--seeds",
                "0",
            ]
        )
        == 2
    )


def test_bundled_fills_the_parts_not_given_and_missing_parts_are_one_error(tmp_path):
    import argparse

    from unif2ace.ablate import _parts

    def ns(**kw):
        base = {"tokenizer": None, "text_tokenizer": None, "judge": None, "bundled": False}
        return argparse.Namespace(**{**base, **kw})

    parts = _parts(ns(bundled=True, judge="my-judge"))
    assert parts == {
        "data.image_tokenizer": "bundled",
        "data.text_tokenizer": "bundled",
        "judge": "my-judge",
        "init.semantic_encoder": "bundled",
        "init.face_encoder": "bundled",
    }
    with pytest.raises(UserError, match="--tokenizer, --judge .*--bundled"):
        _parts(ns(text_tokenizer="t"))
    # the word resolves to the shipped folders in the run config every variant trains from
    from unif2ace import bundled
    from unif2ace.train.unified import load_run_config

    cfg = load_run_config("ablation", [f"{k}={v}" for k, v in parts.items() if k != "judge"])
    assert cfg.init.semantic_encoder == str(bundled.path("semantic_encoder"))
    assert cfg.data.image_tokenizer == str(bundled.path("image_tokenizer"))


def test_every_moe_variant_config_builds_with_the_bundled_encoders():
    """The encoders every run is given are dropped by the variants without sequence experts
    (a model without them refuses encoders)."""
    from unif2ace.train.task import build_training_model
    from unif2ace.train.unified import init_encoders, load_run_config
    from unif2ace.vocab import VocabLayout

    common = ["init.semantic_encoder=bundled", "init.face_encoder=bundled"]
    for variant, overrides in VARIANTS["moe"].items():
        cfg = load_run_config("ablation", [*common, *overrides])
        model = build_training_model(cfg.model, VocabLayout(64, 16))
        init_encoders(model, cfg)
        assert bool(cfg.init.semantic_encoder) == cfg.model.seq_moe, variant


def test_reuse_takes_a_finished_run_of_the_same_config_and_only_that(tiny_recipe, tmp_path):
    """moe/both and loss/d3diff-a0.01 resolve to one config: the loss table copies the
    finished moe run (no training: the same loss log) and evaluates it to the same numbers;
    mask-only differs and trains."""
    common, eval_args = _tiny_args(tiny_recipe)
    kw = dict(seeds=1, preset="tiny")
    run_ablation("moe", tmp_path / "moe", common, eval_args, only=["both"], log=print, **kw)
    seen: list[str] = []
    run_ablation("loss", tmp_path / "loss", common, eval_args, only=["d3diff-a0.01", "mask-only"],
                 reuse=[tmp_path / "moe"], log=seen.append, **kw)  # fmt: skip
    reused = [s for s in seen if "reusing" in s]
    assert len(reused) == 1 and "both" in reused[0] and "d3diff-a0.01" in reused[0]
    src, dst = (tmp_path / "moe" / "both", tmp_path / "loss" / "d3diff-a0.01")
    log = "run/metrics.jsonl"
    assert (dst / "seed-0" / log).read_text() == (src / "seed-0" / log).read_text()
    a, b = (json.loads((d / "seed-0" / "eval.json").read_text())["summary"] for d in (src, dst))
    assert a == b
    assert (tmp_path / "loss" / "mask-only" / "seed-0" / log).is_file()


def test_reuse_compares_trained_parts_by_content_not_path(tmp_path, monkeypatch):
    import shutil

    from unif2ace import bundled
    from unif2ace.ablate import _comparable
    from unif2ace.config import to_dict
    from unif2ace.train.unified import load_run_config

    tok = bundled.path("text_tokenizer")
    copy = tmp_path / "elsewhere" / "tokenizer.json"
    copy.parent.mkdir()
    shutil.copy(tok, copy)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)

    def cfg(text_tokenizer, data):
        c = load_run_config("tiny", [f"data.text_tokenizer={text_tokenizer}", f"data.data={data}"])
        return _comparable(to_dict(c))

    assert cfg(tok, "data") == cfg(copy, str(tmp_path / "data"))  # same bytes, same folder
    copy.write_text(copy.read_text().replace('"unk_token"', '"unk_tokn"', 1))
    assert cfg(tok, "data") != cfg(copy, "data")  # other content: another run
