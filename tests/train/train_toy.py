"""A tiny model, synthetic data and a runnable training script for the trainer tests.

Used in-process (``run_toy``) and as a subprocess (``python tests/train/train_toy.py ...``),
also once per rank with torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR, ...).

Shapes: B batch, T sequence length (8), V vocabulary (32), D width (16).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unif2ace.train.distributed import cleanup, setup_distributed
from unif2ace.train.loop import Hooks, TrainConfig, TrainResult, train
from unif2ace.train.optim import OptimConfig

V, T, D, N_SAMPLES = 32, 8, 16, 64


class Block(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return x_BTD + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x_BTD)))))


class ToyNet(nn.Module):
    """Embedding → 2 residual MLP blocks with token mixing → tied output head."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.zeros(T, D))
        self.mix = nn.Linear(
            T, T, bias=False
        )  # mixes positions (a bias would be LayerNorm-ed away)
        self.blocks = nn.ModuleList([Block(D, dropout) for _ in range(2)])
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids_BT: torch.Tensor) -> torch.Tensor:
        x_BTD = self.embed(ids_BT) + self.pos
        x_BTD = x_BTD + self.mix(x_BTD.transpose(1, 2)).transpose(1, 2)
        for blk in self.blocks:
            x_BTD = blk(x_BTD)
        return self.head(self.norm(x_BTD))  # logits_BTV


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """N_SAMPLES fixed sequences and targets: y = (3·x + x shifted by one + 1) mod V."""
    g = torch.Generator().manual_seed(1234)
    x_NT = torch.randint(0, V, (N_SAMPLES, T), generator=g)
    y_NT = (3 * x_NT + torch.roll(x_NT, 1, dims=1) + 1) % V
    return x_NT, y_NT


def make_factory(rank: int, world: int, micro: int, seed: int = 7):
    """Rank ``rank``'s micro-batches: a seeded permutation per epoch, positions ≡ rank (mod
    world), ``micro`` at a time (whole batches only), from micro-batch ``start``."""
    x_NT, y_NT = dataset()

    def factory(epoch: int, start: int):
        order = torch.randperm(N_SAMPLES, generator=torch.Generator().manual_seed(seed + epoch))
        mine = order[rank::world]
        n = len(mine) // micro
        batches = (
            (x_NT[mine[i * micro : (i + 1) * micro]], y_NT[mine[i * micro : (i + 1) * micro]])
            for i in range(n)
        )
        return itertools.islice(batches, start, None)

    return factory


def make_step_fn(noise: bool, sleep_s: float = 0.0, exit_after_calls: int = 0):
    """Cross-entropy; with ``noise`` it also masks 25 % of inputs with the global torch RNG
    (as a diffusion corruption would), so exact resume needs the RNG state restored.
    ``exit_after_calls``: hard-exit (no cleanup, status 3) at that call, as a crash would."""
    calls = [0]

    def step_fn(model, batch):
        calls[0] += 1
        if exit_after_calls and calls[0] > exit_after_calls:
            os._exit(3)
        x_BT, y_BT = batch
        if noise:
            keep_BT = torch.rand(x_BT.shape) >= 0.25
            x_BT = torch.where(keep_BT, x_BT, torch.zeros_like(x_BT))
        logits_BTV = model(x_BT)
        loss = F.cross_entropy(logits_BTV.float().reshape(-1, V), y_BT.reshape(-1))
        acc = (logits_BTV.argmax(-1) == y_BT).float().mean().item()
        if sleep_s:
            time.sleep(sleep_s)
        return loss, {"acc": acc, "ce": loss.item()}, x_BT.numel()

    return step_fn


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--micro", type=int, default=4)
    p.add_argument("--ckpt-every", type=int, default=4)
    p.add_argument("--keep-last", type=int, default=2)
    p.add_argument("--autocast", default="none")
    p.add_argument("--noise", action="store_true")
    p.add_argument("--ema", type=float, default=0.0)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--die-in-save", type=int, default=0, help="SIGKILL itself inside this save")
    p.add_argument("--resume", default="auto")
    p.add_argument("--parallel", default="auto")
    p.add_argument("--exit-after-calls", type=int, default=0)
    return p.parse_args(argv)


def run_toy(args: argparse.Namespace) -> TrainResult:
    info = setup_distributed("cpu")
    torch.manual_seed(0)
    model = ToyNet(dropout=0.1 if args.noise else 0.0)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        micro_batch_size=args.micro,
        seed=3,
        autocast=args.autocast,
        log_every=1,
        ckpt_every=args.ckpt_every,
        keep_last=args.keep_last,
        parallel=args.parallel,
        optim=OptimConfig(lr=3e-3, warmup_steps=3, ema_decay=args.ema),
    )

    def extra_files(folder: Path) -> None:
        (folder / "tokenizer.txt").write_text("toy")
        if args.die_in_save and folder.name.startswith(f".tmp-step-{args.die_in_save:08d}"):
            os.kill(os.getpid(), signal.SIGKILL)  # a crash in the middle of writing

    factory = make_factory(info.rank, info.world_size, args.micro)
    return train(
        cfg,
        model,
        make_step_fn(args.noise, args.sleep, args.exit_after_calls),
        factory,
        args.out,
        resume=args.resume,
        hooks=Hooks(extra_files=extra_files),
        dist_info=info,
        verbose=False,
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_toy(parse(sys.argv[1:]))
    cleanup(sync=True)
