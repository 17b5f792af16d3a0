"""AdamW with decoupled weight decay, warm-up + cosine schedule, clipping, EMA of weights.

- Weight decay applies to matrices only: norms, biases (any parameter with < 2 dims) and
  embedding tables are excluded (GPT-2 / nanoGPT ``configure_optimizers``; Loshchilov &
  Hutter 2019 for decoupled decay).
- The schedule is a pure function of the step, so resuming needs no scheduler state.
- EMA keeps an fp32 shadow of every parameter: ``ema = decay·ema + (1-decay)·param``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError

# Modules whose weights are scales/offsets or lookup tables, never decayed.
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)


@dataclass
class OptimConfig:
    """AdamW + warm-up/cosine + clipping + EMA (``train.optim.*`` in a run config)."""

    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio at the last step
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 disables EMA; e.g. 0.999
    # decay at update n is min(ema_decay, (1 + n) / (10 + n)), so the average forgets the
    # random initialisation (with a fixed 0.999 it still holds 0.999^2400 = 9% of it after
    # 2,400 steps); false: the fixed decay of runs made before 2026-12-06
    ema_warmup: bool = True


def _no_decay_ids(model: nn.Module) -> set[int]:
    """ids of parameters excluded from weight decay (tied weights count once)."""
    out: set[int] = set()
    for module in model.modules():
        excluded_module = (
            isinstance(module, _NO_DECAY_MODULES) or "norm" in type(module).__name__.lower()
        )
        for p in module.parameters(recurse=False):
            if excluded_module or p.ndim < 2 or getattr(p, "_no_weight_decay", False):
                out.add(id(p))
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices and the rest (norms, biases, embeddings).

    A parameter can opt out with ``p._no_weight_decay = True``. Group dicts carry a ``name``.
    """
    skip = _no_decay_ids(model)
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # deduplicated: tied weights appear once
        if not p.requires_grad:
            continue
        (no_decay if id(p) in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model)``; build it after DDP/FSDP wrapping."""
    if cfg.lr <= 0:
        raise UserError(f"train.optim.lr must be > 0, got {cfg.lr}")
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        foreach=True,
    )


def lr_at(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float
) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up then cosine.

    Warm-up: lr·(step+1)/warmup for step < warmup (reaches lr at step warmup-1).
    Cosine: from lr at step=warmup down to lr·min_ratio at step=total-1
    (Loshchilov & Hutter 2017, SGDR without restarts). Stateless, so resume is exact.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (min_ratio + (1.0 - min_ratio) * cosine)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Global gradient L2 norm (before clipping); clips in place when ``max_norm`` > 0.

    Works for DDP and FSDP2 (DTensor gradients are reduced across shards).
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)


class EMA:
    """Exponential moving average of a model's parameters (fp32 shadow copies).

    Keys are the parameter names of the unwrapped model, so ``state_dict()`` matches
    ``model.state_dict()`` for parameters and can be saved as ``ema.safetensors``.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        if not 0.0 < decay < 1.0:
            raise UserError(f"train.optim.ema_decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.shadow = {
            n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad
        }

    def decay_at(self, update: int) -> float:
        """The decay of the ``update``-th update (1-based): ``decay``, or with ``warmup``
        min(decay, (1 + update) / (10 + update)) — the warm-up of TensorFlow's
        ``ExponentialMovingAverage(num_updates=...)``."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + update) / (10.0 + update))

    @torch.no_grad()
    def update(self, model: nn.Module, update: int = 0) -> None:
        """shadow ← d·shadow + (1-d)·param, d = :meth:`decay_at` (``update``: the optimizer
        step this average follows, 1-based; a pure function of it, so resume is exact)."""
        d = self.decay_at(update)
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise UserError(f"EMA state lacks {len(missing)} parameter(s), e.g. {missing[:3]}")
        for n, t in self.shadow.items():
            src = state[n].to(dtype=t.dtype)
            if hasattr(t, "device_mesh"):  # FSDP2 DTensor shard: scatter the full tensor
                from torch.distributed.tensor import distribute_tensor

                src = distribute_tensor(
                    src.to(t.device_mesh.device_type), t.device_mesh, t.placements
                )
            else:
                src = src.to(t.device)
            t.copy_(src)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model`` (for eval/sampling)."""
        params = {n: p for n, p in model.named_parameters() if n in self.shadow}
        backup = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.shadow[n].to(p.dtype))
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(backup[n])
