"""Landmark-weighted pixel losses: the region map sits on the renderer's landmarks, weights
keep the loss scale, the stream gives the landmarks of the images it returns, and a tokenizer
run can start from another tokenizer's weights."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from tok_helpers import write_synthetic_shards

from unif2ace.data.faceforge.build import build_dataset
from unif2ace.data.faceforge.render import face_landmarks
from unif2ace.data.shards import list_shards
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, TokenizerConfig
from unif2ace.tokenizer.export import export_tokenizer
from unif2ace.tokenizer.images import ImageStream
from unif2ace.tokenizer.regions import (
    FINE_REGIONS,
    record_landmarks,
    region_map,
    region_weights,
)
from unif2ace.tokenizer.train_image import TrainConfig, pixel_losses, train_tokenizer


@pytest.fixture(scope="module")
def ff(tmp_path_factory):
    root = tmp_path_factory.mktemp("ff")
    build_dataset(root, preset="tiny", num=12, progress=False)
    return root


def _records(ff, n=4):
    t = pq.read_table(list_shards(ff, "train")[0], columns=["attributes", "identity", "width"])
    return t.to_pylist()[:n]


def test_region_map_peaks_on_the_landmarks(ff):
    rec = _records(ff, 1)[0]
    size = rec["width"]
    lm = record_landmarks(rec["attributes"], rec["identity"], size=size)
    want = face_landmarks(json.loads(rec["attributes"]), json.loads(rec["identity"]))
    assert lm["left_eye"] == pytest.approx(tuple(v * size / 128 for v in want["left_eye"]))
    r = region_map([lm, None], size)
    assert r.shape == (2, 1, size, size)
    assert r[1].abs().sum() == 0  # no landmarks: no bumps
    for key in ("left_eye", "right_eye", "mouth", "left_lobe"):
        x, y = (min(size - 1, int(v)) for v in lm[key])
        # a landmark's pixel is far above the map's mean and near its own bump's peak (1)
        assert r[0, 0, y, x] > 0.5 and r[0, 0, y, x] > 5 * r[0].mean()
    # every region named in FINE_REGIONS has landmarks the renderer gives
    assert all(k in lm for keys, _ in FINE_REGIONS.values() for k in keys)


def test_landmarks_scale_with_the_image_size(ff):
    rec = _records(ff, 1)[0]
    a = record_landmarks(rec["attributes"], rec["identity"], size=64)
    b = record_landmarks(rec["attributes"], rec["identity"], size=128)
    assert a["mouth"] == pytest.approx(tuple(v / 2 for v in b["mouth"]))
    assert record_landmarks(rec["attributes"], None) is None
    assert record_landmarks('{"not": "an attribute"}', rec["identity"]) is None


def test_region_weights_and_pixel_losses():
    r = torch.zeros(2, 1, 8, 8)
    r[0, 0, 2, 3] = 1.0
    w = region_weights(r, 1.0)
    assert torch.equal(w[1], torch.ones(1, 8, 8))  # no regions: uniform
    # strength 1: the regions carry as much weight as the whole image
    assert (w[0].sum() - 64).item() == pytest.approx(64.0)
    x = torch.randn(2, 3, 8, 8)
    y = torch.randn(2, 3, 8, 8)
    plain = pixel_losses(y, x, 0.0)
    assert all(
        torch.allclose(a, b) for a, b in zip(plain, pixel_losses(y, x, 0.0, w * 0 + 3), strict=True)
    )
    # errors only inside the region weigh more with region weights than without
    y2 = x.clone()
    y2[0, :, 2, 3] += 1.0
    assert pixel_losses(y2, x, 0.0, w)[0] > 2 * pixel_losses(y2, x, 0.0)[0]


def test_stream_landmarks_follow_its_images(ff):
    shards = list_shards(ff, "train")
    a = ImageStream(shards, 32, 5, seed=2, landmarks=True)
    b = ImageStream(shards, 32, 5, seed=2)
    recs = {}
    for path in shards:
        for row in pq.read_table(path).to_pylist():
            recs[row["image"]] = row
    for _ in range(3):  # crosses an epoch (12 faces)
        images, marks = a.next_batch_landmarks()
        assert torch.equal(images, b.next_batch())  # the same order as without landmarks
        assert len(marks) == 5 and all(m is not None for m in marks)
    # the landmarks belong to the image they come with: re-read one batch in file order
    c = ImageStream(shards, 32, 3, shuffle=False, landmarks=True)
    _, marks = c.next_batch_landmarks()
    first = pq.read_table(shards[0]).to_pylist()[:3]
    for m, rec in zip(marks, first, strict=True):
        assert m == record_landmarks(rec["attributes"], rec["identity"], size=32)
    with pytest.raises(ValueError):
        b.next_batch_landmarks()


def test_records_without_identity_get_none(tmp_path):
    shards = write_synthetic_shards(tmp_path, shards=1, rows=4)
    _, marks = ImageStream(shards, 32, 4, landmarks=True).next_batch_landmarks()
    assert marks == [None] * 4


def test_region_weighted_run_and_init(ff, tmp_path):
    micro = TokenizerConfig(
        resolution=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, codebook_bits=4
    )
    shards = list_shards(ff, "train")
    cfg = TrainConfig(steps=2, batch_size=3, warmup_steps=1, bf16=False, log_every=1)
    base = train_tokenizer(micro, cfg, shards, tmp_path / "a", log=lambda s: None)
    # fine-tuning: the run starts from the given weights (its config wins over the argument)
    logs = []
    tuned_cfg = TrainConfig(**{**cfg.__dict__, "region_weight": 1.0, "steps": 1, "lr": 0.0})
    other = TokenizerConfig(resolution=16, base_channels=4, channel_mult=(1,), codebook_bits=4)
    tuned = train_tokenizer(
        other, tuned_cfg, shards, tmp_path / "b", init=tmp_path / "a" / "tokenizer", log=logs.append
    )
    assert tuned.config == micro and any("starting from" in s for s in logs)
    for k, v in base.state_dict().items():  # lr 0: one step leaves the weights as loaded
        assert torch.equal(tuned.state_dict()[k], v), k
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["l1"] > 0 for r in rows)
    assert LFQAutoencoder.from_pretrained(tmp_path / "b" / "tokenizer").config == micro
    # the exported card names where the fine-tune started, with that run's steps
    card = export_tokenizer(tmp_path / "b" / "tokenizer", tmp_path / "e") / "MODEL_CARD.md"
    text = card.read_text()
    assert "fine-tuned" in text and "(a: 2 steps" in text, text


def test_cli_init_errors(ff, tmp_path, capsys):
    from unif2ace.cli import main

    args = ["train", "tokenizer", "--data", str(ff), "--out", str(tmp_path / "x"), "--steps", "1"]
    assert main([*args, "--init", str(tmp_path / "missing")]) == 2
    assert "is not an image tokenizer folder" in capsys.readouterr().err
    assert main([*args, "--init", str(tmp_path), "--set", "base_channels=8"]) == 2
    assert "cannot be combined with --init" in capsys.readouterr().err


def test_stage2_decoder_loss_is_region_weighted(ff, tmp_path):
    """Stage 2 weighs its pixel losses as stage 1 does: the logged L1 of a region-weighted
    decoder step is the weighted L1 of the decoder's reconstruction before the step."""
    import copy

    from unif2ace.tokenizer.train_decoder import (
        DecoderTrainConfig,
        PatchDiscriminator,
        _Trainable,
        decoder_step,
        make_optimizer,
        train_decoder,
    )

    torch.manual_seed(0)
    tok = LFQAutoencoder(
        TokenizerConfig(resolution=32, base_channels=8, channel_mult=(1, 2), codebook_bits=4)
    )
    stream = ImageStream(list_shards(ff, "train"), 32, 3, landmarks=True)
    images, marks = stream.next_batch_landmarks()
    assert all(m is not None for m in marks)
    rw = region_weights(region_map(marks, 32), 1.0)
    with torch.no_grad():  # the decoder's raw output (no clamp), as the step computes it
        recon = tok.decoder(tok.quantizer(tok.encoder(images)).quantized_BDHW)
    expected = {
        w: float(pixel_losses(recon, images, 2.0, rw if w else None)[0]) for w in (0.0, 1.0)
    }
    assert abs(expected[1.0] - expected[0.0]) > 1e-4  # the weighting matters on these faces
    for weight, given in ((1.0, marks), (0.0, marks), (1.0, None)):
        t, d = copy.deepcopy(tok), PatchDiscriminator(3, channels=8, layers=2)
        cfg = DecoderTrainConfig(region_weight=weight, detail_weight=2.0, bf16=False)
        parts = decoder_step(t, d, make_optimizer(_Trainable(t, d), cfg), images, 0, cfg, given)
        want = expected[weight if given is not None else 0.0]
        assert parts["l1"] == pytest.approx(want, rel=1e-5), (weight, given is None)
    # a whole stage-2 run on FaceForge shards reads the landmarks
    tok.save_pretrained(tmp_path / "base")
    cfg = DecoderTrainConfig(
        steps=2, batch_size=3, warmup_steps=1, bf16=False, log_every=1, region_weight=1.0,
        disc_start=1, disc_channels=8, disc_layers=2,
    )  # fmt: skip
    train_decoder(tmp_path / "base", cfg, list_shards(ff, "train"), tmp_path / "s2", log=print)
    rows = [json.loads(x) for x in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
