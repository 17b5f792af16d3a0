"""One code path for one CPU process, one GPU and ``torchrun`` (DESIGN principle 8).

``setup_distributed()`` reads the variables ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and falls back to a single process when they are absent: gloo on CPU,
nccl on GPU. Data parallelism is PyTorch's own: ``DistributedDataParallel`` for models that fit
one device, FSDP2 ``fully_shard`` (per block, then the root) for those that do not.
*Pattern: nanochat ``common.py`` (compute_init / print0), torchtitan ``parallelize``.*

Nothing here runs at import time; nothing reads the environment until ``setup_distributed``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError

Parallel = Literal["auto", "none", "ddp", "fsdp"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} must be an integer") from None


def setup_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the process group when launched by ``torchrun``; else one local process.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        timeout_s: collective timeout (gloo/nccl).
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"device {device!r} is not one of auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available; use device=cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", rank)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=dev if use_cuda else None,
        )
    return DistInfo(rank, world, local_rank, dev, rank == 0)


def cleanup(sync: bool = False) -> None:
    """Tear down the process group if one was initialised.

    ``sync=True`` (a normal exit) first waits at a barrier, so that no rank closes its gloo
    connections while another is still using them (a rank that leaves early can make its
    peer's transport abort the process); never pass it on an error path, where a rank that
    crashed would leave the others waiting at the barrier for good."""
    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()


def get_rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only (flushed, so logs interleave sensibly)."""
    if get_rank() == 0:
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (in place when distributed); identity for one process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (one tiny all-reduce)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 modules are not wrapped)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    return model


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """Modules to shard one by one: every element of every ``nn.ModuleList`` (the blocks)."""
    units: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, nn.ModuleList):
            units.extend(m)
    return units


def apply_fsdp2(model: nn.Module, param_dtype: torch.dtype | None = torch.bfloat16) -> nn.Module:
    """Shard ``model`` with FSDP2 over all ranks: each block, then the root.

    Parameters are stored sharded in fp32; with ``param_dtype`` the forward/backward compute
    in that dtype and gradients are reduced in fp32 (torchtitan's default policy).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for unit in fsdp_units(model):
        fully_shard(unit, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def parallelize(
    model: nn.Module,
    info: DistInfo,
    mode: Parallel = "auto",
    param_dtype: torch.dtype | None = torch.bfloat16,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """Move ``model`` to ``info.device`` and wrap it for data parallelism.

    mode: "auto" (DDP when world_size > 1, else unwrapped), "none", "ddp" or "fsdp".
    param_dtype: FSDP2 compute dtype of the gathered parameters (None: keep fp32).
    find_unused_parameters: DDP option for models where some parameters get no gradient in
    a step (MoE experts no token chose, a head the batch's task does not use).
    """
    if mode not in ("auto", "none", "ddp", "fsdp"):
        raise UserError(f"parallel mode {mode!r} is not one of auto, none, ddp, fsdp")
    model = model.to(info.device)
    if mode == "fsdp":
        if not dist.is_initialized():
            raise UserError("parallel=fsdp needs torchrun (a process group); use parallel=auto")
        return apply_fsdp2(model, param_dtype)
    if mode == "ddp" or (mode == "auto" and info.distributed):
        if not dist.is_initialized():
            raise UserError("parallel=ddp needs torchrun (a process group); use parallel=auto")
        ids = [info.local_rank] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused_parameters
        )
    return model


@contextlib.contextmanager
def grad_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on non-final micro-steps of an accumulation.

    DDP: ``no_sync()``; FSDP2: ``set_requires_gradient_sync(False)``; otherwise a no-op.
    """
    if enabled:
        yield
    elif isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_fsdp(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield
