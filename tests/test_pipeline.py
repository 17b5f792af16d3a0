"""FacePipeline and the generate / describe / ask commands on a tiny untrained model.

Untrained weights give meaningless faces and captions, but every property checked here —
round trips, determinism, shapes, batching equalities, error messages — holds for any
weights.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace import pipeline as pl
from unif2ace.cli import main
from unif2ace.data.caption_parser import parse_prompt
from unif2ace.errors import UserError
from unif2ace.model import build_model, model_preset
from unif2ace.pipeline import FacePipeline, SamplingDefaults, load_image
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, build_tokenizer
from unif2ace.tokenizer.text import train_text_tokenizer
from unif2ace.vocab import VocabLayout

SENTENCES = [
    "a smiling woman with red curly hair and green eyes",
    "a young man with short black hair, a beard and eyeglasses",
    "Describe this face in detail.",
    "Is she wearing earrings? yes, she is wearing earrings",
    "What colour is his hair? His hair is brown.",
    "an old lady with grey wavy hair, freckles and a necklace",
]


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory) -> str:
    """A tiny untrained pipeline saved with save_pretrained (fp32 weights).

    Weights are drawn with std 0.3 (not the 0.02 init, whose outputs barely depend on the
    context, and whose zero-initialised resampler outputs ignore the encoder features), so
    the equalities below compare outputs that really depend on images, prompts and padding.
    """
    torch.manual_seed(0)
    text = train_text_tokenizer(SENTENCES * 4, vocab_size=300)
    image = build_tokenizer("tiny").eval()
    layout = VocabLayout(text.vocab_size, image.codebook_size)
    model = build_model(model_preset("tiny"), layout)
    with torch.no_grad():  # sharper random weights: outputs depend on their whole context
        for w in model.parameters():
            if w.dim() >= 2:
                w.normal_(0.0, 0.3)
    defaults = SamplingDefaults(max_text_len=24, encoder_resolution=32)
    path = tmp_path_factory.mktemp("pipe") / "model"
    FacePipeline(model, layout, image, text, defaults).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pipe(pipe_dir) -> FacePipeline:
    return FacePipeline.from_pretrained(pipe_dir)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[str]:
    """Three image files: two squares of different sizes and a non-square JPEG."""
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h, ext) in enumerate([(32, 32, "png"), (64, 64, "png"), (50, 40, "jpg")]):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = d / f"face{i}.{ext}"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def _same_images(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_save_load_round_trip_gives_identical_outputs(pipe, pipe_dir, tmp_path, faces):
    again = tmp_path / "again"
    pipe.save_pretrained(again)
    other = FacePipeline.from_pretrained(again)
    assert sorted(p.name for p in again.iterdir()) == sorted(
        ["config.json", "image_tokenizer", "model.safetensors", "text_tokenizer"]
    )
    assert not list(tmp_path.glob(".tmp-*"))  # the temp folder was renamed, not left behind
    mine, theirs = pipe.model.state_dict(), other.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert other.model.embed_tokens.weight.dtype == torch.bfloat16
    assert other.sampling == pipe.sampling
    assert _same_images(pipe.generate("a smiling woman"), other.generate("a smiling woman"))
    assert pipe.describe(faces[0], max_new_tokens=6) == other.describe(faces[0], max_new_tokens=6)


def test_config_keeps_run_config_sections(pipe_dir):
    cfg = json.loads((pl.Path(pipe_dir) / "config.json").read_text())
    assert {"model", "layout", "sampling", "data"} <= set(cfg)
    assert cfg["sampling"]["sampler"]["num_steps"] == 16
    assert cfg["data"]["max_text_len"] == 24


def test_loads_trainer_checkpoints_and_run_folders(pipe_dir, tmp_path):
    """A trainer's config.json (whole run config, sampling hook settings) loads and survives
    a save; a run folder resolves to its newest checkpoint."""
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step-00000010"
    shutil.copytree(pipe_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["preset"] = "tiny"
    cfg["sampling"].update(prompts=["a man"], num_images=4, seed=0, caption_tokens=48)
    cfg["sampling"]["sampler"]["num_steps"] = 5
    cfg["data"].update(data="/data/faceforge", max_text_len=20, encoder_resolution=16)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    (ckpt / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("step-00000010\n")
    # The trainer also writes the resolved run config at the run folder's top (no weights).
    (run / "config.json").write_text(json.dumps(cfg))
    p = FacePipeline.from_pretrained(run)
    assert p.sampling.sampler.num_steps == 5 and p.sampling.max_text_len == 20
    assert p.sampling.encoder_resolution == 16
    p.save_pretrained(tmp_path / "export")
    saved = json.loads((tmp_path / "export" / "config.json").read_text())
    assert saved["preset"] == "tiny" and saved["sampling"]["prompts"] == ["a man"]
    assert saved["data"]["data"] == "/data/faceforge"
    assert saved["sampling"]["sampler"]["num_steps"] == 5


def test_generate_is_deterministic_in_the_seed(pipe):
    kw = dict(num_steps=4, guidance_scale=2.0)
    a = pipe.generate(["a smiling woman", "a man with a beard"], seed=3, **kw)
    b = pipe.generate(["a smiling woman", "a man with a beard"], seed=3, **kw)
    c = pipe.generate(["a smiling woman", "a man with a beard"], seed=4, **kw)
    assert _same_images(a, b)
    assert not _same_images(a, c)


def test_generate_uses_prompt_and_guidance(pipe):
    base = pipe.generate_codes(["a smiling woman"], num_steps=4, seed=1)
    assert not torch.equal(base, pipe.generate_codes(["an old man"], num_steps=4, seed=1))
    unguided = pipe.generate_codes(["a smiling woman"], num_steps=4, seed=1, guidance_scale=0.0)
    assert not torch.equal(base, unguided)


def test_generated_images_are_rgb_at_tokenizer_resolution(pipe):
    images = pipe.generate(["a", "b", "c"], num_steps=3, batch_size=2, sampler="ancestral")
    assert len(images) == 3
    for img in images:
        assert img.mode == "RGB" and img.size == (pipe.resolution, pipe.resolution)
    codes = pipe.generate_codes(["a", "b", "c"], num_steps=3, guidance_scale=0.0)
    assert codes.shape == (3, pipe.num_image_tokens)
    assert int(codes.min()) >= 0 and int(codes.max()) < pipe.layout.codebook_size


def test_generate_from_attribute_dict(pipe):
    attrs = {"hair_color": "red", "smile": True}
    texts = pipe.prompt_texts([attrs], seed=1)
    assert texts == pipe.prompt_texts([attrs], seed=1) and texts[0]
    stated = parse_prompt(texts[0])  # the requested attributes are stated
    assert stated.get("hair_color") == "red" and stated.get("smile") is True
    assert len(pipe.generate(attrs, num_steps=2)) == 1


def test_describe_and_ask_are_greedy_deterministic_strings(pipe, faces):
    a = pipe.describe(faces, max_new_tokens=8)
    assert a == pipe.describe(faces, max_new_tokens=8)
    assert len(a) == 3 and all(isinstance(x, str) for x in a)
    qs = ["Is she wearing earrings?", "What colour is his hair?"]
    ans = pipe.ask(faces[0], qs, max_new_tokens=5)
    assert len(ans) == 2 and ans == pipe.ask(faces[0], qs, max_new_tokens=5)


def test_sampled_describe_depends_on_seed_only(pipe, faces):
    kw = dict(max_new_tokens=8, temperature=1.0)
    assert pipe.describe(faces, seed=5, **kw) == pipe.describe(faces, seed=5, **kw)


def test_batched_equals_one_by_one(pipe_dir, faces):
    """Left padding (questions of different lengths) does not change any row's answer."""
    p = FacePipeline.from_pretrained(pipe_dir, dtype=torch.float32)
    qs = ["Is she wearing earrings?", "What colour is his hair?", "hair?"]
    batched = p.ask(faces, qs, max_new_tokens=6)
    single = [p.ask(f, q, max_new_tokens=6)[0] for f, q in zip(faces, qs, strict=True)]
    assert batched == single
    # several questions about one face share its prefix: same answers as one at a time
    many = p.ask(faces[1], qs, max_new_tokens=6)
    assert many == [p.ask(faces[1], q, max_new_tokens=6)[0] for q in qs]
    caps = p.describe(faces, max_new_tokens=6, batch_size=3)
    assert caps == [p.describe(f, max_new_tokens=6)[0] for f in faces]
    assert len(set(caps)) == 3  # the captions depend on the image


def test_encoder_features_reach_the_caption(pipe_dir, faces):
    p = FacePipeline.from_pretrained(pipe_dir, dtype=torch.float32)
    with_feats = p.describe(faces, max_new_tokens=8)
    p.sampling.encoder_images = False
    assert with_feats != p.describe(faces, max_new_tokens=8)


def test_images_accept_pil_and_paths_and_crop_to_square(pipe, faces):
    img = Image.open(faces[2])
    assert load_image(img).size == (40, 40)
    assert pipe.describe(img, max_new_tokens=4) == pipe.describe(faces[2], max_new_tokens=4)
    codes, _ = pipe.encode_images([faces[1]])
    assert codes.shape == (1, pipe.num_image_tokens)


def test_bad_inputs_raise_user_errors(pipe, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(UserError, match="not found"):
        pipe.describe(str(tmp_path / "missing.png"))
    with pytest.raises(UserError, match="cannot read image"):
        pipe.describe(str(bad))
    with pytest.raises(UserError, match="empty prompt"):
        pipe.generate("   ")
    with pytest.raises(UserError, match="unknown attribute"):
        pipe.generate({"hair_colour": "red"})
    with pytest.raises(UserError, match="no images"):
        pipe.describe([])
    with pytest.raises(UserError, match="2 images but 3 questions"):
        pipe.ask([str(bad), str(bad)], ["a?", "b?", "c?"])
    assert len(pipe.generate("", allow_unconditional=True, num_steps=2)) == 1


def test_missing_bundled_model_and_bad_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(pl, "bundled_model_dir", lambda: tmp_path / "assets" / "model")
    with pytest.raises(UserError, match="no bundled model"):
        FacePipeline.from_pretrained()
    with pytest.raises(UserError, match="not a model folder"):
        FacePipeline.from_pretrained(tmp_path)


def test_cli_end_to_end(pipe_dir, faces, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["generate", "a smiling woman", "--attr", "beard=yes", "--n", "2", "--steps", "2"]
    assert main([*args, "--checkpoint", pipe_dir, "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and len(summary["prompts"]) == 2
    grid = Image.open(out)
    assert grid.mode == "RGB" and grid.size[0] >= 2 * 128
    d = tmp_path / "faces"
    rc = main(["generate", "a man", "--n", "3", "--steps", "2", "--checkpoint", pipe_dir,
               "--out-dir", str(d)])  # fmt: skip
    assert rc == 0 and len(list(d.glob("*.png"))) == 3
    assert len(json.loads((d / "prompts.json").read_text())) == 3
    capsys.readouterr()
    assert main(["describe", *faces, "--checkpoint", pipe_dir, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == faces
    assert main(["ask", faces[0], "Is she smiling?", "--checkpoint", pipe_dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["question"] == "Is she smiling?"
    argv = ["describe", faces[0], "--checkpoint", pipe_dir, "--no-repeat-ngram"]
    assert main([*argv, "0"]) == 0
    capsys.readouterr()
    assert main([*argv, "-1"]) == 2 and "no_repeat_ngram" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, pipe_dir):
    monkeypatch.setattr(pl, "bundled_model_dir", lambda: tmp_path / "nothing")
    assert main(["describe", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "no bundled model" in err and "--checkpoint" in err and len(err.splitlines()) == 1
    assert main(["ask", str(tmp_path / "nope.png"), "hi?", "--checkpoint", pipe_dir]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["generate", "--attr", "smile=maybe", "--checkpoint", pipe_dir]) == 2
    assert "binary" in capsys.readouterr().err


def test_a_folder_can_share_the_bundled_tokenizers(pipe, pipe_dir, tmp_path, monkeypatch, faces):
    from unif2ace import bundled

    monkeypatch.setattr(bundled, "assets_dir", lambda: tmp_path / "assets")
    with pytest.raises(UserError, match="no bundled image tokenizer"):
        pipe.save_pretrained(tmp_path / "x", share_bundled=True)
    # ship this pipeline's own tokenizers as the bundled ones, the image one in bf16 storage
    img = FacePipeline.from_pretrained(pipe_dir).image_tokenizer.to(torch.bfloat16)
    img.save_pretrained(bundled.path("image_tokenizer"))
    pipe.text_tokenizer.save(bundled.path("text_tokenizer").parent)
    rounded = FacePipeline.from_pretrained(pipe_dir)
    rounded.image_tokenizer = LFQAutoencoder.from_pretrained(bundled.path("image_tokenizer"))
    out = rounded.save_pretrained(tmp_path / "shared", share_bundled=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    back = FacePipeline.from_pretrained(out)
    assert _same_images(rounded.generate("a smiling woman"), back.generate("a smiling woman"))
    assert back.describe(faces[0], max_new_tokens=6) == rounded.describe(faces[0], max_new_tokens=6)
    # the fp32 original is not the bundled (bf16-stored) tokenizer: refused, not mislabelled
    with pytest.raises(UserError, match="not the bundled ones"):
        pipe.save_pretrained(tmp_path / "y", share_bundled=True)
    # another install's bundled tokenizer: a clear error, not wrong images
    img.decoder.conv_in.weight.data += 1
    img.save_pretrained(bundled.path("image_tokenizer"))
    with pytest.raises(UserError, match="does not have"):
        FacePipeline.from_pretrained(out)
