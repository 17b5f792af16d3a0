"""Shapes, presets, bf16 autocast, parameter counts, config and registry errors."""

from __future__ import annotations

import pytest
import torch

from unif2ace.errors import UserError
from unif2ace.model.config import ModelConfig, model_preset
from unif2ace.model.encoders import build_encoder
from unif2ace.model.scale import parameter_breakdown, preset_parameter_breakdown
from unif2ace.model.transformer import build_model


@pytest.mark.parametrize(
    "overrides",
    [{}, {"parallel_residual": False, "qk_norm": True}, {"token_moe": False, "seq_moe": False}],
)
def test_shapes_and_backward(layout, make_batch, overrides):
    torch.manual_seed(0)
    model = build_model(model_preset("tiny", **overrides), layout)
    ids, mod, task = make_batch(layout)
    out = model(ids, mod, task)
    assert out.logits_BTV.shape == (*ids.shape, layout.size)
    assert out.balance_loss_G.shape == (2,)
    (out.logits_BTV.logsumexp(-1).mean() + 0.01 * out.balance_loss).backward()
    grads = [p.grad for n, p in model.named_parameters() if ".mlp." in n or "self_attn" in n]
    assert all(g is not None and g.isfinite().all() for g in grads)


def test_bf16_autocast_forward_backward(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    ref = tiny_model(ids, mod, task)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(ids, mod, task)
    assert out.logits_BTV.dtype == torch.bfloat16
    assert out.router.seq_weights_LBQ.dtype == torch.float32  # routing stays fp32
    out.logits_BTV.float().mean().backward()
    assert all(p.grad.isfinite().all() for p in tiny_model.parameters() if p.grad is not None)
    # Near-tied random-init sequence routers may flip under bf16: compare where they agree.
    same = (ref.router.seq_weights_LBQ > 0).eq(out.router.seq_weights_LBQ > 0).all(-1).all(0)
    assert same.any()
    a, b = out.logits_BTV.float()[same], ref.logits_BTV[same].detach()
    torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)


def test_paper_preset_parameter_count():
    counts = preset_parameter_breakdown("paper")
    assert 1.6e9 < counts["total"] < 2.0e9  # the paper reports 1.8B
    parts = {k: v for k, v in counts.items() if k != "total"}
    assert sum(parts.values()) == counts["total"]
    assert 3.9e8 < counts["attention"] < 4.1e8  # 24 · 4 · (2048² + 2048)


def test_breakdown_counts_every_parameter_once(tiny_model):
    counts = parameter_breakdown(tiny_model)
    assert counts["total"] == sum(p.numel() for p in tiny_model.parameters())


def test_config_roundtrip_and_errors():
    cfg = model_preset("small")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserError, match="unknown model config keys"):
        ModelConfig.from_dict({"d_modle": 3})
    with pytest.raises(UserError, match="valid: tiny, small, base, paper"):
        model_preset("huge")
    with pytest.raises(UserError, match="divisible"):
        ModelConfig(d_model=10, n_heads=3)


def test_encoder_registry_errors():
    with pytest.raises(UserError, match="cnn-identity"):
        build_encoder("clip-large", 32)
    assert build_encoder("cnn-semantic", 16, width=8).feature_dim == 16
    for name in ("hf-clip", "open-clip", "onnx-arcface"):  # missing package or missing file
        with pytest.raises(UserError):
            build_encoder(name, 512, path="/nonexistent/weights")
