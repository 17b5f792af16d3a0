"""Schedule end points, weight-decay exclusion, clipping, EMA, and config/CLI plumbing."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn
from train_toy import ToyNet

from unif2ace.config import apply_overrides, from_dict, to_dict
from unif2ace.errors import UserError
from unif2ace.train.args import add_train_args, overrides_from_args
from unif2ace.train.loop import TrainConfig
from unif2ace.train.optim import EMA, OptimConfig, build_optimizer, clip_grad_norm, lr_at


def test_schedule_endpoints_and_shape():
    lr, warm, total, floor = 1e-3, 10, 110, 0.1
    at = [lr_at(s, lr, warm, total, floor) for s in range(total)]
    assert at[0] == pytest.approx(lr / warm)
    assert at[warm - 1] == pytest.approx(lr)  # warm-up reaches the peak
    assert at[warm] == pytest.approx(lr)  # cosine starts at the peak
    assert at[-1] == pytest.approx(lr * floor)  # and ends at the floor on the last step
    mid = warm + (total - 1 - warm) // 2  # half way through the cosine (99 steps: odd)
    progress = (mid - warm) / (total - 1 - warm)
    assert at[mid] == pytest.approx(
        lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    )
    assert all(a < b for a, b in zip(at[:warm], at[1:warm], strict=False))  # rising
    assert all(a >= b for a, b in zip(at[warm:], at[warm + 1 :], strict=False))  # falling
    assert lr_at(500, lr, warm, total, floor) == pytest.approx(lr * floor)  # past the end
    assert lr_at(0, lr, 0, 1, floor) == pytest.approx(lr)  # no warm-up, one step


class WithExtras(nn.Module):
    """Every kind of parameter: tied embedding/head, norms, biases, a custom RMSNorm-like
    module, a raw matrix parameter and an opted-out one."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        self.gain = MyRMSNorm(4)
        self.mat = nn.Parameter(torch.randn(4, 4))
        self.table = nn.Parameter(torch.randn(3, 4))
        self.table._no_weight_decay = True


class MyRMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


def test_weight_decay_only_on_matrices():
    model = WithExtras()
    opt = build_optimizer(model, OptimConfig(weight_decay=0.05))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["mat", "proj.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "embed.weight",
        "gain.weight",
        "norm.bias",
        "norm.weight",
        "proj.bias",
        "table",
    ]
    n_opt = len(decay["params"]) + len(no_decay["params"])
    assert n_opt == len(list(model.parameters()))  # every parameter exactly once (tied: once)


def test_weight_decay_is_decoupled_and_skips_excluded_params():
    model = WithExtras()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, OptimConfig(lr=0.1, weight_decay=0.5))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only decay can move a parameter
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["mat"], before["mat"] * (1 - 0.1 * 0.5))
    for n in ("embed.weight", "norm.weight", "proj.bias", "table", "gain.weight"):
        assert torch.equal(after[n], before[n]), n


def test_clip_grad_norm_reports_pre_clip_norm():
    model = nn.Linear(3, 1, bias=False)
    model.weight.grad = torch.tensor([[3.0, 4.0, 0.0]])
    assert clip_grad_norm(model, 0.0).item() == pytest.approx(5.0)  # 0: report only
    assert torch.equal(model.weight.grad, torch.tensor([[3.0, 4.0, 0.0]]))
    assert clip_grad_norm(model, 1.0).item() == pytest.approx(5.0)
    assert model.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_ema_update_swap_and_errors():
    model = nn.Linear(2, 1)
    ema = EMA(model, 0.75)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(4.0)
    ema.update(model)
    for n, p in model.named_parameters():
        assert torch.allclose(ema.shadow[n], 0.75 * start[n] + 0.25 * p.detach())
    live = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.swapped(model):
        assert torch.allclose(model.weight, ema.shadow["weight"])
    assert all(torch.equal(p, live[n]) for n, p in model.named_parameters())
    with pytest.raises(UserError, match="ema_decay"):
        EMA(model, 1.0)


def test_ema_warmup_forgets_the_initialisation():
    """With warm-up the decay of update n is min(decay, (1+n)/(10+n)), so after n updates of
    a constant model the initial weights keep a share prod_i d_i (tiny), where a fixed 0.999
    keeps 0.999^n; the update is a pure function of n (exact resume)."""
    model = nn.Linear(2, 1, bias=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    fixed, warm = EMA(model, 0.999), EMA(model, 0.999, warmup=True)
    for m in (fixed, warm):  # both start at the initial weights
        m.shadow["weight"].copy_(start)
    assert warm.decay_at(1) == pytest.approx(2 / 11) and warm.decay_at(10**6) == 0.999
    assert fixed.decay_at(1) == 0.999
    share = 1.0
    for n in range(1, 201):
        fixed.update(model, n)
        warm.update(model, n)
        share *= warm.decay_at(n)
    want = share * start + (1 - share) * model.weight.detach()
    assert torch.allclose(warm.shadow["weight"], want, atol=1e-6)
    assert share < 1e-9
    fixed_share = 0.999**200
    want_fixed = fixed_share * start + (1 - fixed_share) * model.weight.detach()
    assert torch.allclose(fixed.shadow["weight"], want_fixed, atol=1e-5)


def test_train_config_round_trip_overrides_and_accumulation():
    cfg = apply_overrides(TrainConfig(), ["optim.lr=1e-3", "steps=7", "autocast=none"])
    assert cfg.optim.lr == 1e-3 and cfg.steps == 7 and cfg.autocast == "none"
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    with pytest.raises(UserError, match="valid keys"):
        from_dict(TrainConfig, {"stepz": 3})
    assert TrainConfig(batch_size=32, micro_batch_size=8).grad_accum(2) == 2
    with pytest.raises(UserError, match="not a multiple"):
        TrainConfig(batch_size=30, micro_batch_size=8).grad_accum(1)


def test_add_train_args_produces_dotted_overrides():
    p = add_train_args(argparse.ArgumentParser())
    args = p.parse_args(
        [
            "--out",
            "run",
            "--steps",
            "50",
            "--batch-size",
            "16",
            "train.optim.lr=1e-3",
            "model.d_model=64",
        ]
    )
    assert args.out == "run" and args.resume == "auto"
    assert overrides_from_args(args) == [
        "train.steps=50",
        "train.batch_size=16",
        "train.optim.lr=1e-3",
        "model.d_model=64",
    ]


def test_toy_model_groups_exclude_tied_embedding():
    model = ToyNet()
    decay = build_optimizer(model, OptimConfig()).param_groups[0]["params"]
    assert all(p is not model.embed.weight for p in decay)
    assert all(p.ndim == 2 for p in decay)
