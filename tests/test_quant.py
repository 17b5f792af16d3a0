"""8-bit block storage of exported weights (``unif2ace.quant``)."""

import pytest
import torch

from unif2ace.quant import BLOCK, SCALE_SUFFIX, dequantize, is_quantized, quantize
from unif2ace.train.checkpoint import _save_tensors, load_tensors


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(96, 128, generator=g) * 0.02
    w[3, 5] = 0.9  # an outlier sets its block's scale
    return {
        "fc.weight": w.to(torch.bfloat16),
        "experts": torch.randn(2, 3, 64, 192, generator=g).to(torch.bfloat16),
        "norm.weight": torch.ones(128),  # 1-D: kept
        "odd.weight": torch.randn(80, 100, generator=g),  # last axis not in whole blocks: kept
        "zeros.weight": torch.zeros(64, 64),  # all-zero blocks round-trip exactly
        "step": torch.tensor(3),
    }


def test_codes_scales_and_error_bound():
    sd = _state()
    q = quantize(sd)
    assert is_quantized(q) and not is_quantized(sd)
    assert q["fc.weight"].dtype == torch.int8 and q["fc.weight"].abs().max() <= 127
    assert q["fc.weight" + SCALE_SUFFIX].shape == (96, 128 // BLOCK)
    for kept in ("norm.weight", "odd.weight", "step"):
        assert q[kept] is sd[kept] and kept + SCALE_SUFFIX not in q
    back = dequantize(q)
    assert set(back) == set(sd)
    for name in ("fc.weight", "experts", "zeros.weight"):
        w = sd[name].float()
        blocks = w.reshape(*w.shape[:-1], -1, BLOCK)
        half_step = (blocks.abs().amax(-1, keepdim=True) / 127 / 2).expand_as(blocks)
        err = (back[name] - w).reshape(blocks.shape).abs()
        assert (err <= half_step * (1 + 1e-3) + 1e-9).all(), name
    assert torch.equal(back["zeros.weight"], sd["zeros.weight"])
    # Blocks are independent: the outlier coarsens its own block only.
    small = (back["fc.weight"][3, 64:] - sd["fc.weight"][3, 64:].float()).abs().max()
    big = (back["fc.weight"][3, :64] - sd["fc.weight"][3, :64].float()).abs().max()
    assert small < big / 10


def test_file_round_trip_is_smaller_and_keeps_ties(tmp_path):
    sd = _state()
    sd["head.weight"] = sd["fc.weight"]  # tied
    _save_tensors(sd, tmp_path / "bf16.safetensors")
    _save_tensors(quantize(sd), tmp_path / "q8.safetensors")
    sizes = {k: (tmp_path / f"{k}.safetensors").stat().st_size for k in ("bf16", "q8")}
    assert sizes["q8"] < 0.7 * sizes["bf16"]
    back = load_tensors(tmp_path / "q8.safetensors")  # dequantised on read
    assert not is_quantized(back) and set(back) == set(sd)
    assert torch.equal(back["head.weight"], back["fc.weight"])
    torch.testing.assert_close(back["experts"], sd["experts"].float(), atol=0.02, rtol=0)


def test_quantising_twice_is_refused():
    with pytest.raises(ValueError, match="already quantised"):
        quantize(quantize(_state()))
