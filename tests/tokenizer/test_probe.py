"""Attribute probes: the feature sets read the cells and pixels at the landmarks, the probe
separates what is separable and not what is not, and a whole probe runs on FaceForge faces."""

from __future__ import annotations

import json

import pytest
import torch

from unif2ace.data.faceforge.build import build_dataset
from unif2ace.data.shards import iter_records
from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, TokenizerConfig
from unif2ace.tokenizer.lfq import codes_to_bits
from unif2ace.tokenizer.probe import PROBED, attribute_probes, cell_block, linear_probe, pixel_patch


def test_cell_block_and_pixel_patch_read_at_the_points():
    codes = torch.randint(0, 16, (2, 8, 8))
    bits = codes_to_bits(codes, 4)  # (2, 4, 8, 8)
    # f = 4: point (13, 9) lies in cell (row 2, col 3); a 3x3 block starts at (1, 2)
    got = cell_block(bits, [[(13.0, 9.0)], [(0.0, 31.0)]], f=4, window=3)
    assert torch.equal(got[0], bits[0, :, 1:4, 2:5].reshape(-1))
    assert torch.equal(got[1], bits[1, :, 5:8, 0:3].reshape(-1))  # clamped into the grid
    images = torch.randn(2, 3, 32, 32)
    pts = [[(10.0, 20.0), (30.0, 1.0)], [(16.0, 16.0), (16.0, 16.0)]]
    p = pixel_patch(images, pts, crop=8)
    assert p.shape == (2, 2 * 3 * 64)
    assert torch.equal(p[0, :192], images[0, :, 16:24, 6:14].reshape(-1))
    assert torch.equal(p[0, 192:], images[0, :, 0:8, 24:32].reshape(-1))  # clamped
    with pytest.raises(UserError):
        pixel_patch(images, pts, crop=40)
    with pytest.raises(UserError):
        cell_block(bits, [[(0.0, 0.0)]], f=4, window=9)


def test_linear_probe_separates_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 20, generator=g)
    y = (X @ torch.randn(20, 3, generator=g)).argmax(1)  # 3 linearly separable classes
    sep = linear_probe(X[:400], y[:400], X[400:], y[400:])
    assert sep["accuracy"] > 0.9
    noise = torch.randint(0, 2, (600,), generator=g)
    blind = linear_probe(X[:400], noise[:400], X[400:], noise[400:])
    assert blind["accuracy"] < 0.62
    with pytest.raises(UserError):
        linear_probe(X[:5], y[:5], X[5:9], y[5:9])


@pytest.fixture(scope="module")
def ff(tmp_path_factory):
    root = tmp_path_factory.mktemp("ffp")
    build_dataset(root, preset="tiny", num=48, progress=False)
    return root


def test_attribute_probes_on_faceforge(ff):
    torch.manual_seed(0)
    res = 32
    tok = LFQAutoencoder(
        TokenizerConfig(resolution=res, base_channels=8, channel_mult=(1, 2), codebook_bits=4)
    )
    cols = ["image", "attributes", "identity", "hidden"]
    train = list(iter_records(ff, "train", cols))
    held = list(iter_records(ff, "train", cols))[:12]
    out = attribute_probes(tok, train, held, attributes=("eye_color", "earrings"), crop=6)
    assert out["window"] == 3 and out["crop"] == 6
    for attr in ("eye_color", "earrings"):
        r = out[attr]
        visible = [rec for rec in train if attr not in (rec["hidden"] or [])]
        assert r["n_train"] == len(visible) and r["n_eval"] <= 12
        vals = [str(json.loads(rec["attributes"])[attr]) for rec in held]
        vis = [v for v, rec in zip(vals, held, strict=True) if attr not in (rec["hidden"] or [])]
        assert r["majority"] == max(vis.count(c) for c in set(vis)) / len(vis)
        assert set(r["classes"]) >= set(vis)
        for fs in ("codes", "pixels", "reconstruction"):
            assert 0.0 <= r[fs] <= 1.0
    few = attribute_probes(tok, train[:6], held, attributes=("earrings",), crop=6)
    assert "skipped" in few["earrings"]
    with pytest.raises(UserError, match="cannot probe"):
        attribute_probes(tok, train, held, attributes=("hair_color",))
    no_marks = [{**rec, "identity": None} for rec in held]
    with pytest.raises(UserError, match="no FaceForge faces"):
        attribute_probes(tok, no_marks, held)
    assert set(PROBED) >= {"eye_color", "earrings", "lipstick", "freckles", "moles"}


def test_eval_tokenizer_cli_probe(tiny_recipe, tmp_path, capsys):
    from unif2ace.cli import main

    tok = tiny_recipe / "image-tokenizer" / "tokenizer"
    rc = main(
        ["eval-tokenizer", "--tokenizer", str(tok), "--data", str(tiny_recipe / "data"),
         "--split", "train", "--max-images", "8", "--probe", "16",
         "--json", str(tmp_path / "e.json")]
    )  # fmt: skip
    assert rc == 0
    probes = json.loads((tmp_path / "e.json").read_text())["attribute_probes"]
    assert set(probes) == {"window", "crop", *PROBED}
    assert all(probes[a].get("n_eval", 0) <= 8 for a in PROBED)
