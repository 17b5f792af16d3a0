import json

import pytest
import torch

from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import (
    PRESETS,
    LFQAutoencoder,
    TokenizerConfig,
    build_tokenizer,
    preset_config,
)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return build_tokenizer("tiny").eval()


def test_encode_decode_shapes(tiny):
    cfg = tiny.config
    x = torch.rand(3, 3, cfg.resolution, cfg.resolution) * 2 - 1
    codes = tiny.encode(x)
    assert codes.shape == (3, cfg.grid, cfg.grid) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < cfg.codebook_size
    y = tiny.decode(codes)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0


def test_presets_shapes():
    assert preset_config("paper").codebook_size == 8192
    assert preset_config("paper").downsample == 16 and preset_config("paper").grid == 16
    assert preset_config("small").grid ** 2 == 256
    with pytest.raises(UserError):
        preset_config("huge")
    assert set(PRESETS) == {"tiny", "small", "paper"}


def test_save_load_round_trip_identical_codes(tiny, tmp_path):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    tiny.save_pretrained(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["codebook_bits"] == 6
    assert not list((tmp_path / "tok").glob("*.tmp"))
    loaded = LFQAutoencoder.from_pretrained(tmp_path / "tok")
    assert loaded.config == tiny.config
    assert torch.equal(loaded.encode(x), tiny.encode(x))
    codes = tiny.encode(x)
    assert torch.equal(loaded.decode(codes), tiny.decode(codes))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(UserError):
        LFQAutoencoder.from_pretrained(tmp_path)
    with pytest.raises(UserError):
        TokenizerConfig.from_dict({"resolution": 32, "bogus": 1})


def test_decode_rejects_out_of_range(tiny):
    with pytest.raises(UserError):
        tiny.decode(torch.full((1, 16, 16), 64))


def test_forward_gradients_flow_to_encoder(tiny):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = tiny(x)
    (out.recon_BCHW - x).abs().mean().backward()
    assert tiny.encoder.conv_in.weight.grad is not None
    assert float(tiny.encoder.conv_in.weight.grad.abs().sum()) > 0


def test_space_to_depth_stem_keeps_the_token_grid_and_roundtrips_shapes():
    import torch

    from unif2ace.tokenizer.autoencoder import build_tokenizer

    m = build_tokenizer("tiny", patch_size=2)
    assert m.config.downsample == 4 and m.config.grid == 8
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes = m.encode(x)
    assert codes.shape == (2, 8, 8)
    assert m.decode(codes).shape == (2, 3, 32, 32)
    assert m(x).recon_BCHW.shape == x.shape


def test_channel_norm_normalises_each_pixel_over_channels():
    from unif2ace.tokenizer.autoencoder import ChannelNorm

    x = torch.randn(2, 8, 5, 5) * 3 + 1
    y = ChannelNorm(8)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 5), atol=1e-3, rtol=0)
    # unlike GroupNorm, a per-image offset of one pixel's neighbours does not change this pixel
    x2 = x.clone()
    x2[:, :, 0, 0] += 10.0
    torch.testing.assert_close(ChannelNorm(8)(x2)[:, :, 1:, 1:], y[:, :, 1:, 1:])


def test_norm_option_defaults_and_errors():
    from torch import nn

    old = {k: v for k, v in preset_config("tiny").to_dict().items() if k != "norm"}
    assert TokenizerConfig.from_dict(old).norm == "group"  # configs saved before the option
    assert preset_config("small").norm == "channel"
    m = LFQAutoencoder(TokenizerConfig.from_dict({**old, "norm": "channel"}))
    assert not any(isinstance(x, nn.GroupNorm) for x in m.modules())
    with pytest.raises(UserError, match="valid: group, channel"):
        LFQAutoencoder(TokenizerConfig.from_dict({**old, "norm": "batch"}))


def test_grow_codebook_keeps_the_old_codes_and_reconstructions(tiny):
    from unif2ace.tokenizer.autoencoder import grow_codebook

    grown = grow_codebook(tiny, 2, seed=3)
    assert grown.config.codebook_bits == tiny.config.codebook_bits + 2
    assert grown.codebook_size == 4 * tiny.codebook_size
    x = torch.rand(5, 3, tiny.config.resolution, tiny.config.resolution) * 2 - 1
    old, new = tiny.encode(x), grown.encode(x)
    assert torch.equal(new >> 2, old)  # the old bits are the high bits of each new code
    # the decoder ignores the new low bits at first: every one of the 4 gives the old image
    for low in range(4):
        assert torch.allclose(grown.decode(old * 4 + low), tiny.decode(old), atol=1e-6)
    # the new bits are live (the encoder writes both values of them) and seeded
    assert len(torch.unique(new % 4)) > 1
    again = grow_codebook(tiny, 2, seed=3)
    assert torch.equal(again.encoder.conv_out.weight, grown.encoder.conv_out.weight)
    with pytest.raises(UserError, match="extra_bits"):
        grow_codebook(tiny, 0)
