"""The training loop: flat, model-agnostic, one code path for CPU, one GPU and ``torchrun``.

The loop knows nothing about faces. A run plugs in

- ``step_fn(model, batch) -> (loss, metrics, n_tokens)``: forward one micro-batch and return
  the scalar loss tensor to back-propagate (mean over the micro-batch), float metrics to log
  (loss components, accuracies) and the number of tokens it processed;
- ``data_factory(epoch, start) -> Iterable[batch]``: this rank's micro-batches of ``epoch`` in
  a deterministic order, starting at micro-batch ``start`` (``batches.fast_forward`` is the
  generic way; ``batches.epoch_batches`` does it for a ``FaceShardDataset``).

Per optimizer step: lr from the stateless warm-up/cosine schedule → ``accum`` micro-steps
(bf16 autocast; DDP/FSDP gradient sync only on the last) → clip → AdamW → EMA → log → hooks →
checkpoint. The global batch is ``micro_batch_size × accum × world_size``.

**Exact resume.** A checkpoint holds weights, optimizer moments, EMA, counters, the data
position (epoch, micro-batch) and every rank's RNG states, written atomically. On resume the
data iterator is re-opened at that position (inside an RNG sandbox seeded by the epoch, so
DataLoader worker seeds match) and only then are the RNG states restored; the schedule is a
function of the step. A run killed at any moment (SIGKILL) and resumed therefore repeats the
uninterrupted run's per-step losses bit for bit on CPU (same world size and thread count).
Logged window averages match too when ``ckpt_every`` is a multiple of ``log_every``.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..atomic import write_text_atomic
from ..config import to_dict
from ..errors import UserError
from .checkpoint import find_latest, load_checkpoint, save_checkpoint
from .distributed import (
    DistInfo,
    all_ranks_true,
    grad_sync,
    parallelize,
    print0,
    setup_distributed,
    unwrap,
)
from .metrics import MetricsLogger
from .optim import EMA, OptimConfig, build_optimizer, clip_grad_norm, lr_at, set_lr
from .prefetch import prefetching
from .progress import Progress
from .reduce import StepStats
from .state import TrainState, capture_rng, restore_rng, seed_all

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float], int]]
DataFactory = Callable[[int, int], Iterable[Any]]


@dataclass
class TrainConfig:
    """The trainer's knobs (``train.*`` in a run config)."""

    steps: int = 1000  # optimizer steps in total
    batch_size: int = 32  # global samples per optimizer step
    micro_batch_size: int = 8  # samples per forward on one rank
    seed: int = 0
    autocast: Literal["bf16", "none"] = "bf16"
    parallel: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    find_unused_parameters: bool = False  # DDP: some parameters may get no gradient (MoE)
    log_every: int = 10
    ckpt_every: int = 500
    keep_last: int = 3
    eval_every: int = 0  # 0: never
    sample_every: int = 0  # 0: never
    hooks_use_ema: bool = True  # eval/sample hooks see the EMA weights when EMA is on
    prefetch: int = 0  # batches built ahead in a thread (GPU runs; 0: none; train/prefetch.py)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available
    optim: OptimConfig = field(default_factory=OptimConfig)

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimizer step; the global batch must split evenly."""
        for name in ("steps", "batch_size", "micro_batch_size", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.prefetch < 0:
            raise UserError(f"train.prefetch must be >= 0, got {self.prefetch}")
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise UserError(
                f"train.batch_size={self.batch_size} is not a multiple of micro_batch_size × "
                f"world_size = {self.micro_batch_size} × {world_size}; change one of them"
            )
        return self.batch_size // per_step


@dataclass
class Hooks:
    """Callbacks of a run; each is called on every rank (FSDP forwards need all of them).

    on_eval(step, model) -> metrics logged as ``eval/<name>``; on_sample(step, model, dir)
    writes samples (e.g. grids) under ``OUT/samples``; extra_files(dir) adds files (tokenizers)
    to each checkpoint folder before it is published. ``model`` is unwrapped, in eval mode,
    under no_grad and autocast, with EMA weights swapped in when configured.
    """

    on_eval: Callable[[int, nn.Module], dict[str, float]] | None = None
    on_sample: Callable[[int, nn.Module, Path], None] | None = None
    extra_files: Callable[[Path], None] | None = None


@dataclass
class TrainResult:
    state: TrainState
    model: nn.Module  # as trained (possibly DDP/FSDP-wrapped)
    ema: EMA | None
    checkpoint: Path | None  # the last checkpoint written or loaded
    interrupted: bool = False  # stopped early by SIGTERM/SIGINT (after a checkpoint)


def train(
    cfg: TrainConfig,
    model: nn.Module,
    step_fn: StepFn,
    data_factory: DataFactory,
    out_dir: str | Path,
    *,
    resume: str = "auto",
    run_config: Any = None,
    hooks: Hooks | None = None,
    dist_info: DistInfo | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps; resumable from ``out_dir``.

    resume: "auto" (latest checkpoint in ``out_dir`` if any), "never" (refuse a folder that
    has checkpoints) or the path of a checkpoint folder. run_config: the resolved run config
    (dataclass or dict) saved as ``OUT/config.json`` and into each checkpoint.
    """
    info = dist_info or setup_distributed(cfg.device)
    hooks, out_dir = hooks or Hooks(), Path(out_dir)
    accum = cfg.grad_accum(info.world_size)  # also validates the config
    seed_all(int(np.random.SeedSequence([cfg.seed, info.rank]).generate_state(1)[0]))
    bf16 = cfg.autocast == "bf16"
    model = parallelize(
        model, info, cfg.parallel, torch.bfloat16 if bf16 else None, cfg.find_unused_parameters
    )
    raw = unwrap(model)
    optimizer = build_optimizer(raw, cfg.optim)
    ema = EMA(raw, cfg.optim.ema_decay, cfg.optim.ema_warmup) if cfg.optim.ema_decay > 0 else None
    state, rng, ckpt = TrainState(world_size=info.world_size), None, resume_path(resume, out_dir)
    if ckpt is not None:
        loaded = load_checkpoint(ckpt, model, optimizer, ema, rank=info.rank)
        state, rng = loaded.state, loaded.rng
        if state.world_size != info.world_size:
            print0(
                f"warning: checkpoint written by {state.world_size} rank(s), now "
                f"{info.world_size}: the run continues but not bit-identically"
            )
            adopt_world_size(state, info.world_size)
        print0(f"resumed from {ckpt} at step {state.step}")
    run_cfg = (
        to_dict(run_config)
        if run_config is not None and not isinstance(run_config, dict)
        else (run_config or {"train": to_dict(cfg)})
    )
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            out_dir / "config.json", json.dumps(run_cfg, indent=2, sort_keys=True, default=str)
        )
    logger = MetricsLogger(out_dir, info.is_main, state.step if ckpt is not None else None)
    progress = Progress(cfg.steps, state.step)
    if cfg.prefetch > 0:
        data_factory = prefetching(data_factory, cfg.prefetch)
    batches = _open_epoch(data_factory, state, cfg.seed, info.device)
    if rng is not None:
        restore_rng(rng, info.device)  # after the data is positioned: see module docstring
    autocast = torch.autocast(info.device.type, torch.bfloat16, enabled=bf16)
    stats, t_last, stop = StepStats(), time.perf_counter(), False
    model.train()
    with _GracefulStop() as stopper:
        while state.step < cfg.steps and not stop:
            lr = lr_at(
                state.step, cfg.optim.lr, cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio
            )
            set_lr(optimizer, lr)
            for micro in range(accum):
                batch, batches = _next_batch(batches, data_factory, state, cfg.seed, info)
                with grad_sync(model, micro == accum - 1):
                    with autocast:
                        loss, metrics, n_tokens = step_fn(model, _to_device(batch, info.device))
                    (loss / accum).backward()
                stats.add_micro(loss.detach(), metrics, n_tokens)
            grad_norm = clip_grad_norm(model, cfg.optim.grad_clip)
            if torch.isfinite(grad_norm):
                optimizer.step()
                if ema is not None:
                    ema.update(raw, state.step + 1)
            else:
                state.skipped_steps += 1
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.samples_seen += cfg.batch_size
            step_tokens, stop = stats.end_step(info.device, grad_norm, lr, stopper.requested)
            state.tokens_seen += step_tokens
            progress.add_tokens(step_tokens)
            now = time.perf_counter()
            state.elapsed_s, t_last = state.elapsed_s + now - t_last, now
            final = state.step == cfg.steps
            last = final or stop  # a stop request logs and checkpoints this step
            if state.step % cfg.log_every == 0 or last:
                row = stats.flush(info.device)
                mem = peak_memory_gb(info.device)
                if verbose:
                    print0(progress.line(state.step, row))
                counters = {
                    "samples": state.samples_seen,
                    "tokens": state.tokens_seen,
                    "elapsed_s": round(state.elapsed_s, 3),
                    "skipped": state.skipped_steps,
                    "peak_mem_gb": round(mem, 3),
                }
                logger.log(state.step, {**row, **counters})
            _run_hooks(cfg, hooks, state.step, raw, ema, autocast, out_dir, logger, final)
            if state.step % cfg.ckpt_every == 0 or last:
                ckpt = save_checkpoint(
                    out_dir,
                    model,
                    state,
                    optimizer,
                    ema,
                    run_cfg,
                    cfg.keep_last,
                    info.device,
                    hooks.extra_files,
                )
    logger.close()
    if stop and state.step < cfg.steps:
        print0(f"stopped by a signal at step {state.step}; resume with the same --out")
    return TrainResult(state, model, ema, ckpt, interrupted=state.step < cfg.steps)


def resume_path(resume: str, out_dir: Path) -> Path | None:
    """The checkpoint a run resumes from (``resume``: "auto", "never" or a folder), or None."""
    if resume == "auto":
        return find_latest(out_dir)
    if resume in ("never", "", "none"):
        if find_latest(out_dir) is not None:
            raise UserError(
                f"{str(out_dir)!r} already holds checkpoints; pass --resume auto "
                "to continue that run or choose another --out folder"
            )
        return None
    return Path(resume)


class _GracefulStop:
    """SIGTERM/SIGINT ask the loop to stop after the current step and checkpoint there
    (cluster preemption, Ctrl-C). Handlers are installed only in the main thread and the
    previous ones are put back on exit; a second signal interrupts immediately."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # second signal: the user really wants out now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@contextlib.contextmanager
def _rng_sandbox(seed: int, device: torch.device) -> Iterator[None]:
    """Run code with all global RNGs seeded by ``seed`` and put the outer states back."""
    saved = capture_rng(device)
    seed_all(seed)
    try:
        yield
    finally:
        restore_rng(saved, device)


def adopt_world_size(state: TrainState, world_size: int) -> None:
    """Continue ``state`` on ``world_size`` ranks (same micro-batch size): the position in the
    epoch is counted in micro-batches per rank, and ranks split the global order evenly, so
    the samples already consumed stay consumed (up to one micro-batch when it does not
    divide); checkpoints written afterwards record the new world size."""
    samples = state.batch_in_epoch * state.world_size
    state.batch_in_epoch = samples // world_size
    state.world_size = world_size


def _open_epoch(
    factory: DataFactory, state: TrainState, seed: int, device: torch.device
) -> Iterator[Any]:
    """This rank's batches of ``state.epoch`` from ``state.batch_in_epoch`` on.

    The iterator is created and primed (first batch fetched) in an RNG sandbox seeded by
    (seed, epoch), so lazy generators and DataLoader worker seeds do not depend on when the
    run started, and the global RNG streams are untouched.
    """
    sub = int(np.random.SeedSequence([seed, state.epoch, 0x5EED]).generate_state(1)[0])
    with _rng_sandbox(sub, device):
        it = iter(factory(state.epoch, state.batch_in_epoch))
        first = next(it, _END)
    return it if first is _END else _chain(first, it)


def _chain(first: Any, it: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from it


_END = object()


def _next_batch(
    batches: Iterator[Any], factory: DataFactory, state: TrainState, seed: int, info: DistInfo
) -> tuple[Any, Iterator[Any]]:
    """Next micro-batch, rolling over epochs when any rank runs out (ranks stay in step)."""
    for _ in range(2):
        batch = next(batches, _END)
        if all_ranks_true(batch is not _END, info.device):
            state.batch_in_epoch += 1
            return batch, batches
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        batches = _open_epoch(factory, state, seed, info.device)
    raise UserError(
        f"the data yields no batch for epoch {state.epoch} on some rank; "
        "use more data or a smaller micro_batch_size"
    )


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors in (nested) dicts/lists/tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _run_hooks(
    cfg: TrainConfig,
    hooks: Hooks,
    step: int,
    raw: nn.Module,
    ema: EMA | None,
    autocast: Any,
    out_dir: Path,
    logger: MetricsLogger,
    last: bool,
) -> None:
    """Eval and sample callbacks in eval mode, with EMA weights when configured."""
    do_eval = (
        hooks.on_eval is not None and cfg.eval_every > 0 and (step % cfg.eval_every == 0 or last)
    )
    do_sample = (
        hooks.on_sample is not None
        and cfg.sample_every > 0
        and (step % cfg.sample_every == 0 or last)
    )
    if not (do_eval or do_sample):
        return
    swap = ema.swapped(raw) if ema is not None and cfg.hooks_use_ema else contextlib.nullcontext()
    raw.eval()
    try:
        with swap, torch.no_grad(), autocast:
            if do_eval:
                res = hooks.on_eval(step, raw)
                logger.log(step, {f"eval/{k}": float(v) for k, v in (res or {}).items()})
            if do_sample:
                hooks.on_sample(step, raw, out_dir / "samples")
    finally:
        raw.train()
