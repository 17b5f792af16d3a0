"""Stage-2 decoder fine-tuning: codes unchanged, exact resume, discriminator properties."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from tok_helpers import write_synthetic_shards

from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, TokenizerConfig
from unif2ace.tokenizer.export import export_tokenizer
from unif2ace.tokenizer.images import ImageStream
from unif2ace.tokenizer.pretokenize import tokenizer_hash
from unif2ace.tokenizer.train_decoder import (
    DecoderTrainConfig,
    PatchDiscriminator,
    feature_matching,
    train_decoder,
)

MICRO = TokenizerConfig(
    resolution=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, codebook_bits=4
)
CFG = DecoderTrainConfig(
    steps=6,
    batch_size=3,
    lr=1e-3,
    warmup_steps=2,
    bf16=False,
    log_every=1,
    sample_every=3,
    ckpt_every=2,
    disc_start=2,  # steps 3-6 use the adversarial and feature-matching terms
    disc_channels=8,
    disc_layers=2,
)


@pytest.fixture()
def base(tmp_path):
    torch.manual_seed(0)
    tok = LFQAutoencoder(MICRO)
    tok.save_pretrained(tmp_path / "base")
    shards = write_synthetic_shards(tmp_path / "data", shards=2, rows=5, size=16)
    return tmp_path / "base", shards


def test_codes_unchanged_and_resume_is_exact(tmp_path, base):
    base_dir, shards = base
    logs = []
    full = train_decoder(base_dir, CFG, shards, tmp_path / "full", log=logs.append)
    train_decoder(base_dir, CFG, shards, tmp_path / "part", stop_after=3, log=logs.append)
    resumed = train_decoder(base_dir, CFG, shards, tmp_path / "part", log=logs.append)
    assert any("resuming" in line for line in logs)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    d_full = (tmp_path / "full" / "checkpoint" / "discriminator.safetensors").read_bytes()
    d_part = (tmp_path / "part" / "checkpoint" / "discriminator.safetensors").read_bytes()
    assert d_full == d_part
    # the encoding side is bit-identical, the decoder moved, the code hash is unchanged
    original = LFQAutoencoder.from_pretrained(base_dir)
    tuned = LFQAutoencoder.from_pretrained(tmp_path / "part" / "tokenizer")
    for k, v in original.state_dict().items():
        same = torch.equal(tuned.state_dict()[k], v)
        assert same if k.startswith(("encoder.", "quantizer.")) else True, k
    assert any(
        not torch.equal(tuned.state_dict()[k], v)
        for k, v in original.state_dict().items()
        if k.startswith("decoder.")
    )
    images = ImageStream(shards, 16, 6, shuffle=False).next_batch()
    assert torch.equal(tuned.encode(images), original.encode(images))
    assert tokenizer_hash(tmp_path / "part" / "tokenizer") == tokenizer_hash(base_dir)
    rows = [json.loads(ln) for ln in (tmp_path / "part" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(r["g_adv"] == 0.0 for r in rows[:2]) and all(r["fm"] > 0 for r in rows[2:])
    assert (tmp_path / "part" / "samples" / "step-0000006.png").is_file()


def test_a_bf16_tokenizer_keeps_its_code_hash(tmp_path, base):
    """The bundled tokenizer is stored in bf16; training upcasts it, and the stage-2 folder
    must still hash (and so pretokenise and export) as the tokenizer it came from."""
    _, shards = base
    torch.manual_seed(0)
    LFQAutoencoder(MICRO).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    (tmp_path / "bf16" / "MODEL_CARD.md").write_text(
        "# Image tokenizer\n\n## Training\n\n- steps: 7000 (stage 1)\n\n## Measured\n\nPSNR\n"
    )
    cfg = replace(CFG, steps=2)
    tuned = train_decoder(tmp_path / "bf16", cfg, shards, tmp_path / "ft", log=lambda s: None)
    # its card says what it is: stage 2 on that tokenizer, whose training it quotes
    card = export_tokenizer(tmp_path / "ft" / "tokenizer", tmp_path / "ship") / "MODEL_CARD.md"
    text = card.read_text()
    assert "- steps: 2;" in text and "stage 2: the steps above fine-tune the decoder" in text
    assert "### Stage 1 (from its card)\n\n- steps: 7000 (stage 1)\n" in text
    assert "PSNR" not in text  # only the stage-1 Training section is quoted
    assert tokenizer_hash(tmp_path / "ft" / "tokenizer") == tokenizer_hash(tmp_path / "bf16")
    stored = load_file(str(tmp_path / "ft" / "tokenizer" / "model.safetensors"))
    assert all(
        v.dtype == (torch.bfloat16 if k.startswith(("encoder.", "quantizer.")) else torch.float32)
        for k, v in stored.items()
    )
    reloaded = LFQAutoencoder.from_pretrained(tmp_path / "ft" / "tokenizer")
    for k, v in tuned.state_dict().items():  # the decoder kept its fp32 training values
        assert torch.equal(reloaded.state_dict()[k], v), k


def test_resume_refuses_another_tokenizer(tmp_path, base):
    base_dir, shards = base
    train_decoder(base_dir, CFG, shards, tmp_path / "run", stop_after=2, log=lambda s: None)
    torch.manual_seed(1)
    LFQAutoencoder(MICRO).save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="different tokenizer"):
        train_decoder(tmp_path / "other", CFG, shards, tmp_path / "run", log=lambda s: None)


def test_tokenizer_hash_follows_the_encoder_not_the_decoder(tmp_path):
    torch.manual_seed(0)
    tok = LFQAutoencoder(MICRO)
    tok.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        tok.decoder.conv_out.weight.add_(1.0)
    tok.save_pretrained(tmp_path / "b")
    with torch.no_grad():
        tok.encoder.conv_out.weight.add_(1e-3)
    tok.save_pretrained(tmp_path / "c")
    ha, hb, hc = (tokenizer_hash(tmp_path / n) for n in "abc")
    assert ha == hb != hc


def test_discriminator_is_per_sample_and_patchwise():
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, channels=16, layers=3).eval()
    x = torch.randn(4, 3, 128, 128)
    with torch.no_grad():
        logits, feats = disc(x)
        alone, _ = disc(x[:1])
    assert logits.shape == (4, 1, 14, 14) and len(feats) == 4
    torch.testing.assert_close(alone, logits[:1], rtol=1e-4, atol=1e-5)
    assert float(feature_matching(feats, feats)) == 0.0
    with pytest.raises(UserError):
        PatchDiscriminator(3, channels=4)


def test_cli_fine_tunes_the_recipe_tokenizer(tiny_recipe, tmp_path):
    from unif2ace.cli import main

    tok = tiny_recipe / "image-tokenizer" / "tokenizer"
    rc = main(
        ["train", "tokenizer-decoder", "--tokenizer", str(tok), "--data", str(tiny_recipe / "data"),
         "--out", str(tmp_path / "ft"), "--steps", "2", "--batch-size", "2", "--disc-start", "1",
         "--disc-channels", "8", "--log-every", "1", "--region-weight", "1"]
    )  # fmt: skip
    assert rc == 0
    assert tokenizer_hash(tmp_path / "ft" / "tokenizer") == tokenizer_hash(tok)
    bad = main(["train", "tokenizer-decoder", "--tokenizer", str(tmp_path / "nothing"),
                "--data", str(tiny_recipe / "data"), "--out", str(tmp_path / "x")])  # fmt: skip
    assert bad == 2


def test_pixel_only_steps_skip_the_discriminator_without_changing_the_decoder(base):
    """adv = fm = 0 never runs the discriminator; the decoder's update is the one a run with
    the adversarial terms makes before ``disc_start`` (pixel losses alone), bit for bit."""
    from unif2ace.tokenizer.train_decoder import (
        _freeze_encoding_side,
        _Trainable,
        decoder_step,
        make_optimizer,
    )

    folder, shards = base
    images = ImageStream(shards, 16, 3, seed=0).next_batch()
    decoders, discs = [], []
    for cfg in (replace(CFG, adv_weight=0.0, fm_weight=0.0), replace(CFG, disc_start=5)):
        torch.manual_seed(1)
        tok = LFQAutoencoder.from_pretrained(folder)
        _freeze_encoding_side(tok)
        disc = PatchDiscriminator(3, cfg.disc_channels, cfg.disc_layers)
        before = {k: v.clone() for k, v in disc.state_dict().items()}
        opt = make_optimizer(_Trainable(tok, disc), cfg)
        parts = decoder_step(tok, disc, opt, images, 0, cfg)
        decoders.append(tok.decoder.state_dict())
        moved = any(not torch.equal(before[k], v) for k, v in disc.state_dict().items())
        discs.append((moved, parts["d_real"]))
    for k, v in decoders[0].items():
        assert torch.equal(v, decoders[1][k]), k
    assert discs[0] == (False, 0.0) and discs[1][0]  # skipped vs trained
