import json

import pytest
import torch
from tok_helpers import write_synthetic_shards

from unif2ace.tokenizer.autoencoder import LFQAutoencoder, TokenizerConfig, preset_config
from unif2ace.tokenizer.images import ImageStream
from unif2ace.tokenizer.train_image import TrainConfig, lr_at, train_tokenizer

CFG = TrainConfig(
    steps=6,
    batch_size=3,
    lr=1e-3,
    warmup_steps=2,
    bf16=False,
    log_every=1,
    sample_every=3,
    ckpt_every=2,
)


# smaller than the tiny preset: the resume test trains three short runs
MICRO = TokenizerConfig(
    resolution=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, codebook_bits=4
)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_stream_resume_reads_same_images(tmp_path):
    shards = write_synthetic_shards(tmp_path, shards=3, rows=4)
    a = ImageStream(shards, 32, 5, seed=1)
    batches = [a.next_batch() for _ in range(4)]  # crosses shard and epoch boundaries
    b = ImageStream(shards, 32, 5, seed=1)
    b.next_batch()
    c = ImageStream(shards, 32, 5, seed=1)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for want in batches[1:]:
        assert torch.equal(c.next_batch(), want)
    # each epoch visits every image exactly once
    d = ImageStream(shards, 32, 12, seed=3)
    e0 = d.next_batch()
    assert torch.unique(e0.flatten(1), dim=0).shape[0] == 12


def test_resume_gives_identical_parameters(tmp_path):
    shards = write_synthetic_shards(tmp_path / "data", shards=2, rows=5)
    logs = []
    full = train_tokenizer(MICRO, CFG, shards, tmp_path / "full", log=logs.append)
    part = train_tokenizer(MICRO, CFG, shards, tmp_path / "part", stop_after=3, log=logs.append)
    assert not all(torch.equal(part.state_dict()[k], v) for k, v in _params(full).items())
    resumed = train_tokenizer(MICRO, CFG, shards, tmp_path / "part", log=logs.append)
    assert any("resuming" in line for line in logs)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    # metrics: one line per step, no duplicates after resume; grids and tokenizer written
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "part" / "metrics.jsonl").open()]
    assert steps == list(range(1, 7))
    assert (tmp_path / "part" / "samples" / "step-0000006.png").is_file()
    tok = LFQAutoencoder.from_pretrained(tmp_path / "part" / "tokenizer")
    assert all(torch.equal(tok.state_dict()[k], v) for k, v in full.state_dict().items())
    assert not (tmp_path / "part" / "checkpoint.tmp").exists()


def test_lr_schedule():
    assert lr_at(0, CFG) == CFG.lr / 2 and lr_at(1, CFG) == CFG.lr
    assert abs(lr_at(CFG.steps, CFG) - CFG.lr * CFG.min_lr_ratio) < 1e-12


@pytest.mark.slow
def test_training_reduces_reconstruction_loss(tmp_path):
    shards = write_synthetic_shards(tmp_path / "data", shards=1, rows=8)
    cfg = TrainConfig(
        steps=30,
        batch_size=4,
        lr=3e-3,
        warmup_steps=3,
        bf16=True,
        log_every=1,
        sample_every=100,
        ckpt_every=100,
    )
    train_tokenizer(preset_config("tiny"), cfg, shards, tmp_path / "run", log=lambda s: None)
    l1 = [json.loads(ln)["l1"] for ln in (tmp_path / "run" / "metrics.jsonl").open()]
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5


def test_detail_map_weights_edges_and_zero_strength_is_the_plain_loss():
    from unif2ace.tokenizer.autoencoder import LFQAutoencoder, preset_config
    from unif2ace.tokenizer.train_image import TrainConfig, detail_map, tokenizer_loss

    x = torch.full((1, 3, 32, 32), -0.5)
    x[:, :, 10:14, 10:14] = 0.8  # a small bright square on a flat background
    w = detail_map(x, 2.0)
    assert w.shape == (1, 1, 32, 32) and float(w.min()) >= 1.0
    assert float(w[0, 0, 12, 10]) > 2.0 and float(w[0, 0, 28, 28]) == 1.0
    torch.manual_seed(0)
    model = LFQAutoencoder(preset_config("tiny"))
    plain, p = tokenizer_loss(model, x, TrainConfig(bf16=False))
    weighted, q = tokenizer_loss(model, x, TrainConfig(bf16=False, detail_weight=2.0))
    with torch.no_grad():
        d = (model(x).recon_BCHW - x).abs()
    assert p["l1"] == pytest.approx(float(d.mean()), rel=1e-5)
    assert q["l1"] == pytest.approx(float((w * d).mean() / w.mean()), rel=1e-5)
