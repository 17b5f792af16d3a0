"""Checkpoints: atomic publication, keep-last-k, stale temp folders ignored, exact state
round trip (weights, optimizer, EMA, RNG), bf16 → fp32 loading, no pickle anywhere."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from train_toy import ToyNet

from unif2ace.errors import UserError
from unif2ace.train.checkpoint import (
    find_latest,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    load_tensors,
    save_checkpoint,
    save_model_weights,
)
from unif2ace.train.optim import EMA, OptimConfig, build_optimizer
from unif2ace.train.state import TrainState, capture_rng, restore_rng


def _trained(seed: int = 0) -> tuple[ToyNet, torch.optim.Optimizer, EMA]:
    torch.manual_seed(seed)
    model = ToyNet()
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    ema = EMA(model, 0.9)
    for _ in range(2):
        x = torch.randint(0, 32, (4, 8))
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
    return model, opt, ema


def _save(out, step, model, opt=None, ema=None, keep=3, extra=None):
    return save_checkpoint(
        out,
        model,
        TrainState(step=step, epoch=1, batch_in_epoch=3),
        opt,
        ema,
        {"train": {"lr": 0.1}},
        keep,
        extra_files=extra,
    )


def test_keep_last_k_and_latest_pointer(tmp_path):
    model, opt, _ = _trained()
    for step in range(1, 6):
        path = _save(tmp_path, step, model, opt, keep=2)
        assert find_latest(tmp_path) == path
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000005"
    files = sorted(p.name for p in path.iterdir())
    assert files == [
        "config.json",
        "model.safetensors",
        "trainer_state.json",
        "trainer_state.safetensors",
    ]
    assert json.loads((path / "config.json").read_text()) == {"train": {"lr": 0.1}}


def test_crash_leftovers_are_ignored_and_cleaned(tmp_path):
    model, opt, _ = _trained()
    _save(tmp_path, 1, model, opt)
    root = tmp_path / "checkpoints"
    stale = root / ".tmp-step-00000002-deadbeef"  # what a SIGKILL mid-write leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\x00garbage")
    assert find_latest(tmp_path).name == "step-00000001"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001"]

    def boom(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # a failing save publishes nothing
        _save(tmp_path, 2, model, opt, extra=boom)
    assert find_latest(tmp_path).name == "step-00000001"
    assert not (root / "step-00000002").exists()
    _save(tmp_path, 3, model, opt)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert find_latest(tmp_path).name == "step-00000003"


def test_find_latest_survives_a_bad_pointer(tmp_path):
    model, _, _ = _trained()
    assert find_latest(tmp_path) is None
    _save(tmp_path, 1, model)
    _save(tmp_path, 7, model)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000099\n")
    assert find_latest(tmp_path).name == "step-00000007"
    (tmp_path / "checkpoints" / "latest").unlink()
    assert find_latest(tmp_path).name == "step-00000007"


def test_resave_same_step_replaces_it(tmp_path):
    model, _, _ = _trained()
    first = _save(tmp_path, 4, model)
    with torch.no_grad():
        model.pos.add_(1.0)
    again = _save(tmp_path, 4, model)
    assert first == again
    other = ToyNet()
    load_model_weights(again, other)
    assert torch.equal(other.pos, model.pos)


def test_full_state_round_trip(tmp_path):
    model, opt, ema = _trained()
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    rng = capture_rng()
    path = _save(tmp_path, 2, model, opt, ema)
    assert (path / "ema.safetensors").is_file()
    expect_rand = (random.random(), np.random.rand(), torch.rand(3))

    model2, opt2, ema2 = _trained(seed=1)  # different weights and moments
    loaded = load_checkpoint(path, model2, opt2, ema2)
    assert loaded.state.step == 2 and loaded.state.epoch == 1 and loaded.state.batch_in_epoch == 3
    assert loaded.config == {"train": {"lr": 0.1}}
    for (n, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k]), (i, k)
    for k in ema.shadow:
        assert torch.equal(ema.shadow[k], ema2.shadow[k])
    random.seed(0)
    torch.manual_seed(0)
    restore_rng(loaded.rng)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expect_rand[:2] and torch.equal(got[2], expect_rand[2])
    assert torch.equal(rng.torch_cpu, loaded.rng.torch_cpu)


def test_no_pickle_in_checkpoints(tmp_path):
    model, opt, ema = _trained()
    path = _save(tmp_path, 1, model, opt, ema)
    for f in path.iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"PK", f  # neither pickle nor torch zip


def test_bf16_weights_load_into_fp32_model(tmp_path):
    model, _, _ = _trained()
    save_model_weights(model, tmp_path / "fp32.safetensors")
    save_model_weights(model, tmp_path / "model.safetensors", dtype=torch.bfloat16)
    n_bytes = sum(p.numel() * 4 for p in model.parameters())  # tied weight counted once
    assert n_bytes < (tmp_path / "fp32.safetensors").stat().st_size < n_bytes + 2048
    bf16_size = (tmp_path / "model.safetensors").stat().st_size
    assert n_bytes // 2 < bf16_size < n_bytes // 2 + 2048
    assert set(load_tensors(tmp_path / "model.safetensors")) == set(model.state_dict())
    fresh = ToyNet()
    load_model_weights(tmp_path / "model.safetensors", fresh)
    assert fresh.pos.dtype == torch.float32
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a.to(torch.bfloat16).float(), b), n
    assert fresh.head.weight is fresh.embed.weight  # tying survives loading


def test_mismatched_or_missing_checkpoints_raise_user_errors(tmp_path):
    model, _, _ = _trained()
    path = _save(tmp_path, 1, model)
    wrong = torch.nn.Linear(3, 3)
    with pytest.raises(UserError, match="does not match the model"):
        load_model_weights(path, wrong)
    with pytest.raises(UserError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "nowhere", model)
    with pytest.raises(UserError, match="no EMA"):
        load_checkpoint(path, model, ema=EMA(model, 0.5))


def test_train_state_loads_old_and_rejects_unknown_keys():
    old = {"step": 5, "epoch": 2}  # written before the other fields existed
    st = TrainState.from_dict(old)
    assert st.step == 5 and st.batch_in_epoch == 0 and st.extra == {}
    assert TrainState.from_dict(st.to_dict()) == st
    with pytest.raises(UserError, match="unknown config key"):
        TrainState.from_dict({"step": 1, "bogus": 2})


def test_ema_weights_take_frozen_parameters_from_the_model_file(tmp_path):
    """The EMA tracks trainable parameters only; loading it fills frozen ones (trained
    encoders, dead null tokens) from model.safetensors instead of refusing the checkpoint."""
    from unif2ace.train.checkpoint import EMA_FILE

    torch.manual_seed(0)
    model = ToyNet()
    model.pos.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    ema = EMA(model, 0.5)
    for _ in range(3):
        model(torch.randint(0, 32, (4, 8))).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
    path = _save(tmp_path, 1, model, opt, ema)
    assert "pos" not in load_tensors(path / EMA_FILE)
    fresh = ToyNet()
    load_model_weights(path, fresh, file=EMA_FILE)
    assert torch.equal(fresh.pos, model.pos)  # frozen: from the model file
    for n, t in ema.shadow.items():  # trainable: the averages, not the live weights
        assert torch.equal(dict(fresh.named_parameters())[n], t), n
    assert not torch.equal(fresh.embed.weight, model.embed.weight)
