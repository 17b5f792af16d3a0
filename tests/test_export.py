"""``unif2ace export``: the exported folder is the same model, smaller, with a model card."""

import json

import pytest
import torch

from unif2ace.cli import main
from unif2ace.export import CARD_FILE, CURVES_FILE, SUMMARY_FILE
from unif2ace.pipeline import FacePipeline


@pytest.fixture(scope="module")
def run_dir(tiny_recipe):
    return tiny_recipe / "model"


def test_export_is_the_same_model_in_bf16_with_a_card(run_dir, tmp_path):
    out = tmp_path / "exported"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run_dir),
                "--out",
                str(out),
                "--weights",
                "model",
                "--hardware",
                "test box",
            ]
        )
        == 0
    )
    for name in (CARD_FILE, CURVES_FILE, SUMMARY_FILE, "model.safetensors", "config.json"):
        assert (out / name).is_file(), name
    a = FacePipeline.from_pretrained(run_dir)
    b = FacePipeline.from_pretrained(out)
    assert all(p.dtype == torch.bfloat16 for p in b.model.parameters())
    kw = {"seed": 3, "num_steps": 3}
    assert torch.equal(a.generate_codes(["a man"], **kw), b.generate_codes(["a man"], **kw))
    s = json.loads((out / SUMMARY_FILE).read_text())
    assert s["step"] == 4 and s["tokens_seen"] > 0 and s["weights"] == "model"
    card = (out / CARD_FILE).read_text()
    assert "test box" in card and f"{s['parameters']:,}" in card and CURVES_FILE in card


def test_bf16_tokenizer_halves_its_file(run_dir, tmp_path):
    for dt in ("fp32", "bf16"):
        main(
            [
                "export",
                "--checkpoint",
                str(run_dir),
                "--out",
                str(tmp_path / dt),
                "--tokenizer-dtype",
                dt,
            ]
        )
    size = {
        dt: (tmp_path / dt / "image_tokenizer" / "model.safetensors").stat().st_size
        for dt in ("fp32", "bf16")
    }
    assert size["bf16"] < 0.6 * size["fp32"]
    assert FacePipeline.from_pretrained(tmp_path / "bf16").image_tokenizer.encoder is not None


def test_export_without_a_checkpoint_is_a_user_error(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_export_swaps_in_a_same_codes_tokenizer_only(run_dir, tiny_recipe, tmp_path, capsys):
    from unif2ace.tokenizer.autoencoder import LFQAutoencoder, preset_config

    stage1 = tiny_recipe / "image-tokenizer" / "tokenizer"  # the run trained on stage 2's codes
    out = tmp_path / "swapped"
    argv = ["export", "--checkpoint", str(run_dir), "--out", str(out)]
    assert main([*argv, "--image-tokenizer", str(stage1)]) == 0
    shipped = FacePipeline.from_pretrained(out).image_tokenizer.state_dict()
    want = LFQAutoencoder.from_pretrained(stage1).state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in want.items())
    assert json.loads((out / SUMMARY_FILE).read_text())["image_tokenizer"] == str(stage1)
    torch.manual_seed(123)
    LFQAutoencoder(preset_config("tiny")).save_pretrained(tmp_path / "other")
    assert main([*argv, "--image-tokenizer", str(tmp_path / "other")]) == 2
    assert "encodes images differently" in capsys.readouterr().err


def test_export_judge_stores_bf16_and_predicts_the_same(tiny_recipe, tmp_path):
    import numpy as np

    from unif2ace.eval.judge import load_judge

    src, out = tiny_recipe / "judge", tmp_path / "judge"
    assert main(["export-judge", "--judge", str(src), "--out", str(out)]) == 0
    assert (out / "model.safetensors").stat().st_size < 0.6 * (
        src / "model.safetensors"
    ).stat().st_size
    a, b = load_judge(src), load_judge(out)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # fp32 compute
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    oa, ob = a.outputs(x), b.outputs(x)
    assert torch.allclose(oa["attr"], ob["attr"], atol=0.1)
    assert json.loads((out / "config.json").read_text())["stored_dtype"] == "bf16"
    if (src / CARD_FILE).is_file():
        assert "bf16" in (out / CARD_FILE).read_text()
    assert main(["export-judge", "--judge", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_card_tabulates_eval_summary_and_appends_notes(run_dir, tiny_recipe, tmp_path, capsys):
    notes = tmp_path / "notes.md"
    notes.write_text("## Reading the numbers\n\nSee ![a grid](grid.png).\n")
    grid = tiny_recipe / "report" / "generated_test.png"
    out = tmp_path / "m"
    argv = ["export", "--checkpoint", str(run_dir), "--out", str(out)]
    extra = ["--metrics", str(tiny_recipe / "eval.json"), "--notes", str(notes)]
    assert main([*argv, *extra, "--attach", str(grid), "--guidance", "3.5"]) == 0
    card = (out / CARD_FILE).read_text()
    assert FacePipeline.from_pretrained(out).sampling.sampler.guidance_scale == 3.5
    assert "guidance scale 3.5" in card
    summ = json.loads((tiny_recipe / "eval.json").read_text())["summary"]
    split = next(iter(summ))
    row = next(line for line in card.splitlines() if line.startswith("| generation_fidelity |"))
    assert f"{summ[split]['generation_fidelity']:.4g}" in row
    lo, hi = json.loads((tiny_recipe / "eval.json").read_text())["ci95"][split]["vqa_accuracy"]
    vqa_row = next(line for line in card.splitlines() if line.startswith("| vqa_accuracy |"))
    assert f"[{lo:.3f}, {hi:.3f}]" in vqa_row and "bootstrap intervals" in card
    assert "## Reading the numbers\n\nSee ![a grid](grid.png)." in card
    assert (out / grid.name).read_bytes() == grid.read_bytes()
    assert main([*argv, "--notes", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err
    assert main([*argv, "--guidance", "-1"]) == 2


def test_q8_export_is_smaller_and_close_to_bf16(run_dir, tmp_path):
    from unif2ace.model.denoiser import make_image_denoiser

    for fmt in ("bf16", "q8"):
        argv = ["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / fmt)]
        assert main([*argv, "--weights-format", fmt]) == 0
    size = {f: (tmp_path / f / "model.safetensors").stat().st_size for f in ("bf16", "q8")}
    assert size["q8"] < 0.75 * size["bf16"]
    assert json.loads((tmp_path / "q8" / "config.json").read_text())["weights_format"] == "q8_0"
    assert "8-bit blocks" in (tmp_path / "q8" / CARD_FILE).read_text()
    a, b = (FacePipeline.from_pretrained(tmp_path / f) for f in ("bf16", "q8"))
    assert all(p.dtype == torch.bfloat16 for p in b.model.parameters())
    codes = torch.full((2, a.num_image_tokens), a.layout.codebook_size)
    codes[:, ::3] = 5
    la, lb = (make_image_denoiser(p.model, p.layout, [[3, 4, 5], [6]])(codes, None) for p in (a, b))
    assert (la.argmax(-1) == lb.argmax(-1)).float().mean() > 0.9
    assert (la.float() - lb.float()).abs().max() < 0.1 * la.float().abs().max()
    # A re-export of a q8 folder keeps the same weights (dequantised, then quantised again).
    assert main(["export", "--checkpoint", str(tmp_path / "q8"), "--out", str(tmp_path / "again"),
                 "--weights-format", "q8"]) == 0  # fmt: skip
    c = FacePipeline.from_pretrained(tmp_path / "again")
    for (n, p), q in zip(b.model.state_dict().items(), c.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


def test_export_can_point_at_the_bundled_tokenizers(run_dir, tmp_path, monkeypatch, capsys):
    from unif2ace import bundled

    monkeypatch.setattr(bundled, "assets_dir", lambda: tmp_path / "assets")
    argv = ["export", "--checkpoint", str(run_dir), "--share-bundled-tokenizers"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2  # nothing bundled here
    assert "no bundled image tokenizer" in capsys.readouterr().err
    ckpt = FacePipeline.from_pretrained(run_dir)  # ship the run's own tokenizers as bundled
    ckpt.image_tokenizer.save_pretrained(bundled.path("image_tokenizer"))
    ckpt.text_tokenizer.save(bundled.path("text_tokenizer").parent)
    assert main([*argv, "--out", str(tmp_path / "m")]) == 0
    assert not (tmp_path / "m" / "image_tokenizer").exists()
    back = FacePipeline.from_pretrained(tmp_path / "m")
    assert back.text_tokenizer.to_str() == ckpt.text_tokenizer.to_str()


def test_card_counts_the_warm_starts_behind_a_run(run_dir, tmp_path):
    import shutil

    from unif2ace.pipeline import _resolve_folder

    ck = _resolve_folder(run_dir)

    def copy_with_init(name: str, source: str, weights: str):
        d = tmp_path / name
        shutil.copytree(ck, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["init"] |= {"checkpoint": source, "checkpoint_weights": weights}
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    a = copy_with_init("a", str(tmp_path / "gone"), "model")  # started from a deleted run
    b = copy_with_init("b", str(a), "ema")
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(b), "--out", str(out), "--weights", "model"]) == 0
    s = json.loads((out / SUMMARY_FILE).read_text())
    first, second = s["lineage"]
    assert first["source"] == str(a) and first["weights"] == "ema" and first["found"]
    assert first["step"] == s["step"] == 4 and first["tokens_seen"] == s["tokens_seen"] > 0
    assert second == {"source": str(tmp_path / "gone"), "weights": "model", "found": False}
    card = (out / CARD_FILE).read_text()
    assert f"| warm start | from `{a}` (ema weights): 4 steps" in card
    assert "not on disk, not counted" in card
    assert f"| in all | 8 steps, {2 * s['tokens_seen']:,} tokens" in card
    assert "(the runs found on disk)" in card
    # a warm start from an exported model folder counts what its training.json recorded
    c = copy_with_init("c", str(out), "ema")
    assert main(["export", "--checkpoint", str(c), "--out", str(tmp_path / "e3")]) == 0
    s3 = json.loads((tmp_path / "e3" / SUMMARY_FILE).read_text())
    assert [e["source"] for e in s3["lineage"]] == [str(out), str(a), str(tmp_path / "gone")]
    assert s3["lineage"][0]["weights"] == "exported model, bf16" and s3["lineage"][0]["step"] == 4
    # ... and names it by content, wherever the folder was (the bundled model's digest rule)
    from unif2ace.bundled import content_digest

    assert s3["lineage"][0]["digest"] == content_digest(out)
    assert (
        f"(exported model, bf16 weights, digest {content_digest(out)}): 4 steps"
        in (tmp_path / "e3" / CARD_FILE).read_text()
    )
    assert "| in all | 12 steps," in (tmp_path / "e3" / CARD_FILE).read_text()
    # a run from scratch has no such rows
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "e2")]) == 0
    assert "warm start" not in (tmp_path / "e2" / CARD_FILE).read_text()
