"""The loop in-process: shard-backed data factories, hooks with EMA weights, skipped
non-finite steps, accumulation = bigger micro-batch, user errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from train_toy import ToyNet, make_factory, make_step_fn

from unif2ace.data.dataset import FaceShardDataset
from unif2ace.data.shards import shard_path, write_shard
from unif2ace.errors import UserError
from unif2ace.train.batches import epoch_batches, shard_batches
from unif2ace.train.loop import Hooks, TrainConfig, train
from unif2ace.train.metrics import read_jsonl
from unif2ace.train.optim import OptimConfig


def _cfg(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=8,
        micro_batch_size=4,
        autocast="none",
        log_every=1,
        ckpt_every=3,
        optim=OptimConfig(lr=3e-3, warmup_steps=2),
    )
    return TrainConfig(**{**base, **kw})


def _shards(root, n_shards=3, per_shard=10):
    for k in range(n_shards):
        recs = [{"id": f"r{k}-{i}", "image": b"", "seed": 100 * k + i} for i in range(per_shard)]
        write_shard(shard_path(root, "train", k), recs)


def _collate(records):
    return torch.tensor([r["seed"] for r in records])


def test_shard_factory_positions_and_epochs(tmp_path):
    _shards(tmp_path)
    ds = [
        FaceShardDataset(tmp_path, "train", ["seed"], shuffle=True, seed=1, rank=r, world_size=2)
        for r in range(2)
    ]
    full = [torch.cat(list(epoch_batches(d, 0, 0, 4, _collate))) for d in ds]
    seen = torch.cat(full).tolist()
    valid = {100 * k + i for k in range(3) for i in range(10)}
    assert len(set(seen)) == len(seen) == 24 and set(seen) <= valid  # ranks never overlap
    assert all(len(f) == 12 for f in full)  # 15 rows per rank → 3 whole batches of 4
    factory = shard_batches(ds[0], 4, _collate)
    again = list(factory(0, 0))
    assert torch.equal(torch.cat(again), full[0])  # same epoch, same order
    tail = list(factory(0, 2))
    assert len(tail) == 1 and torch.equal(tail[0], again[2])  # positioned start
    assert not torch.equal(torch.cat(list(factory(1, 0))), full[0])  # new epoch, new order


def test_train_on_shards_runs_and_resumes_from_auto(tmp_path):
    _shards(tmp_path / "data")
    ds = FaceShardDataset(tmp_path / "data", "train", ["seed"], shuffle=True, seed=0)

    def step_fn(model, ids_B):
        x_BT = (ids_B[:, None] + torch.arange(8)) % 32
        logits = model(x_BT)
        loss = F.cross_entropy(logits.reshape(-1, 32), ((x_BT + 1) % 32).reshape(-1))
        return loss, {}, x_BT.numel()

    torch.manual_seed(0)
    res = train(
        _cfg(steps=4),
        ToyNet(),
        step_fn,
        shard_batches(ds, 4, _collate),
        tmp_path / "run",
        verbose=False,
    )
    assert res.state.step == 4 and res.state.epoch == 1  # 30 rows → 7 batches → 3 steps/epoch
    assert res.state.samples_seen == 32 and res.state.tokens_seen == 32 * 8
    torch.manual_seed(0)
    res = train(
        _cfg(steps=6),
        ToyNet(),
        step_fn,
        shard_batches(ds, 4, _collate),
        tmp_path / "run",
        verbose=False,
    )
    assert res.state.step == 6 and res.checkpoint.name == "step-00000006"
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_hooks_see_ema_weights_and_log(tmp_path, capsys):
    seen = {}

    def on_eval(step, model):
        assert not model.training and not torch.is_grad_enabled()
        seen[step] = model.pos.detach().clone()
        return {"score": float(step)}

    def on_sample(step, model, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"grid-{step}.txt").write_text("ok")

    torch.manual_seed(0)
    cfg = _cfg(eval_every=2, sample_every=3, optim=OptimConfig(lr=3e-3, ema_decay=0.5))
    res = train(
        cfg,
        ToyNet(),
        make_step_fn(False),
        make_factory(0, 1, 4),
        tmp_path,
        hooks=Hooks(on_eval=on_eval, on_sample=on_sample),
    )
    assert sorted(seen) == [2, 4, 6]
    assert torch.equal(seen[6], res.ema.shadow["pos"])  # EMA weights during the hook
    assert not torch.equal(res.model.pos, res.ema.shadow["pos"])  # live weights restored
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["eval/score"]) for r in rows if "eval/score" in r] == [
        (2, 2.0),
        (4, 4.0),
        (6, 6.0),
    ]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["grid-3.txt", "grid-6.txt"]
    out = capsys.readouterr().out
    assert "step 6/6 100.0%" in out and "tok/s" in out and "acc" in out


def test_non_finite_gradient_skips_the_update(tmp_path):
    def step_fn(model, batch):
        loss = model(batch[0]).float().mean() * float("nan")
        return loss, {}, 1

    model = ToyNet()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = train(_cfg(steps=2), model, step_fn, make_factory(0, 1, 4), tmp_path, verbose=False)
    assert res.state.skipped_steps == 2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_accumulation_matches_one_big_micro_batch(tmp_path):
    losses = []
    for micro in (8, 4, 2):  # accumulation 1, 2, 4 over the same global batch of 8
        torch.manual_seed(0)
        out = tmp_path / f"m{micro}"
        train(
            _cfg(micro_batch_size=micro),
            ToyNet(),
            make_step_fn(False),
            make_factory(0, 1, micro),
            out,
            verbose=False,
        )
        losses.append([r["loss"] for r in read_jsonl(out / "metrics.jsonl")])
    for other in losses[1:]:
        assert other == pytest.approx(losses[0], rel=1e-5)


def test_user_errors(tmp_path):
    torch.manual_seed(0)
    train(
        _cfg(steps=3), ToyNet(), make_step_fn(False), make_factory(0, 1, 4), tmp_path, verbose=False
    )
    with pytest.raises(UserError, match="already holds checkpoints"):
        train(
            _cfg(),
            ToyNet(),
            make_step_fn(False),
            make_factory(0, 1, 4),
            tmp_path,
            resume="never",
            verbose=False,
        )
    with pytest.raises(UserError, match="yields no batch"):
        train(
            _cfg(),
            ToyNet(),
            make_step_fn(False),
            lambda e, s: itertools.islice([], 0),
            tmp_path / "empty",
            verbose=False,
        )
